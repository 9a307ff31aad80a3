/* AVX2 + FMA + F16C dot-product kernels (compiled with -mavx2 -mfma -mf16c;
 * only called when the CPU has them). Integer kernels use the
 * maddubs (u8 x s8 -> s16 pairs) + madd (s16 pairs -> s32) idiom. Each kernel
 * is written once as an always-inline body taking the token count `nt` and
 * instantiated for nt = 1..4, so a weight block is loaded and unpacked once
 * for up to four tokens. */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

#define INLINE static inline __attribute__((always_inline))

INLINE int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* sum over pairs of (u8 x s8) products, widened to 8 x s32 */
INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#define TOK(a, astride, t) ((const uint8_t *)(a) + (size_t)(t) * (astride))

#define DOT_TILE FITLM_DOT_TILE
#include "backend/cpu/dot_x86_common.h"

/* Instantiates name(cols, w, a, astride, ntok, out) from body_##name(..., nt). */
#define INSTANTIATE(name)                                                                                              \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, int ntok, float *out) {             \
        switch (ntok) {                                                                                                \
        case 1: name##_body(cols, w, a, astride, 1, out); break;                                                      \
        case 2: name##_body(cols, w, a, astride, 2, out); break;                                                      \
        case 3: name##_body(cols, w, a, astride, 3, out); break;                                                      \
        default: name##_body(cols, w, a, astride, 4, out); break;                                                     \
        }                                                                                                              \
    }

/* ---- float weights: 16 columns per step, two accumulators per token ---- */

INLINE __m256 load_w_f32(const void *w, int64_t c) {
    return _mm256_loadu_ps((const float *)w + c);
}
INLINE __m256 load_w_f16(const void *w, int64_t c) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + c)));
}
INLINE __m256 load_w_bf16(const void *w, int64_t c) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + c)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
#define FLOAT_KERNEL(name, loader, kind)                                                                              \
    INLINE void name##_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) { \
        __m256 acc0[4], acc1[4];                                                                                       \
        for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();                                         \
        int64_t c = 0;                                                                                                 \
        for (; c + 16 <= cols; c += 16) {                                                                              \
            __m256 w0 = loader(w, c), w1 = loader(w, c + 8);                                                           \
            for (int t = 0; t < nt; t++) {                                                                             \
                const float *x = (const float *)TOK(a, astride, t);                                                    \
                acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c), acc0[t]);                                        \
                acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c + 8), acc1[t]);                                    \
            }                                                                                                          \
        }                                                                                                              \
        for (int t = 0; t < nt; t++) {                                                                                 \
            const float *x = (const float *)TOK(a, astride, t);                                                        \
            float s = hsum_ps(_mm256_add_ps(acc0[t], acc1[t]));                                                        \
            for (int64_t k = c; k < cols; k++) s += scalar_w(w, k, kind) * x[k];                                       \
            out[t] = s;                                                                                                \
        }                                                                                                              \
    }                                                                                                                  \
    INSTANTIATE(name)

FLOAT_KERNEL(dot_f32, load_w_f32, 0)
FLOAT_KERNEL(dot_f16, load_w_f16, 1)

/* BF16 weights x ACT_BF16 activations: both widened to float (exact), fma */
INLINE void dot_bf16_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m256 w0 = load_w_bf16(w, c), w1 = load_w_bf16(w, c + 8);
        for (int t = 0; t < nt; t++) {
            const void *x = TOK(a, astride, t);
            acc0[t] = _mm256_fmadd_ps(w0, load_w_bf16(x, c), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(w1, load_w_bf16(x, c + 8), acc1[t]);
        }
    }
    for (int t = 0; t < nt; t++) {
        const void *x = TOK(a, astride, t);
        float s = hsum_ps(_mm256_add_ps(acc0[t], acc1[t]));
        for (int64_t k = c; k < cols; k++) s += scalar_w(w, k, 2) * scalar_w(x, k, 2);
        out[t] = s;
    }
}
INSTANTIATE(dot_bf16)

/* ---- Q8_0 x Q8 ---- */

INLINE void dot_q8_0_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q8_0 *b = w;
    const int64_t nb = cols / 32;
    __m256 acc[4];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq = _mm256_loadu_si256((const __m256i *)b[i].qs);
        __m256i wabs = _mm256_sign_epi8(wq, wq);
        float dw = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab_ = act_q8_get(TOK(a, astride, t), nb, i), *ab = &ab_;
            __m256i aq = _mm256_loadu_si256((const __m256i *)ab->qs);
            __m256i p = dot_u8s8(wabs, _mm256_sign_epi8(aq, wq));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}
INSTANTIATE(dot_q8_0)

/* ---- Q4_0 x Q8: nibbles 0..15 as unsigned, the -8 offset through the
 * activation sum: sum (q - 8) a = sum q a - 8 sum a ---- */

/* Four blocks per step: registers [block i | block i+1] and [i+2 | i+3] of
 * low and of high nibbles against activations in ACT_Q8I order (the first
 * 16 codes of the 4 blocks, then the last 16); the low- and high-nibble
 * products of a block add up in int16 (at most 2 x 2 x 15 x 127), the -8
 * offset comes back in float through the block sums. Leftover blocks (nb % 4)
 * are in plain order and go one at a time. */
INLINE void dot_q4_0_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q4_0 *b = w;
    const int64_t nb = cols / 32;
    __m256 acc0[4], acc1[4], tacc[4];
    __m128 corr[4];
    for (int t = 0; t < nt; t++) {
        acc0[t] = acc1[t] = tacc[t] = _mm256_setzero_ps();
        corr[t] = _mm_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i bc01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), bc23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m256i q01 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[i].qs)),
                                              _mm_loadu_si128((const __m128i *)b[i + 1].qs), 1);
        __m256i q23 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[i + 2].qs)),
                                              _mm_loadu_si128((const __m128i *)b[i + 3].qs), 1);
        __m256i lo01 = _mm256_and_si256(q01, m4), hi01 = _mm256_and_si256(_mm256_srli_epi16(q01, 4), m4);
        __m256i lo23 = _mm256_and_si256(q23, m4), hi23 = _mm256_and_si256(_mm256_srli_epi16(q23, 4), m4);
        __m128 dw = load4_halves(&b[i].d, sizeof(blk_q4_0));
        for (int t = 0; t < nt; t++) {
            const uint8_t *row = TOK(a, astride, t);
            const int8_t *aq = act_q8_qs(row) + 32 * i;
            __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(lo01, _mm256_loadu_si256((const __m256i *)aq)),
                                           _mm256_maddubs_epi16(hi01, _mm256_loadu_si256((const __m256i *)(aq + 64))));
            __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(lo23, _mm256_loadu_si256((const __m256i *)(aq + 32))),
                                           _mm256_maddubs_epi16(hi23, _mm256_loadu_si256((const __m256i *)(aq + 96))));
            __m128 s = _mm_mul_ps(dw, _mm_loadu_ps(act_q8_d(row, nb) + i));
            __m256 s8 = _mm256_castps128_ps256(s);
            acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s01, ones)),
                                      _mm256_permutevar8x32_ps(s8, bc01), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s23, ones)),
                                      _mm256_permutevar8x32_ps(s8, bc23), acc1[t]);
            __m128 sums = _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(act_q8_sum(row, nb) + i)));
            corr[t] = _mm_fmadd_ps(s, sums, corr[t]);
        }
    }
    for (; i < nb; i++) {
        __m256i wq = unpack_nibbles32(b[i].qs);
        float dw = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab = act_q8_get(TOK(a, astride, t), nb, i);
            __m256i p = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)ab.qs));
            p = _mm256_sub_epi32(p, _mm256_setr_epi32(8 * ab.sum, 0, 0, 0, 0, 0, 0, 0));
            tacc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), tacc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = hsum_ps(_mm256_add_ps(acc0[t], acc1[t])) - 8.0f * hsum_ps128(corr[t]) + hsum_ps(tacc[t]);
}
INSTANTIATE(dot_q4_0)

/* ---- Q4_1 x Q8: d * q + m, m through the activation sum ---- */

INSTANTIATE(dot_q4_1)

/* ---- Q5_0 / Q5_1 x Q8: the fifth bits of qh spread to bytes ---- */

INSTANTIATE(dot_q5_0)

INSTANTIATE(dot_q5_1)

/* ---- Q4_K x Q8_K ---- */

INLINE void dot_q4_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q4_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[4], macc[4];
    for (int t = 0; t < nt; t++) acc[t] = macc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        fitlm_k4_unpack(b[i].scales, sc, mn);
        __m256i scb[8]; /* each sub-block's scale in every int16 lane, once per block */
        for (int j = 0; j < 8; j++) scb[j] = _mm256_set1_epi16((short)sc[j]);
        /* mins x pair-summed bsums: mn[j] applies to bsums[2j] and bsums[2j+1] */
        __m128i mn8 = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn), _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
        __m256i mins16 = _mm256_cvtepu8_epi16(mn8);
        __m256i wlo[4], whi[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
            wlo[c] = _mm256_and_si256(q, m4);
            whi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m256i isum = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i a0 = _mm256_loadu_si256((const __m256i *)(ab->qs + 64 * c));
                __m256i a1 = _mm256_loadu_si256((const __m256i *)(ab->qs + 64 * c + 32));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(wlo[c], a0), scb[2 * c]);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(whi[c], a1), scb[2 * c + 1]);
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
            }
            /* mins x 16-sums stay a vector: no horizontal sum per block */
            __m256i mprod = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), mins16);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
            macc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mprod), _mm256_set1_ps(dmin * ab->d), macc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) - hsum_ps(macc[t]);
}
INSTANTIATE(dot_q4_k)


/* ---- Q5_K x Q8_K: Q4_K plus a fifth bit from qh ---- */

INLINE void dot_q5_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q5_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[4], macc[4];
    for (int t = 0; t < nt; t++) acc[t] = macc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        fitlm_k4_unpack(b[i].scales, sc, mn);
        __m256i scb[8]; /* each sub-block's scale in every int16 lane, once per block */
        for (int j = 0; j < 8; j++) scb[j] = _mm256_set1_epi16((short)sc[j]);
        __m128i mn8 = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mn),
                                       _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
        __m256i mins16 = _mm256_cvtepu8_epi16(mn8);
        __m256i qh = _mm256_loadu_si256((const __m256i *)b[i].qh);
        __m256i wlo[4], whi[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
            __m256i hb0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
            __m256i hb1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
            wlo[c] = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(hb0, 4));
            whi[c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_slli_epi16(hb1, 4));
        }
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m256i isum = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i a0 = _mm256_loadu_si256((const __m256i *)(ab->qs + 64 * c));
                __m256i a1 = _mm256_loadu_si256((const __m256i *)(ab->qs + 64 * c + 32));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(wlo[c], a0), scb[2 * c]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(whi[c], a1), scb[2 * c + 1]));
            }
            /* mins x 16-sums stay a vector: no horizontal sum per block */
            __m256i mprod = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), mins16);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
            macc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mprod), _mm256_set1_ps(dmin * ab->d), macc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) - hsum_ps(macc[t]);
}
INSTANTIATE(dot_q5_k)

/* From 16 int16 scales, [scale 2k x 8 | scale 2k+1 x 8]: a dword permute
 * brings the pair (2k, 2k+1) to every dword, a byte shuffle keeps the first
 * of the pair in the low half and the second in the high half. */
INLINE __m256i spread_scale_pair(__m256i sc16, int k) {
    __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(k));
    return _mm256_shuffle_epi8(pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2,
                                                      3, 2, 3, 2, 3, 2, 3, 2, 3));
}

/* ---- Q6_K x Q8_K: q + 32 (0..63) as unsigned, the offset via bsums ---- */

INLINE void dot_q6_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q6_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[4];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq[8];  /* 32 values each: elements 32k .. 32k+31 */
        __m256i scv[8]; /* int16 scales: lanes 0-7 sub-block 2k, 8-15 sub-block 2k+1 */
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            wq[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            wq[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            wq[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            wq[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
        }
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b[i].scales));
        for (int k = 0; k < 8; k++) scv[k] = spread_scale_pair(sc16, k);
        float d = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m256i isum = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++) {
                __m256i aq = _mm256_loadu_si256((const __m256i *)(ab->qs + 32 * k));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(wq[k], aq), scv[k]));
            }
            __m256i bs = _mm256_loadu_si256((const __m256i *)ab->bsums);
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5)); /* 32 x sc x 16-sums */
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}
INSTANTIATE(dot_q6_k)

/* ---- Q2_K / Q3_K x Q8_K: 2-bit planes; sub-blocks of 16 ----
 * The 32 values of group (h, j) are bits 2j..2j+1 of qs[32h .. 32h+31]; its
 * two sub-blocks 8h+2j and 8h+2j+1 take the low and high 128-bit halves of the
 * maddubs result, so one int16 scale vector per group does both. */

INLINE void dot_q2_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q2_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[4], macc[4];
    for (int t = 0; t < nt; t++) acc[t] = macc[t] = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq[8], scv[8];
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
            wq[4 * h + 0] = _mm256_and_si256(q, m3);
            wq[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
            wq[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
            wq[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
        }
        __m128i s8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm_set1_epi8(15)));
        for (int g = 0; g < 8; g++) scv[g] = spread_scale_pair(sc16, g);
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(15)));
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m256i isum = _mm256_setzero_si256();
            for (int g = 0; g < 8; g++) {
                __m256i aq = _mm256_loadu_si256((const __m256i *)(ab->qs + 32 * g));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(wq[g], aq), scv[g]));
            }
            __m256i mprod = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), mins16);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
            macc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mprod), _mm256_set1_ps(dmin * ab->d), macc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) - hsum_ps(macc[t]);
}
INSTANTIATE(dot_q2_k)

/* Q3_K: u = low2 + 4 * hbit = q + 4 in 0..7 (unsigned for maddubs); the -4
 * comes back through the activation sums: sum sc (u - 4) a = sum sc u a - 4
 * sum sc bsum. */
INLINE void dot_q3_k_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q3_k *b = w;
    const int64_t nb = cols / 256;
    __m256 acc[4];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq[8], scv[8];
        __m256i hm = _mm256_loadu_si256((const __m256i *)b[i].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
            for (int j = 0; j < 4; j++) {
                __m256i low = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j)), m3);
                __m256i hb = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * h + j)), one);
                wq[4 * h + j] = _mm256_or_si256(low, _mm256_slli_epi16(hb, 2));
            }
        }
        uint32_t u[3];
        memcpy(u, b[i].scales, 12);
        /* the 16 six-bit scales (+32) as bytes, with 32-bit word operations:
         * low nibbles from bytes 0-7 (first 8 scales low halves, next 8 high
         * halves), top two bits from bytes 8-11, 2 bits per group of 4 */
        __m128i s6 = _mm_setr_epi32((int)((u[0] & 0x0f0f0f0fu) | ((u[2] << 4) & 0x30303030u)),
                                    (int)((u[1] & 0x0f0f0f0fu) | ((u[2] << 2) & 0x30303030u)),
                                    (int)(((u[0] >> 4) & 0x0f0f0f0fu) | (u[2] & 0x30303030u)),
                                    (int)(((u[1] >> 4) & 0x0f0f0f0fu) | ((u[2] >> 2) & 0x30303030u)));
        __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(s6), _mm256_set1_epi16(32));
        for (int g = 0; g < 8; g++) scv[g] = spread_scale_pair(sc16, g);
        float d = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8k *ab = (const act_q8k *)TOK(a, astride, t) + i;
            __m256i isum = _mm256_setzero_si256();
            for (int g = 0; g < 8; g++) {
                __m256i aq = _mm256_loadu_si256((const __m256i *)(ab->qs + 32 * g));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(wq[g], aq), scv[g]));
            }
            isum = _mm256_sub_epi32(
                isum, _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)ab->bsums), sc16), 2));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * ab->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}
INSTANTIATE(dot_q3_k)

/* ---- the x16 repacked layouts (kernels.h) with AVX2 ----
 * The 64-byte vectors of a group hold rows 0-7 in their low 32 bytes and rows
 * 8-15 in their high 32 bytes, so each half of the 16 rows is one 256-bit
 * lane-per-row register.
 * Without vpdpbusd, 4-column words become maddubs (u8 x s8 pairs -> s16) and
 * madd (s16 pairs -> s32); the s16 sums are added before widening only as far
 * as they cannot saturate (bounds below). Results equal the AVX-512 kernels'
 * up to float rounding (the integer sums are exact in both). */
#define X16_AVX2_TOKENS 4
/* Up to this many tokens both halves are done block by block (one pass over
 * the group: decode streams each byte once, straight from DRAM); more tokens
 * take one pass per half (fewer live registers). Same arithmetic per row and
 * token either way. */
#define X16_AVX2_INTER 2

INLINE __m256i bc4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Q4_0 (codes 0..15: 8 maddubs outputs add to at most 16 x 15 x 127 = 30480
 * per s16 lane) and Q8_0 (signed codes: |w| as the unsigned operand, w's sign
 * moved onto the activation; each maddubs widened at once). Q4_0's offset of 8
 * comes from the prep; Q8_0 needs none. */
INLINE void x16_body_avx2(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                          size_t pstride, const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    const size_t gbytes = wtype == FITLM_TYPE_Q4_0 ? 288 : 544;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const int inter = nt <= X16_AVX2_INTER;
    for (int pass = 0; pass < (inter ? 1 : 2); pass++) {
        const uint8_t *g = w;
        __m256 acc[2][X16_AVX2_TOKENS];
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < nt; t++) acc[hh][t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++, g += gbytes)
        for (int hh = 0; hh < (inter ? 2 : 1); hh++) {
            if (hh == 0) fitlm_repacked_prefetch(g, gbytes, nt, fitlm_repacked_pf_simple_min());
            const int h = inter ? hh : pass;
            const __m256 wsc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
            const uint8_t *cv = g + 32 + 32 * h;
            __m256i c[8]; /* c[m]: columns 4m..4m+3 */
            if (wtype == FITLM_TYPE_Q4_0) {
                for (int m = 0; m < 4; m++) {
                    __m256i raw = _mm256_loadu_si256((const __m256i *)(cv + 64 * m));
                    c[m] = _mm256_and_si256(raw, m4);
                    c[m + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                }
            } else {
                for (int m = 0; m < 8; m++) c[m] = _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(cv + 64 * m)));
            }
            for (int t = 0; t < nt; t++) {
                const uint8_t *row = TOK(a, astride, t);
                const int8_t *aq = act_q8_qs(row) + 32 * b;
                __m256i p;
                if (wtype == FITLM_TYPE_Q4_0) {
                    __m256i s16 = _mm256_maddubs_epi16(c[0], bc4(aq));
                    for (int m = 1; m < 8; m++)
                        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(c[m], bc4(aq + (m < 4 ? 4 * m : 16 + 4 * (m - 4)))));
                    p = _mm256_add_epi32(_mm256_madd_epi16(s16, ones),
                                         _mm256_set1_epi32(((const int32_t *)TOK(prep, pstride, t))[b]));
                } else {
                    p = _mm256_setzero_si256();
                    for (int m = 0; m < 8; m++) {
                        __m256i raw = _mm256_loadu_si256((const __m256i *)(cv + 64 * m));
                        __m256i s = _mm256_maddubs_epi16(c[m], _mm256_sign_epi8(bc4(aq + 4 * m), raw));
                        p = _mm256_add_epi32(p, _mm256_madd_epi16(s, ones));
                    }
                }
                __m256 sc = _mm256_mul_ps(wsc, _mm256_set1_ps(act_q8_d(row, nb)[b]));
                acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[hh][t]);
            }
        }
        for (int hh = 0; hh < (inter ? 2 : 1); hh++)
            for (int t = 0; t < nt; t++) _mm256_storeu_ps(out + (size_t)t * ostride + 8 * (inter ? hh : pass), acc[hh][t]);
    }
}

/* Q4_K / Q5_K: per token and 32-column sub-block the s16 sums (Q4_K: 8
 * maddubs, <= 30480; Q5_K: codes 0..31, 4 at a time, <= 31496) are widened by
 * madd with the rows' 6-bit scales repeated in both s16 halves of each lane;
 * minimums by madd of the mins in 16-bit pairs with the prep's sum pairs. */
INLINE void x16_k4_body_avx2(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                             size_t pstride, const int nt, float *out, size_t ostride) {
    const int q5 = wtype == FITLM_TYPE_Q5_K;
    const size_t gbytes = q5 ? 2816 : 2304, codes = q5 ? 768 : 256;
    const int64_t nb = cols / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m6 = _mm256_set1_epi8(0x3f), m30 = _mm256_set1_epi8(0x30);
    const __m256i lo16 = _mm256_set1_epi32(0x00ff00ff), ff = _mm256_set1_epi32(0xff), bit4 = _mm256_set1_epi8(0x10);
    const int inter = nt <= X16_AVX2_INTER;
    for (int pass = 0; pass < (inter ? 1 : 2); pass++) {
        const uint8_t *g = w;
        __m256 acc[2][X16_AVX2_TOKENS];
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < nt; t++) acc[hh][t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++, g += gbytes)
        for (int hh = 0; hh < (inter ? 2 : 1); hh++) {
            if (hh == 0) fitlm_repacked_prefetch(g, gbytes, nt, 1);
            const int h = inter ? hh : pass;
            const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
            const __m256 wdm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * h)));
            const __m256i u0 = _mm256_loadu_si256((const __m256i *)(g + 64 + 32 * h));
            const __m256i u1 = _mm256_loadu_si256((const __m256i *)(g + 128 + 32 * h));
            const __m256i u2 = _mm256_loadu_si256((const __m256i *)(g + 192 + 32 * h));
            const __m256i sc03 = _mm256_and_si256(u0, m6);
            const __m256i sc47 =
                _mm256_or_si256(_mm256_and_si256(u2, m4), _mm256_and_si256(_mm256_srli_epi32(u0, 2), m30));
            __m256i isum[X16_AVX2_TOKENS];
            for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
            for (int s = 0; s < 8; s++) {
                const uint8_t *cv = g + codes + 512 * (s / 2) + 32 * h;
                __m256i sc = _mm256_and_si256(_mm256_srli_epi32(s < 4 ? sc03 : sc47, 8 * (s % 4)), ff);
                sc = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16)); /* the scale in both s16 halves */
                __m256i c[8];
                for (int u = 0; u < 8; u++) {
                    __m256i raw = _mm256_loadu_si256((const __m256i *)(cv + 64 * u));
                    c[u] = _mm256_and_si256(s % 2 ? _mm256_srli_epi16(raw, 4) : raw, m4);
                    if (q5) {
                        __m256i qh = _mm256_loadu_si256((const __m256i *)(g + 256 + 64 * u + 32 * h));
                        qh = s <= 4 ? _mm256_slli_epi16(qh, 4 - s) : _mm256_srli_epi16(qh, s - 4);
                        c[u] = _mm256_or_si256(c[u], _mm256_and_si256(qh, bit4));
                    }
                }
                for (int t = 0; t < nt; t++) {
                    const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs + 32 * s;
                    __m256i s0 = _mm256_maddubs_epi16(c[0], bc4(aq));
                    for (int u = 1; u < 4; u++) s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(c[u], bc4(aq + 4 * u)));
                    __m256i s1 = _mm256_maddubs_epi16(c[4], bc4(aq + 16));
                    for (int u = 5; u < 8; u++) s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(c[u], bc4(aq + 4 * u)));
                    __m256i p = q5 ? _mm256_add_epi32(_mm256_madd_epi16(s0, sc), _mm256_madd_epi16(s1, sc))
                                   : _mm256_madd_epi16(_mm256_add_epi16(s0, s1), sc);
                    isum[t] = _mm256_add_epi32(isum[t], p);
                }
            }
            const __m256i mn03 = _mm256_and_si256(u1, m6);
            const __m256i mn47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                                                 _mm256_and_si256(_mm256_srli_epi32(u1, 2), m30));
            const __m256i mp0 = _mm256_and_si256(mn03, lo16), mp1 = _mm256_and_si256(_mm256_srli_epi32(mn03, 8), lo16);
            const __m256i mp2 = _mm256_and_si256(mn47, lo16), mp3 = _mm256_and_si256(_mm256_srli_epi32(mn47, 8), lo16);
            for (int t = 0; t < nt; t++) {
                const int32_t *pw = (const int32_t *)TOK(prep, pstride, t) + 4 * b;
                __m256i mm = _mm256_add_epi32(_mm256_madd_epi16(mp0, _mm256_set1_epi32(pw[0])),
                                              _mm256_madd_epi16(mp1, _mm256_set1_epi32(pw[1])));
                mm = _mm256_add_epi32(mm, _mm256_add_epi32(_mm256_madd_epi16(mp2, _mm256_set1_epi32(pw[2])),
                                                           _mm256_madd_epi16(mp3, _mm256_set1_epi32(pw[3]))));
                const __m256 da = _mm256_set1_ps(((const act_q8k *)TOK(a, astride, t))[b].d);
                acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(wd, da), acc[hh][t]);
                acc[hh][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_mul_ps(wdm, da), acc[hh][t]);
            }
        }
        for (int hh = 0; hh < (inter ? 2 : 1); hh++)
            for (int t = 0; t < nt; t++) _mm256_storeu_ps(out + (size_t)t * ostride + 8 * (inter ? hh : pass), acc[hh][t]);
    }
}

/* Q6_K: codes 0..63, two maddubs per s16 sum (<= 32004); a 16-column
 * sub-block's s32 sum starts at its offset (the prep: -32 x its activation
 * sum) and is multiplied by the rows' int8 scales (vpmulld). */
INLINE void x16_q6_k_body_avx2(int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                               size_t pstride, const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(0x03), ones = _mm256_set1_epi16(1);
    const int inter = nt <= X16_AVX2_INTER;
    for (int pass = 0; pass < (inter ? 1 : 2); pass++) {
        const uint8_t *g = w;
        __m256 acc[2][X16_AVX2_TOKENS];
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < nt; t++) acc[hh][t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++, g += 3360)
        for (int hh = 0; hh < (inter ? 2 : 1); hh++) {
            if (hh == 0) fitlm_repacked_prefetch(g, 3360, nt, 1);
            const int h2 = inter ? hh : pass; /* rows 8 h2 .. 8 h2 + 7 */
            const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h2)));
            __m256i isum[X16_AVX2_TOKENS];
            for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
            for (int hv = 0; hv < 4; hv++) {
                const int h = hv / 2, v = hv % 2;
                for (int i = 0; i < 4; i++) { /* sub-block 8h + 2i + v */
                    const int s = 8 * h + 2 * i + v;
                    const __m256i sv = _mm256_loadu_si256((const __m256i *)(g + 32 + 64 * (2 * h + i / 2) + 32 * h2));
                    const __m256i sc = _mm256_srai_epi32(_mm256_slli_epi32(sv, 24 - 8 * (2 * (i % 2) + v)), 24);
                    __m256i c[4];
                    for (int k = 0; k < 4; k++) {
                        const uint8_t *q = g + 32 + 64 * (4 + 12 * hv + 3 * k) + 32 * h2;
                        __m256i ql = _mm256_loadu_si256((const __m256i *)(q + (i % 2) * 64));
                        __m256i qh = _mm256_loadu_si256((const __m256i *)(q + 128));
                        __m256i lo = _mm256_and_si256(i < 2 ? ql : _mm256_srli_epi16(ql, 4), m4);
                        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * i), m3);
                        c[k] = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                    }
                    for (int t = 0; t < nt; t++) {
                        const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs + 16 * s;
                        const int32_t *off = (const int32_t *)TOK(prep, pstride, t) + 16 * b;
                        __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(c[0], bc4(aq)), _mm256_maddubs_epi16(c[1], bc4(aq + 4)));
                        __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(c[2], bc4(aq + 8)), _mm256_maddubs_epi16(c[3], bc4(aq + 12)));
                        __m256i p = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones)),
                                                     _mm256_set1_epi32(off[s]));
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(p, sc));
                    }
                }
            }
            for (int t = 0; t < nt; t++) {
                const __m256 da = _mm256_set1_ps(((const act_q8k *)TOK(a, astride, t))[b].d);
                acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(wd, da), acc[hh][t]);
            }
        }
        for (int hh = 0; hh < (inter ? 2 : 1); hh++)
            for (int t = 0; t < nt; t++) _mm256_storeu_ps(out + (size_t)t * ostride + 8 * (inter ? hh : pass), acc[hh][t]);
    }
}

/* Q3_K and Q2_K (the layouts: dot_avx512.c, x16_k23_body). Codes 0..7 (Q3_K)
 * or 0..3 (Q2_K): four maddubs per s16 sum (<= 8 x 7 x 127 = 7112), widened
 * by madd; Q3_K adds its offset (-4 x the sub-block's activation sum) and
 * multiplies by the rows' scales - 32 (vpmulld), Q2_K widens by madd with its
 * 4-bit scales in both s16 halves of a lane and takes its minimums by madd of the mins' 16-bit pairs with the
 * prep's. */
INLINE void x16_k23_body_avx2(int wtype, int64_t cols, const void *w, const void *a, size_t astride, const void *prep,
                              size_t pstride, const int nt, float *out, size_t ostride) {
    const int q3 = wtype == FITLM_TYPE_Q3_K;
    const size_t gbytes = q3 ? 1760 : 1344, qs = q3 ? 736 : 320; /* the qs vectors */
    const int64_t nb = cols / 256;
    const __m256i m3 = _mm256_set1_epi8(0x03), m1 = _mm256_set1_epi8(0x01), k0f = _mm256_set1_epi8(0x0f);
    const __m256i smask = _mm256_set1_epi32(q3 ? 0xff : 0x0f), bias = _mm256_set1_epi32(q3 ? 32 : 0);
    const __m256i ones = _mm256_set1_epi16(1), mp = _mm256_set1_epi32(0x000f000f);
    const int inter = nt <= X16_AVX2_INTER;
    for (int pass = 0; pass < (inter ? 1 : 2); pass++) {
        const uint8_t *g = w;
        __m256 acc[2][X16_AVX2_TOKENS];
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < nt; t++) acc[hh][t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++, g += gbytes)
        for (int hh = 0; hh < (inter ? 2 : 1); hh++) {
            if (hh == 0) fitlm_repacked_prefetch(g, gbytes, nt, 1);
            const int h2 = inter ? hh : pass; /* rows 8 h2 .. 8 h2 + 7 */
            const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h2)));
            __m256i sw[4];
            if (q3) {
                const __m256i u0 = _mm256_loadu_si256((const __m256i *)(g + 32 + 32 * h2));
                const __m256i u1 = _mm256_loadu_si256((const __m256i *)(g + 96 + 32 * h2));
                const __m256i u2 = _mm256_loadu_si256((const __m256i *)(g + 160 + 32 * h2));
                sw[0] = _mm256_or_si256(_mm256_and_si256(u0, k0f), _mm256_slli_epi32(_mm256_and_si256(u2, m3), 4));
                sw[1] = _mm256_or_si256(_mm256_and_si256(u1, k0f),
                                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u2, 2), m3), 4));
                sw[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u0, 4), k0f),
                                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m3), 4));
                sw[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u1, 4), k0f),
                                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u2, 6), m3), 4));
            }
            /* Q2_K's scale words are read where used (16 registers are few) */
            const uint8_t *sw2 = g + 64 + 32 * h2;
            __m256i isum[X16_AVX2_TOKENS];
            for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
            for (int s = 0; s < 16; s++) {
                const int h = s / 8, j = (s % 8) / 2, v = s % 2;
                const __m256i word = q3 ? sw[s / 4] : _mm256_loadu_si256((const __m256i *)(sw2 + 64 * (s / 4)));
                const __m256i sc = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(word, 8 * (s % 4)), smask), bias);
                const __m256i sc16 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16)); /* Q2_K: in both s16 halves */
                __m256i c[4];
                for (int k = 0; k < 4; k++) {
                    const int u = 4 * v + k;
                    __m256i q = _mm256_loadu_si256((const __m256i *)(g + qs + 64 * (8 * h + u) + 32 * h2));
                    c[k] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                    if (q3) {
                        __m256i hm = _mm256_loadu_si256((const __m256i *)(g + 224 + 64 * u + 32 * h2));
                        c[k] = _mm256_or_si256(c[k], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1), 2));
                    }
                }
                for (int t = 0; t < nt; t++) {
                    const int8_t *aq = ((const act_q8k *)TOK(a, astride, t))[b].qs + 16 * s;
                    __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(c[0], bc4(aq)), _mm256_maddubs_epi16(c[1], bc4(aq + 4)));
                    s16 = _mm256_add_epi16(s16, _mm256_add_epi16(_mm256_maddubs_epi16(c[2], bc4(aq + 8)),
                                                                 _mm256_maddubs_epi16(c[3], bc4(aq + 12))));
                    if (q3) { /* the offset goes in before the signed scale */
                        __m256i p = _mm256_add_epi32(_mm256_madd_epi16(s16, ones),
                                                     _mm256_set1_epi32(((const int32_t *)TOK(prep, pstride, t))[16 * b + s]));
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(p, sc));
                    } else {
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s16, sc16));
                    }
                }
            }
            for (int t = 0; t < nt; t++) {
                const __m256 da = _mm256_set1_ps(((const act_q8k *)TOK(a, astride, t))[b].d);
                acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(wd, da), acc[hh][t]);
                if (!q3) {
                    const __m256 wdm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * h2)));
                    const int32_t *pw = (const int32_t *)TOK(prep, pstride, t) + 8 * b;
                    __m256i mm = _mm256_setzero_si256();
                    for (int v = 0; v < 4; v++) {
                        const __m256i word = _mm256_loadu_si256((const __m256i *)(sw2 + 64 * v));
                        mm = _mm256_add_epi32(mm, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(word, 4), mp),
                                                                    _mm256_set1_epi32(pw[2 * v])));
                        mm = _mm256_add_epi32(mm, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(word, 12), mp),
                                                                    _mm256_set1_epi32(pw[2 * v + 1])));
                    }
                    acc[hh][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_mul_ps(wdm, da), acc[hh][t]);
                }
            }
        }
        for (int hh = 0; hh < (inter ? 2 : 1); hh++)
            for (int t = 0; t < nt; t++) _mm256_storeu_ps(out + (size_t)t * ostride + 8 * (inter ? hh : pass), acc[hh][t]);
    }
}

/* One body per type; token counts above X16_AVX2_TOKENS run in tiles of it. */
#define X16_AVX2_ENTRY(name, call)                                                                                  \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, const void *prep, size_t pstride,  \
                     int nt, float *out, size_t ostride) {                                                          \
        for (int t0 = 0; t0 < nt; t0 += X16_AVX2_TOKENS) {                                                          \
            int n = nt - t0 < X16_AVX2_TOKENS ? nt - t0 : X16_AVX2_TOKENS;                                          \
            const void *at = TOK(a, astride, t0), *pt = TOK(prep, pstride, t0);                                       \
            float *o = out + (size_t)t0 * ostride;                                                                   \
            switch (n) {                                                                                            \
            case 4: call(4); break;                                                                                 \
            case 3: call(3); break;                                                                                 \
            case 2: call(2); break;                                                                                 \
            default: call(1); break;                                                                                \
            }                                                                                                       \
        }                                                                                                           \
    }
#define CALL_Q4_0(n) x16_body_avx2(FITLM_TYPE_Q4_0, cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q8_0(n) x16_body_avx2(FITLM_TYPE_Q8_0, cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q4_K(n) x16_k4_body_avx2(FITLM_TYPE_Q4_K, cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q5_K(n) x16_k4_body_avx2(FITLM_TYPE_Q5_K, cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q6_K(n) x16_q6_k_body_avx2(cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q3_K(n) x16_k23_body_avx2(FITLM_TYPE_Q3_K, cols, w, at, astride, pt, pstride, n, o, ostride)
#define CALL_Q2_K(n) x16_k23_body_avx2(FITLM_TYPE_Q2_K, cols, w, at, astride, pt, pstride, n, o, ostride)
X16_AVX2_ENTRY(rep_q4_0_avx2, CALL_Q4_0)
X16_AVX2_ENTRY(rep_q8_0_avx2, CALL_Q8_0)
X16_AVX2_ENTRY(rep_q4_k_avx2, CALL_Q4_K)
X16_AVX2_ENTRY(rep_q5_k_avx2, CALL_Q5_K)
X16_AVX2_ENTRY(rep_q6_k_avx2, CALL_Q6_K)
X16_AVX2_ENTRY(rep_q3_k_avx2, CALL_Q3_K)
X16_AVX2_ENTRY(rep_q2_k_avx2, CALL_Q2_K)

fitlm_dot_repacked_fn fitlm_dot_repacked_avx2(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0: return rep_q4_0_avx2;
    case FITLM_TYPE_Q8_0: return rep_q8_0_avx2;
    case FITLM_TYPE_Q4_K: return rep_q4_k_avx2;
    case FITLM_TYPE_Q5_K: return rep_q5_k_avx2;
    case FITLM_TYPE_Q6_K: return rep_q6_k_avx2;
    case FITLM_TYPE_Q3_K: return rep_q3_k_avx2;
    case FITLM_TYPE_Q2_K: return rep_q2_k_avx2;
    default: return NULL;
    }
}

fitlm_dot_fn fitlm_dot_avx2(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_F32: return dot_f32;
    case FITLM_TYPE_F16: return dot_f16;
    case FITLM_TYPE_BF16: return dot_bf16;
    case FITLM_TYPE_Q8_0: return dot_q8_0;
    case FITLM_TYPE_Q4_0: return dot_q4_0;
    case FITLM_TYPE_Q4_1: return dot_q4_1;
    case FITLM_TYPE_Q5_0: return dot_q5_0;
    case FITLM_TYPE_Q5_1: return dot_q5_1;
    case FITLM_TYPE_Q4_K: return dot_q4_k;
    case FITLM_TYPE_Q5_K: return dot_q5_k;
    case FITLM_TYPE_Q6_K: return dot_q6_k;
    case FITLM_TYPE_Q2_K: return dot_q2_k;
    case FITLM_TYPE_Q3_K: return dot_q3_k;
    default: return NULL;
    }
}

/* ---- activation quantization, bit-identical to quant_act.c ----
 * Same float operations in the same order (x * id, then + and - 1.5 * 2^23 to
 * round half to even); blocks with a non-finite value take the scalar path's
 * NaN convention. */

INLINE float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* quantizes n (multiple of 32) values with one scale; returns d, or NaN with
 * all codes 0 if a value is not finite */
static float quantize_i8_avx2(const float *x, int8_t *q, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(3.4e38f);
    __m256 mx = _mm256_setzero_ps();
    int finite = 1;
    for (int i = 0; i < n; i += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_LE_OQ)) == 0xff;
        mx = _mm256_max_ps(mx, a);
    }
    if (!finite) {
        memset(q, 0, (size_t)n);
        return __builtin_nanf("");
    }
    float d = hmax_ps(mx) / 127.0f;
    float idf = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 id = _mm256_set1_ps(idf), magic = _mm256_set1_ps(12582912.0f);
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), id), magic);
            t = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(t, magic), lo), hi);
            v[k] = _mm256_cvtps_epi32(t);
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
    }
    return d;
}

INLINE int sum_i8x16(const int8_t *q) {
    __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
    return hsum_epi32(_mm256_madd_epi16(v, _mm256_set1_epi16(1)));
}

void fitlm_quantize_act_q8_avx2(const float *x, void *dst_row, int64_t cols) {
    int64_t nb = cols / 32;
    int8_t *qs = dst_row;
    float *d = (float *)(qs + 32 * nb);
    int32_t *sum = (int32_t *)(qs + 36 * nb);
    for (int64_t b = 0; b < nb; b++) {
        d[b] = quantize_i8_avx2(x + 32 * b, qs + 32 * b, 32);
        sum[b] = sum_i8x16(qs + 32 * b) + sum_i8x16(qs + 32 * b + 16);
    }
}

void fitlm_quantize_act_q8k_avx2(const float *x, act_q8k *dst, int64_t cols) {
    for (int64_t b = 0; b < cols / 256; b++) {
        dst[b].d = quantize_i8_avx2(x + 256 * b, dst[b].qs, 256);
        for (int g = 0; g < 16; g++) dst[b].bsums[g] = (int16_t)sum_i8x16(dst[b].qs + 16 * g);
    }
}

/* fitlm_quantize_act_bf16 eight values at a time, the same bits: round to
 * nearest even by adding 0x7fff plus the kept part's lowest bit, NaN made
 * quiet (bit 6 of the result) instead of rounded. */
void fitlm_quantize_act_bf16_avx2(const float *x, uint16_t *dst, int64_t cols) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x + c + 8 * h));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(v, abs_mask), inf);
            __m256i hi = _mm256_srli_epi32(v, 16);
            __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(v, bias), _mm256_and_si256(hi, one)), 16);
            r[h] = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, quiet), nan);
        }
        /* 16-bit results in 32-bit lanes: pack (per 128-bit half), then restore the order */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(dst + c), packed);
    }
    for (; c < cols; c++) {
        uint32_t u;
        memcpy(&u, x + c, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) dst[c] = (uint16_t)((u >> 16) | 0x40);
        else dst[c] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }
}
