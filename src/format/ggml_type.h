/* The ggml tensor type ids used by GGUF files, with their block layouts.
 *
 * Every tensor in fitlm (whatever file it came from) is typed with these ids.
 * Safetensors-only integer dtypes without a ggml id get ids >= 1000.
 */
#ifndef FITLM_FORMAT_GGML_TYPE_H
#define FITLM_FORMAT_GGML_TYPE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum fitlm_type {
    FITLM_TYPE_F32 = 0,
    FITLM_TYPE_F16 = 1,
    FITLM_TYPE_Q4_0 = 2,
    FITLM_TYPE_Q4_1 = 3,
    FITLM_TYPE_Q5_0 = 6,
    FITLM_TYPE_Q5_1 = 7,
    FITLM_TYPE_Q8_0 = 8,
    FITLM_TYPE_Q8_1 = 9,
    FITLM_TYPE_Q2_K = 10,
    FITLM_TYPE_Q3_K = 11,
    FITLM_TYPE_Q4_K = 12,
    FITLM_TYPE_Q5_K = 13,
    FITLM_TYPE_Q6_K = 14,
    FITLM_TYPE_Q8_K = 15,
    FITLM_TYPE_IQ2_XXS = 16,
    FITLM_TYPE_IQ2_XS = 17,
    FITLM_TYPE_IQ3_XXS = 18,
    FITLM_TYPE_IQ1_S = 19,
    FITLM_TYPE_IQ4_NL = 20,
    FITLM_TYPE_IQ3_S = 21,
    FITLM_TYPE_IQ2_S = 22,
    FITLM_TYPE_IQ4_XS = 23,
    FITLM_TYPE_I8 = 24,
    FITLM_TYPE_I16 = 25,
    FITLM_TYPE_I32 = 26,
    FITLM_TYPE_I64 = 27,
    FITLM_TYPE_F64 = 28,
    FITLM_TYPE_IQ1_M = 29,
    FITLM_TYPE_BF16 = 30,
    FITLM_TYPE_TQ1_0 = 34,
    FITLM_TYPE_TQ2_0 = 35,
    FITLM_TYPE_MXFP4 = 39,
    FITLM_TYPE_GGML_COUNT = 40, /* ids below this may be GGUF types */
    FITLM_TYPE_U8 = 1000,       /* safetensors only */
    FITLM_TYPE_F8_E4M3 = 1001,  /* safetensors only (FP8 checkpoints) */
    FITLM_TYPE_F8_E5M2 = 1002,
    FITLM_TYPE_INVALID = -1,
} fitlm_type;

typedef struct fitlm_type_info {
    const char *name;     /* "Q4_K", "F16", ... (GGUF spelling) */
    uint32_t block_size;  /* elements per block (1 for plain types) */
    uint32_t block_bytes; /* bytes per block */
    bool quantized;
} fitlm_type_info;

/* Info for a type id, or NULL if the id is unknown/removed. */
const fitlm_type_info *fitlm_type_get(int type);

/* Name of a type ("?" if unknown). */
const char *fitlm_type_name(int type);

/* Parses a type name (case-insensitive, e.g. "q4_k", "bf16"). Returns
 * FITLM_TYPE_INVALID if unknown. */
int fitlm_type_from_name(const char *name);

/* Bytes of a row of n elements: n must be a multiple of the block size.
 * Returns 0 (and *ok=false) if not, or on overflow. */
uint64_t fitlm_type_row_bytes(int type, uint64_t n, bool *ok);

/* Bits per weight (block_bytes*8/block_size). */
double fitlm_type_bpw(int type);

/* For a block-quantized type with fp16 scales (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q8_1, Q2_K..Q6_K; Q8_K's f32 scale): the index of the first block of the
 * nbytes at data whose scale or minimum is Inf or NaN, or -1 when none is (or
 * the type has no scale this function knows). Reads byte-wise (any alignment). */
int64_t fitlm_type_first_nonfinite_scale(int type, const void *data, uint64_t nbytes);

#endif
