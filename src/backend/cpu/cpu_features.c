#include "backend/cpu/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

bool fitlm_cpu_has_avx512bf16(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, (unsigned *)0) < 7) return false;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1u; /* CPUID.(EAX=7,ECX=1):EAX bit 5 */
#else
    return false;
#endif
}

bool fitlm_cpu_has_f16c(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c >> 29) & 1u;
#else
    return false;
#endif
}
