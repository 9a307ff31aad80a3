/* Portable dot-product kernels (the "scalar" ISA): integer dot products of
 * unpacked weight blocks with quantized activations, float for F32/F16, bfloat16 for BF16.
 * Every weight block is unpacked once and used for all `ntok` tokens. */
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static float h2f(uint16_t h) {
    return fitlm_fp16_to_fp32(h);
}

/* ---- float weights ---- */

static void dot_f32(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {
    const float *wf = w;
    for (int t = 0; t < ntok; t++) {
        const float *x = (const float *)((const uint8_t *)a + (size_t)t * astride);
        float s[8] = {0};
        int64_t c = 0;
        for (; c + 8 <= cols; c += 8)
            for (int k = 0; k < 8; k++) s[k] += wf[c + k] * x[c + k];
        for (; c < cols; c++) s[0] += wf[c] * x[c];
        out[t] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
}

static void dot_half(int64_t cols, const uint16_t *w, const void *a, size_t astride, int ntok, float *out) {
    float s[FITLM_DOT_TILE][8];
    memset(s, 0, sizeof s);
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        float wf[8];
        for (int k = 0; k < 8; k++) wf[k] = h2f(w[c + k]);
        for (int t = 0; t < ntok; t++) {
            const float *x = (const float *)((const uint8_t *)a + (size_t)t * astride);
            for (int k = 0; k < 8; k++) s[t][k] += wf[k] * x[c + k];
        }
    }
    for (; c < cols; c++) {
        float wf = h2f(w[c]);
        for (int t = 0; t < ntok; t++) s[t][0] += wf * ((const float *)((const uint8_t *)a + (size_t)t * astride))[c];
    }
    for (int t = 0; t < ntok; t++)
        out[t] = ((s[t][0] + s[t][1]) + (s[t][2] + s[t][3])) + ((s[t][4] + s[t][5]) + (s[t][6] + s[t][7]));
}

static void dot_f16(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {
    dot_half(cols, w, a, astride, ntok, out);
}
/* BF16 weights x ACT_BF16 activations: both widened exactly to float */
static void dot_bf16(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {
    const uint16_t *wh = w;
    for (int t = 0; t < ntok; t++) {
        const uint16_t *x = (const uint16_t *)((const uint8_t *)a + (size_t)t * astride);
        float s[8] = {0};
        int64_t c = 0;
        for (; c + 8 <= cols; c += 8)
            for (int k = 0; k < 8; k++) s[k] += fitlm_bf16_to_fp32(wh[c + k]) * fitlm_bf16_to_fp32(x[c + k]);
        for (; c < cols; c++) s[0] += fitlm_bf16_to_fp32(wh[c]) * fitlm_bf16_to_fp32(x[c]);
        out[t] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
}

/* ---- 32-element blocks x act_q8 ----
 * Each unpacks a block into q[32] (signed, offset removed), scale d and an
 * optional additive min m: block value = d * q + m. */


static void dot_blocks32(int64_t nb, const uint8_t *w, size_t bbytes, int kind, const void *a, size_t astride,
                         int ntok, float *out) {
    float acc[FITLM_DOT_TILE] = {0};
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk = w + (size_t)i * bbytes;
        int8_t q[32];
        float d, m = 0.0f;
        int has_min = 0;
        switch (kind) {
        case FITLM_TYPE_Q4_0: {
            const blk_q4_0 *b = (const blk_q4_0 *)blk;
            d = h2f(b->d);
            for (int j = 0; j < 16; j++) {
                q[j] = (int8_t)((b->qs[j] & 0x0f) - 8);
                q[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
            }
            break;
        }
        case FITLM_TYPE_Q4_1: {
            const blk_q4_1 *b = (const blk_q4_1 *)blk;
            d = h2f(b->d);
            m = h2f(b->m);
            has_min = 1;
            for (int j = 0; j < 16; j++) {
                q[j] = (int8_t)(b->qs[j] & 0x0f);
                q[j + 16] = (int8_t)(b->qs[j] >> 4);
            }
            break;
        }
        case FITLM_TYPE_Q5_0:
        case FITLM_TYPE_Q5_1: {
            const uint8_t *qh8, *qs;
            int off;
            if (kind == FITLM_TYPE_Q5_0) {
                const blk_q5_0 *b = (const blk_q5_0 *)blk;
                d = h2f(b->d);
                qh8 = b->qh;
                qs = b->qs;
                off = 16;
            } else {
                const blk_q5_1 *b = (const blk_q5_1 *)blk;
                d = h2f(b->d);
                m = h2f(b->m);
                has_min = 1;
                qh8 = b->qh;
                qs = b->qs;
                off = 0;
            }
            uint32_t qh = (uint32_t)qh8[0] | (uint32_t)qh8[1] << 8 | (uint32_t)qh8[2] << 16 | (uint32_t)qh8[3] << 24;
            for (int j = 0; j < 16; j++) {
                q[j] = (int8_t)(((qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4) - off);
                q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off);
            }
            break;
        }
        default: { /* Q8_0 */
            const blk_q8_0 *b = (const blk_q8_0 *)blk;
            d = h2f(b->d);
            memcpy(q, b->qs, 32);
            break;
        }
        }
        for (int t = 0; t < ntok; t++) {
            const act_q8_ref ab_ = act_q8_get((const uint8_t *)a + (size_t)t * astride, nb, i), *ab = &ab_;
            int32_t isum = 0;
            for (int j = 0; j < 32; j++) isum += q[j] * ab->qs[j];
            acc[t] += (d * ab->d) * (float)isum;
            if (has_min) acc[t] += (m * ab->d) * (float)ab->sum;
        }
    }
    for (int t = 0; t < ntok; t++) out[t] = acc[t];
}

#define DOT32(name, type, blk)                                                                                         \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {             \
        dot_blocks32(cols / 32, w, sizeof(blk), type, a, astride, ntok, out);                                         \
    }
DOT32(dot_q4_0, FITLM_TYPE_Q4_0, blk_q4_0)
DOT32(dot_q4_1, FITLM_TYPE_Q4_1, blk_q4_1)
DOT32(dot_q5_0, FITLM_TYPE_Q5_0, blk_q5_0)
DOT32(dot_q5_1, FITLM_TYPE_Q5_1, blk_q5_1)
DOT32(dot_q8_0, FITLM_TYPE_Q8_0, blk_q8_0)

/* ---- 256-element K blocks x act_q8k ----
 * Each unpacks a block into q[256] (signed), integer scales sc[16] per 16
 * elements, integer mins mn[16] per 16 elements (or none), and float
 * multipliers: block value = d * sc * q - dmin * mn. */

typedef struct {
    int8_t q[256];
    int32_t sc[16];
    int32_t mn[16];
    float d, dmin;
    int has_min;
} kblock;

static void unpack_k(int kind, const uint8_t *blk, kblock *k) {
    switch (kind) {
    case FITLM_TYPE_Q2_K: {
        const blk_q2_k *b = (const blk_q2_k *)blk;
        k->d = h2f(b->d);
        k->dmin = h2f(b->dmin);
        k->has_min = 1;
        for (int e = 0; e < 256; e++) k->q[e] = (int8_t)((b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
        for (int j = 0; j < 16; j++) {
            k->sc[j] = b->scales[j] & 0x0f;
            k->mn[j] = b->scales[j] >> 4;
        }
        break;
    }
    case FITLM_TYPE_Q3_K: {
        const blk_q3_k *b = (const blk_q3_k *)blk;
        k->d = h2f(b->d);
        k->dmin = 0.0f;
        k->has_min = 0;
        for (int e = 0; e < 256; e++) {
            int j = (e % 128) / 32;
            int low = (b->qs[32 * (e / 128) + e % 32] >> (2 * j)) & 3;
            int bit = (b->hmask[e % 32] >> (4 * (e / 128) + j)) & 1;
            k->q[e] = (int8_t)(low - (bit ? 0 : 4));
        }
        for (int j = 0; j < 16; j++) k->sc[j] = fitlm_k3_scale(b->scales, j);
        break;
    }
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q5_K: {
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t d, dmin;
        if (kind == FITLM_TYPE_Q4_K) {
            const blk_q4_k *b = (const blk_q4_k *)blk;
            d = b->d;
            dmin = b->dmin;
            scales = b->scales;
            qs = b->qs;
        } else {
            const blk_q5_k *b = (const blk_q5_k *)blk;
            d = b->d;
            dmin = b->dmin;
            scales = b->scales;
            qs = b->qs;
            qh = b->qh;
        }
        k->d = h2f(d);
        k->dmin = h2f(dmin);
        k->has_min = 1;
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * c + l] & 0x0f, hi = qs[32 * c + l] >> 4;
                if (qh) {
                    lo += ((qh[l] >> (2 * c)) & 1) << 4;
                    hi += ((qh[l] >> (2 * c + 1)) & 1) << 4;
                }
                k->q[64 * c + l] = (int8_t)lo;
                k->q[64 * c + 32 + l] = (int8_t)hi;
            }
        }
        for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            fitlm_k4_scale_min(scales, j, &sc, &mn);
            k->sc[2 * j] = k->sc[2 * j + 1] = sc;
            k->mn[2 * j] = k->mn[2 * j + 1] = mn;
        }
        break;
    }
    default: { /* Q6_K */
        const blk_q6_k *b = (const blk_q6_k *)blk;
        k->d = h2f(b->d);
        k->dmin = 0.0f;
        k->has_min = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            int8_t *o = k->q + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
            }
        }
        for (int j = 0; j < 16; j++) k->sc[j] = b->scales[j];
        break;
    }
    }
}

static void dot_kblocks(int64_t nb, const uint8_t *w, size_t bbytes, int kind, const void *a, size_t astride,
                        int ntok, float *out) {
    float acc[FITLM_DOT_TILE] = {0};
    kblock k;
    for (int64_t i = 0; i < nb; i++) {
        unpack_k(kind, w + (size_t)i * bbytes, &k);
        for (int t = 0; t < ntok; t++) {
            const act_q8k *ab = (const act_q8k *)((const uint8_t *)a + (size_t)t * astride) + i;
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t s = 0;
                for (int l = 0; l < 16; l++) s += k.q[16 * j + l] * ab->qs[16 * j + l];
                isum += k.sc[j] * s;
                if (k.has_min) msum += k.mn[j] * ab->bsums[j];
            }
            acc[t] += (k.d * ab->d) * (float)isum;
            if (k.has_min) acc[t] -= (k.dmin * ab->d) * (float)msum;
        }
    }
    for (int t = 0; t < ntok; t++) out[t] = acc[t];
}

#define DOTK(name, type, blk)                                                                                          \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {             \
        dot_kblocks(cols / 256, w, sizeof(blk), type, a, astride, ntok, out);                                         \
    }
DOTK(dot_q2_k, FITLM_TYPE_Q2_K, blk_q2_k)
DOTK(dot_q3_k, FITLM_TYPE_Q3_K, blk_q3_k)
DOTK(dot_q4_k, FITLM_TYPE_Q4_K, blk_q4_k)
DOTK(dot_q5_k, FITLM_TYPE_Q5_K, blk_q5_k)
DOTK(dot_q6_k, FITLM_TYPE_Q6_K, blk_q6_k)

fitlm_dot_fn fitlm_dot_scalar(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_F32: return dot_f32;
    case FITLM_TYPE_F16: return dot_f16;
    case FITLM_TYPE_BF16: return dot_bf16;
    case FITLM_TYPE_Q4_0: return dot_q4_0;
    case FITLM_TYPE_Q4_1: return dot_q4_1;
    case FITLM_TYPE_Q5_0: return dot_q5_0;
    case FITLM_TYPE_Q5_1: return dot_q5_1;
    case FITLM_TYPE_Q8_0: return dot_q8_0;
    case FITLM_TYPE_Q2_K: return dot_q2_k;
    case FITLM_TYPE_Q3_K: return dot_q3_k;
    case FITLM_TYPE_Q4_K: return dot_q4_k;
    case FITLM_TYPE_Q5_K: return dot_q5_k;
    case FITLM_TYPE_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}
