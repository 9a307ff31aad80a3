#include "format/ggml_type.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

/* Block layouts from the GGUF/ggml type definitions: elements per block and
 * bytes per block (scales included). */
static const fitlm_type_info k_types[FITLM_TYPE_GGML_COUNT] = {
    [FITLM_TYPE_F32] = {"F32", 1, 4, false},
    [FITLM_TYPE_F16] = {"F16", 1, 2, false},
    [FITLM_TYPE_Q4_0] = {"Q4_0", 32, 2 + 16, true},
    [FITLM_TYPE_Q4_1] = {"Q4_1", 32, 2 + 2 + 16, true},
    [FITLM_TYPE_Q5_0] = {"Q5_0", 32, 2 + 4 + 16, true},
    [FITLM_TYPE_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16, true},
    [FITLM_TYPE_Q8_0] = {"Q8_0", 32, 2 + 32, true},
    [FITLM_TYPE_Q8_1] = {"Q8_1", 32, 4 + 32, true},
    [FITLM_TYPE_Q2_K] = {"Q2_K", 256, 16 + 64 + 2 + 2, true},
    [FITLM_TYPE_Q3_K] = {"Q3_K", 256, 32 + 64 + 12 + 2, true},
    [FITLM_TYPE_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 128, true},
    [FITLM_TYPE_Q5_K] = {"Q5_K", 256, 2 + 2 + 12 + 32 + 128, true},
    [FITLM_TYPE_Q6_K] = {"Q6_K", 256, 128 + 64 + 16 + 2, true},
    [FITLM_TYPE_Q8_K] = {"Q8_K", 256, 4 + 256 + 32, true},
    [FITLM_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 2 + 64, true},
    [FITLM_TYPE_IQ2_XS] = {"IQ2_XS", 256, 2 + 64 + 8, true},
    [FITLM_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 2 + 96, true},
    [FITLM_TYPE_IQ1_S] = {"IQ1_S", 256, 2 + 32 + 16, true},
    [FITLM_TYPE_IQ4_NL] = {"IQ4_NL", 32, 2 + 16, true},
    [FITLM_TYPE_IQ3_S] = {"IQ3_S", 256, 2 + 64 + 8 + 32 + 4, true},
    [FITLM_TYPE_IQ2_S] = {"IQ2_S", 256, 2 + 64 + 16, true},
    [FITLM_TYPE_IQ4_XS] = {"IQ4_XS", 256, 2 + 2 + 4 + 128, true},
    [FITLM_TYPE_I8] = {"I8", 1, 1, false},
    [FITLM_TYPE_I16] = {"I16", 1, 2, false},
    [FITLM_TYPE_I32] = {"I32", 1, 4, false},
    [FITLM_TYPE_I64] = {"I64", 1, 8, false},
    [FITLM_TYPE_F64] = {"F64", 1, 8, false},
    [FITLM_TYPE_IQ1_M] = {"IQ1_M", 256, 32 + 16 + 8, true},
    [FITLM_TYPE_BF16] = {"BF16", 1, 2, false},
    [FITLM_TYPE_TQ1_0] = {"TQ1_0", 256, 2 + 4 * 13 , true},
    [FITLM_TYPE_TQ2_0] = {"TQ2_0", 256, 2 + 64, true},
    [FITLM_TYPE_MXFP4] = {"MXFP4", 32, 1 + 16, true},
};

static const fitlm_type_info k_u8 = {"U8", 1, 1, false};
static const fitlm_type_info k_f8e4m3 = {"F8_E4M3", 1, 1, false};
static const fitlm_type_info k_f8e5m2 = {"F8_E5M2", 1, 1, false};

const fitlm_type_info *fitlm_type_get(int type) {
    if (type >= 0 && type < FITLM_TYPE_GGML_COUNT) return k_types[type].name ? &k_types[type] : NULL;
    if (type == FITLM_TYPE_U8) return &k_u8;
    if (type == FITLM_TYPE_F8_E4M3) return &k_f8e4m3;
    if (type == FITLM_TYPE_F8_E5M2) return &k_f8e5m2;
    return NULL;
}

const char *fitlm_type_name(int type) {
    const fitlm_type_info *t = fitlm_type_get(type);
    return t ? t->name : "?";
}

int fitlm_type_from_name(const char *name) {
    if (!name) return FITLM_TYPE_INVALID;
    char up[32];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof up) return FITLM_TYPE_INVALID;
    for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)name[i]);
    for (int t = 0; t < FITLM_TYPE_GGML_COUNT; t++)
        if (k_types[t].name && strcmp(k_types[t].name, up) == 0) return t;
    if (strcmp(up, "U8") == 0) return FITLM_TYPE_U8;
    if (strcmp(up, "F8_E4M3") == 0) return FITLM_TYPE_F8_E4M3;
    if (strcmp(up, "F8_E5M2") == 0) return FITLM_TYPE_F8_E5M2;
    return FITLM_TYPE_INVALID;
}

uint64_t fitlm_type_row_bytes(int type, uint64_t n, bool *ok) {
    const fitlm_type_info *t = fitlm_type_get(type);
    if (ok) *ok = false;
    if (!t || n % t->block_size != 0) return 0;
    uint64_t blocks = n / t->block_size;
    if (blocks > UINT64_MAX / t->block_bytes) return 0;
    if (ok) *ok = true;
    return blocks * t->block_bytes;
}

double fitlm_type_bpw(int type) {
    const fitlm_type_info *t = fitlm_type_get(type);
    return t ? (double)t->block_bytes * 8.0 / (double)t->block_size : 0.0;
}

/* fp16 scale positions inside one block of each type (ggml's block layouts) */
int64_t fitlm_type_first_nonfinite_scale(int type, const void *data, uint64_t nbytes) {
    int off[2] = {-1, -1};
    bool f32 = false;
    switch (type) {
    case FITLM_TYPE_Q4_0:
    case FITLM_TYPE_Q5_0:
    case FITLM_TYPE_Q8_0: off[0] = 0; break;
    case FITLM_TYPE_Q4_1:
    case FITLM_TYPE_Q5_1:
    case FITLM_TYPE_Q8_1:
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q5_K: off[0] = 0, off[1] = 2; break;
    case FITLM_TYPE_Q2_K: off[0] = 80, off[1] = 82; break; /* scales[16], qs[64], d, dmin */
    case FITLM_TYPE_Q3_K: off[0] = 108; break;             /* hmask[32], qs[64], scales[12], d */
    case FITLM_TYPE_Q6_K: off[0] = 208; break;             /* ql[128], qh[64], scales[16], d */
    case FITLM_TYPE_Q8_K: off[0] = 0, f32 = true; break;
    default: return -1;
    }
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti || !ti->block_bytes) return -1;
    const uint8_t *p = data;
    uint64_t nb = nbytes / ti->block_bytes;
    for (uint64_t b = 0; b < nb; b++, p += ti->block_bytes)
        for (int k = 0; k < 2 && off[k] >= 0; k++) {
            if (f32) {
                /* exponent all ones: Inf or NaN */
                if ((p[off[k] + 3] & 0x7f) == 0x7f && (p[off[k] + 2] & 0x80)) return (int64_t)b;
            } else if ((p[off[k] + 1] & 0x7c) == 0x7c) { /* fp16 exponent all ones */
                return (int64_t)b;
            }
        }
    return -1;
}
