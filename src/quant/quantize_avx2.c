/* The K-type sub-block searches (quant_search_impl.h) compiled with AVX2:
 * same source and operation order as the generic build in quantize.c, so the
 * blocks are bit-identical; the compiler vectorizes the candidate loops over
 * 8 lanes instead of 4. */
#include "quant/quant_search.h"

#define QS_FN(name) fitlm_##name##_avx2
#define QS_STORAGE
#include "quant/quant_search_impl.h"
