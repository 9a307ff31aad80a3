/* The AVX2 path of fitlm_logsumexp (sampler.h): compiled with -mavx2 -mfma. */
#include <immintrin.h>
#include <math.h>

#include "runtime/sampler.h"
#include "util/exp_avx2.h"

double fitlm_logsumexp_avx2(const float *x, size_t n) {
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm); /* a NaN x is skipped */
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++)
        if (lanes[k] > mx) mx = lanes[k];
    for (size_t k = i; k < n; k++)
        if (x[k] > mx) mx = x[k];
    if (!(mx > -INFINITY)) return mx; /* every value -inf (or NaN): the scalar path's answer too */
    const __m256 m = _mm256_set1_ps(mx);
    __m256d z0 = _mm256_setzero_pd(), z1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        z0 = _mm256_add_pd(z0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        z1 = _mm256_add_pd(z1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double zl[4];
    _mm256_storeu_pd(zl, _mm256_add_pd(z0, z1));
    double z = (zl[0] + zl[1]) + (zl[2] + zl[3]);
    for (; i < n; i++) z += exp((double)x[i] - mx);
    return mx + log(z);
}
