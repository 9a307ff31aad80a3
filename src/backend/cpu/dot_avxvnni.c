/* The x16 Q4_0 / Q8_0 kernels with AVX-VNNI (256-bit vpdpbusd, VEX encoded;
 * compiled with -mavxvnni, called only when the CPU has it). The body is
 * x16_vnni256_body.h. */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

#define X16V_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define X16V_NAME(base) base##_avxvnni
#include "backend/cpu/x16_vnni256_body.h"

fitlm_dot_repacked_fn fitlm_dot_repacked_avxvnni(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0: return rep_q4_0_avxvnni;
    case FITLM_TYPE_Q8_0: return rep_q8_0_avxvnni;
    default: return NULL;
    }
}
