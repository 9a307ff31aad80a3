#include "sys/cpu_features.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
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

bool fitlm_cpu_has_avxvnni(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, (unsigned *)0) < 7) return false;
    __cpuid_count(7, 1, a, b, c, d);
    return ((a >> 4) & 1u) && fitlm_cpu_isa_detect() >= FITLM_ISA_AVX2;
#else
    return false;
#endif
}

bool fitlm_cpu_vendor_intel(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* "Genu" "ineI" "ntel" */
#else
    return false;
#endif
}

/* AMX: CPUID.(EAX=7,ECX=0):EDX bits 24 (AMX-TILE), 25 (AMX-INT8) and 22
 * (AMX-BF16), the OS managing the tile state (XCR0 bits 17 and 18), and on
 * Linux this process's permission to use the tile data (arch_prctl
 * ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, asked once; it covers every
 * thread of the process). Bit 0 of the result: AMX-INT8 usable, bit 1:
 * AMX-BF16. */
static int amx_probe(void) {
#if defined(__linux__) && defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, (unsigned *)0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int have = (((d >> 25) & 1u) ? 1 : 0) | (((d >> 22) & 1u) ? 2 : 0);
    if (!((d >> 24) & 1u) || !have) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & (3u << 17)) != (3u << 17)) return 0;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) return 0;
    return have;
#else
    return 0;
#endif
}

static int amx_usable(void) {
    static atomic_int have = -1;
    int v = atomic_load(&have);
    if (v < 0) {
        v = amx_probe();
        atomic_store(&have, v);
    }
    return v;
}

bool fitlm_cpu_has_amx_int8(void) {
    return (amx_usable() & 1) != 0;
}

bool fitlm_cpu_has_amx_bf16(void) {
    return (amx_usable() & 2) != 0 && fitlm_cpu_has_avx512bf16();
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

/* ---- the kernel family (ISA) ---- */

fitlm_cpu_isa fitlm_cpu_isa_detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        fitlm_cpu_has_f16c())
        return FITLM_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && fitlm_cpu_has_f16c())
        return FITLM_ISA_AVX2;
#endif
    return FITLM_ISA_SCALAR;
}

static atomic_int g_isa = -1;

void fitlm_cpu_isa_set(fitlm_cpu_isa isa) {
    fitlm_cpu_isa hw = fitlm_cpu_isa_detect();
    if ((int)isa < 0) isa = FITLM_ISA_SCALAR;
    if (isa > hw) isa = hw;
    atomic_store(&g_isa, (int)isa);
}

fitlm_cpu_isa fitlm_cpu_isa_active(void) {
    int v = atomic_load(&g_isa);
    if (v >= 0) return (fitlm_cpu_isa)v;
    fitlm_cpu_isa isa = fitlm_cpu_isa_detect();
    const char *env = getenv("FITLM_CPU_KERNELS");
    if (env && *env) {
        fitlm_cpu_isa want = isa;
        if (strcmp(env, "scalar") == 0) want = FITLM_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0) want = FITLM_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0) want = FITLM_ISA_AVX512;
        if (want < isa) isa = want;
    }
    atomic_store(&g_isa, (int)isa);
    return isa;
}

const char *fitlm_cpu_isa_name(fitlm_cpu_isa isa) {
    switch (isa) {
    case FITLM_ISA_SCALAR: return "scalar";
    case FITLM_ISA_AVX2: return "avx2";
    case FITLM_ISA_AVX512: return "avx512";
    }
    return "?";
}
