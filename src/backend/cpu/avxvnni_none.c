/* Built instead of dot_avxvnni.c when the compiler lacks -mavxvnni: no
 * AVX-VNNI kernels (the AVX2 ones run). */
#include "backend/cpu/quant_blocks.h"

fitlm_dot_repacked_fn fitlm_dot_repacked_avxvnni(int wtype) {
    (void)wtype;
    return NULL;
}
