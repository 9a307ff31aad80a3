/* AVX2 read loop for the bandwidth measurement: four independent 32-byte
 * load streams per 128 bytes, folded with xor so nothing is stored. */
#include <immintrin.h>

#include "sys/membw.h"

unsigned long long fitlm_membw_read_avx2(const void *p, size_t bytes) {
    const __m256i *v = p;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t n = bytes / 128;
    for (size_t i = 0; i < n; i++) {
        a = _mm256_xor_si256(a, _mm256_load_si256(v + 4 * i + 0));
        b = _mm256_xor_si256(b, _mm256_load_si256(v + 4 * i + 1));
        c = _mm256_xor_si256(c, _mm256_load_si256(v + 4 * i + 2));
        d = _mm256_xor_si256(d, _mm256_load_si256(v + 4 * i + 3));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    __m128i s = _mm_xor_si128(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    return (unsigned long long)_mm_cvtsi128_si64(s) ^ (unsigned long long)_mm_extract_epi64(s, 1);
}
