/* On-the-fly quantization of activation rows for the integer dot products. */
#include <math.h>
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "util/fp16.h"
#include "format/ggml_type.h"

act_format fitlm_act_format(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0:
    case FITLM_TYPE_Q4_1:
    case FITLM_TYPE_Q5_0:
    case FITLM_TYPE_Q5_1:
    case FITLM_TYPE_Q8_0: return ACT_Q8;
    case FITLM_TYPE_Q2_K:
    case FITLM_TYPE_Q3_K:
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q5_K:
    case FITLM_TYPE_Q6_K: return ACT_Q8K;
    case FITLM_TYPE_BF16: return ACT_BF16;
    default: return ACT_F32;
    }
}

act_format fitlm_act_format_simd(int wtype) {
    return wtype == FITLM_TYPE_Q4_0 ? ACT_Q8I : fitlm_act_format(wtype);
}

void fitlm_act_q8_interleave(void *row, int64_t cols) {
    int8_t *qs = row, tmp[128];
    for (int64_t g = 0; g + 4 <= cols / 32; g += 4) {
        int8_t *grp = qs + 32 * g;
        for (int b = 0; b < 4; b++) {
            memcpy(tmp + 16 * b, grp + 32 * b, 16);
            memcpy(tmp + 64 + 16 * b, grp + 32 * b + 16, 16);
        }
        memcpy(grp, tmp, 128);
    }
}

size_t fitlm_act_row_bytes(act_format f, int64_t cols) {
    switch (f) {
    case ACT_Q8:
    case ACT_Q8I: return (size_t)(cols / 32) * 40;
    case ACT_Q8K: return (size_t)(cols / 256) * sizeof(act_q8k);
    case ACT_BF16: return (size_t)cols * sizeof(uint16_t);
    default: return (size_t)cols * sizeof(float);
    }
}

/* Quantizes n values to int8 with d = max|x| / 127, q = round-half-even(x / d)
 * (computed as x * (1/d)). Returns d; NaN (and all q = 0) if any x is not finite. */
static float quantize_block_i8(const float *x, int8_t *q, int n) {
    float amax = 0.0f;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (!(a <= 3.4e38f)) bad = 1; /* inf or nan */
        else if (a > amax) amax = a;
    }
    if (bad) {
        for (int i = 0; i < n; i++) q[i] = 0;
        return NAN;
    }
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    /* round half to even without a libm call: for |v| <= 2^22, adding and
     * subtracting 1.5 * 2^23 leaves v rounded to an integer (IEEE default
     * rounding; |x * id| <= 127 here) */
    const float magic = 12582912.0f;
    for (int i = 0; i < n; i++) {
        float t = x[i] * id + magic;
        float v = t - magic;
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        q[i] = (int8_t)v;
    }
    return d;
}

void fitlm_quantize_act_q8(const float *x, void *dst_row, int64_t cols) {
    int64_t nb = cols / 32;
    int8_t *qs = dst_row;
    float *d = (float *)(qs + 32 * nb);
    int32_t *sum = (int32_t *)(qs + 36 * nb);
    for (int64_t b = 0; b < nb; b++) {
        d[b] = quantize_block_i8(x + 32 * b, qs + 32 * b, 32);
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += qs[32 * b + i];
        sum[b] = s;
    }
}

void fitlm_quantize_act_bf16(const float *x, uint16_t *dst, int64_t cols) {
    for (int64_t i = 0; i < cols; i++) dst[i] = fitlm_fp32_to_bf16(x[i]);
}

void fitlm_quantize_act_q8k(const float *x, act_q8k *dst, int64_t cols) {
    for (int64_t b = 0; b < cols / 256; b++) {
        dst[b].d = quantize_block_i8(x + 256 * b, dst[b].qs, 256);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += dst[b].qs[16 * g + i];
            dst[b].bsums[g] = (int16_t)s;
        }
    }
}

/* The per-token setup of the repacked (x16) kernels (quant_blocks.h). */
void fitlm_repacked_prep(int wtype, int64_t cols, const void *a, void *prep) {
    if (wtype == FITLM_TYPE_Q4_K || wtype == FITLM_TYPE_Q5_K) { /* sub-block sums in pairs for the mins' vpdpwssd */
        const act_q8k *ab = a;
        uint32_t *o = prep;
        for (int64_t b = 0; b < cols / 256; b++, o += 4) {
            int bs[8];
            for (int s = 0; s < 8; s++) bs[s] = ab[b].bsums[2 * s] + ab[b].bsums[2 * s + 1];
            o[0] = (uint16_t)bs[0] | (uint32_t)(uint16_t)bs[2] << 16;
            o[1] = (uint16_t)bs[1] | (uint32_t)(uint16_t)bs[3] << 16;
            o[2] = (uint16_t)bs[4] | (uint32_t)(uint16_t)bs[6] << 16;
            o[3] = (uint16_t)bs[5] | (uint32_t)(uint16_t)bs[7] << 16;
        }
        return;
    }
    if (wtype == FITLM_TYPE_Q2_K) { /* sub-block sums in 16-bit pairs (4v + i, 4v + i + 2) for the mins */
        const act_q8k *ab = a;
        uint32_t *o = prep;
        for (int64_t b = 0; b < cols / 256; b++, o += 8)
            for (int v = 0; v < 4; v++)
                for (int i = 0; i < 2; i++)
                    o[2 * v + i] = (uint16_t)ab[b].bsums[4 * v + i] | (uint32_t)(uint16_t)ab[b].bsums[4 * v + i + 2] << 16;
        return;
    }
    if (wtype == FITLM_TYPE_Q6_K || wtype == FITLM_TYPE_Q3_K) { /* each 16-column sub-block's offset: */
        const act_q8k *ab = a;                                        /* -32 (Q6_K) or -4 x its activation sum */
        const int k = wtype == FITLM_TYPE_Q6_K ? -32 : -4;
        int32_t *o = prep;
        for (int64_t b = 0; b < cols / 256; b++)
            for (int s = 0; s < 16; s++) *o++ = k * ab[b].bsums[s];
        return;
    }
    const int64_t nb = cols / 32;
    if (wtype == FITLM_TYPE_Q4_1 || wtype == FITLM_TYPE_Q5_1) { /* the minimum's factor: d x sum, per block */
        const float *d = act_q8_d(a, nb);
        const int32_t *sum = act_q8_sum(a, nb);
        float *o = prep;
        for (int64_t b = 0; b < nb; b++) o[b] = d[b] * (float)sum[b];
        return;
    }
    const int shift = wtype == FITLM_TYPE_Q4_0 ? 3 : wtype == FITLM_TYPE_Q5_0 ? 4 : 7; /* offset 8, 16 or 128 */
    const int32_t *sum = act_q8_sum(a, nb);
    int32_t *o = prep;
    for (int64_t b = 0; b < nb; b++) o[b] = -(int32_t)((uint32_t)sum[b] << shift);
}
