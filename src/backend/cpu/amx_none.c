/* Built instead of dot_amx.c when the compiler lacks -mamx-int8: no AMX
 * kernels (the AVX-512 VNNI ones run). */
#include "backend/cpu/quant_blocks.h"

fitlm_dot_amx_fn fitlm_dot_repacked_amx(int wtype) {
    (void)wtype;
    return NULL;
}
