/* Dequantization of the GGUF block formats (scalar, bit-exact reference).
 *
 * Every value is computed with the same float32 operations in the same order
 * as the written formula next to each type (e.g. Q4_K: (d * sc) * q - dmin * m),
 * so results are reproducible bit for bit by any IEEE implementation. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static float h2f(uint16_t h) {
    return fitlm_fp16_to_fp32(h);
}

/* Q4_0: x = d * (q - 8) */
static void deq_q4_0(const blk_q4_0 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            y[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

/* Q4_1: x = d * q + m */
static void deq_q4_1(const blk_q4_1 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(b[i].qs[j] & 0x0f) + m;
            y[j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q5_0: x = d * (q - 16), fifth bit of element j in bit j of qh */
static void deq_q5_0(const blk_q5_0 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

/* Q5_1: x = d * q + m */
static void deq_q5_1(const blk_q5_1 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

/* Q8_0: x = d * q */
static void deq_q8_0(const blk_q8_0 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = d * (float)b[i].qs[j];
    }
}

/* Q2_K: 16 sub-blocks of 16. Element e (0..255) has sub-block e/16, whose
 * scales byte holds a 4-bit scale (low) and 4-bit min (high); its 2-bit q is
 * bits 2j..2j+1 of qs[32*(e/128) + e%32] with j = (e%128)/32.
 * x = (d * sc) * q - dmin * mn */
static void deq_q2_k(const blk_q2_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int e = 0; e < 256; e++) {
            uint8_t s = b[i].scales[e / 16];
            int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            float dl = d * (float)(s & 0x0f), ml = dmin * (float)(s >> 4);
            y[e] = dl * (float)q - ml;
        }
    }
}

/* Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (fitlm_k3_scale). The low
 * 2 bits of element e are laid out as in Q2_K; the third bit is bit
 * 4*(e/128) + (e%128)/32 of hmask[e%32], and a clear bit subtracts 4:
 * q = low2 - (bit ? 0 : 4), x = (d * sc) * q */
static void deq_q3_k(const blk_q3_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = h2f(b[i].d);
        for (int e = 0; e < 256; e++) {
            int j = (e % 128) / 32;
            int low = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * j)) & 3;
            int bit = (b[i].hmask[e % 32] >> (4 * (e / 128) + j)) & 1;
            int q = low - (bit ? 0 : 4);
            float dl = d * (float)fitlm_k3_scale(b[i].scales, e / 16);
            y[e] = dl * (float)q;
        }
    }
}

/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and min (fitlm_k4_scale_min).
 * Element 64c + l (l < 32) is the low nibble of qs[32c + l] (sub-block 2c),
 * element 64c + 32 + l its high nibble (sub-block 2c + 1).
 * x = (d * sc) * q - dmin * mn
 * Q5_K is the same plus a fifth bit (+16): bit 2c of qh[l] for element 64c + l,
 * bit 2c + 1 for element 64c + 32 + l. One super-block of 256; qh NULL for Q4_K. */
static void deq_k4_superblock(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qs,
                              const uint8_t *qh, float *y) {
    float d = h2f(dh), dmin = h2f(dminh);
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        fitlm_k4_scale_min(scales, 2 * c, &sc0, &m0);
        fitlm_k4_scale_min(scales, 2 * c + 1, &sc1, &m1);
        float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
        float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int lo = q[l] & 0x0f, hi = q[l] >> 4;
            if (qh) {
                lo += ((qh[l] >> (2 * c)) & 1) << 4;
                hi += ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            y[64 * c + l] = d0 * (float)lo - mm0;
            y[64 * c + 32 + l] = d1 * (float)hi - mm1;
        }
    }
}

static void deq_q4_k(const blk_q4_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 256) deq_k4_superblock(b[i].d, b[i].dmin, b[i].scales, b[i].qs, NULL, y);
}

static void deq_q5_k(const blk_q5_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 256) deq_k4_superblock(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, y);
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; element e uses scales[e/16].
 * In each half h (128 elements; ql + 64h, qh + 32h), for l < 32:
 *   element l      : low nibble of ql[l]      | bits 0-1 of qh[l] << 4
 *   element l + 32 : low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
 *   element l + 64 : high nibble of ql[l]     | bits 4-5 of qh[l] << 4
 *   element l + 96 : high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
 * x = (d * sc) * (q - 32) */
static void deq_q6_k(const blk_q6_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = h2f(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            float *o = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q[4] = {
                    (ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4,
                    (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4,
                    (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                    (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
                };
                for (int k = 0; k < 4; k++) {
                    int e = l + 32 * k;
                    float dl = d * (float)b[i].scales[8 * h + e / 16];
                    o[e] = dl * (float)(q[k] - 32);
                }
            }
        }
    }
}

int fitlm_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti || n < 0 || n % ti->block_size != 0) return -1;
    int64_t nb = n / ti->block_size;
    switch (type) {
    case FITLM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case FITLM_TYPE_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = fitlm_fp16_to_fp32(h[i]);
        return 0;
    }
    case FITLM_TYPE_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = fitlm_bf16_to_fp32(h[i]);
        return 0;
    }
    case FITLM_TYPE_Q4_0: deq_q4_0(src, nb, dst); return 0;
    case FITLM_TYPE_Q4_1: deq_q4_1(src, nb, dst); return 0;
    case FITLM_TYPE_Q5_0: deq_q5_0(src, nb, dst); return 0;
    case FITLM_TYPE_Q5_1: deq_q5_1(src, nb, dst); return 0;
    case FITLM_TYPE_Q8_0: deq_q8_0(src, nb, dst); return 0;
    case FITLM_TYPE_Q2_K: deq_q2_k(src, nb, dst); return 0;
    case FITLM_TYPE_Q3_K: deq_q3_k(src, nb, dst); return 0;
    case FITLM_TYPE_Q4_K: deq_q4_k(src, nb, dst); return 0;
    case FITLM_TYPE_Q5_K: deq_q5_k(src, nb, dst); return 0;
    case FITLM_TYPE_Q6_K: deq_q6_k(src, nb, dst); return 0;
    default: return -1;
    }
}
