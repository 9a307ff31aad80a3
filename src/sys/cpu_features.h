/* What this CPU can run: features that __builtin_cpu_supports does not name
 * on every compiler (clang 14 lacks "f16c"), read from CPUID directly, and
 * the kernel family (ISA) every SIMD path of fitlm (CPU kernels, quantizer
 * searches) chooses by. */
#ifndef FITLM_SYS_CPU_FEATURES_H
#define FITLM_SYS_CPU_FEATURES_H

#include <stdbool.h>

/* F16C (half <-> float conversion instructions): CPUID leaf 1, ECX bit 29. */
bool fitlm_cpu_has_f16c(void);
/* AVX512_BF16 (vdpbf16ps): checked on its own, the AVX-512 level does not
 * require it. */
bool fitlm_cpu_has_avx512bf16(void);
/* AVX-VNNI (the 256-bit, VEX-encoded vpdpbusd of Intel Alder Lake and later
 * and AMD Zen 5, often without AVX-512): CPUID.(EAX=7,ECX=1):EAX bit 4, with
 * AVX2. The AVX2 kernel family uses it for the x16 Q4_0 / Q8_0 kernels. */
bool fitlm_cpu_has_avxvnni(void);

/* The CPUID vendor string is "GenuineIntel" (a tuning choice of the
 * kernels: software prefetch at one token row, quant_blocks.h). */
bool fitlm_cpu_vendor_intel(void);

/* AMX-INT8 (Intel Sapphire Rapids and later: tile multiplies of int8
 * matrices) usable by this process: the CPU has it, the OS saves the tile
 * state, and (Linux) the process was granted it (asked on the first call).
 * The AVX-512 family uses it for the x16 Q4_0 / Q8_0 kernels of 16 tokens. */
bool fitlm_cpu_has_amx_int8(void);
/* AMX-BF16 (tile multiplies of bfloat16 pairs into float32) usable, with
 * AVX512_BF16: the repacked BF16 matmuls run on it at every token count. */
bool fitlm_cpu_has_amx_bf16(void);

/* Which kernel family fitlm's CPU kernels and quantizer searches use: detected once, overridable by
 * FITLM_CPU_KERNELS=scalar|avx2|avx512 (for tests and benchmarks). */
typedef enum fitlm_cpu_isa {
    FITLM_ISA_SCALAR = 0,
    FITLM_ISA_AVX2 = 1,
    FITLM_ISA_AVX512 = 2,
} fitlm_cpu_isa;

fitlm_cpu_isa fitlm_cpu_isa_detect(void);
fitlm_cpu_isa fitlm_cpu_isa_active(void);
void fitlm_cpu_isa_set(fitlm_cpu_isa isa); /* clamps to what the CPU supports */
const char *fitlm_cpu_isa_name(fitlm_cpu_isa isa);

#endif
