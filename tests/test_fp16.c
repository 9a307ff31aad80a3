/* Half-precision conversions checked against the CPU's own F16C instructions
 * (an independent implementation): every one of the 65536 halves, and float ->
 * half round-to-nearest-even on edge cases and a million random floats. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "util/fp16.h"

__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) {
    return _cvtsh_ss(h);
}
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) { /* F16C ships with every AVX2 CPU */
        printf("SKIP: CPU without F16C\n");
        return 77;
    }
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = fitlm_fp16_to_fp32((uint16_t)h), b = hw_h2f((uint16_t)h);
        uint32_t ab = fitlm_fp32_to_bits(a), bb = fitlm_fp32_to_bits(b);
        int nan = (a != a) && (b != b);
        if (ab != bb && !nan) bad++;
    }
    CHECK(bad == 0, "%d halves decode differently", bad);

    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) { /* halves and midpoints between neighbours */
        float f = hw_h2f((uint16_t)h);
        if (f != f) continue;
        uint16_t x = fitlm_fp32_to_fp16(f);
        if (x != (uint16_t)h) bad++;
        float g = fitlm_fp32_from_bits(fitlm_fp32_to_bits(f) + 0x1000); /* exact midpoint for normals */
        if (g == g && fitlm_fp32_to_fp16(g) != hw_f2h(g)) bad++;
    }
    CHECK(bad == 0, "%d round trips/midpoints differ", bad);

    bad = 0;
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = next_u32();
        float f = fitlm_fp32_from_bits(bits);
        if (f != f) continue;
        if (fitlm_fp32_to_fp16(f) != hw_f2h(f)) bad++;
    }
    CHECK(bad == 0, "%d random floats round differently", bad);

    /* bf16: truncation of exactly representable values, ties to even */
    CHECK(fitlm_bf16_to_fp32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(fitlm_fp32_to_bf16(1.0f) == 0x3f80, "bf16 from 1.0");
    CHECK(fitlm_fp32_to_bf16(fitlm_fp32_from_bits(0x3f808000)) == 0x3f80, "bf16 tie to even (down)");
    CHECK(fitlm_fp32_to_bf16(fitlm_fp32_from_bits(0x3f818000)) == 0x3f82, "bf16 tie to even (up)");
    return check_report();
}
