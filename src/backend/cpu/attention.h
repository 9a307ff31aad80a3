/* Attention of several queries that share one KV head, for the SIMD paths
 * (attention_avx512.c); the CPU backend's generic path is in backend_cpu.c. */
#ifndef FITLM_BACKEND_CPU_ATTENTION_H
#define FITLM_BACKEND_CPU_ATTENTION_H

#include <stdint.h>

/* Up to 16 queries ("lanes") against the cache rows of one KV head. Lane l
 * attends positions lo[l]..hi[l] (inclusive) of one sequence with query q[l]
 * (D floats) and writes out[l] (D floats); plo..phi covers every lane's range.
 * Position p lives in cache slot table[p >> block_shift] << block_shift |
 * (p & (block size - 1)); slots are row_bytes apart from k_base / v_base, of
 * kv_type (F32, F16, Q8_0), the head's slice starting at element off. scratch: fitlm_att_lanes_scratch
 * floats, 64-byte aligned, owned by the caller. */
typedef struct fitlm_att_lanes {
    int n_lanes;
    int64_t D;
    const float *q[16];
    float *out[16];
    int64_t lo[16], hi[16];
    int64_t plo, phi;
    const uint8_t *k_base, *v_base;
    const int32_t *table;
    int block_shift;
    int kv_type;
    uint64_t row_bytes;
    int64_t off;
    float scale;
    float *scratch;
} fitlm_att_lanes;

/* Floats of scratch for n_pos positions and head size D. */
static inline int64_t fitlm_att_lanes_scratch(int64_t n_pos, int64_t D) {
    return D * 16 + ((n_pos + 7) & ~(int64_t)7) * 16 + 8 * D;
}

/* True when fitlm_attention_lanes_avx512 takes head size D (a multiple of 16
 * up to 256). */
static inline int fitlm_att_lanes_ok(int64_t D) {
    return D > 0 && D % 16 == 0 && D <= 256;
}

/* The cache slot of position p of the lanes' sequence. */
static inline int64_t fitlm_att_slot(const fitlm_att_lanes *a, int64_t p) {
    return ((int64_t)a->table[p >> a->block_shift] << a->block_shift) | (p & (((int64_t)1 << a->block_shift) - 1));
}

/* The first byte of position p's row (its slot's slice of this head) in the
 * F16 cache at base. */
static inline const uint16_t *fitlm_att_f16_row(const fitlm_att_lanes *a, const uint8_t *base, int64_t p) {
    return (const uint16_t *)(base + (uint64_t)fitlm_att_slot(a, p) * a->row_bytes) + a->off;
}

/* Asks for the F16 rows of positions p0+16 .. p0+23 (those up to phi): a
 * cache row is one head's slice of a slot, slots are paged, and the SIMD
 * kernels' walk over them missed DRAM on every row otherwise. */
static inline void fitlm_att_prefetch_f16_ahead(const fitlm_att_lanes *a, const uint8_t *base, int64_t p0) {
    for (int r = 0; r < 8; r++) {
        int64_t pp = p0 + 16 + r;
        if (pp > a->phi) break;
        const char *row = (const char *)fitlm_att_f16_row(a, base, pp);
        for (int64_t b = 0; b < a->D * 2; b += 64) __builtin_prefetch(row + b, 0, 3);
    }
}

/* Positions p0 .. p0+m-1 (m <= 8) of the lanes' sequence from the cache at
 * base (K or V) as floats, row r at buf + r*D; rows m..7 zero. (The SIMD
 * kernels convert F16 rows inline, with the same exact conversion.) */
void fitlm_att_load_rows(const fitlm_att_lanes *a, const uint8_t *base, int64_t p0, int m, float *buf);

/* Softmax(scale x K . q) V for each lane; call only with AVX-512 active. */
void fitlm_attention_lanes_avx512(const fitlm_att_lanes *a);
/* The same for up to 8 lanes with AVX2 + FMA (head size a multiple of 8 up
 * to 256; the scratch above is enough); call only with AVX2 active. */
void fitlm_attention_lanes_avx2(const fitlm_att_lanes *a);
static inline int fitlm_att_lanes8_ok(int64_t D) {
    return D > 0 && D % 8 == 0 && D <= 256;
}

#endif
