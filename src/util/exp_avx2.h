/* e^x in 8 float lanes for the AVX2 files (include only from code compiled
 * with -mavx2 -mfma). */
#ifndef FITLM_UTIL_EXP_AVX2_H
#define FITLM_UTIL_EXP_AVX2_H

#include <immintrin.h>

/* e^x in 8 lanes: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts so
 * n ln2 is exact), e^r by a degree-6 polynomial (the classic single-precision
 * minimax coefficients; about 1 ulp), times 2^n built in the exponent bits.
 * x is clamped to [-87.3, 88.37] so 2^n stays a normal float: results below
 * e^-87.3 (1.2e-38) come out as 1.2e-38 instead of a subnormal or 0, above
 * e^88.37 as 2.4e38 instead of inf. NaN stays NaN. */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.37626f), x); /* operand order: a NaN x is kept */
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

#endif
