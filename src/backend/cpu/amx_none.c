/* Built instead of dot_amx.c when the compiler lacks -mamx-tile, -mamx-int8
 * or -mamx-bf16: no AMX kernels (the AVX-512 VNNI ones run). */
#include "backend/cpu/quant_blocks.h"

fitlm_dot_amx_fn fitlm_dot_repacked_amx(int wtype) {
    (void)wtype;
    return NULL;
}
