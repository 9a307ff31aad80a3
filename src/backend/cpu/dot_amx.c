/* The x16 Q4_0 / Q8_0 kernels on Intel AMX (Advanced Matrix Extensions,
 * AMX-TILE + AMX-INT8: Sapphire Rapids and later Xeons), for 16 tokens at a
 * time (prompts, and decode steps of 16 or more sequences). Compiled with
 * -mamx-tile -mamx-int8 and the AVX-512 flags, called only when
 * fitlm_cpu_has_amx_int8() (the CPU has it and Linux granted this process the
 * tile data state).
 *
 * The x16 layout (kernels.h) is already the layout of an AMX B operand: a
 * group's 64-byte code vectors hold 4 consecutive codes of each of the 16
 * rows, and a B tile row is exactly that (K/4 rows of 16 columns x 4 bytes).
 * Per block (32 columns) of a group, one tile multiply takes the 16 tokens'
 * codes (A: 16 rows of 32 signed bytes, straight from the ACT_Q8 rows) times
 * the group's codes (B: 8 rows of 64 bytes; Q8_0's signed codes read from the
 * weights in place, Q4_0's nibbles unpacked to bytes first) into a 16 x 16
 * tile of int32 sums, one per token and weight row. The block's sums then go
 * through the same float steps as the AVX-512 VNNI kernel (dot_avx512.c,
 * x16_body): Q4_0 adds the per-token offset (-8 x the block's activation sum)
 * in integers, then per token acc = fma(float(sum), wscale x ascale, acc).
 * The integer sums are exact in both kernels and the float steps are the
 * same operations in the same order, so the two give the same bits: a row's
 * result does not depend on whether its token was one of 16 (AMX) or of the
 * remainder (VNNI), which is what makes results independent of batching. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"

#define INLINE static inline __attribute__((always_inline))

/* The tile configuration (palette 1): three pairs of the tokens' codes (16
 * rows of 32 bytes: tiles 0, 2, 4) and the weights' codes (8 rows of 64
 * bytes: tiles 1, 3, 5), and two tiles of sums (16 tokens x 16 int32: 6, 7). */
typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

static void amx_configure(void) {
    _Alignas(64) amx_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int k = 0; k < 3; k++) {
        c.rows[2 * k] = FITLM_AMX_TOKENS;
        c.colsb[2 * k] = 32;
        c.rows[2 * k + 1] = 8;
        c.colsb[2 * k + 1] = 64;
    }
    for (int k = 6; k < 8; k++) {
        c.rows[k] = FITLM_AMX_TOKENS;
        c.colsb[k] = 64;
    }
    _tile_loadconfig(&c);
}

/* Q4_0: the 4 code vectors of a group hold columns i (low nibble) and i + 16
 * (high) in byte i of each lane: B rows 0-3 are the low nibbles (columns
 * 0-15), rows 4-7 the high ones (16-31). */
INLINE void unpack_q4_0(const uint8_t *codes, uint8_t *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int m = 0; m < 4; m++) {
        __m512i raw = _mm512_loadu_si512(codes + 64 * m);
        _mm512_store_si512(b + 64 * m, _mm512_and_si512(raw, m4));
        _mm512_store_si512(b + 64 * (m + 4), _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4));
    }
}

/* The sums of one block (cbuf: 16 tokens x 16 rows of int32) into the
 * accumulators, as x16_body does it for one token at a time. */
INLINE void amx_epilogue(int wtype, __m512 *acc, const int32_t *cbuf, const uint8_t *g, const float *const *ad,
                         const int32_t *const *off, int64_t b) {
    const __m512 wsc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
#pragma GCC unroll 16
    for (int t = 0; t < FITLM_AMX_TOKENS; t++) {
        __m512i s = _mm512_load_si512(cbuf + 16 * t);
        if (wtype == FITLM_TYPE_Q4_0) s = _mm512_add_epi32(s, _mm512_set1_epi32(off[t][b]));
        __m512 sc = _mm512_mul_ps(wsc, _mm512_set1_ps(ad[t][b]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[t]);
    }
}

/* Q4_0's nibbles are unpacked AMX_AHEAD blocks before their multiply into a
 * ring of 8 block buffers: a tile load of bytes that are still in the store
 * buffer waits for them to reach the cache (unpacking each block right
 * before its multiply made Q4_0 slower on AMX than on VNNI). */
#define AMX_AHEAD 6

/* One block step (tile numbers must be literal tokens): tiles TA (tokens),
 * TB (weights), TC (sums), stored to cbuf[bb & 3]. */
#define AMX_BLOCK_STEP(TA, TB, TC, bb)                                                                          \
    do {                                                                                                           \
        const uint8_t *gs = w0 + (size_t)(bb) * gbytes;                                                            \
        fitlm_repacked_prefetch(gs, gbytes, 2, 2);                                                                 \
        _tile_loadd(TA, act + 32 * (bb), astride);                                                                 \
        if (wtype == FITLM_TYPE_Q4_0) {                                                                            \
            if ((bb) + AMX_AHEAD < nb) unpack_q4_0(gs + AMX_AHEAD * gbytes + 32, ring[((bb) + AMX_AHEAD) & 7]);   \
            _tile_loadd(TB, ring[(bb) & 7], 64);                                                                   \
            _tile_zero(TC);                                                                                        \
            _tile_dpbsud(TC, TA, TB);                                                                              \
        } else {                                                                                                   \
            _tile_loadd(TB, gs + 32, 64);                                                                          \
            _tile_zero(TC);                                                                                        \
            _tile_dpbssd(TC, TA, TB);                                                                              \
        }                                                                                                          \
        _tile_stored(TC, cbuf[(bb) & 3], 64);                                                                      \
    } while (0)

/* Block bb on tile pair bb % 3 and sums tile 6 + (bb & 1): a tile is loaded
 * again only after the multiply two or three blocks back that read it. */
#define AMX_STEP(bb)                                                                                               \
    do {                                                                                                           \
        switch ((bb) % 6) {                                                                                        \
        case 0: AMX_BLOCK_STEP(0, 1, 6, bb); break;                                                                \
        case 1: AMX_BLOCK_STEP(2, 3, 7, bb); break;                                                                \
        case 2: AMX_BLOCK_STEP(4, 5, 6, bb); break;                                                                \
        case 3: AMX_BLOCK_STEP(0, 1, 7, bb); break;                                                                \
        case 4: AMX_BLOCK_STEP(2, 3, 6, bb); break;                                                                \
        default: AMX_BLOCK_STEP(4, 5, 7, bb); break;                                                               \
        }                                                                                                          \
    } while (0)

/* Blocks in flight: block b's sums are read out (a tile store, then vector
 * loads of it, which wait for the store to reach the cache) after the
 * multiplies of blocks b + 1 .. b + AMX_LAG were issued. On this host
 * (2 vCPUs of a Xeon with AMX) the kernel runs 1024 x 2048 matrices times 256
 * tokens at about 510 (Q8_0) and 465 (Q4_0) GFLOP/s per core against the
 * VNNI kernel's 350: the tile store and reload of every block's 16 x 16
 * sums (the block scales keep them apart) bound it, not the multiplies. */
#define AMX_LAG 3

INLINE void amx_body(int wtype, int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a,
                     size_t astride, const void *prep, size_t pstride, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    const size_t gbytes = wtype == FITLM_TYPE_Q4_0 ? 288 : 544;
    _Alignas(64) int32_t cbuf[4][16 * FITLM_AMX_TOKENS];
    _Alignas(64) uint8_t ring[8][512];
    const float *ad[FITLM_AMX_TOKENS];
    const int32_t *off[FITLM_AMX_TOKENS];
    for (int t = 0; t < FITLM_AMX_TOKENS; t++) {
        const uint8_t *row = (const uint8_t *)a + (size_t)t * astride;
        ad[t] = act_q8_d(row, nb);
        off[t] = (const int32_t *)((const uint8_t *)prep + (size_t)t * pstride);
    }
    const int8_t *act = act_q8_qs(a);
    amx_configure();
    for (int64_t grp = 0; grp < ngroups; grp++) {
        const uint8_t *w0 = (const uint8_t *)w + (size_t)grp * gstride;
        __m512 acc[FITLM_AMX_TOKENS];
        for (int t = 0; t < FITLM_AMX_TOKENS; t++) acc[t] = _mm512_setzero_ps();
        if (wtype == FITLM_TYPE_Q4_0)
            for (int64_t k = 0; k < AMX_AHEAD && k < nb; k++) unpack_q4_0(w0 + (size_t)k * gbytes + 32, ring[k]);
        for (int64_t k = 0; k < AMX_LAG && k < nb; k++) AMX_STEP(k);
        for (int64_t b = 0; b < nb; b++) {
            if (b + AMX_LAG < nb) AMX_STEP(b + AMX_LAG);
            amx_epilogue(wtype, acc, cbuf[b & 3], w0 + (size_t)b * gbytes, ad, off, b);
        }
        float *o = out + (size_t)grp * FITLM_REPACK_ROWS;
        for (int t = 0; t < FITLM_AMX_TOKENS; t++) _mm512_storeu_ps(o + (size_t)t * ostride, acc[t]);
    }
    _tile_release();
}

static void amx_q4_0(int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a, size_t astride,
                     const void *prep, size_t pstride, float *out, size_t ostride) {
    amx_body(FITLM_TYPE_Q4_0, cols, w, ngroups, gstride, a, astride, prep, pstride, out, ostride);
}

static void amx_q8_0(int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a, size_t astride,
                     const void *prep, size_t pstride, float *out, size_t ostride) {
    amx_body(FITLM_TYPE_Q8_0, cols, w, ngroups, gstride, a, astride, prep, pstride, out, ostride);
}

fitlm_dot_amx_fn fitlm_dot_repacked_amx(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0: return amx_q4_0;
    case FITLM_TYPE_Q8_0: return amx_q8_0;
    default: return NULL;
    }
}
