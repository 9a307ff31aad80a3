/* Reference quantizers (float -> GGUF blocks). */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

int64_t fitlm_quantize_row(int type, const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)src;
    (void)dst;
    (void)n;
    (void)imatrix;
    (void)type;
    return -1;
}
