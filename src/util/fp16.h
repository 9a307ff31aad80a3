/* IEEE half and bfloat16 <-> float conversions (bit-exact, round-to-nearest-even). */
#ifndef FITLM_UTIL_FP16_H
#define FITLM_UTIL_FP16_H

#include <stdint.h>
#include <string.h>

static inline float fitlm_fp32_from_bits(uint32_t w) {
    float f;
    memcpy(&f, &w, 4);
    return f;
}
static inline uint32_t fitlm_fp32_to_bits(float f) {
    uint32_t w;
    memcpy(&w, &f, 4);
    return w;
}

static inline float fitlm_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return fitlm_fp32_from_bits(bits);
}

static inline uint16_t fitlm_fp32_to_fp16(float f) {
    uint32_t x = fitlm_fp32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below smallest normal half (2^-14): subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 - (e-127) + 13 - 1 ... */
        uint32_t r = m >> (shift - 1 + 1);
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx + 0xc8000000u; /* rebias exponent: -112 << 23 */
    uint32_t mant_rem = r & 0x1fff;
    r >>= 13;
    if (mant_rem > 0x1000 || (mant_rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float fitlm_bf16_to_fp32(uint16_t h) {
    return fitlm_fp32_from_bits((uint32_t)h << 16);
}

static inline uint16_t fitlm_fp32_to_bf16(float f) {
    uint32_t x = fitlm_fp32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
