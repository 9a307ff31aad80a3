/* Internal to the CPU backend: the GGUF block layouts as C structs, the
 * activation formats the integer dot products consume, and the table of
 * per-ISA dot-product kernels.
 *
 * Block layouts (GGUF / ggml type definitions, little-endian; "half" = IEEE
 * binary16 stored as uint16):
 *   Q4_0  {half d; u8 qs[16]}                 x = d * (q - 8),  q 4-bit
 *   Q4_1  {half d; half m; u8 qs[16]}         x = d * q + m
 *   Q5_0  {half d; u8 qh[4]; u8 qs[16]}       x = d * (q - 16), q 5-bit
 *   Q5_1  {half d; half m; u8 qh[4]; u8 qs[16]} x = d * q + m
 *   Q8_0  {half d; i8 qs[32]}                 x = d * q
 *   In the 32-element blocks, element j < 16 is the low nibble of qs[j] and
 *   element j + 16 the high nibble; the fifth bit of element j is bit j of qh.
 *   Q2_K  {u8 scales[16]; u8 qs[64]; half d; half dmin}
 *   Q3_K  {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}
 *   Q4_K  {half d; half dmin; u8 scales[12]; u8 qs[128]}
 *   Q5_K  {half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 *   Q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}
 * (element orders of the K types are documented next to their dequantizers.)
 */
#ifndef FITLM_BACKEND_CPU_QUANT_BLOCKS_H
#define FITLM_BACKEND_CPU_QUANT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QK32 32
#define QK256 256

typedef struct {
    uint16_t d;
    uint8_t qs[16];
} blk_q4_0;
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} blk_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_1;
typedef struct {
    uint16_t d;
    int8_t qs[32];
} blk_q8_0;
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} blk_q2_k;
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} blk_q3_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} blk_q4_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} blk_q5_k;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} blk_q6_k;

_Static_assert(sizeof(blk_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(blk_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(blk_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(blk_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(blk_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(blk_q2_k) == 84, "Q2_K block");
_Static_assert(sizeof(blk_q3_k) == 110, "Q3_K block");
_Static_assert(sizeof(blk_q4_k) == 144, "Q4_K block");
_Static_assert(sizeof(blk_q5_k) == 176, "Q5_K block");
_Static_assert(sizeof(blk_q6_k) == 210, "Q6_K block");

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
fitlm_dot_repacked_fn fitlm_dot_repacked_avx512(int wtype);
/* The same for the x16 layouts under AVX2 (used when AVX-512 VNNI is not active). */
fitlm_dot_repacked_fn fitlm_dot_repacked_avx2(int wtype);
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

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void fitlm_k4_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* All 8 scales and mins of a Q4_K/Q5_K block at once, with 32-bit word
 * operations (same values as fitlm_k4_scale_min): scales 0-3 are the low 6 bits
 * of bytes 0-3, mins 0-3 those of bytes 4-7; scales 4-7 take their low nibble
 * from bytes 8-11 and their top two bits from the top of bytes 0-3, mins 4-7 the
 * high nibble of bytes 8-11 and the top of bytes 4-7. */
static inline void fitlm_k4_unpack(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3], o[4];
    memcpy(u, s, 12);
    o[0] = u[0] & 0x3f3f3f3fu;
    o[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    o[2] = u[1] & 0x3f3f3f3fu;
    o[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    memcpy(sc, o, 8);
    memcpy(mn, o + 2, 8);
}

/* The signed 6-bit scale of sub-block j (0..15) of a Q3_K block (-32..31). */
static inline int fitlm_k3_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

#endif
