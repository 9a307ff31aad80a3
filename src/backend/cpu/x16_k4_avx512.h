/* The per-super-block parts of the Q4_K / Q5_K x16 kernels that the AVX-512
 * VNNI kernel (dot_avx512.c, x16_q4_k_body) and the AMX one (dot_amx.c,
 * amx_k_body) share word for word, so that both give the same bits: the 16
 * rows' 6-bit scales and minimums from the group's 12 scale bytes (3 word
 * vectors at g + 64), and the closing step of a super-block for one token
 * (the minimums times the token's sub-block sums, then the two fmas with
 * d x da and dmin x da). Include after <immintrin.h> with INLINE defined, in
 * files compiled with AVX-512 F/BW and VNNI. Not a public header. */
#ifndef FITLM_BACKEND_CPU_X16_K4_AVX512_H
#define FITLM_BACKEND_CPU_X16_K4_AVX512_H

/* Sub-block scales (needed inside the sub-block loop), and d, dmin and the
 * minimums (needed after it: loading them late keeps registers free). */
typedef struct {
    __m512i sc03, sc47; /* scales of sub-blocks 0-3 and 4-7, one byte each per lane */
} x16_k4_scales;
typedef struct {
    __m512 wd, wdm; /* the rows' d and dmin */
    __m512i mp[4];  /* minimums in 16-bit pairs: sub-blocks (0,2), (1,3), (4,6), (5,7) */
} x16_k4_mins;

INLINE x16_k4_scales x16_k4_scales_load(const uint8_t *g) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m6 = _mm512_set1_epi8(0x3f), m30 = _mm512_set1_epi8(0x30);
    const __m512i u0 = _mm512_loadu_si512(g + 64), u2 = _mm512_loadu_si512(g + 192);
    x16_k4_scales k;
    k.sc03 = _mm512_and_si512(u0, m6);
    k.sc47 = _mm512_or_si512(_mm512_and_si512(u2, m4), _mm512_and_si512(_mm512_srli_epi32(u0, 2), m30));
    return k;
}

/* Sub-block s's scale in each row's lane. */
INLINE __m512i x16_k4_scale(const x16_k4_scales *k, int s) {
    return _mm512_and_si512(_mm512_srli_epi32(s < 4 ? k->sc03 : k->sc47, 8 * (s % 4)), _mm512_set1_epi32(0xff));
}

INLINE x16_k4_mins x16_k4_mins_load(const uint8_t *g) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m6 = _mm512_set1_epi8(0x3f), m30 = _mm512_set1_epi8(0x30);
    const __m512i lo16 = _mm512_set1_epi32(0x00ff00ff);
    x16_k4_mins k;
    k.wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
    k.wdm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
    const __m512i u1 = _mm512_loadu_si512(g + 128), u2 = _mm512_loadu_si512(g + 192);
    const __m512i mn03 = _mm512_and_si512(u1, m6);
    const __m512i mn47 =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4), _mm512_and_si512(_mm512_srli_epi32(u1, 2), m30));
    k.mp[0] = _mm512_and_si512(mn03, lo16);
    k.mp[1] = _mm512_and_si512(_mm512_srli_epi32(mn03, 8), lo16);
    k.mp[2] = _mm512_and_si512(mn47, lo16);
    k.mp[3] = _mm512_and_si512(_mm512_srli_epi32(mn47, 8), lo16);
    return k;
}

/* acc + isum x (d x da) - minimums . sub-block sums x (dmin x da), for the
 * token whose prep words (sub-block sums in 16-bit pairs) are pw[0..3]. */
INLINE __m512 x16_k4_finish(const x16_k4_mins *k, __m512 acc, __m512i isum, const int32_t *pw, float d_act) {
    __m512i mm = _mm512_dpwssd_epi32(_mm512_setzero_si512(), k->mp[0], _mm512_set1_epi32(pw[0]));
    mm = _mm512_dpwssd_epi32(mm, k->mp[1], _mm512_set1_epi32(pw[1]));
    mm = _mm512_dpwssd_epi32(mm, k->mp[2], _mm512_set1_epi32(pw[2]));
    mm = _mm512_dpwssd_epi32(mm, k->mp[3], _mm512_set1_epi32(pw[3]));
    const __m512 da = _mm512_set1_ps(d_act);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(k->wd, da), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mm), _mm512_mul_ps(k->wdm, da), acc);
}

#endif
