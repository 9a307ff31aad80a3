/* CPU activation ops on host float arrays: the building blocks of the CPU
 * backend (backend_cpu.c) besides matmul (kernels.h). Pure functions: no
 * allocation, no threads; the backend splits the work.
 *
 * KV cache rows come in three types: F32, F16 and Q8_0 (blocks of 32 values: an
 * fp16 scale d then 32 int8 q, value = d*q). The *_kv functions read `n`
 * elements of such a row starting at element `off`.
 */
#ifndef FITLM_BACKEND_CPU_OPS_H
#define FITLM_BACKEND_CPU_OPS_H

#include <stdint.h>

#include "model/model.h"

/* y = x / sqrt(mean(x^2) + eps) * w (w may be NULL = all ones). y may be x. */
void fitlm_ops_rmsnorm(const float *x, const float *w, float eps, int64_t n, float *y);

/* Rotates the n_heads heads of one token row in place at position pos.
 * inv_freq has head_dim/2 entries: pair i turns by angle pos*inv_freq[i].
 * ADJACENT pairs are (x[2i], x[2i+1]); HALF pairs are (x[i], x[i+head_dim/2]). */
void fitlm_ops_rope(float *x, int n_heads, int head_dim, int64_t pos, const float *inv_freq,
                    fitlm_rope_layout layout);

/* out[i] = g[i] / (1 + exp(-g[i])) * u[i]. out may alias g or u. */
void fitlm_ops_silu_mul(const float *g, const float *u, float *out, int64_t n);

/* x[i] += y[i]. */
void fitlm_ops_add(float *x, const float *y, int64_t n);

/* In place softmax of n values (max-subtracted). */
void fitlm_ops_softmax(float *x, int64_t n);

/* Bytes of a KV row of n elements in `type` (F32, F16, Q8_0; n % 32 == 0 for
 * Q8_0). 0 if the type is not a KV cache type. */
uint64_t fitlm_ops_kv_row_bytes(int type, int64_t n);

/* Converts n floats into a KV row of `type`. */
void fitlm_ops_kv_store_row(int type, const float *src, void *dst, int64_t n);

/* sum_i q[i] * row[off+i] for i < n. */
float fitlm_ops_kv_dot(int type, const void *row, int64_t off, const float *q, int64_t n);

/* out[i] += a * row[off+i] for i < n. */
void fitlm_ops_kv_axpy(int type, const void *row, int64_t off, float a, float *out, int64_t n);

/* Elements [off, off+n) of a KV row of `type` as floats in dst. */
void fitlm_ops_kv_row_f32(int type, const void *row, int64_t off, float *dst, int64_t n);

/* Attention building blocks over 8 cache rows at a time (k, v: 8 rows of n
 * floats, row r at r*n). out[r] = sum_i k[r*n+i] q[i] for r < 8: */
void fitlm_ops_dot8(const float *k, const float *q, int64_t n, float *out);
/* out[i] += sum_{r<8} w[r] v[r*n+i]: */
void fitlm_ops_axpy8(const float *v, const float *w, int64_t n, float *out);

/* Q8_0 reference row conversion (used by the KV cache; n % 32 == 0). */
void fitlm_ops_quantize_q8_0(const float *src, void *dst, int64_t n);
void fitlm_ops_dequantize_q8_0(const void *src, float *dst, int64_t n);

/* AVX2+F16C versions selected at run time when the CPU has them (ops_avx2.c). */
float fitlm_ops_dot_f32_avx2(const float *a, const float *b, int64_t n);
float fitlm_ops_dot_f16_avx2(const uint16_t *a, const float *b, int64_t n);
void fitlm_ops_axpy_f32_avx2(const float *x, float a, float *out, int64_t n);
void fitlm_ops_axpy_f16_avx2(const uint16_t *x, float a, float *out, int64_t n);
void fitlm_ops_f32_to_f16_avx2(const float *src, uint16_t *dst, int64_t n);
void fitlm_ops_f16_to_f32_avx2(const uint16_t *src, float *dst, int64_t n);
/* n % 32 == 0 values from whole Q8_0 blocks (34 bytes each) starting at blocks */
void fitlm_ops_q8_0_to_f32_avx2(const uint8_t *blocks, float *dst, int64_t n);
double fitlm_ops_sumsq_avx2(const float *x, int64_t n); /* sum of squares: float lanes, added in double */
void fitlm_ops_exp_avx2(const float *x, float *y, int64_t n); /* about 1 ulp; see ops_avx2.c for the range */
void fitlm_ops_silu_mul_avx2(const float *g, const float *u, float *out, int64_t n);
void fitlm_ops_softmax_avx2(float *x, int64_t n);
void fitlm_ops_dot8_avx2(const float *k, const float *q, int64_t n, float *out);   /* n % 8 == 0 */
void fitlm_ops_axpy8_avx2(const float *v, const float *w, int64_t n, float *out); /* n % 8 == 0 */

/* 1 if the AVX2 paths are in use (CPU has AVX2+FMA+F16C and FITLM_CPU_KERNELS
 * is not "scalar"). */
int fitlm_ops_use_avx2(void);
/* Tests: force the scalar paths (on = 0) or go back to detection (on = 1).
 * Not thread-safe: call before any op runs. */
void fitlm_ops_set_avx2(int on);

#endif
