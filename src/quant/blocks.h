/* The GGUF block layouts as C structs, shared by the block codecs
 * (quant/dequant.c, quant/quantize.c) and every backend's kernels.
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
#ifndef FITLM_QUANT_BLOCKS_H
#define FITLM_QUANT_BLOCKS_H

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

/* ---- scale unpacking of the K types (the GGUF bit layouts) ---- */

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
