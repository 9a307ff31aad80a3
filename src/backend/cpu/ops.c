/* Scalar CPU activation ops, with run-time dispatch to ops_avx2.c for the
 * attention inner loops. */
#include "sys/cpu_features.h"
#include "backend/cpu/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "util/fp16.h"

#define Q8_0_BLOCK 32
#define Q8_0_BYTES 34 /* fp16 scale + 32 int8 */

static int g_use_avx2 = -1;

int fitlm_ops_use_avx2(void) {
    if (g_use_avx2 < 0) {
        int ok = 0;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && fitlm_cpu_has_f16c();
#endif
        const char *force = getenv("FITLM_CPU_KERNELS");
        if (force && !strcmp(force, "scalar")) ok = 0;
        g_use_avx2 = ok;
    }
    return g_use_avx2;
}

void fitlm_ops_set_avx2(int on) {
    g_use_avx2 = -1;
    if (on) {
        fitlm_ops_use_avx2();
        if (g_use_avx2) return;
    }
    g_use_avx2 = 0;
}

void fitlm_ops_rmsnorm(const float *x, const float *w, float eps, int64_t n, float *y) {
    double ss = 0.0;
    if (fitlm_ops_use_avx2())
        ss = fitlm_ops_sumsq_avx2(x, n);
    else
        for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = w[i] * (scale * x[i]);
    else
        for (int64_t i = 0; i < n; i++) y[i] = scale * x[i];
}

void fitlm_ops_rope(float *x, int n_heads, int head_dim, int64_t pos, const float *inv_freq,
                    fitlm_rope_layout layout) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (int64_t)h * head_dim;
            int a = layout == FITLM_ROPE_ADJACENT ? 2 * i : i;
            int b = layout == FITLM_ROPE_ADJACENT ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void fitlm_ops_silu_mul(const float *g, const float *u, float *out, int64_t n) {
    if (fitlm_ops_use_avx2()) {
        fitlm_ops_silu_mul_avx2(g, u, out, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = g[i];
        out[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

void fitlm_ops_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

void fitlm_ops_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    if (fitlm_ops_use_avx2()) {
        fitlm_ops_softmax_avx2(x, n);
        return;
    }
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

uint64_t fitlm_ops_kv_row_bytes(int type, int64_t n) {
    if (n < 0) return 0;
    switch (type) {
    case FITLM_TYPE_F32: return (uint64_t)n * 4;
    case FITLM_TYPE_F16: return (uint64_t)n * 2;
    case FITLM_TYPE_Q8_0: return n % Q8_0_BLOCK ? 0 : (uint64_t)(n / Q8_0_BLOCK) * Q8_0_BYTES;
    default: return 0;
    }
}

void fitlm_ops_quantize_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / Q8_0_BLOCK; b++) {
        const float *x = src + b * Q8_0_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < Q8_0_BLOCK; i++) {
            float a = fabsf(x[i]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = fitlm_fp32_to_fp16(d);
        uint8_t *blk = out + b * Q8_0_BYTES;
        memcpy(blk, &dh, 2);
        for (int i = 0; i < Q8_0_BLOCK; i++) {
            float q = roundf(x[i] * id);
            if (q > 127.0f) q = 127.0f;
            if (q < -127.0f) q = -127.0f;
            blk[2 + i] = (uint8_t)(int8_t)q;
        }
    }
}

void fitlm_ops_dequantize_q8_0(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / Q8_0_BLOCK; b++) {
        const uint8_t *blk = in + b * Q8_0_BYTES;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        float d = fitlm_fp16_to_fp32(dh);
        for (int i = 0; i < Q8_0_BLOCK; i++) dst[b * Q8_0_BLOCK + i] = d * (float)(int8_t)blk[2 + i];
    }
}

void fitlm_ops_kv_store_row(int type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case FITLM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case FITLM_TYPE_F16:
        if (fitlm_ops_use_avx2()) {
            fitlm_ops_f32_to_f16_avx2(src, dst, n);
        } else {
            uint16_t *h = dst;
            for (int64_t i = 0; i < n; i++) h[i] = fitlm_fp32_to_fp16(src[i]);
        }
        break;
    case FITLM_TYPE_Q8_0: fitlm_ops_quantize_q8_0(src, dst, n); break;
    default: break;
    }
}

/* Value i of a Q8_0 row. */
static inline float q8_0_at(const uint8_t *row, int64_t i, float *scale_cache, int64_t *cached_block) {
    int64_t b = i / Q8_0_BLOCK;
    const uint8_t *blk = row + b * Q8_0_BYTES;
    if (b != *cached_block) {
        uint16_t dh;
        memcpy(&dh, blk, 2);
        *scale_cache = fitlm_fp16_to_fp32(dh);
        *cached_block = b;
    }
    return *scale_cache * (float)(int8_t)blk[2 + i % Q8_0_BLOCK];
}

float fitlm_ops_kv_dot(int type, const void *row, int64_t off, const float *q, int64_t n) {
    switch (type) {
    case FITLM_TYPE_F32: {
        const float *r = (const float *)row + off;
        if (fitlm_ops_use_avx2()) return fitlm_ops_dot_f32_avx2(r, q, n);
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += r[i] * q[i];
        return s;
    }
    case FITLM_TYPE_F16: {
        const uint16_t *r = (const uint16_t *)row + off;
        if (fitlm_ops_use_avx2()) return fitlm_ops_dot_f16_avx2(r, q, n);
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += fitlm_fp16_to_fp32(r[i]) * q[i];
        return s;
    }
    case FITLM_TYPE_Q8_0: {
        float d = 0.0f, s = 0.0f;
        int64_t cached = -1;
        for (int64_t i = 0; i < n; i++) s += q8_0_at(row, off + i, &d, &cached) * q[i];
        return s;
    }
    default: return 0.0f;
    }
}

void fitlm_ops_kv_row_f32(int type, const void *row, int64_t off, float *dst, int64_t n) {
    switch (type) {
    case FITLM_TYPE_F32: memcpy(dst, (const float *)row + off, (size_t)n * sizeof(float)); return;
    case FITLM_TYPE_F16: {
        const uint16_t *r = (const uint16_t *)row + off;
        if (fitlm_ops_use_avx2()) {
            fitlm_ops_f16_to_f32_avx2(r, dst, n);
            return;
        }
        for (int64_t i = 0; i < n; i++) dst[i] = fitlm_fp16_to_fp32(r[i]);
        return;
    }
    case FITLM_TYPE_Q8_0: {
        /* whole blocks (a head of 32k values at a block boundary): the
         * same products d * q, eight at a time */
        if (off % Q8_0_BLOCK == 0 && n % Q8_0_BLOCK == 0 && fitlm_ops_use_avx2()) {
            fitlm_ops_q8_0_to_f32_avx2((const uint8_t *)row + off / Q8_0_BLOCK * Q8_0_BYTES, dst, n);
            return;
        }
        float d = 0.0f;
        int64_t cached = -1;
        for (int64_t i = 0; i < n; i++) dst[i] = q8_0_at(row, off + i, &d, &cached);
        return;
    }
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = 0.0f;
        return;
    }
}

void fitlm_ops_dot8(const float *k, const float *q, int64_t n, float *out) {
    if (n % 8 == 0 && fitlm_ops_use_avx2()) {
        fitlm_ops_dot8_avx2(k, q, n, out);
        return;
    }
    for (int r = 0; r < 8; r++) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += k[r * n + i] * q[i];
        out[r] = s;
    }
}

void fitlm_ops_axpy8(const float *v, const float *w, int64_t n, float *out) {
    if (n % 8 == 0 && fitlm_ops_use_avx2()) {
        fitlm_ops_axpy8_avx2(v, w, n, out);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float a = out[i];
        for (int r = 0; r < 8; r++) a += w[r] * v[r * n + i];
        out[i] = a;
    }
}

void fitlm_ops_kv_axpy(int type, const void *row, int64_t off, float a, float *out, int64_t n) {
    switch (type) {
    case FITLM_TYPE_F32: {
        const float *r = (const float *)row + off;
        if (fitlm_ops_use_avx2()) {
            fitlm_ops_axpy_f32_avx2(r, a, out, n);
            return;
        }
        for (int64_t i = 0; i < n; i++) out[i] += a * r[i];
        return;
    }
    case FITLM_TYPE_F16: {
        const uint16_t *r = (const uint16_t *)row + off;
        if (fitlm_ops_use_avx2()) {
            fitlm_ops_axpy_f16_avx2(r, a, out, n);
            return;
        }
        for (int64_t i = 0; i < n; i++) out[i] += a * fitlm_fp16_to_fp32(r[i]);
        return;
    }
    case FITLM_TYPE_Q8_0: {
        float d = 0.0f;
        int64_t cached = -1;
        for (int64_t i = 0; i < n; i++) out[i] += a * q8_0_at(row, off + i, &d, &cached);
        return;
    }
    default: return;
    }
}
