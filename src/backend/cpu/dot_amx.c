/* The x16 Q4_0 / Q8_0 kernels on Intel AMX (Advanced Matrix Extensions,
 * AMX-TILE + AMX-INT8: Sapphire Rapids and later Xeons), for 16 tokens at a
 * time (prompts, and decode steps of 16 or more sequences). Compiled with
 * -mamx-tile -mamx-int8 and the AVX-512 flags, called only when
 * fitlm_cpu_has_amx_int8() (the CPU has it and Linux granted this process the
 * tile data state).
 *
 * BF16 runs on AMX-BF16 (amx_bf16 below), every token count.
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
#include "backend/cpu/x16_k4_avx512.h"

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

/* Q4_K / Q5_K: sub-block s of a super-block group (2304 / 2816 bytes, see
 * dot_avx512.c x16_q4_k_body): code vectors 8(s / 2) + u hold its columns
 * 4u..4u+3 in the low (s even) or high (s odd) nibbles, Q5_K's fifth bits
 * are bit s of the qh vectors: B row u. */
INLINE void unpack_q45_k(int q5, const uint8_t *g, int s, uint8_t *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    const uint8_t *cv = g + (q5 ? 768 : 256) + 512 * (s / 2);
    for (int u = 0; u < 8; u++) {
        __m512i raw = _mm512_loadu_si512(cv + 64 * u);
        __m512i c = _mm512_and_si512(s % 2 ? _mm512_srli_epi16(raw, 4) : raw, m4);
        if (q5) {
            __m512i qh = _mm512_loadu_si512(g + 256 + 64 * u);
            qh = s <= 4 ? _mm512_slli_epi16(qh, 4 - s) : _mm512_srli_epi16(qh, s - 4);
            c = _mm512_ternarylogic_epi32(c, qh, bit4, 0xF8); /* c | (qh & bit4) */
        }
        _mm512_store_si512(b + 64 * u, c);
    }
}

/* The 32-column units of a group: Q4_0 / Q8_0 blocks, Q4_K / Q5_K
 * sub-blocks. Unpacked codes (Q4_0, the K types) are written AMX_AHEAD units
 * before their multiply into a ring of 8 unit buffers: a tile load of bytes
 * that are still in the store buffer waits for them to reach the cache
 * (unpacking each unit right before its multiply made Q4_0 slower on AMX
 * than on VNNI). */
#define AMX_AHEAD 6

typedef struct {
    int wtype, q5;
    int64_t nunits;
    size_t gbytes;
    const uint8_t *w0;   /* the group */
    const uint8_t *a;    /* token 0's activation row */
    uint8_t (*ring)[512];
} amx_walk;

/* Unpacks unit i (where its type needs it). */
INLINE void amx_unpack(const amx_walk *wk, int64_t i) {
    if (wk->wtype == FITLM_TYPE_Q4_0) unpack_q4_0(wk->w0 + (size_t)i * wk->gbytes + 32, wk->ring[i & 7]);
    else if (wk->wtype != FITLM_TYPE_Q8_0)
        unpack_q45_k(wk->q5, wk->w0 + (size_t)(i / 8) * wk->gbytes, (int)(i % 8), wk->ring[i & 7]);
}

/* The tile operands of unit i: the 16 tokens' codes (ap, rows astride apart)
 * and the group's codes (bp, 64-byte rows); unpacks unit i + AMX_AHEAD. */
INLINE void amx_operands(const amx_walk *wk, int64_t i, const void **ap, const void **bp) {
    if (wk->wtype == FITLM_TYPE_Q4_0 || wk->wtype == FITLM_TYPE_Q8_0) {
        const uint8_t *g = wk->w0 + (size_t)i * wk->gbytes;
        fitlm_repacked_prefetch(g, wk->gbytes, 2, 2);
        *ap = wk->a + 32 * i; /* ACT_Q8: the codes of all blocks first */
        *bp = wk->wtype == FITLM_TYPE_Q8_0 ? (const void *)(g + 32) : (const void *)wk->ring[i & 7];
    } else {
        if (i % 8 == 0) fitlm_repacked_prefetch(wk->w0 + (size_t)(i / 8) * wk->gbytes, wk->gbytes, 2, 1);
        *ap = ((const act_q8k *)wk->a)[i / 8].qs + 32 * (i % 8);
        *bp = wk->ring[i & 7];
    }
    if (wk->wtype != FITLM_TYPE_Q8_0 && i + AMX_AHEAD < wk->nunits) amx_unpack(wk, i + AMX_AHEAD);
}

/* One unit's multiply (tile numbers must be literal tokens): tiles TA
 * (tokens), TB (weights), TC (sums), stored to cbuf[i & 3]. Q8_0's codes are
 * signed (tdpbssd), the unpacked nibbles unsigned (tdpbsud). */
#define AMX_TILES(TA, TB, TC, i)                                                                                   \
    do {                                                                                                           \
        const void *ap_, *bp_;                                                                                     \
        amx_operands(&wk, (i), &ap_, &bp_);                                                                        \
        _tile_loadd(TA, ap_, astride);                                                                             \
        _tile_loadd(TB, bp_, 64);                                                                                  \
        _tile_zero(TC);                                                                                            \
        if (wtype == FITLM_TYPE_Q8_0) _tile_dpbssd(TC, TA, TB);                                                    \
        else _tile_dpbsud(TC, TA, TB);                                                                             \
        _tile_stored(TC, cbuf[(i) & 3], 64);                                                                       \
    } while (0)

/* Unit i on tile pair i % 3 and sums tile 6 + (i & 1): a tile is loaded
 * again only after the multiply two or three units back that read it. */
#define AMX_STEP(i)                                                                                                \
    do {                                                                                                           \
        switch ((i) % 6) {                                                                                         \
        case 0: AMX_TILES(0, 1, 6, i); break;                                                                      \
        case 1: AMX_TILES(2, 3, 7, i); break;                                                                      \
        case 2: AMX_TILES(4, 5, 6, i); break;                                                                      \
        case 3: AMX_TILES(0, 1, 7, i); break;                                                                      \
        case 4: AMX_TILES(2, 3, 6, i); break;                                                                      \
        default: AMX_TILES(4, 5, 7, i); break;                                                                     \
        }                                                                                                          \
    } while (0)

/* Units in flight: unit i's sums are read out (a tile store, then vector
 * loads of it, which wait for the store to reach the cache) after the
 * multiplies of units i + 1 .. i + AMX_LAG were issued. On this host
 * (2 vCPUs of a Xeon with AMX) the kernel runs 1024 x 2048 matrices times 256
 * tokens at about 510 (Q8_0) and 465 (Q4_0) GFLOP/s per core against the
 * VNNI kernel's 350: the tile store and reload of every block's 16 x 16
 * sums (the block scales keep them apart) bound it, not the multiplies. */
#define AMX_LAG 3

/* Starts group grp: its accumulators zeroed, its first units unpacked and
 * multiplied. */
#define AMX_GROUP_START(grp)                                                                                       \
    do {                                                                                                           \
        wk.w0 = (const uint8_t *)w + (size_t)(grp) * gstride;                                                      \
        for (int t_ = 0; t_ < FITLM_AMX_TOKENS; t_++) acc[t_] = _mm512_setzero_ps();                               \
        for (int64_t k_ = 0; k_ < AMX_AHEAD && k_ < wk.nunits; k_++) amx_unpack(&wk, k_);                         \
        for (int64_t k_ = 0; k_ < AMX_LAG && k_ < wk.nunits; k_++) AMX_STEP(k_);                                  \
    } while (0)

INLINE void amx_body(int wtype, int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a,
                     size_t astride, const void *prep, size_t pstride, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    _Alignas(64) int32_t cbuf[4][16 * FITLM_AMX_TOKENS];
    _Alignas(64) uint8_t ring[8][512];
    amx_walk wk = {wtype, 0, nb, wtype == FITLM_TYPE_Q4_0 ? 288 : 544, NULL, (const uint8_t *)act_q8_qs(a), ring};
    const float *ad[FITLM_AMX_TOKENS];
    const int32_t *off[FITLM_AMX_TOKENS];
    for (int t = 0; t < FITLM_AMX_TOKENS; t++) {
        const uint8_t *row = (const uint8_t *)a + (size_t)t * astride;
        ad[t] = act_q8_d(row, nb);
        off[t] = (const int32_t *)((const uint8_t *)prep + (size_t)t * pstride);
    }
    amx_configure();
    for (int64_t grp = 0; grp < ngroups; grp++) {
        __m512 acc[FITLM_AMX_TOKENS];
        AMX_GROUP_START(grp);
        for (int64_t b = 0; b < nb; b++) {
            if (b + AMX_LAG < nb) AMX_STEP(b + AMX_LAG);
            amx_epilogue(wtype, acc, cbuf[b & 3], wk.w0 + (size_t)b * wk.gbytes, ad, off, b);
        }
        float *o = out + (size_t)grp * FITLM_REPACK_ROWS;
        for (int t = 0; t < FITLM_AMX_TOKENS; t++) _mm512_storeu_ps(o + (size_t)t * ostride, acc[t]);
    }
    _tile_release();
}

/* Q4_K / Q5_K: per sub-block the 16 x 16 sums times the rows' 6-bit scales
 * into integer sums per token (exact, as in x16_q4_k_body), per super-block
 * that kernel's minimums and float steps (x16_k4_avx512.h, shared with it). */
INLINE void amx_k_body(int wtype, int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a,
                       size_t astride, const void *prep, size_t pstride, float *out, size_t ostride) {
    const int q5 = wtype == FITLM_TYPE_Q5_K;
    const int64_t nb = cols / 256;
    _Alignas(64) int32_t cbuf[4][16 * FITLM_AMX_TOKENS];
    _Alignas(64) uint8_t ring[8][512];
    amx_walk wk = {wtype, q5, 8 * nb, q5 ? 2816 : 2304, NULL, a, ring};
    amx_configure();
    for (int64_t grp = 0; grp < ngroups; grp++) {
        __m512 acc[FITLM_AMX_TOKENS];
        AMX_GROUP_START(grp);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *g = wk.w0 + (size_t)b * wk.gbytes;
            const x16_k4_scales kg = x16_k4_scales_load(g);
            __m512i isum[FITLM_AMX_TOKENS];
            for (int t = 0; t < FITLM_AMX_TOKENS; t++) isum[t] = _mm512_setzero_si512();
            for (int s = 0; s < 8; s++) {
                const int64_t i = 8 * b + s;
                if (i + AMX_LAG < wk.nunits) AMX_STEP(i + AMX_LAG);
                const __m512i sc = x16_k4_scale(&kg, s);
                const int32_t *cb = cbuf[i & 3];
#pragma GCC unroll 16
                for (int t = 0; t < FITLM_AMX_TOKENS; t++)
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_load_si512(cb + 16 * t), sc));
            }
            const x16_k4_mins km = x16_k4_mins_load(g);
            for (int t = 0; t < FITLM_AMX_TOKENS; t++) {
                const uint8_t *row = (const uint8_t *)a + (size_t)t * astride;
                const int32_t *pw = (const int32_t *)((const uint8_t *)prep + (size_t)t * pstride) + 4 * b;
                acc[t] = x16_k4_finish(&km, acc[t], isum[t], pw, ((const act_q8k *)row)[b].d);
            }
        }
        float *o = out + (size_t)grp * FITLM_REPACK_ROWS;
        for (int t = 0; t < FITLM_AMX_TOKENS; t++) _mm512_storeu_ps(o + (size_t)t * ostride, acc[t]);
    }
    _tile_release();
}

#define AMX_ENTRY(name, body, type)                                                                                \
    static void name(int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a, size_t astride,  \
                     const void *prep, size_t pstride, float *out, size_t ostride, int nt) {                       \
        (void)nt; /* FITLM_AMX_TOKENS */                                                                           \
        body(type, cols, w, ngroups, gstride, a, astride, prep, pstride, out, ostride);                            \
    }
AMX_ENTRY(amx_q4_0, amx_body, FITLM_TYPE_Q4_0)
AMX_ENTRY(amx_q8_0, amx_body, FITLM_TYPE_Q8_0)
AMX_ENTRY(amx_q4_k, amx_k_body, FITLM_TYPE_Q4_K)
AMX_ENTRY(amx_q5_k, amx_k_body, FITLM_TYPE_Q5_K)

/* BF16 (AMX-BF16): a group of the x16 BF16 layout (32 columns of 16 rows,
 * vector m lane k = row k's columns 2m, 2m + 1) is one B tile as it is (16
 * rows of 64 bytes), and the nt tokens' bfloat16 activations of those 32
 * columns are the A tile (nt rows of 64 bytes, straight from the ACT_BF16
 * rows). There are no block scales: each C tile sums its group row's whole
 * dot product in float32, so the float work is the multiplies themselves.
 * Four groups of rows share each A tile (tiles 4-7 their sums, 2 and 3 the
 * weights in turn). */
static void amx_bf16_config(int nt) {
    _Alignas(64) amx_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    c.rows[0] = (uint8_t)nt; /* tokens: nt rows of 32 bfloat16 */
    c.colsb[0] = 64;
    for (int k = 2; k < 4; k++) { /* weights: 16 pairs x 16 rows */
        c.rows[k] = 16;
        c.colsb[k] = 64;
    }
    for (int k = 4; k < 8; k++) { /* sums: nt tokens x 16 floats */
        c.rows[k] = (uint8_t)nt;
        c.colsb[k] = 64;
    }
    _tile_loadconfig(&c);
}

#define AMX_BF16_MUL(TB, TC, gptr)                                                                                 \
    do {                                                                                                           \
        fitlm_repacked_prefetch((gptr), 1024, 2, 1);                                                               \
        _tile_loadd(TB, (gptr), 64);                                                                               \
        _tile_dpbf16ps(TC, 0, TB);                                                                                 \
    } while (0)

static void amx_bf16(int64_t cols, const void *w, int64_t ngroups, size_t gstride, const void *a, size_t astride,
                     const void *prep, size_t pstride, float *out, size_t ostride, int nt) {
    (void)prep;
    (void)pstride;
    const int64_t nk = cols / 32;
    const uint8_t *act = a;
    const size_t ostride_b = ostride * sizeof(float);
    amx_bf16_config(nt);
    int64_t grp = 0;
    for (; grp + 4 <= ngroups; grp += 4) {
        const uint8_t *g0 = (const uint8_t *)w + (size_t)grp * gstride;
        _tile_zero(4);
        _tile_zero(5);
        _tile_zero(6);
        _tile_zero(7);
        for (int64_t k = 0; k < nk; k++) {
            const uint8_t *gk = g0 + (size_t)k * 1024;
            _tile_loadd(0, act + 64 * k, astride);
            AMX_BF16_MUL(2, 4, gk);
            AMX_BF16_MUL(3, 5, gk + gstride);
            AMX_BF16_MUL(2, 6, gk + 2 * gstride);
            AMX_BF16_MUL(3, 7, gk + 3 * gstride);
        }
        float *o = out + (size_t)grp * FITLM_REPACK_ROWS;
        _tile_stored(4, o, ostride_b);
        _tile_stored(5, o + 16, ostride_b);
        _tile_stored(6, o + 32, ostride_b);
        _tile_stored(7, o + 48, ostride_b);
    }
    for (; grp < ngroups; grp++) { /* the last 1-3 groups, one at a time */
        const uint8_t *g0 = (const uint8_t *)w + (size_t)grp * gstride;
        _tile_zero(4);
        for (int64_t k = 0; k < nk; k++) {
            _tile_loadd(0, act + 64 * k, astride);
            AMX_BF16_MUL(2, 4, g0 + (size_t)k * 1024);
        }
        _tile_stored(4, out + (size_t)grp * FITLM_REPACK_ROWS, ostride_b);
    }
    _tile_release();
}

fitlm_dot_amx_fn fitlm_dot_repacked_amx(int wtype) {
    switch (wtype) {
    case FITLM_TYPE_Q4_0: return amx_q4_0;
    case FITLM_TYPE_Q8_0: return amx_q8_0;
    case FITLM_TYPE_Q4_K: return amx_q4_k;
    case FITLM_TYPE_Q5_K: return amx_q5_k;
    case FITLM_TYPE_BF16: return amx_bf16;
    default: return NULL;
    }
}
