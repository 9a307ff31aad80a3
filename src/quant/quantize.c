/* Reference quantizers (float -> GGUF blocks).
 *
 * Q8_0, Q4_0, Q5_0 (symmetric) and Q4_1, Q5_1 (min/max) follow the block
 * definitions directly: Q8_0 d = max|x| / 127; Q4_0/Q5_0 d = m / -8 (-16)
 * where m is the value of largest magnitude, so m maps exactly onto the most
 * negative code; Q4_1/Q5_1 d = (max - min) / 15 (31), offset = min; codes are
 * round-to-nearest, clamped.
 * Q2_K/Q3_K/Q4_K/Q5_K/Q6_K search each sub-block's scale (and min) to minimize the
 * (optionally importance-weighted) squared error (quant_search_impl.h, built
 * here and, for AVX2 CPUs, in quantize_avx2.c: same bytes either way), then
 * quantize the sub-block scales against the super-block scale (the best of the
 * integers around the nearest) and re-round every code with the scales
 * actually stored. */
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_search.h"
#include "sys/cpu_features.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
/* round to nearest (halves away from zero), safe for any float */
static int rnd(float v) {
    if (!(v == v)) return 0;
    if (v > 1e6f) return 1000000;
    if (v < -1e6f) return -1000000;
    return (int)lroundf(v);
}

/* ---- 32-element blocks ---- */

static void q8_0_block(const float *x, blk_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = fitlm_fp32_to_fp16(d);
    for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)clampi(rnd(x[j] * id), -128, 127);
}

/* symmetric 4/5-bit: d = m / -(2^(bits-1)) */
static float sym_scale(const float *x, int half_range, float *id) {
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    float d = m / (float)-half_range;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

static void q4_0_block(const float *x, blk_q4_0 *b) {
    float id, d = sym_scale(x, 8, &id);
    b->d = fitlm_fp32_to_fp16(d);
    for (int j = 0; j < 16; j++) {
        int lo = clampi(rnd(x[j] * id) + 8, 0, 15), hi = clampi(rnd(x[j + 16] * id) + 8, 0, 15);
        b->qs[j] = (uint8_t)(lo | hi << 4);
    }
}

static void q5_0_block(const float *x, blk_q5_0 *b) {
    float id, d = sym_scale(x, 16, &id);
    b->d = fitlm_fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = clampi(rnd(x[j] * id) + 16, 0, 31), hi = clampi(rnd(x[j + 16] * id) + 16, 0, 31);
        b->qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
        qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) b->qh[k] = (uint8_t)(qh >> (8 * k));
}

/* min/max: d = (max - min) / nmax, value = d * q + min */
static void minmax_codes(const float *x, int nmax, uint16_t *dh, uint16_t *mh, int *q) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) {
        mn = fminf(mn, x[j]);
        mx = fmaxf(mx, x[j]);
    }
    float d = (mx - mn) / (float)nmax, id = d != 0.0f ? 1.0f / d : 0.0f;
    *dh = fitlm_fp32_to_fp16(d);
    *mh = fitlm_fp32_to_fp16(mn);
    for (int j = 0; j < 32; j++) q[j] = clampi(rnd((x[j] - mn) * id), 0, nmax);
}

static void q4_1_block(const float *x, blk_q4_1 *b) {
    int q[32];
    minmax_codes(x, 15, &b->d, &b->m, q);
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void q5_1_block(const float *x, blk_q5_1 *b) {
    int q[32];
    minmax_codes(x, 31, &b->d, &b->m, q);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        b->qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        qh |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) b->qh[k] = (uint8_t)(qh >> (8 * k));
}

/* ---- K types: sub-block searches ---- */

/* the generic build of the searches (quant_search_impl.h) */
#define QS_FN(name) name##_generic
#define QS_STORAGE static
#include "quant/quant_search_impl.h"

/* qs_code as an int (written out so that the code loops vectorize) */
static inline int code_i(float v, float hi) {
    v = v > 0.0f ? v : 0.0f;
    v = v < hi ? v : hi;
    return (int)(v + 0.5f);
}

/* The search functions one fitlm_quantize_row call uses. */
typedef struct {
    float (*fit_min)(const float *x, const float *w, int n, int nmax, float *scale, float *mn);
    float (*fit_sym)(const float *x, const float *w, int n, int qmin, int qmax, float *scale);
    void (*pick_min)(const float *x, const float *w, int n, int nmax, float d, float dmin, int maxcode, int *isc,
                     int *imn);
    void (*pick_sym)(const float *x, const float *w, int n, int qmin, float d, int lo, int hi, int *is);
} qsearch;

static qsearch pick_search(void) {
    qsearch s = {fit_scale_min_generic, fit_scale_sym_generic, pick_grid_min_generic, pick_grid_sym_generic};
#if defined(__x86_64__) || defined(__i386__)
    if (fitlm_cpu_isa_active() >= FITLM_ISA_AVX2) {
        s.fit_min = fitlm_fit_scale_min_avx2;
        s.fit_sym = fitlm_fit_scale_sym_avx2;
        s.pick_min = fitlm_pick_grid_min_avx2;
        s.pick_sym = fitlm_pick_grid_sym_avx2;
    }
#endif
    return s;
}

/* The search weights of one super-block: NULL (unit weights) without an
 * importance matrix, else the matrix's values (negatives as 0, plus a tiny
 * floor so that no sub-block has zero total weight) in buf. */
static const float *weights_for(const float *imatrix, float *buf) {
    if (!imatrix) return NULL;
    for (int i = 0; i < 256; i++) buf[i] = fmaxf(imatrix[i], 0.0f) + 1e-12f;
    return buf;
}

/* sub-block k's weights (NULL stays NULL) */
static const float *sub_w(const float *w, int offset) {
    return w ? w + offset : NULL;
}

/* Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scales and mins */
static void qk45_block(const qsearch *qs, const float *x, const float *imatrix, int nmax, uint16_t *dh,
                       uint16_t *dminh, uint8_t *scales12, int *q) {
    float sc[8], mn[8], wbuf[256];
    float maxsc = 0.0f, maxmn = 0.0f;
    const float *w = weights_for(imatrix, wbuf);
    for (int j = 0; j < 8; j++) {
        qs->fit_min(x + 32 * j, sub_w(w, 32 * j), 32, nmax, &sc[j], &mn[j]);
        maxsc = fmaxf(maxsc, sc[j]);
        maxmn = fmaxf(maxmn, mn[j]);
    }
    float d = maxsc / 63.0f, dmin = maxmn / 63.0f;
    *dh = fitlm_fp32_to_fp16(d);
    *dminh = fitlm_fp32_to_fp16(dmin);
    float d16 = fitlm_fp16_to_fp32(*dh), dmin16 = fitlm_fp16_to_fp32(*dminh);
    uint8_t isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        int is = d16 > 0 ? clampi(rnd(sc[j] / d16), 0, 63) : 0;
        int im = dmin16 > 0 ? clampi(rnd(mn[j] / dmin16), 0, 63) : 0;
        qs->pick_min(x + 32 * j, sub_w(w, 32 * j), 32, nmax, d16, dmin16, 63, &is, &im);
        isc[j] = (uint8_t)is;
        imn[j] = (uint8_t)im;
    }
    for (int j = 0; j < 4; j++) {
        scales12[j] = (uint8_t)(isc[j] | (isc[j + 4] >> 4) << 6);
        scales12[j + 4] = (uint8_t)(imn[j] | (imn[j + 4] >> 4) << 6);
        scales12[j + 8] = (uint8_t)((isc[j + 4] & 15) | (imn[j + 4] & 15) << 4);
    }
    for (int j = 0; j < 8; j++) {
        float ds = d16 * (float)isc[j], dm = dmin16 * (float)imn[j], ids = ds > 0 ? 1.0f / ds : 0.0f;
        const float fmax = (float)nmax;
        for (int i = 0; i < 32; i++) q[32 * j + i] = code_i((x[32 * j + i] + dm) * ids, fmax);
    }
}

static void q4_k_block(const qsearch *qs, const float *x, const float *imatrix, blk_q4_k *b) {
    int q[256];
    qk45_block(qs, x, imatrix, 15, &b->d, &b->dmin, b->scales, q);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
}

static void q5_k_block(const qsearch *qs, const float *x, const float *imatrix, blk_q5_k *b) {
    int q[256];
    qk45_block(qs, x, imatrix, 31, &b->d, &b->dmin, b->scales, q);
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            b->qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
        }
}

static void q6_k_block(const qsearch *qs, const float *x, const float *imatrix, blk_q6_k *b) {
    float sc[16], wbuf[256], maxabs = 0.0f;
    const float *w = weights_for(imatrix, wbuf);
    for (int j = 0; j < 16; j++) {
        qs->fit_sym(x + 16 * j, sub_w(w, 16 * j), 16, -32, 31, &sc[j]);
        maxabs = fmaxf(maxabs, fabsf(sc[j]));
    }
    float d = maxabs / 127.0f;
    b->d = fitlm_fp32_to_fp16(d);
    float d16 = fitlm_fp16_to_fp32(b->d);
    int u[256];
    for (int j = 0; j < 16; j++) {
        int s = d16 > 0 ? clampi(rnd(sc[j] / d16), -128, 127) : 0;
        qs->pick_sym(x + 16 * j, sub_w(w, 16 * j), 16, -32, d16, -128, 127, &s);
        b->scales[j] = (int8_t)s;
        float ds = d16 * (float)s, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
        for (int i = 0; i < 16; i++) u[16 * j + i] = code_i(x[16 * j + i] * ids + 32.0f, 63.0f);
    }
    for (int h = 0; h < 2; h++) {
        const int *v = u + 128 * h;
        for (int l = 0; l < 32; l++) {
            b->ql[64 * h + l] = (uint8_t)((v[l] & 15) | (v[l + 64] & 15) << 4);
            b->ql[64 * h + l + 32] = (uint8_t)((v[l + 32] & 15) | (v[l + 96] & 15) << 4);
            b->qh[32 * h + l] = (uint8_t)((v[l] >> 4) | (v[l + 32] >> 4) << 2 | (v[l + 64] >> 4) << 4 | (v[l + 96] >> 4) << 6);
        }
    }
}

/* Q2_K: 16 sub-blocks of 16, x ~= (d * sc) * q - dmin * mn with q 0..3 and
 * 4-bit sc, mn; codes in 2-bit planes (see dequant.c) */
static void q2_k_block(const qsearch *qs, const float *x, const float *imatrix, blk_q2_k *b) {
    float sc[16], mn[16], wbuf[256], maxsc = 0.0f, maxmn = 0.0f;
    const float *w = weights_for(imatrix, wbuf);
    for (int j = 0; j < 16; j++) {
        qs->fit_min(x + 16 * j, sub_w(w, 16 * j), 16, 3, &sc[j], &mn[j]);
        maxsc = fmaxf(maxsc, sc[j]);
        maxmn = fmaxf(maxmn, mn[j]);
    }
    b->d = fitlm_fp32_to_fp16(maxsc / 15.0f);
    b->dmin = fitlm_fp32_to_fp16(maxmn / 15.0f);
    float d16 = fitlm_fp16_to_fp32(b->d), dmin16 = fitlm_fp16_to_fp32(b->dmin);
    memset(b->qs, 0, sizeof b->qs);
    for (int j = 0; j < 16; j++) {
        int is = d16 > 0 ? clampi(rnd(sc[j] / d16), 0, 15) : 0;
        int im = dmin16 > 0 ? clampi(rnd(mn[j] / dmin16), 0, 15) : 0;
        qs->pick_min(x + 16 * j, sub_w(w, 16 * j), 16, 3, d16, dmin16, 15, &is, &im);
        b->scales[j] = (uint8_t)(is | im << 4);
        float ds = d16 * (float)is, dm = dmin16 * (float)im, ids = ds > 0 ? 1.0f / ds : 0.0f;
        for (int i = 0; i < 16; i++) {
            int e = 16 * j + i;
            int q = code_i((x[e] + dm) * ids, 3.0f);
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
        }
    }
}

/* Q3_K: 16 sub-blocks of 16, x ~= (d * sc) * q with q -4..3 and signed 6-bit
 * sc (stored + 32); low 2 bits of q + 4 in 2-bit planes, the third in hmask */
static void q3_k_block(const qsearch *qs, const float *x, const float *imatrix, blk_q3_k *b) {
    float sc[16], wbuf[256], maxabs = 0.0f;
    const float *w = weights_for(imatrix, wbuf);
    for (int j = 0; j < 16; j++) {
        qs->fit_sym(x + 16 * j, sub_w(w, 16 * j), 16, -4, 3, &sc[j]);
        maxabs = fmaxf(maxabs, fabsf(sc[j]));
    }
    b->d = fitlm_fp32_to_fp16(maxabs / 31.0f);
    float d16 = fitlm_fp16_to_fp32(b->d);
    memset(b->hmask, 0, sizeof b->hmask);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 16; j++) {
        int s = d16 > 0 ? clampi(rnd(sc[j] / d16), -32, 31) : 0;
        qs->pick_sym(x + 16 * j, sub_w(w, 16 * j), 16, -4, d16, -32, 31, &s);
        int u6 = s + 32;
        if (j < 8) b->scales[j] |= (uint8_t)(u6 & 15);
        else b->scales[j - 8] |= (uint8_t)((u6 & 15) << 4);
        b->scales[8 + j % 4] |= (uint8_t)((u6 >> 4) << (2 * (j / 4)));
        float ds = d16 * (float)s, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
        for (int i = 0; i < 16; i++) {
            int e = 16 * j + i;
            int u = code_i(x[e] * ids + 4.0f, 7.0f); /* q + 4, 0..7 */
            int plane = (e % 128) / 32;
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)((u & 3) << (2 * plane));
            b->hmask[e % 32] |= (uint8_t)((u >> 2) << (4 * (e / 128) + plane));
        }
    }
}

int64_t fitlm_quantize_row(int type, const float *src, void *dst, int64_t n, const float *imatrix) {
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti || n < 0 || n % ti->block_size != 0) return -1;
    int64_t nb = n / ti->block_size;
    const qsearch qs = pick_search();
    uint8_t *out = dst;
    for (int64_t i = 0; i < n && !ti->quantized; i++) {
        switch (type) {
        case FITLM_TYPE_F32: memcpy(out + 4 * i, src + i, 4); break;
        case FITLM_TYPE_F16:
        case FITLM_TYPE_BF16: {
            uint16_t h = type == FITLM_TYPE_F16 ? fitlm_fp32_to_fp16(src[i]) : fitlm_fp32_to_bf16(src[i]);
            memcpy(out + 2 * i, &h, 2);
            break;
        }
        default: return -1;
        }
    }
    for (int64_t b = 0; b < nb && ti->quantized; b++) {
        const float *x = src + b * ti->block_size;
        const float *im = imatrix ? imatrix + b * ti->block_size : NULL;
        void *o = out + b * ti->block_bytes;
        switch (type) {
        case FITLM_TYPE_Q8_0: q8_0_block(x, o); break;
        case FITLM_TYPE_Q4_0: q4_0_block(x, o); break;
        case FITLM_TYPE_Q4_1: q4_1_block(x, o); break;
        case FITLM_TYPE_Q5_0: q5_0_block(x, o); break;
        case FITLM_TYPE_Q5_1: q5_1_block(x, o); break;
        case FITLM_TYPE_Q4_K: q4_k_block(&qs, x, im, o); break;
        case FITLM_TYPE_Q5_K: q5_k_block(&qs, x, im, o); break;
        case FITLM_TYPE_Q6_K: q6_k_block(&qs, x, im, o); break;
        case FITLM_TYPE_Q2_K: q2_k_block(&qs, x, im, o); break;
        case FITLM_TYPE_Q3_K: q3_k_block(&qs, x, im, o); break;
        default: return -1;
        }
    }
    return nb * ti->block_bytes;
}
