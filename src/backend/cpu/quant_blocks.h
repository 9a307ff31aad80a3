/* Internal to the CPU backend: the activation formats the integer dot
 * products consume and the table of per-ISA dot-product kernels, over the
 * GGUF block layouts of quant/blocks.h. */
#ifndef FITLM_BACKEND_CPU_QUANT_BLOCKS_H
#define FITLM_BACKEND_CPU_QUANT_BLOCKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/ggml_type.h"
#include "quant/blocks.h"

/* ---- activation formats (private to fitlm, not GGUF types) ----
 * ACT_F32: the float row as given.
 * ACT_Q8:  per 32 values, x ~= d * qs[i], d = max|x| / 127, plus the integer sum
 *          of qs (for the offsets and minimums of the weight formats). A row of
 *          nb blocks is stored as arrays so that SIMD code can load the codes
 *          of consecutive blocks and their scales in one go:
 *              int8 qs[32 * nb] | float d[nb] | int32 sum[nb]   (40 * nb bytes)
 * ACT_Q8K: per 256 values one scale, plus the sums of each 16 consecutive qs. */
typedef struct {
    const int8_t *qs; /* the 32 codes of the block */
    float d;
    int32_t sum;
} act_q8_ref;
static inline const int8_t *act_q8_qs(const void *row) {
    return (const int8_t *)row;
}
static inline const float *act_q8_d(const void *row, int64_t nb) {
    return (const float *)((const uint8_t *)row + 32 * nb);
}
static inline const int32_t *act_q8_sum(const void *row, int64_t nb) {
    return (const int32_t *)((const uint8_t *)row + 36 * nb);
}
static inline act_q8_ref act_q8_get(const void *row, int64_t nb, int64_t i) {
    act_q8_ref r = {act_q8_qs(row) + 32 * i, act_q8_d(row, nb)[i], act_q8_sum(row, nb)[i]};
    return r;
}
typedef struct {
    int8_t qs[256]; /* first, and the struct padded to 320 bytes: in a 64-byte
                       aligned row every block's codes start on a cache line */
    int16_t bsums[16];
    float d;
    uint8_t pad[28];
} act_q8k;
_Static_assert(sizeof(act_q8k) == 320, "act_q8k");

/* ACT_Q8I: ACT_Q8 with the codes of each full group of 4 blocks (128 codes)
 * reordered as the first 16 codes of the 4 blocks, then their last 16 codes
 * (what the SIMD Q4_0 kernels multiply with the low and the high nibbles of 4
 * weight blocks); blocks of a trailing partial group stay in order. Only the
 * AVX2 and AVX-512 Q4_0 kernels of the file's layout read it. */
/* ACT_BF16: the activations rounded to bfloat16 (round to nearest even), the
 * format of BF16 weights under every ISA (one rounding of the activations,
 * like the 8-bit formats of the quantized types). */
typedef enum { ACT_F32 = 0, ACT_Q8 = 1, ACT_Q8K = 2, ACT_Q8I = 3, ACT_BF16 = 4 } act_format;

/* The activation format the integer kernels of a weight type consume: the
 * scalar kernels (fitlm_act_format), the AVX2 and AVX-512 ones
 * (fitlm_act_format_simd). */
act_format fitlm_act_format(int wtype);
act_format fitlm_act_format_simd(int wtype);
/* Reorders a quantized ACT_Q8 row into ACT_Q8I in place. */
void fitlm_act_q8_interleave(void *row, int64_t cols);
/* Bytes of one token's activations (cols values) in that format. */
size_t fitlm_act_row_bytes(act_format f, int64_t cols);
/* Quantizes one token row (cols a multiple of 32 / 256). Deterministic scalar
 * code: every ISA and the test oracle see the same quantized activations. A
 * non-finite input makes its block's scale NaN (so results are NaN). */
void fitlm_quantize_act_q8(const float *x, void *dst_row, int64_t cols);
void fitlm_quantize_act_q8k(const float *x, act_q8k *dst, int64_t cols);
void fitlm_quantize_act_bf16(const float *x, uint16_t *dst, int64_t cols);
/* The same with AVX2 (identical output; only call when the CPU has AVX2). */
void fitlm_quantize_act_q8_avx2(const float *x, void *dst_row, int64_t cols);
void fitlm_quantize_act_q8k_avx2(const float *x, act_q8k *dst, int64_t cols);
/* fitlm_quantize_act_bf16 with AVX2 (the same bits). */
void fitlm_quantize_act_bf16_avx2(const float *x, uint16_t *dst, int64_t cols);

/* Dot products of one weight row with `ntok` tokens (1..FITLM_DOT_TILE for the
 * scalar and AVX2 kernels, 1..FITLM_DOT_TILE_AVX512 for the AVX-512 ones, whose
 * 32 registers hold the accumulators of 8 tokens):
 * out[t] = sum_c W[c] * A_t[c], where A_t starts at a + t * astride bytes
 * (in the weight type's activation format). */
#define FITLM_DOT_TILE 4
#define FITLM_DOT_TILE_AVX512 8
#define FITLM_DOT_TILE_MAX 8
typedef void (*fitlm_dot_fn)(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out);

/* Kernel for repacked weights (kernels.h, fitlm_cpu_repack), decode and
 * prompt alike: the 16 rows of the group column at w times nt tokens
 * (1..FITLM_REPACK_TOKENS; ACT_Q8 activations astride bytes apart; prep: each
 * token's fitlm_repacked_prep, pstride bytes apart): out[t * ostride +
 * k] = W_k . A_t for row k, token t. NULL for types without one. */
#define FITLM_REPACK_ROWS 16
#define FITLM_REPACK_TOKENS 8
typedef void (*fitlm_dot_repacked_fn)(int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                                      size_t pstride, int nt, float *out, size_t ostride);

/* Batched calls of the repacked kernels (2+ tokens) spend longer on each
 * weight group than a DRAM read of it takes, and the out-of-order window then
 * covers too few groups to keep the reads in flight: the read and the
 * arithmetic ran one after the other (8 token rows of a Q4_0 matrix took the
 * read of one row plus the arithmetic of 8). Each group step therefore asks
 * for the group FITLM_REPACK_PREFETCH bytes ahead, so that the weights arrive
 * while the current group is multiplied. One token (decode of a single
 * sequence) is read-bound, and the hardware prefetchers keep up with the
 * simple layouts on AMD Zen 4 (Q4_0, Q8_0, the 5-bit legacy types, F16 and
 * BF16: asking for their groups too made one row up to 15 % slower there; on
 * an Intel Xeon (Sapphire Rapids class) it made one Q4_0 row 25-35 % faster,
 * so Intel CPUs ask from one row: fitlm_repacked_pf_simple), not with the
 * k-quants, whose one-token groups are long (16 rows of a 256-column super-
 * block, 1.3-3.4 KB) and heavy to unpack: those ask from min_nt = 1 (a
 * Q4_K matrix-vector product 1.75x faster in kernels_bench), the others
 * from min_nt = 2. The prefetch past a matrix's end is harmless: a hint,
 * never a fault, at most that many bytes more read. */
#define FITLM_REPACK_PREFETCH 4096
/* The min_nt of the simple layouts (Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, F16,
 * BF16): 2 (above) unless the driver (matmul.c) set it to 1 for this CPU. */
extern atomic_int fitlm_repacked_pf_simple;
static inline int fitlm_repacked_pf_simple_min(void) {
    return atomic_load_explicit(&fitlm_repacked_pf_simple, memory_order_relaxed);
}
static inline void fitlm_repacked_prefetch(const void *group, size_t gbytes, int nt, int min_nt) {
    if (nt < min_nt) return;
    const char *p = (const char *)group + FITLM_REPACK_PREFETCH;
    for (size_t o = 0; o < gbytes; o += 64) __builtin_prefetch(p + o, 0, 3);
}
fitlm_dot_repacked_fn fitlm_dot_repacked_avx512(int wtype);
/* The same for the x16 layouts under AVX2 (used when AVX-512 VNNI is not active). */
fitlm_dot_repacked_fn fitlm_dot_repacked_avx2(int wtype);
/* The Q4_0 / Q8_0 ones with AVX-VNNI (dot_avxvnni.c; NULL for other types or
 * when the compiler could not build it), and the same code with vpdpbusd
 * emulated in AVX2 (dot_avxvnni_emu_avx2.c, for tests). Same bits as the AVX2
 * kernels. */
fitlm_dot_repacked_fn fitlm_dot_repacked_avxvnni(int wtype);
fitlm_dot_repacked_fn fitlm_dot_repacked_avxvnni_emu(int wtype);
/* The x16 kernels on AMX (dot_amx.c; NULL for other types or when the
 * compiler could not build it): Q4_0, Q8_0, Q4_K, Q5_K (AMX-INT8; call only
 * when fitlm_cpu_has_amx_int8()) and BF16 (AMX-BF16: fitlm_cpu_has_amx_bf16()).
 * ngroups groups of 16 rows (the first at w, gstride bytes apart) times nt
 * tokens (activations in the type's format, astride bytes apart, prep as for
 * the repacked kernels): out[t * ostride + 16 * g + k] = row k of group g .
 * A_t. The integer types take exactly FITLM_AMX_TOKENS tokens and give the
 * same bits as their AVX-512 VNNI kernels; BF16 takes 1..FITLM_AMX_TOKENS
 * (fitlm_amx_all_rows: every token count of a BF16 matmul runs on AMX, whose
 * sums are in another order than vdpbf16ps's, so that a token's result never
 * depends on how many others share the call). Loads its tile configuration
 * and releases the tiles before returning. */
#define FITLM_AMX_TOKENS 16
typedef void (*fitlm_dot_amx_fn)(int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a,
                                 size_t astride, const void *prep, size_t pstride, float *out, size_t ostride,
                                 int nt);
static inline bool fitlm_amx_all_rows(int wtype) {
    return wtype == FITLM_TYPE_BF16;
}
fitlm_dot_amx_fn fitlm_dot_repacked_amx(int wtype);
/* The per-token part of those kernels, computed once per matmul instead of
 * once per 16 rows (Q4_0, Q8_0: each block's integer offset, -8 or -128 x
 * the block's activation sum; Q4_K: the 8 sub-block sums in 16-bit pairs;
 * Q6_K: each 16-column sub-block's offset, -32 x its sum): at most
 * FITLM_REPACK_PREP_BYTES(cols) bytes at prep for the ACT_Q8 / ACT_Q8K row a. */
#define FITLM_REPACK_PREP_BYTES(cols) ((size_t)((cols) / 16) * 4)
void fitlm_repacked_prep(int wtype, int64_t cols, const void *a, void *prep);

/* Per-ISA kernel lookup: NULL when that ISA has no kernel for the type (the
 * dispatcher then falls back to the next lower ISA). */
fitlm_dot_fn fitlm_dot_scalar(int wtype);
fitlm_dot_fn fitlm_dot_avx2(int wtype);
fitlm_dot_fn fitlm_dot_avx512(int wtype);

#endif
