/* Helpers and dot-product bodies that the AVX2 and AVX-512 kernel files share
 * word for word. Each of dot_avx2.c / dot_avx512.c includes this once, after
 * defining INLINE, TOK and its own dot_u8s8 (maddubs on AVX2, VNNI on AVX-512),
 * and with DOT_TILE set to its token tile; the code is compiled with each file's
 * flags, so the same text becomes two ISA-specific kernels. Not a public header. */
#ifndef FITLM_BACKEND_CPU_DOT_X86_COMMON_H
#define FITLM_BACKEND_CPU_DOT_X86_COMMON_H

#ifndef DOT_TILE
#error "define DOT_TILE before including dot_x86_common.h"
#endif

INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

INLINE float scalar_w(const void *w, int64_t c, int kind) {
    if (kind == 0) return ((const float *)w)[c];
    uint16_t h = ((const uint16_t *)w)[c];
    if (kind == 1) return h2f(h);
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

INLINE __m256i unpack_nibbles32(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

INLINE __m128 load4_halves(const void *first, size_t stride) {
    const uint8_t *p = first;
    uint64_t h = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t v;
        memcpy(&v, p + (size_t)k * stride, 2);
        h |= (uint64_t)v << (16 * k);
    }
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h));
}

INLINE float hsum_ps128(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256i unpack_q5(const uint8_t *qs, const uint8_t *qh8) {
    uint32_t qh;
    memcpy(&qh, qh8, 4);
    /* byte j of the result gets bit j of qh: broadcast, pick the byte holding
     * bit j, test the bit */
    __m256i v = _mm256_set1_epi32((int)qh);
    __m256i sh = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                                  3, 3, 3, 3);
    v = _mm256_shuffle_epi8(v, sh);
    __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    __m256i hi = _mm256_and_si256(v, _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles32(qs), hi);
}

INLINE void dot_q4_1_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q4_1 *b = w;
    const int64_t nb = cols / 32;
    __m256 acc[DOT_TILE];
    float macc[DOT_TILE] = {0};
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq = unpack_nibbles32(b[i].qs);
        float dw = h2f(b[i].d), mw = h2f(b[i].m);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab_ = act_q8_get(TOK(a, astride, t), nb, i), *ab = &ab_;
            __m256i p = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)ab->qs));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab->d), acc[t]);
            macc[t] += (mw * ab->d) * (float)ab->sum;
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) + macc[t];
}

INLINE void dot_q5_0_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q5_0 *b = w;
    const int64_t nb = cols / 32;
    __m256 acc[DOT_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq = unpack_q5(b[i].qs, b[i].qh);
        float dw = h2f(b[i].d);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab_ = act_q8_get(TOK(a, astride, t), nb, i), *ab = &ab_;
            __m256i p = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)ab->qs));
            p = _mm256_sub_epi32(p, _mm256_setr_epi32(16 * ab->sum, 0, 0, 0, 0, 0, 0, 0));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}

INLINE void dot_q5_1_body(int64_t cols, const void *w, const void *a, size_t astride, const int nt, float *out) {
    const blk_q5_1 *b = w;
    const int64_t nb = cols / 32;
    __m256 acc[DOT_TILE];
    float macc[DOT_TILE] = {0};
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i wq = unpack_q5(b[i].qs, b[i].qh);
        float dw = h2f(b[i].d), mw = h2f(b[i].m);
        for (int t = 0; t < nt; t++) {
            const act_q8_ref ab_ = act_q8_get(TOK(a, astride, t), nb, i), *ab = &ab_;
            __m256i p = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)ab->qs));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab->d), acc[t]);
            macc[t] += (mw * ab->d) * (float)ab->sum;
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]) + macc[t];
}

#endif
