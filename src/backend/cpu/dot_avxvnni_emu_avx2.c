/* The AVX-VNNI x16 kernels (x16_vnni256_body.h) with vpdpbusd emulated
 * exactly in AVX2, for testing that code on CPUs without AVX-VNNI (this file
 * is compiled with the AVX2 flags). Each 32-bit lane gets u0 s0 + u1 s1 + u2
 * s2 + u3 s3 added without saturation: the even and odd bytes widened to 16
 * bits (u zero-, s sign-extended) and multiplied in pairs by vpmaddwd, whose
 * 32-bit sums cannot overflow (|2 x 255 x 128| < 2^31). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

static inline __attribute__((always_inline)) __m256i dpbusd_emulated(__m256i acc, __m256i u, __m256i s) {
    const __m256i lo = _mm256_set1_epi16(0x00ff);
    __m256i u_even = _mm256_and_si256(u, lo), u_odd = _mm256_srli_epi16(u, 8);
    __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
    __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd));
    return _mm256_add_epi32(acc, sum);
}

#define X16V_DPBUSD(acc, u, s) dpbusd_emulated((acc), (u), (s))
#define X16V_NAME(base) base##_avxvnni_emu
#include "backend/cpu/x16_vnni256_body.h"

fitlm_dot_repacked_fn fitlm_dot_repacked_avxvnni_emu(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0: return rep_q4_0_avxvnni_emu;
    case FITLM_TYPE_Q8_0: return rep_q8_0_avxvnni_emu;
    default: return NULL;
    }
}
