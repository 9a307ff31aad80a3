/* AVX-512 (F/BW/VL/VNNI) dot-product kernels, used on CPUs with AVX512-VNNI.
 * Integer kernels use vpdpbusd (u8 x s8, four products summed into s32 in one
 * instruction, no int16 saturation) on 256-bit vectors; the float kernels use
 * 512-bit vectors. The structure follows dot_avx2.c. Each kernel
 * is written once as an always-inline body taking the token count `nt` and
 * instantiated for nt = 1..4, so a weight block is loaded and unpacked once
 * for up to four tokens. */
#include <immintrin.h>
#include <string.h>

#include "sys/cpu_features.h"
#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

#define INLINE static inline __attribute__((always_inline))

/* sums of four (u8 x s8) products, 8 x s32 */
INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#define TOK(a, astride, t) ((const uint8_t *)(a) + (size_t)(t) * (astride))

#define DOT_TILE FITLM_DOT_TILE_AVX512
#include "backend/cpu/dot_x86_common.h"
#include "backend/cpu/x16_k4_avx512.h"

/* Instantiates name(cols, w, a, astride, ntok, out) from body_##name(..., nt). */
#define INSTANTIATE(name)                                                                                              \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {             \
        switch (ntok) {                                                                                                \
        case 1: name##_body(cols, w, a, astride, 1, out); break;                                                      \
        case 2: name##_body(cols, w, a, astride, 2, out); break;                                                      \
        case 3: name##_body(cols, w, a, astride, 3, out); break;                                                      \
        case 4: name##_body(cols, w, a, astride, 4, out); break;                                                      \
        case 5: name##_body(cols, w, a, astride, 5, out); break;                                                      \
        case 6: name##_body(cols, w, a, astride, 6, out); break;                                                      \
        case 7: name##_body(cols, w, a, astride, 7, out); break;                                                      \
        default: name##_body(cols, w, a, astride, 8, out); break;                                                     \
        }                                                                                                              \
    }

/* ---- float weights: 32 columns per step, two 512-bit accumulators per token ---- */

INLINE __m512 load_w_f32(const void *w, int64_t c) {
    return _mm512_loadu_ps((const float *)w + c);
}
INLINE __m512 load_w_f16(const void *w, int64_t c) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + c)));
}
#define FLOAT_KERNEL(name, loader, kind)                                                                              \
    INLINE void name##_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) { \
        __m512 acc0[FITLM_DOT_TILE_AVX512], acc1[FITLM_DOT_TILE_AVX512];                                                                                       \
        for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();                                         \
        int64_t c = 0;                                                                                                 \
        for (; c + 32 <= cols; c += 32) {                                                                              \
            __m512 w0 = loader(w, c), w1 = loader(w, c + 16);                                                          \
            for (int t = 0; t < nt; t++) {                                                                             \
                const float *x = (const float *)TOK(a, astride, t);                                                    \
                acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + c), acc0[t]);                                        \
                acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + c + 16), acc1[t]);                                   \
            }                                                                                                          \
        }                                                                                                              \
        for (int t = 0; t < nt; t++) {                                                                                 \
            const float *x = (const float *)TOK(a, astride, t);                                                        \
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));                                           \
            for (int64_t k = c; k < cols; k++) s += scalar_w(w, k, kind) * x[k];                                       \
            out[t] = s;                                                                                                \
        }                                                                                                              \
    }                                                                                                                  \
    INSTANTIATE(name)

FLOAT_KERNEL(dot_f32, load_w_f32, 0)
FLOAT_KERNEL(dot_f16, load_w_f16, 1)

/* BF16 weights x ACT_BF16 activations with AVX512_BF16: one vdpbf16ps
 * multiplies 32 weight/activation pairs (products exact, pairs summed into 16
 * float lanes); only used when the CPU has the extension (otherwise the AVX2
 * kernel runs). */
INLINE void dot_bf16_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    __m512 acc0[FITLM_DOT_TILE_AVX512], acc1[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();
    const uint16_t *wh = w;
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(wh + c), w1 = (__m512bh)_mm512_loadu_si512(wh + c + 32);
        for (int t = 0; t < nt; t++) {
            const uint16_t *x = (const uint16_t *)TOK(a, astride, t);
            acc0[t] = _mm512_dpbf16_ps(acc0[t], w0, (__m512bh)_mm512_loadu_si512(x + c));
            acc1[t] = _mm512_dpbf16_ps(acc1[t], w1, (__m512bh)_mm512_loadu_si512(x + c + 32));
        }
    }
    for (int t = 0; t < nt; t++) {
        const uint16_t *x = (const uint16_t *)TOK(a, astride, t);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
        for (int64_t k = c; k < cols; k++) s += scalar_w(w, k, 2) * scalar_w(x, k, 2);
        out[t] = s;
    }
}
INSTANTIATE(dot_bf16)

/* ---- Q8_0 and Q4_0 x Q8: four blocks per step in 512-bit registers ----
 * The codes of four consecutive activation blocks are contiguous (ACT_Q8 row
 * layout; for Q4_0 ACT_Q8I, already ordered to match the low and the high
 * nibbles), so they load as two 64-byte vectors; their four scales and sums as
 * one 128-bit vector each. The four fp16 weight scales are gathered with
 * scalar loads into one 64-bit word and converted together. Weight codes are
 * made unsigned for vpdpbusd (Q8_0: w + 128 by flipping the sign bit; Q4_0:
 * the raw nibble, i.e. q + 8); the offset times the block's activation sum is
 * taken off in float at the end: sum_b s_b * (P_b - off * sum_b). Leftover
 * blocks (nb % 4) use 256-bit single-block steps with the offset folded into
 * the integer accumulator. */

INLINE void dot_q8_0_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q8_0 *b = w;
    const int64_t nb = cols / 32;
    __m512 acc0[FITLM_DOT_TILE_AVX512], acc1[FITLM_DOT_TILE_AVX512];
    __m128 corr[FITLM_DOT_TILE_AVX512];
    __m256 tacc[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) {
        acc0[t] = acc1[t] = _mm512_setzero_ps();
        corr[t] = _mm_setzero_ps();
        tacc[t] = _mm256_setzero_ps();
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i bc01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i bc23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512i w01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[i].qs)),
                                         _mm256_loadu_si256((const __m256i *)b[i + 1].qs), 1);
        __m512i w23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[i + 2].qs)),
                                         _mm256_loadu_si256((const __m256i *)b[i + 3].qs), 1);
        w01 = _mm512_xor_si512(w01, flip);
        w23 = _mm512_xor_si512(w23, flip);
        __m128 dw = load4_halves(&b[i].d, sizeof(blk_q8_0));
        for (int t = 0; t < nt; t++) {
            const uint8_t *row = TOK(a, astride, t);
            const int8_t *aq = act_q8_qs(row) + 32 * i;
            __m512i p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, _mm512_loadu_si512(aq));
            __m512i p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w23, _mm512_loadu_si512(aq + 64));
            __m128 s = _mm_mul_ps(dw, _mm_loadu_ps(act_q8_d(row, nb) + i));
            __m512 s16 = _mm512_castps128_ps512(s);
            acc0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(bc01, s16), acc0[t]);
            acc1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(bc23, s16), acc1[t]);
            __m128 sums = _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(act_q8_sum(row, nb) + i)));
            corr[t] = _mm_fmadd_ps(s, sums, corr[t]);
        }
    }
    for (; i < nb; i++) {
        __m256i wu = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b[i].qs), _mm256_set1_epi8((char)0x80));
        float dw = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab = act_q8_get(TOK(a, astride, t), nb, i);
            __m256i p = _mm256_dpbusd_epi32(_mm256_setr_epi32(-128 * ab.sum, 0, 0, 0, 0, 0, 0, 0), wu,
                                            _mm256_loadu_si256((const __m256i *)ab.qs));
            tacc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), tacc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) - 128.0f * hsum_ps128(corr[t]) +
                 hsum_ps(tacc[t]);
}
INSTANTIATE(dot_q8_0)

INLINE void dot_q4_0_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q4_0 *b = w;
    const int64_t nb = cols / 32;
    __m512 acc[FITLM_DOT_TILE_AVX512];
    __m128 corr[FITLM_DOT_TILE_AVX512];
    __m256 tacc[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) {
        acc[t] = _mm512_setzero_ps();
        corr[t] = _mm_setzero_ps();
        tacc[t] = _mm256_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i bc4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)b[i].qs));
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)b[i + 1].qs), 1);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)b[i + 2].qs), 2);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)b[i + 3].qs), 3);
        __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        __m128 dw = load4_halves(&b[i].d, sizeof(blk_q4_0));
        for (int t = 0; t < nt; t++) {
            const uint8_t *row = TOK(a, astride, t);
            const int8_t *aq = act_q8_qs(row) + 32 * i;
            /* ACT_Q8I: first halves of the 4 blocks, then second halves */
            __m512i alo = _mm512_loadu_si512(aq), ahi = _mm512_loadu_si512(aq + 64);
            __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo), hi, ahi);
            __m128 s = _mm_mul_ps(dw, _mm_loadu_ps(act_q8_d(row, nb) + i));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(bc4, _mm512_castps128_ps512(s)),
                                     acc[t]);
            __m128 sums = _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(act_q8_sum(row, nb) + i)));
            corr[t] = _mm_fmadd_ps(s, sums, corr[t]);
        }
    }
    for (; i < nb; i++) {
        __m256i wq = unpack_nibbles32(b[i].qs);
        float dw = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab = act_q8_get(TOK(a, astride, t), nb, i);
            __m256i p = _mm256_dpbusd_epi32(_mm256_setr_epi32(-8 * ab.sum, 0, 0, 0, 0, 0, 0, 0), wq,
                                            _mm256_loadu_si256((const __m256i *)ab.qs));
            tacc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), tacc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = _mm512_reduce_add_ps(acc[t]) - 8.0f * hsum_ps128(corr[t]) + hsum_ps(tacc[t]);
}
INSTANTIATE(dot_q4_0)


/* ---- Q4_1 x Q8: d * q + m, m through the activation sum ---- */

INSTANTIATE(dot_q4_1)

/* ---- Q5_0 / Q5_1 x Q8: the fifth bits of qh spread to bytes ---- */

INSTANTIATE(dot_q5_0)

INSTANTIATE(dot_q5_1)

/* isum += (u8 x s8 pair sums, int16) x an int16 scale, with VNNI's vpdpwssd
 * (pair sums stay far from int16 saturation: at most 2 * 63 * 127) */
#define KACC(isum, w, a, s) _mm256_dpwssd_epi32((isum), _mm256_maddubs_epi16((w), (a)), _mm256_set1_epi16((short)(s)))

/* ---- Q4_K x Q8_K ---- */

/* 512-bit: chunk c (64 elements, sub-blocks 2c and 2c+1) is one register of
 * weights [low nibbles | high nibbles] against the 64 activation codes as they
 * are; the int16 scale vector of the chunk ([sc_2c x 16 | sc_2c+1 x 16]) comes
 * from one word permute of the eight unpacked scales. */
INLINE void dot_q4_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q4_k *b = w;
    const int64_t nb = cols / 256;
    __m512 acc[FITLM_DOT_TILE_AVX512];
    __m256 macc[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) {
        acc[t] = _mm512_setzero_ps();
        macc[t] = _mm256_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i sidx[4];
    for (int c = 0; c < 4; c++)
        sidx[c] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        fitlm_k4_unpack(b[i].scales, sc, mn);
        /* mins x pair-summed bsums: mn[j] applies to bsums[2j] and bsums[2j+1] */
        __m128i mn8 = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn),
                                       _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
        __m256i mins16 = _mm256_cvtepu8_epi16(mn8);
        __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m512i wq[4], scv[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
            __m512i qq = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
            wq[c] = _mm512_and_si512(qq, m4);
            scv[c] = _mm512_permutexvar_epi16(sidx[c], sc16);
        }
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m512i isum0 = _mm512_setzero_si512(), isum1 = _mm512_setzero_si512();
            for (int c = 0; c < 4; c += 2) {
                __m512i a0 = _mm512_loadu_si512(ab->qs + 64 * c), a1 = _mm512_loadu_si512(ab->qs + 64 * c + 64);
                isum0 = _mm512_dpwssd_epi32(isum0, _mm512_maddubs_epi16(wq[c], a0), scv[c]);
                isum1 = _mm512_dpwssd_epi32(isum1, _mm512_maddubs_epi16(wq[c + 1], a1), scv[c + 1]);
            }
            __m512i is = _mm512_add_epi32(isum0, isum1);
            /* mins x 16-sums stay a vector: no horizontal sum per block */
            __m256i mprod = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), mins16);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(d * ab->d), acc[t]);
            macc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mprod), _mm256_set1_ps(dmin * ab->d), macc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - hsum_ps(macc[t]);
}
INSTANTIATE(dot_q4_k)


/* ---- Q5_K x Q8_K: Q4_K plus a fifth bit from qh ---- */

/* 512-bit, as Q4_K; the fifth bits of chunk c are bits 2c (low nibbles) and
 * 2c+1 (high nibbles) of qh. */
INLINE void dot_q5_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q5_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[FITLM_DOT_TILE_AVX512], macc[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) acc[t] = macc[t] = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
    __m512i sidx[4];
    for (int c = 0; c < 4; c++)
        sidx[c] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        fitlm_k4_unpack(b[i].scales, sc, mn);
        __m128i mn8 = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn),
                                       _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
        __m256i mins16 = _mm256_cvtepu8_epi16(mn8);
        __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)b[i].qh);
        /* [qh | qh >> 1]: bit 2c of the result is the fifth bit of chunk c's
         * low (first half) and high (second half) nibbles */
        __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
        __m512i wq[4], scv[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
            __m512i qq = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
            __m512i hb = _mm512_and_si512(_mm512_srl_epi16(qh2, _mm_cvtsi32_si128(2 * c)), one);
            wq[c] = _mm512_or_si512(_mm512_and_si512(qq, m4), _mm512_slli_epi16(hb, 4));
            scv[c] = _mm512_permutexvar_epi16(sidx[c], sc16);
        }
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m512i isum0 = _mm512_setzero_si512(), isum1 = _mm512_setzero_si512();
            for (int c = 0; c < 4; c += 2) {
                __m512i a0 = _mm512_loadu_si512(ab->qs + 64 * c), a1 = _mm512_loadu_si512(ab->qs + 64 * c + 64);
                isum0 = _mm512_dpwssd_epi32(isum0, _mm512_maddubs_epi16(wq[c], a0), scv[c]);
                isum1 = _mm512_dpwssd_epi32(isum1, _mm512_maddubs_epi16(wq[c + 1], a1), scv[c + 1]);
            }
            __m512i is = _mm512_add_epi32(isum0, isum1);
            __m256i isum = _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1));
            __m256i mprod = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), mins16);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
            macc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mprod), _mm256_set1_ps(dmin * ab->d), macc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) - hsum_ps(macc[t]);
}
INSTANTIATE(dot_q5_k)

/* ---- Q6_K x Q8_K: q + 32 (0..63) as unsigned, the offset via bsums ---- */

/* word-permute indices: register m of a Q6_K block covers sub-blocks 4m..4m+3,
 * 8 int16 lanes each */
static const short k_q6_sidx[4][32] __attribute__((aligned(64))) = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* 512-bit: half h (128 elements) is two registers, elements 0-63 ([ql low
 * nibbles | bits 0-1 and 2-3 of qh]) and 64-127 (high nibbles, bits 4-5 and
 * 6-7), each against 64 activation codes as they are; the int16 scale vector
 * of a register (4 sub-blocks of 16: 8 lanes each) is one word permute. */
INLINE void dot_q6_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q6_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[FITLM_DOT_TILE_AVX512];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x03);
    __m512i sidx[4];
    for (int m = 0; m < 4; m++) sidx[m] = _mm512_load_si512(k_q6_sidx[m]);
    for (int64_t i = 0; i < nb; i++) {
        __m512i wq[4], scv[4]; /* register m: elements 64m .. 64m+63 */
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(b[i].ql + 64 * h);
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            __m512i qh01 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            __m512i qh23 = _mm512_srli_epi16(qh01, 4);
            wq[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(qh01, m2), 4));
            wq[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                            _mm512_slli_epi16(_mm512_and_si512(qh23, m2), 4));
        }
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b[i].scales));
        for (int m = 0; m < 4; m++) scv[m] = _mm512_permutexvar_epi16(sidx[m], _mm512_castsi256_si512(sc16));
        float d = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m512i is0 = _mm512_setzero_si512(), is1 = _mm512_setzero_si512();
            for (int m = 0; m < 4; m += 2) {
                __m512i a0 = _mm512_loadu_si512(ab->qs + 64 * m), a1 = _mm512_loadu_si512(ab->qs + 64 * m + 64);
                is0 = _mm512_dpwssd_epi32(is0, _mm512_maddubs_epi16(wq[m], a0), scv[m]);
                is1 = _mm512_dpwssd_epi32(is1, _mm512_maddubs_epi16(wq[m + 1], a1), scv[m + 1]);
            }
            __m512i is = _mm512_add_epi32(is0, is1);
            __m256i isum = _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1));
            __m256i bs = _mm256_loadu_si256((const __m256i *)ab->bsums);
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5)); /* 32 x sc x 16-sums */
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}
INSTANTIATE(dot_q6_k)

fitlm_dot_fn fitlm_dot_avx512(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_F32: return dot_f32;
    case FITLM_TYPE_F16: return dot_f16;
    case FITLM_TYPE_BF16: return fitlm_cpu_has_avx512bf16() ? dot_bf16 : NULL;
    case FITLM_TYPE_Q8_0: return dot_q8_0;
    case FITLM_TYPE_Q4_0: return dot_q4_0;
    case FITLM_TYPE_Q4_1: return dot_q4_1;
    case FITLM_TYPE_Q5_0: return dot_q5_0;
    case FITLM_TYPE_Q5_1: return dot_q5_1;
    case FITLM_TYPE_Q4_K: return dot_q4_k;
    case FITLM_TYPE_Q5_K: return dot_q5_k;
    case FITLM_TYPE_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}

/* ---- the repacked Q4_0 and Q8_0 layouts (16 rows x 1 block per group) x ACT_Q8 ----
 * A group is one block of 16 rows: their 16 fp16 scales, then the codes as
 * 64-byte vectors whose 32-bit lane k holds 4 consecutive codes of row k
 * (kernels.h). One vpdpbusd then multiplies 4 columns of all 16 rows by the
 * same 4 activation codes, broadcast from memory, and its 16 lanes are the 16
 * rows' partial sums: a block of 16 rows x 1 token is 8 vpdpbusd (two chains
 * of 4), one convert, one multiply of the 16 weight scales by the token's
 * activation scale and one fma into that token's accumulator, whatever the
 * token count. Codes become the unsigned operand as they are (Q4_0: the
 * nibble, q + 8) or with the sign bit flipped (Q8_0: q + 128); the offset
 * comes back exactly, in integers: each block's sum starts at -offset x the
 * block's activation sum (the per-token prep). The weights of a group are
 * loaded and unpacked once for up to FITLM_REPACK_TOKENS tokens; decode is
 * the same body with one token, so prefill and decode give the same bits. */
#define X16_CODES 32 /* Q4_0 / Q8_0: the code vectors after the 16 scales */

INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

INLINE void x16_body(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                     size_t pstride, const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    const size_t gbytes = wtype == FITLM_TYPE_Q4_0 ? 288 : 544;
    const uint8_t *g = w;
    __m512 acc[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += gbytes) {
        fitlm_repacked_prefetch(g, gbytes, nt, fitlm_repacked_pf_simple_min());
        const __m512 wsc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i c[8]; /* c[m]: columns 4m..4m+3 of the block, lane k = row k */
        if (wtype == FITLM_TYPE_Q4_0) {
            const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++) { /* byte i holds column i (low nibble) and i + 16 (high) */
                __m512i raw = _mm512_loadu_si512(g + X16_CODES + 64 * m);
                c[m] = _mm512_and_si512(raw, m4);
                c[m + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            }
        } else {
            const __m512i sign = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 8
            for (int m = 0; m < 8; m++) c[m] = _mm512_xor_si512(_mm512_loadu_si512(g + X16_CODES + 64 * m), sign);
        }
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const uint8_t *row = TOK(a, astride, t);
            const int8_t *aq = act_q8_qs(row) + 32 * b;
            const int32_t *off = (const int32_t *)TOK(prep, pstride, t);
            __m512i p = _mm512_set1_epi32(off[b]), q = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++) {
                p = _mm512_dpbusd_epi32(p, c[m], bcast4(aq + 4 * m));
                q = _mm512_dpbusd_epi32(q, c[m + 4], bcast4(aq + 16 + 4 * m));
            }
            __m512 sc = _mm512_mul_ps(wsc, _mm512_set1_ps(act_q8_d(row, nb)[b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(p, q)), sc, acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, acc[t]);
}


/* Q4_1, Q5_0, Q5_1 x16 (ACT_Q8): a group is one block of 16 rows: the 16 d
 * (and for Q4_1 / Q5_1 the 16 m) as fp16, for Q5_0 / Q5_1 the rows' 32 fifth
 * bits as one vector (reordered by the repack, matmul.c x16_qh_to_lane: the
 * bits of code vector m sit at bit 4 of each byte after one shift), then
 * the 4 nibble vectors as Q4_0's. Codes are unsigned (Q4_1 0..15, Q5 0..31);
 * Q5_0's -16 comes back through the prep (-16 x the activation sum), Q4_1 /
 * Q5_1's minimum as m x (d_a x sum) (the prep holds d_a x sum as a float):
 * per token and block 8 vpdpbusd, one add, one convert and one or two fmas. */
INLINE void x16_leg_body(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                         size_t pstride, const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    const int has_m = wtype != FITLM_TYPE_Q5_0, has_h = wtype != FITLM_TYPE_Q4_1;
    const size_t hdr = has_m ? 64 : 32, gbytes = wtype == FITLM_TYPE_Q4_1 ? 320 : wtype == FITLM_TYPE_Q5_0 ? 352 : 384;
    const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    const uint8_t *g = w;
    __m512 acc[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += gbytes) {
        fitlm_repacked_prefetch(g, gbytes, nt, fitlm_repacked_pf_simple_min());
        const __m512 wsc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        const __m512 wmin = has_m ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32))) : _mm512_setzero_ps();
        const __m512i hv = has_h ? _mm512_loadu_si512(g + hdr) : _mm512_setzero_si512();
        const uint8_t *cv = g + hdr + (has_h ? 64 : 0);
        __m512i c[8];
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) {
            __m512i raw = _mm512_loadu_si512(cv + 64 * m);
            c[m] = _mm512_and_si512(raw, m4);
            c[m + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            if (has_h) { /* code | (shifted bits & 0x10) */
                c[m] = _mm512_ternarylogic_epi32(c[m], _mm512_srli_epi32(hv, (unsigned)m), bit4, 0xF8);
                c[m + 4] = _mm512_ternarylogic_epi32(c[m + 4], _mm512_slli_epi32(hv, 4u - (unsigned)m), bit4, 0xF8);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const uint8_t *row = TOK(a, astride, t);
            const int8_t *aq = act_q8_qs(row) + 32 * b;
            const int32_t *off = (const int32_t *)TOK(prep, pstride, t);
            __m512i p = has_m ? _mm512_setzero_si512() : _mm512_set1_epi32(off[b]), q = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++) {
                p = _mm512_dpbusd_epi32(p, c[m], bcast4(aq + 4 * m));
                q = _mm512_dpbusd_epi32(q, c[m + 4], bcast4(aq + 16 + 4 * m));
            }
            __m512 sc = _mm512_mul_ps(wsc, _mm512_set1_ps(act_q8_d(row, nb)[b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(p, q)), sc, acc[t]);
            if (has_m) acc[t] = _mm512_fmadd_ps(wmin, _mm512_set1_ps(((const float *)off)[b]), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, acc[t]);
}

/* Q4_K x16 (ACT_Q8K activations): a group is one super-block of 16 rows
 * (2304 bytes): the 16 d, the 16 dmin (fp16), the rows' 12 scale bytes as 3
 * vectors (lane k = row k's bytes 4v..4v+3, unpacked with the 32-bit word
 * operations of fitlm_k4_unpack), then 32 code vectors, vector 8j + u lane k =
 * row k's nibble bytes 32j + 4u..+3: low nibbles are columns 64j + 4u..+3
 * (sub-block 2j), high nibbles 32 columns further (sub-block 2j + 1). Per token
 * a sub-block is 8 vpdpbusd (two chains), one add and one vpmulld by the 16
 * rows' 6-bit scales into the token's integer sum (|sum| < 8 x 63 x 60960, no
 * overflow); the minimums are 4 vpdpwssd of the rows' mins in 16-bit pairs by
 * the token's sub-block sums in pairs (the prep); per super-block two converts
 * and two fmas with d x da and dmin x da. Q5_K (2816 bytes) is the same with
 * the rows' 32 qh bytes as 8 vectors after the scales: bit s of qh byte l is
 * the fifth bit of element l of sub-block s, or-ed into the codes. */
INLINE void x16_q4_k_body(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                          size_t pstride, const int nt, float *out, size_t ostride) {
    const int q5 = wtype == FITLM_TYPE_Q5_K;
    const size_t gbytes = q5 ? 2816 : 2304, codes = q5 ? 768 : 256; /* Q5_K: 8 qh vectors before the codes */
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    const int64_t nb = cols / 256;
    const uint8_t *g = w;
    __m512 acc[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++, g += gbytes) {
        fitlm_repacked_prefetch(g, gbytes, nt, 1);
        const x16_k4_scales kg = x16_k4_scales_load(g);
        __m512i isum[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
        for (int s = 0; s < 8; s++) { /* sub-block s: chunk s / 2, low or high nibbles */
            const uint8_t *cv = g + codes + 512 * (s / 2);
            const __m512i sc = x16_k4_scale(&kg, s);
            __m512i c[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) {
                __m512i raw = _mm512_loadu_si512(cv + 64 * u);
                c[u] = _mm512_and_si512(s % 2 ? _mm512_srli_epi16(raw, 4) : raw, m4);
                if (q5) { /* bit s of qh byte l is the fifth bit of sub-block s's element l */
                    __m512i qh = _mm512_loadu_si512(g + 256 + 64 * u);
                    qh = s <= 4 ? _mm512_slli_epi16(qh, 4 - s) : _mm512_srli_epi16(qh, s - 4);
                    c[u] = _mm512_ternarylogic_epi32(c[u], qh, bit4, 0xF8); /* c | (qh & bit4) */
                }
            }
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs + 32 * s;
                __m512i p = _mm512_setzero_si512(), q = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int u = 0; u < 8; u += 2) {
                    p = _mm512_dpbusd_epi32(p, c[u], bcast4(aq + 4 * u));
                    q = _mm512_dpbusd_epi32(q, c[u + 1], bcast4(aq + 4 * u + 4));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(p, q), sc));
            }
        }
        const x16_k4_mins km = x16_k4_mins_load(g);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++)
            acc[t] = x16_k4_finish(&km, acc[t], isum[t], (const int32_t *)TOK(prep, pstride, t) + 4 * b,
                                   ((const act_q8k *)TOK(a, astride, t))[b].d);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, acc[t]);
}

/* Q6_K x16 (ACT_Q8K activations): a group is one super-block of 16 rows
 * (3360 bytes): the 16 d (fp16), the rows' 16 int8 scales as 4 vectors,
 * then the ql and qh bytes as 48 vectors (lane k = row k's 4 bytes) in the
 * order they are read: per half h and word range v (hv = 2h + v), per word
 * u = 4v + k, ql word u, ql word u + 8 and qh word u of the half. Those give
 * four code vectors (6 bits, the unsigned operand as they are: q + 32),
 * columns 128h + 32i + 4u..+3 for i = 0..3 (ql low nibbles, ql[+32] low, ql
 * high, ql[+32] high; qh bits 2i..2i+1 on top), i.e. sub-block 8h + 2i + u / 4.
 * The 16 code vectors of one half and word range (4 sub-blocks) are built
 * once for all tokens; per token a 16-column sub-block starts at its offset
 * (-32 x its activation sum, the prep), takes 4 vpdpbusd, and one vpmulld
 * by the rows' scales into the token's integer sum (|sum| < 16 x 128 x 65024); per super-block one
 * convert and one fma with d x da. */
INLINE void x16_q6_k_body(int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                          size_t pstride, const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 256;
    const uint8_t *g = w;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(0x03);
    __m512 acc[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += 3360) {
        fitlm_repacked_prefetch(g, 3360, nt, 1);
        const __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i isum[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int hv = 0; hv < 4; hv++) { /* half h, words 4v..4v+3: sub-blocks 8h + 2i + v, i = 0..3 */
            const int h = hv / 2, v = hv % 2;
            __m512i c[4][4], sc[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const uint8_t *q = g + 32 + 64 * (4 + 12 * hv + 3 * k); /* ql word u, ql word u + 8, qh word u */
                const __m512i qla = _mm512_loadu_si512(q), qlb = _mm512_loadu_si512(q + 64);
                const __m512i qh = _mm512_loadu_si512(q + 128);
                c[0][k] = _mm512_or_si512(_mm512_and_si512(qla, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
                c[1][k] = _mm512_or_si512(_mm512_and_si512(qlb, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2), m3), 4));
                c[2][k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qla, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
                c[3][k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qlb, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 6), m3), 4));
            }
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) { /* scale of sub-block 8h + 2i + v: vector 2h + i / 2, byte 2(i % 2) + v */
                const __m512i sv = _mm512_loadu_si512(g + 32 + 64 * (2 * h + i / 2));
                sc[i] = _mm512_srai_epi32(_mm512_slli_epi32(sv, 24 - 8 * (2 * (i % 2) + v)), 24);
            }
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs;
                const int32_t *off = (const int32_t *)TOK(prep, pstride, t) + 16 * b;
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    const int s = 8 * h + 2 * i + v;
                    __m512i p = _mm512_set1_epi32(off[s]);
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) p = _mm512_dpbusd_epi32(p, c[i][k], bcast4(aq + 16 * s + 4 * k));
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(p, sc[i]));
                }
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 da = _mm512_set1_ps(((const act_q8k *)TOK(a, astride, t))[b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(wd, da), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, acc[t]);
}
/* Q3_K and Q2_K x16 (ACT_Q8K activations): a group is one super-block of 16
 * rows. Both have 16-column sub-blocks whose element e = 128h + 32j + l has
 * the low bits (qs[32h + l] >> 2j) & 3 (sub-block s = 8h + 2j + l / 16).
 * Q3_K (1760 bytes): the 16 d (fp16), the rows' 12 scale bytes as 3 word
 * vectors (the 16 signed 6-bit scales unpacked in lanes with word operations:
 * low nibbles from words 0-1, top two bits from word 2), the 32 hmask bytes as
 * 8 vectors, the 64 qs bytes as 16; the third bit is (hmask[l] >> (4h + j)) &
 * 1, the code low | bit << 2 (0..7) is q + 4, so a sub-block starts at its
 * offset (-4 x its activation sum, the prep) and its scale is the byte - 32.
 * Q2_K (1344 bytes): the 16 d and 16 dmin, the 16 scale bytes as 4 word vectors
 * (scale = low nibble, min = high nibble), the 64 qs bytes as 16; the minimums
 * are 8 vpdpwssd of the mins in 16-bit pairs (sub-blocks 4v + i, 4v + i + 2) by
 * the prep's activation sums in the same pairs. Per token a sub-block is 4
 * vpdpbusd and one vpmulld by its scales (|sum| < 16 x 32 x 8128). */
INLINE void x16_k23_body(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                         size_t pstride, const int nt, float *out, size_t ostride) {
    const int q3 = wtype == FITLM_TYPE_Q3_K;
    const size_t gbytes = q3 ? 1760 : 1344, qs = q3 ? 736 : 320; /* the qs vectors */
    const int64_t nb = cols / 256;
    const uint8_t *g = w;
    const __m512i m3 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x01), k0f = _mm512_set1_epi8(0x0f);
    /* a sub-block's scale: its byte (Q3_K, minus 32) or the byte's low nibble (Q2_K) */
    const __m512i smask = _mm512_set1_epi32(q3 ? 0xff : 0x0f), bias = _mm512_set1_epi32(q3 ? 32 : 0);
    const __m512i mp = _mm512_set1_epi32(0x000f000f);
    __m512 acc[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += gbytes) {
        fitlm_repacked_prefetch(g, gbytes, nt, 1);
        const __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i sw[4]; /* word k: the scales of sub-blocks 4k..4k+3, one per byte */
        if (q3) {
            const __m512i u0 = _mm512_loadu_si512(g + 32), u1 = _mm512_loadu_si512(g + 96);
            const __m512i u2 = _mm512_loadu_si512(g + 160);
            sw[0] = _mm512_or_si512(_mm512_and_si512(u0, k0f), _mm512_slli_epi32(_mm512_and_si512(u2, m3), 4));
            sw[1] = _mm512_or_si512(_mm512_and_si512(u1, k0f),
                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, 2), m3), 4));
            sw[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u0, 4), k0f),
                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m3), 4));
            sw[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u1, 4), k0f),
                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, 6), m3), 4));
        } else {
            for (int v = 0; v < 4; v++) sw[v] = _mm512_loadu_si512(g + 64 + 64 * v);
        }
        __m512i isum[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int s = 0; s < 16; s++) { /* sub-block s = 8h + 2j + v: half h, shift j, words 4v..4v+3 */
            const int h = s / 8, j = (s % 8) / 2, v = s % 2;
            const __m512i sc = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(sw[s / 4], 8 * (s % 4)), smask), bias);
            __m512i c[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int u = 4 * v + k;
                c[k] = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(g + qs + 64 * (8 * h + u)), 2 * j), m3);
                if (q3) {
                    const __m512i hm = _mm512_loadu_si512(g + 224 + 64 * u);
                    c[k] = _mm512_or_si512(c[k], _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hm, 4 * h + j), m1), 2));
                }
            }
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs + 16 * s;
                __m512i p = q3 ? _mm512_set1_epi32(((const int32_t *)TOK(prep, pstride, t))[16 * b + s])
                               : _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) p = _mm512_dpbusd_epi32(p, c[k], bcast4(aq + 4 * k));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(p, sc));
            }
        }
        __m512i mins[8]; /* Q2_K: pair 2v + i, the mins of sub-blocks 4v + i and 4v + i + 2 */
        for (int v = 0; v < 4 && !q3; v++) {
            mins[2 * v] = _mm512_and_si512(_mm512_srli_epi32(sw[v], 4), mp);
            mins[2 * v + 1] = _mm512_and_si512(_mm512_srli_epi32(sw[v], 12), mp);
        }
        const __m512 wdm = q3 ? _mm512_setzero_ps() : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 da = _mm512_set1_ps(((const act_q8k *)TOK(a, astride, t))[b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(wd, da), acc[t]);
            if (!q3) {
                const int32_t *pw = (const int32_t *)TOK(prep, pstride, t) + 8 * b;
                __m512i mm = _mm512_setzero_si512();
                for (int i = 0; i < 8; i++) mm = _mm512_dpwssd_epi32(mm, mins[i], _mm512_set1_epi32(pw[i]));
                acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mm), _mm512_mul_ps(wdm, da), acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, acc[t]);
}

/* BF16 x16 (a group: 32 columns of 16 rows, 1024 bytes) x ACT_BF16.
 * Vector m of a group holds columns 2m and 2m + 1 of the 16 rows (lane k =
 * row k); one vdpbf16ps multiplies it by the token's activation pair (bf16,
 * broadcast) into the 16 rows' float sums: 32 products per instruction, the
 * weights loaded once per group for all the tokens (F16 matrices whose values
 * are all bfloat16 values become BF16 at load: backend_cpu.c). Per token two
 * accumulators (even and odd vectors) added at the end: the same operations in the same order
 * whatever the token count, so decode alone and in a batch give the same
 * bits. Half a group (8 vectors) at a time keeps the 16 accumulators and the
 * weights in registers. */
INLINE void x16_bf16_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt,
                          float *out, size_t ostride) {
    const int64_t ng = cols / 32;
    const uint8_t *g = w;
    __m512 acc0[FITLM_REPACK_TOKENS], acc1[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < ng; b++, g += 1024) {
        fitlm_repacked_prefetch(g, 1024, nt, fitlm_repacked_pf_simple_min());
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512bh v[8];
#pragma GCC unroll 8
            for (int m = 0; m < 8; m++) {
                v[m] = (__m512bh)_mm512_loadu_si512(g + 512 * h + 64 * m);
            }
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int32_t *x = (const int32_t *)TOK(a, astride, t) + 16 * b + 8 * h;
#pragma GCC unroll 4
                for (int m = 0; m < 8; m += 2) {
                    acc0[t] = _mm512_dpbf16_ps(acc0[t], v[m], (__m512bh)_mm512_set1_epi32(x[m]));
                    acc1[t] = _mm512_dpbf16_ps(acc1[t], v[m + 1], (__m512bh)_mm512_set1_epi32(x[m + 1]));
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * ostride, _mm512_add_ps(acc0[t], acc1[t]));
}

/* F16 x16 exact: the same layout, multiplied in float32. vcvtph2ps turns
 * the low and high 32 bytes of vector m into rows 0-7 and 8-15, each lane
 * pair (2k, 2k + 1) = row k's columns 2m and 2m + 1, and one fma by the
 * token's activation pair (broadcast as 64 bits) adds both products into
 * those lanes: 32 products per two fmas, no rounding of weights or
 * activations. The pair lanes are added once at the end. Per token and half
 * one accumulator whatever the token count (decode alone and in a batch give
 * the same bits). */
INLINE void x16_f16_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out,
                         size_t ostride) {
    const int64_t ng = cols / 32;
    const uint8_t *g = w;
    __m512 lo[FITLM_REPACK_TOKENS], hi[FITLM_REPACK_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) lo[t] = hi[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < ng; b++, g += 1024) {
        fitlm_repacked_prefetch(g, 1024, nt, fitlm_repacked_pf_simple_min());
#pragma GCC unroll 4
        for (int m = 0; m < 16; m++) {
            const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 64 * m)));
            const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 64 * m + 32)));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                double pair;
                memcpy(&pair, (const float *)TOK(a, astride, t) + 32 * b + 2 * m, 8);
                const __m512 xp = _mm512_castpd_ps(_mm512_set1_pd(pair));
                lo[t] = _mm512_fmadd_ps(w0, xp, lo[t]);
                hi[t] = _mm512_fmadd_ps(w1, xp, hi[t]);
            }
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        _mm512_storeu_ps(out + (size_t)t * ostride, _mm512_add_ps(_mm512_permutex2var_ps(lo[t], even, hi[t]),
                                                                  _mm512_permutex2var_ps(lo[t], odd, hi[t])));
}

/* One entry per type: the token count is made a constant of each instance
 * so the accumulators and the group's codes stay in registers. CALL(n) is the
 * body for n tokens. */
#define X16_ENTRY(name, CALL)                                                                                     \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, const void *prep, size_t pstride,  \
                     int nt, float *out, size_t ostride) {                                                          \
        switch (nt) {                                                                                               \
        case 8: CALL(8); break;                                                                                     \
        case 7: CALL(7); break;                                                                                     \
        case 6: CALL(6); break;                                                                                     \
        case 5: CALL(5); break;                                                                                     \
        case 4: CALL(4); break;                                                                                     \
        case 3: CALL(3); break;                                                                                     \
        case 2: CALL(2); break;                                                                                     \
        default: CALL(1); break;                                                                                    \
        }                                                                                                           \
    }
#define CALL_Q4_0(n) x16_body(FITLM_TYPE_Q4_0, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q8_0(n) x16_body(FITLM_TYPE_Q8_0, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q4_K(n) x16_q4_k_body(FITLM_TYPE_Q4_K, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q5_K(n) x16_q4_k_body(FITLM_TYPE_Q5_K, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q6_K(n) x16_q6_k_body(cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q3_K(n) x16_k23_body(FITLM_TYPE_Q3_K, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q2_K(n) x16_k23_body(FITLM_TYPE_Q2_K, cols, w, a, astride, prep, pstride, n, out, ostride)
X16_ENTRY(dot_repacked_q4_0, CALL_Q4_0)
X16_ENTRY(dot_repacked_q8_0, CALL_Q8_0)
X16_ENTRY(dot_repacked_q4_k, CALL_Q4_K)
X16_ENTRY(dot_repacked_q5_k, CALL_Q5_K)
X16_ENTRY(dot_repacked_q6_k, CALL_Q6_K)
X16_ENTRY(dot_repacked_q3_k, CALL_Q3_K)
X16_ENTRY(dot_repacked_q2_k, CALL_Q2_K)
#define CALL_Q4_1(n) x16_leg_body(FITLM_TYPE_Q4_1, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q5_0(n) x16_leg_body(FITLM_TYPE_Q5_0, cols, w, a, astride, prep, pstride, n, out, ostride)
#define CALL_Q5_1(n) x16_leg_body(FITLM_TYPE_Q5_1, cols, w, a, astride, prep, pstride, n, out, ostride)
X16_ENTRY(dot_repacked_q4_1, CALL_Q4_1)
X16_ENTRY(dot_repacked_q5_0, CALL_Q5_0)
X16_ENTRY(dot_repacked_q5_1, CALL_Q5_1)
#define CALL_F16(n) x16_f16_body(cols, w, a, astride, n, out, ostride)
#define CALL_BF16(n) x16_bf16_body(cols, w, a, astride, n, out, ostride)
X16_ENTRY(dot_repacked_f16, CALL_F16)
X16_ENTRY(dot_repacked_bf16, CALL_BF16)

fitlm_dot_repacked_fn fitlm_dot_repacked_avx512(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q6_K: return dot_repacked_q6_k;
    case FITLM_TYPE_Q3_K: return dot_repacked_q3_k;
    case FITLM_TYPE_Q2_K: return dot_repacked_q2_k;
    case FITLM_TYPE_Q4_0: return dot_repacked_q4_0;
    case FITLM_TYPE_Q8_0: return dot_repacked_q8_0;
    case FITLM_TYPE_Q4_K: return dot_repacked_q4_k;
    case FITLM_TYPE_Q5_K: return dot_repacked_q5_k;
    case FITLM_TYPE_Q4_1: return dot_repacked_q4_1;
    case FITLM_TYPE_Q5_0: return dot_repacked_q5_0;
    case FITLM_TYPE_Q5_1: return dot_repacked_q5_1;
    case FITLM_TYPE_F16: return dot_repacked_f16;
    /* vdpbf16ps: only with AVX512_BF16 (else BF16 keeps the file layout) */
    case FITLM_TYPE_BF16: return fitlm_cpu_has_avx512bf16() ? dot_repacked_bf16 : NULL;
    default: return NULL;
    }
}
