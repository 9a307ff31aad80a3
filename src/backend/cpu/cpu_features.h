/* CPU features that __builtin_cpu_supports does not name on every compiler
 * (clang 14 lacks "f16c"), read from CPUID directly. */
#ifndef FITLM_BACKEND_CPU_CPU_FEATURES_H
#define FITLM_BACKEND_CPU_CPU_FEATURES_H

#include <stdbool.h>

/* F16C (half <-> float conversion instructions): CPUID leaf 1, ECX bit 29. */
bool fitlm_cpu_has_f16c(void);
/* AVX512_BF16 (vdpbf16ps): checked on its own, the AVX-512 level does not
 * require it. */
bool fitlm_cpu_has_avx512bf16(void);

#endif
