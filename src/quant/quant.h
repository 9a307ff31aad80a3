/* The GGUF block codecs: rows of floats to and from the quantized block
 * formats (quant/blocks.h), bit-exact with the GGUF definitions. Plain C with
 * an AVX2 build of the K-type scale searches (same bytes either way), shared
 * by the quantizer, the converters, the tests and every backend. */
#ifndef FITLM_QUANT_QUANT_H
#define FITLM_QUANT_QUANT_H

#include <stdint.h>

/* Dequantizes n elements (n a multiple of the block size) of `type` at src into
 * dst. Bit-exact with the GGUF definitions. Returns 0, -1 if type unsupported. */
int fitlm_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Quantizes n floats into `type` (reference quantizers following the GGUF block
 * definitions; Q4_K/Q6_K use the usual search for scales). Returns bytes written
 * or -1 if unsupported. Optional `imatrix` (per-column importance, may be NULL). */
int64_t fitlm_quantize_row(int type, const float *src, void *dst, int64_t n, const float *imatrix);

#endif
