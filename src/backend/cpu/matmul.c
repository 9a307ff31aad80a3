/* Matrix multiplication driver: ISA selection, activation quantization, work
 * split over the thread pool, and the scalar reference (the test oracle). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sys/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_blocks.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

/* The kernel for a weight type under `isa` (falling back to lower ISAs) and
 * the number of tokens it takes at once. */
static fitlm_dot_fn pick_dot(int wtype, fitlm_cpu_isa isa, int *tile) {
    fitlm_dot_fn f = NULL;
    *tile = FITLM_DOT_TILE;
    if (isa >= FITLM_ISA_AVX512 && (f = fitlm_dot_avx512(wtype)) != NULL) *tile = FITLM_DOT_TILE_AVX512;
    if (!f && isa >= FITLM_ISA_AVX2) f = fitlm_dot_avx2(wtype);
    if (!f) f = fitlm_dot_scalar(wtype);
    return f;
}

/* ---- AVX-VNNI under the AVX2 family (kernels.h) ---- */
static atomic_int g_avxvnni = -1; /* -1: not read from the environment yet */

void fitlm_cpu_set_avxvnni(int mode) {
    atomic_store(&g_avxvnni, mode);
}

static int avxvnni_mode(void) {
    int m = atomic_load(&g_avxvnni);
    if (m < 0) {
        const char *e = getenv("FITLM_CPU_AVXVNNI");
        m = !e ? FITLM_CPU_AVXVNNI_AUTO
            : !strcmp(e, "0") ? FITLM_CPU_AVXVNNI_OFF
            : !strcmp(e, "emulate") ? FITLM_CPU_AVXVNNI_EMULATE
                                     : FITLM_CPU_AVXVNNI_AUTO;
        atomic_store(&g_avxvnni, m);
    }
    return m;
}

/* The x16 kernel of the AVX2 family: AVX-VNNI (real or emulated) where it
 * has one for the type, else the maddubs one. */
static fitlm_dot_repacked_fn pick_repacked_avx2(int wtype) {
    fitlm_dot_repacked_fn f = NULL;
    int m = avxvnni_mode();
    if (m == FITLM_CPU_AVXVNNI_AUTO && fitlm_cpu_has_avxvnni()) f = fitlm_dot_repacked_avxvnni(wtype);
    else if (m == FITLM_CPU_AVXVNNI_EMULATE) f = fitlm_dot_repacked_avxvnni_emu(wtype);
    return f ? f : fitlm_dot_repacked_avx2(wtype);
}

bool fitlm_cpu_avxvnni_active(int wtype) {
    fitlm_dot_repacked_fn f = pick_repacked_avx2(wtype);
    return f && f != fitlm_dot_repacked_avx2(wtype);
}

/* ---- software prefetch of the simple x16 layouts at one token row ----
 * (quant_blocks.h): Intel CPUs ask from one row, others from two;
 * FITLM_CPU_PREFETCH_ONE_ROW=1|0 overrides. Set before the first kernel. */
atomic_int fitlm_repacked_pf_simple = 2;
static atomic_int g_pf_set = 0;

static void prefetch_rows_init(void) {
    if (atomic_load_explicit(&g_pf_set, memory_order_acquire)) return;
    const char *e = getenv("FITLM_CPU_PREFETCH_ONE_ROW");
    bool one = e && *e ? strcmp(e, "0") != 0 : fitlm_cpu_vendor_intel();
    atomic_store(&fitlm_repacked_pf_simple, one ? 1 : 2);
    atomic_store_explicit(&g_pf_set, 1, memory_order_release);
}

/* ---- AMX under the AVX-512 family (kernels.h) ---- */
static atomic_int g_amx = -1; /* -1: not read from the environment yet */

void fitlm_cpu_set_amx(int mode) {
    atomic_store(&g_amx, mode);
}

static int amx_mode(void) {
    int m = atomic_load(&g_amx);
    if (m < 0) {
        const char *e = getenv("FITLM_CPU_AMX");
        m = e && !strcmp(e, "0") ? FITLM_CPU_AMX_OFF : FITLM_CPU_AMX_AUTO;
        atomic_store(&g_amx, m);
    }
    return m;
}

/* The AMX kernel for 16-token tiles of a repacked `wtype` now, or NULL. */
static fitlm_dot_amx_fn pick_amx(int wtype) {
    if (amx_mode() != FITLM_CPU_AMX_AUTO || fitlm_cpu_isa_active() < FITLM_ISA_AVX512) return NULL;
    fitlm_dot_amx_fn f = fitlm_dot_repacked_amx(wtype);
    if (!f) return NULL;
    return (wtype == FITLM_TYPE_BF16 ? fitlm_cpu_has_amx_bf16() : fitlm_cpu_has_amx_int8()) ? f : NULL;
}

bool fitlm_cpu_amx_active(int wtype) {
    return pick_amx(wtype) != NULL;
}

const char *fitlm_cpu_kernel_isa_name(int wtype) {
    fitlm_cpu_isa isa = fitlm_cpu_isa_active();
    if (isa >= FITLM_ISA_AVX512 && fitlm_dot_avx512(wtype)) return "avx512";
    if (isa == FITLM_ISA_AVX2 && fitlm_cpu_avxvnni_active(wtype))
        return avxvnni_mode() == FITLM_CPU_AVXVNNI_EMULATE ? "avx2 (avx-vnni emulated)" : "avx-vnni";
    if (isa >= FITLM_ISA_AVX2 && fitlm_dot_avx2(wtype)) return "avx2";
    return fitlm_dot_scalar(wtype) ? "scalar" : "none";
}

/* ---- the threaded driver ---- */

static atomic_llong g_par_min_macs = 1 << 18;

void fitlm_cpu_set_parallel_threshold(int64_t macs) {
    atomic_store(&g_par_min_macs, macs < 0 ? 0 : (long long)macs);
}

typedef struct {
    fitlm_dot_fn dot;
    int wtype;
    int repacked;                /* W is in the repacked layout (kernels.h) */
    fitlm_dot_repacked_fn dot_rep; /* its kernel; NULL: unpack rows and use `dot` */
    fitlm_dot_amx_fn amx;          /* with dot_rep: the AMX kernel for 16-token tiles (BF16: all tokens), or NULL */
    uint8_t *prep;  /* with dot_rep: each token's per-block offsets, pstride bytes apart */
    size_t pstride;
    int tile; /* tokens per kernel call */
    act_format fmt;
    int simd; /* quantize activations with AVX2 */
    const float *X;
    int64_t cols, ntok;
    size_t wrow;
    uint8_t *A;
    size_t astride;
    struct mm_seg *segs; /* the weight matrices, their chunks numbered one after another */
    int nsegs;
    int64_t chunk_rows, nchunks;
    int64_t kslice; /* > 0: float weights, columns per slice for token tiles */
    size_t welem;   /* bytes per weight element (float weights) */
    atomic_llong next;
    struct mm_region *regions; /* decode: per-share runs of chunks (NULL: one shared counter) */
    int nregions;
} mm_job;

/* One weight matrix of the call and its outputs. */
typedef struct mm_seg {
    const uint8_t *W;
    int64_t rows;
    float *Y;
    long long chunk0; /* number of its first chunk */
} mm_seg;

/* Decode hands each share a contiguous run of chunks, claimed in order, so a
 * thread's weight reads stay one sequential stream across chunk boundaries
 * (the hardware prefetchers keep running instead of restarting on every
 * chunk); a share that finishes its run takes chunks from the others' runs. */
#define MM_MAX_REGIONS 64
typedef struct mm_region {
    _Alignas(64) atomic_llong next; /* next unclaimed chunk of the run */
    long long end;                   /* one past its last chunk */
} mm_region;

static void quantize_tokens(mm_job *j, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
        const float *x = j->X + t * j->cols;
        uint8_t *dst = j->A + (size_t)t * j->astride;
        if (j->fmt == ACT_BF16) {
            if (j->simd) fitlm_quantize_act_bf16_avx2(x, (uint16_t *)dst, j->cols);
            else fitlm_quantize_act_bf16(x, (uint16_t *)dst, j->cols);
        } else if (j->fmt == ACT_Q8 || j->fmt == ACT_Q8I) {
            if (j->simd) fitlm_quantize_act_q8_avx2(x, dst, j->cols);
            else fitlm_quantize_act_q8(x, dst, j->cols);
            if (j->fmt == ACT_Q8I) fitlm_act_q8_interleave(dst, j->cols);
            if (j->prep) fitlm_repacked_prep(j->wtype, j->cols, dst, j->prep + (size_t)t * j->pstride);
        } else {
            if (j->simd) fitlm_quantize_act_q8k_avx2(x, (act_q8k *)dst, j->cols);
            else fitlm_quantize_act_q8k(x, (act_q8k *)dst, j->cols);
            if (j->prep) fitlm_repacked_prep(j->wtype, j->cols, dst, j->prep + (size_t)t * j->pstride);
        }
    }
}

static void quantize_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t per = (j->ntok + nth - 1) / nth;
    int64_t t0 = per * ith, t1 = t0 + per < j->ntok ? t0 + per : j->ntok;
    if (t0 < t1) quantize_tokens(j, t0, t1);
}

#define XTILE_SLICE 512
#define XTILE_STRIDE (XTILE_SLICE + 16)

typedef struct x16_desc x16_desc;
static const x16_desc *x16_get_desc(int wtype);
/* F16 / BF16: the x16 layout of 32-column groups (BF16 multiplied by
 * bfloat16 activations with vdpbf16ps, F16 converted to float32 and
 * multiplied by the float activations). */
static bool x16_float(int wtype) {
    return wtype == FITLM_TYPE_F16 || wtype == FITLM_TYPE_BF16;
}


/* Bytes of one plain row unpacked from a repacked matrix (per thread, on
 * the stack); fitlm_cpu_repackable asks that a row fit. */
#define UNPACK_BUF (64u << 10)

static void repacked_chunk(mm_job *j, const mm_seg *sg, int64_t r0, int64_t r1, float *out) {
    if (j->dot_rep) {
        /* 16 rows x up to 8 tokens per call (AMX: all groups of the chunk
         * x 16 tokens, then the remaining tokens as before: the same bits).
         * Several tokens: the chunk stays in L2 while every tile of tokens
         * passes over it. */
        int64_t t0 = 0;
        for (; j->amx && t0 < j->ntok; t0 += FITLM_AMX_TOKENS) {
            int nt = (int)(j->ntok - t0 < FITLM_AMX_TOKENS ? j->ntok - t0 : FITLM_AMX_TOKENS);
            if (nt < FITLM_AMX_TOKENS && !fitlm_amx_all_rows(j->wtype)) break;
            j->amx(j->cols, sg->W + (size_t)r0 * j->wrow, (r1 - r0) / FITLM_REPACK_ROWS,
                   (size_t)FITLM_REPACK_ROWS * j->wrow, j->A + (size_t)t0 * j->astride, j->astride,
                   j->prep + (size_t)t0 * j->pstride, j->pstride, sg->Y + t0 * sg->rows + r0, (size_t)sg->rows, nt);
        }
        for (; t0 < j->ntok; t0 += FITLM_REPACK_TOKENS) {
            int nt = (int)(j->ntok - t0 < FITLM_REPACK_TOKENS ? j->ntok - t0 : FITLM_REPACK_TOKENS);
            const uint8_t *a = j->A + (size_t)t0 * j->astride;
            const uint8_t *prep = j->prep ? j->prep + (size_t)t0 * j->pstride : NULL;
            for (int64_t r = r0; r < r1; r += FITLM_REPACK_ROWS)
                j->dot_rep(j->cols, sg->W + (size_t)r * j->wrow, a, j->astride, prep, j->pstride, nt,
                           sg->Y + t0 * sg->rows + r, (size_t)sg->rows);
        }
        return;
    }
    /* a lower ISA: one plain row at a time, reused for every tile of tokens */
    _Alignas(64) uint8_t wbuf[UNPACK_BUF];
    for (int64_t r = r0; r < r1; r++) {
        fitlm_cpu_unpack_rows(j->wtype, sg->W, j->cols, r, 1, wbuf);
        for (int64_t t0 = 0; t0 < j->ntok; t0 += j->tile) {
            int nt = (int)(j->ntok - t0 < j->tile ? j->ntok - t0 : j->tile);
            j->dot(j->cols, wbuf, j->A + (size_t)t0 * j->astride, j->astride, nt, out);
            for (int t = 0; t < nt; t++) sg->Y[(t0 + t) * sg->rows + r] = out[t];
        }
    }
}

static void run_chunk(mm_job *j, long long c, float *out, float *xtile) {
    const mm_seg *sg = j->segs;
    while (sg + 1 < j->segs + j->nsegs && c >= sg[1].chunk0) sg++;
    int64_t r0 = (c - sg->chunk0) * j->chunk_rows;
    int64_t r1 = r0 + j->chunk_rows < sg->rows ? r0 + j->chunk_rows : sg->rows;
    if (j->repacked) {
        repacked_chunk(j, sg, r0, r1, out);
        return;
    }
    for (int64_t t0 = 0; t0 < j->ntok; t0 += j->tile) {
        int nt = (int)(j->ntok - t0 < j->tile ? j->ntok - t0 : j->tile);
        const uint8_t *a = j->A + (size_t)t0 * j->astride;
        if (j->kslice > 0 && nt > 1) {
            /* Float activations of several tokens: take the columns a
             * slice at a time and copy the tile's slice into a packed
             * buffer (rows 512 + 16 floats apart: token rows of the
             * original, a multiple of 4 KiB apart, would all map to the
             * same L1 sets and evict each other), which every row of the
             * chunk then uses from L1; partial sums add up in Y. */
            for (int64_t k0 = 0; k0 < j->cols; k0 += j->kslice) {
                int64_t kn = j->cols - k0 < j->kslice ? j->cols - k0 : j->kslice;
                for (int t = 0; t < nt; t++)
                    memcpy(xtile + (size_t)t * XTILE_STRIDE, (const float *)(a + (size_t)t * j->astride) + k0,
                           (size_t)kn * sizeof(float));
                size_t woff = (size_t)k0 * j->welem;
                for (int64_t r = r0; r < r1; r++) {
                    j->dot(kn, sg->W + (size_t)r * j->wrow + woff, xtile, XTILE_STRIDE * sizeof(float), nt, out);
                    for (int t = 0; t < nt; t++) {
                        float *y = &sg->Y[(t0 + t) * sg->rows + r];
                        *y = k0 == 0 ? out[t] : *y + out[t];
                    }
                }
            }
            continue;
        }
        for (int64_t r = r0; r < r1; r++) {
            j->dot(j->cols, sg->W + (size_t)r * j->wrow, a, j->astride, nt, out);
            for (int t = 0; t < nt; t++) sg->Y[(t0 + t) * sg->rows + r] = out[t];
        }
    }
}

static void matmul_worker(void *arg, int ith, int nth) {
    (void)nth;
    mm_job *j = arg;
    float out[FITLM_DOT_TILE_MAX];
    _Alignas(64) float xtile[FITLM_DOT_TILE_MAX * XTILE_STRIDE]; /* 16.5 KiB */
    if (j->regions) {
        for (int k = 0; k < j->nregions; k++) {
            mm_region *rg = &j->regions[(ith + k) % j->nregions];
            for (;;) {
                long long c = atomic_fetch_add_explicit(&rg->next, 1, memory_order_relaxed);
                if (c >= rg->end) break;
                run_chunk(j, c, out, xtile);
            }
        }
        return;
    }
    for (;;) {
        long long c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->nchunks) break;
        run_chunk(j, c, out, xtile);
    }
}

/* The matmuls of `n` weight matrices of one type, column count and layout
 * sharing their input X: X is quantized once and the rows of all of them are
 * handed out in one parallel pass (chunks numbered across the matrices). */
static void matmul_run(fitlm_threadpool *pool, int wtype, int64_t cols, const float *X, int64_t n_tokens, int n,
                       const fitlm_cpu_mm *mats, int repacked) {
    if (n <= 0 || n > FITLM_CPU_MM_MAX || n_tokens <= 0) return;
    prefetch_rows_init();
    int64_t total_rows = 0;
    for (int i = 0; i < n; i++) total_rows += mats[i].rows > 0 ? mats[i].rows : 0;
    if (total_rows <= 0) return;
    bool ok;
    uint64_t wrow = fitlm_type_row_bytes(wtype, (uint64_t)(cols > 0 ? cols : 0), &ok);
    act_format fmt = fitlm_act_format(wtype);
    fitlm_cpu_isa isa = fitlm_cpu_isa_active();
    int tile = FITLM_DOT_TILE;
    fitlm_dot_fn dot = fitlm_cpu_type_supported(wtype) && ok && cols > 0 ? pick_dot(wtype, isa, &tile) : NULL;
    if (dot && dot != fitlm_dot_scalar(wtype)) fmt = fitlm_act_format_simd(wtype);
    if (fmt == ACT_Q8K && cols % 256 != 0) dot = NULL;
    bool rows_x16 = true;
    for (int i = 0; i < n; i++) rows_x16 = rows_x16 && mats[i].rows % FITLM_REPACK_ROWS == 0;
    if (repacked && (!x16_get_desc(wtype) || !rows_x16 || wrow > UNPACK_BUF))
        dot = NULL;
    if (!dot) { /* unsupported type or shape: make the failure visible */
        for (int i = 0; i < n; i++)
            for (int64_t k = 0; k < mats[i].rows * n_tokens; k++) mats[i].Y[k] = NAN;
        return;
    }
    mm_job j;
    memset(&j, 0, sizeof j);
    j.dot = dot;
    j.wtype = wtype;
    j.repacked = repacked;
    if (repacked && isa >= FITLM_ISA_AVX512) j.dot_rep = fitlm_dot_repacked_avx512(wtype);
    else if (repacked && isa == FITLM_ISA_AVX2) j.dot_rep = pick_repacked_avx2(wtype);
    if (j.dot_rep && isa >= FITLM_ISA_AVX512 && (n_tokens >= FITLM_AMX_TOKENS || fitlm_amx_all_rows(wtype)))
        j.amx = pick_amx(wtype);
    if (j.dot_rep && fmt == ACT_Q8I) fmt = ACT_Q8; /* the repacked kernels read the codes in order */
    if (j.dot_rep && wtype == FITLM_TYPE_BF16) fmt = ACT_BF16; /* (F16's x16 kernel takes the floats) */
    j.tile = tile;
    j.fmt = fmt;
    j.simd = isa >= FITLM_ISA_AVX2;
    j.X = X;
    j.cols = cols;
    j.ntok = n_tokens;
    j.wrow = (size_t)wrow;
    void *owned = NULL;
    /* small activations (decode rows up to ~26k columns) without a pool go on
     * the stack instead of a malloc per call */
    _Alignas(64) uint8_t local[32 << 10];
    /* too little work to be worth waking the workers */
    double macs = (double)total_rows * (double)cols * (double)n_tokens;
    fitlm_threadpool *run_pool = macs < (double)atomic_load(&g_par_min_macs) ? NULL : pool;
    if (fmt == ACT_F32) {
        j.A = (uint8_t *)(uintptr_t)X;
        j.astride = (size_t)cols * sizeof(float);
        j.welem = fitlm_type_get(wtype)->block_bytes;
        /* up to 8 tokens x 512 floats = 16 KiB of activations per slice */
        if (n_tokens > 1) j.kslice = XTILE_SLICE;
    } else {
        j.astride = fitlm_act_row_bytes(fmt, cols);
        size_t bytes = j.astride * (size_t)n_tokens, act_bytes = (bytes + 63) & ~(size_t)63;
        if (j.dot_rep) { /* the per-token setup of the repacked kernels goes after the codes */
            j.pstride = FITLM_REPACK_PREP_BYTES(cols);
            bytes = act_bytes + j.pstride * (size_t)n_tokens;
        }
        j.A = pool ? fitlm_threadpool_scratch(pool, bytes) : bytes <= sizeof local ? local : NULL;
        if (!j.A) j.A = owned = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (j.A && j.dot_rep) j.prep = j.A + act_bytes;
        if (!j.A) { /* out of memory: the allocation-free reference still works */
            for (int i = 0; i < n; i++) {
                const void *W = mats[i].W;
                _Alignas(64) uint8_t row1[UNPACK_BUF];
                if (!repacked) {
                    fitlm_cpu_matmul_ref(wtype, W, mats[i].rows, cols, X, n_tokens, mats[i].Y);
                    continue;
                }
                /* a repacked matrix: one plain row at a time */
                for (int64_t r = 0; r < mats[i].rows; r++) {
                    fitlm_cpu_unpack_rows(wtype, W, cols, r, 1, row1);
                    for (int64_t t = 0; t < n_tokens; t++)
                        fitlm_cpu_matmul_ref(wtype, row1, 1, cols, X + t * cols, 1, &mats[i].Y[t * mats[i].rows + r]);
                }
            }
            return;
        }
        if (run_pool && n_tokens > 1) fitlm_threadpool_run(run_pool, quantize_worker, &j);
        else quantize_tokens(&j, 0, n_tokens);
    }
    int nth = fitlm_threadpool_size(run_pool);
    /* Chunks of whole rows handed out dynamically (robust when a core is
     * busy elsewhere). Decode: ~64 KiB of weights per chunk, enough for the
     * hardware prefetchers to stream; prefill: a chunk that stays in L2 while
     * it is reused for every tile of tokens. */
    size_t target = n_tokens == 1 ? (64u << 10) : (192u << 10);
    int64_t cr = (int64_t)(target / (j.wrow ? j.wrow : 1));
    if (cr < 1) cr = 1;
    int64_t balance = (total_rows + 4 * nth - 1) / (4 * nth);
    if (nth > 1 && cr > balance) cr = balance;
    if (cr < 1) cr = 1;
    if (repacked) cr = cr < FITLM_REPACK_ROWS ? FITLM_REPACK_ROWS : cr - cr % FITLM_REPACK_ROWS; /* whole groups */
    mm_seg segs[FITLM_CPU_MM_MAX];
    long long nchunks = 0;
    int nsegs = 0;
    for (int i = 0; i < n; i++) {
        if (mats[i].rows <= 0) continue;
        segs[nsegs].W = mats[i].W;
        segs[nsegs].rows = mats[i].rows;
        segs[nsegs].Y = mats[i].Y;
        segs[nsegs].chunk0 = nchunks;
        nchunks += (mats[i].rows + cr - 1) / cr;
        nsegs++;
    }
    j.segs = segs;
    j.nsegs = nsegs;
    j.chunk_rows = cr;
    j.nchunks = nchunks;
    atomic_init(&j.next, 0);
    mm_region regions[MM_MAX_REGIONS];
    if (n_tokens == 1 && nth > 1 && nth <= MM_MAX_REGIONS) {
        j.regions = regions;
        j.nregions = nth;
        for (int i = 0; i < nth; i++) {
            atomic_init(&regions[i].next, (long long)(j.nchunks * i / nth));
            regions[i].end = (long long)(j.nchunks * (i + 1) / nth);
        }
    }
    fitlm_threadpool_run(run_pool, matmul_worker, &j);
    free(owned);
}

void fitlm_cpu_matmul(fitlm_threadpool *pool, int wtype, const void *W, int64_t rows, int64_t cols, const float *X,
                      int64_t n_tokens, float *Y) {
    fitlm_cpu_mm m = {.W = W, .rows = rows, .Y = Y};
    matmul_run(pool, wtype, cols, X, n_tokens, 1, &m, 0);
}

/* The x16 layouts (kernels.h): per 16 rows, block b of all 16 is group b:
 * the fp16 fields of the 16 blocks (row k at 2k), then the other bytes as
 * 64-byte vectors ("slots") whose 4-byte lane k holds 4 consecutive bytes of
 * row k, in the order the kernel reads them. A type's description: its block
 * bytes, fp16 fields (offset in the block, offset in the group) and number of
 * slots; x16_slot_src gives the block offset of a slot's 4 bytes. */
struct x16_desc {
    int type, bytes, nh, nslots;
    int hsrc[2], hdst[2];
    int cols; /* columns of one block (a group is one block of 16 rows) */
};
/* F16 and BF16 have no blocks: a group is 32 columns (64 bytes) of 16 rows,
 * 16 vectors whose lane k holds 2 consecutive values of row k, the operand
 * of vdpbf16ps. */
static const x16_desc k_x16[] = {
    {FITLM_TYPE_Q4_0, 18, 1, 4, {0}, {0}, 32},
    {FITLM_TYPE_Q8_0, 34, 1, 8, {0}, {0}, 32},
    {FITLM_TYPE_Q4_K, 144, 2, 35, {0, 2}, {0, 32}, 256},
    {FITLM_TYPE_Q5_K, 176, 2, 43, {0, 2}, {0, 32}, 256},
    {FITLM_TYPE_Q6_K, 210, 1, 52, {208}, {0}, 256},
    {FITLM_TYPE_Q3_K, 110, 1, 27, {108}, {0}, 256},
    {FITLM_TYPE_Q2_K, 84, 2, 20, {80, 82}, {0, 32}, 256},
    {FITLM_TYPE_Q4_1, 20, 2, 4, {0, 2}, {0, 32}, 32},
    {FITLM_TYPE_Q5_0, 22, 1, 5, {0}, {0}, 32},
    {FITLM_TYPE_Q5_1, 24, 2, 5, {0, 2}, {0, 32}, 32},
    {FITLM_TYPE_F16, 64, 0, 16, {0}, {0}, 32},
    {FITLM_TYPE_BF16, 64, 0, 16, {0}, {0}, 32},
};
static int x16_slot_src(int type, int m) {
    switch (type) {
    case FITLM_TYPE_Q4_K: return m < 3 ? 4 + 4 * m : 16 + 4 * (m - 3); /* scales, then qs in order */
    case FITLM_TYPE_Q5_K: return 4 + 4 * m;                             /* scales, qh, qs: the block's order */
    case FITLM_TYPE_Q3_K: return m < 3 ? 96 + 4 * m : 4 * (m - 3);      /* scales, then hmask and qs in order */
    case FITLM_TYPE_Q2_K: return 4 * m;                                 /* scales, qs: the block's order */
    case FITLM_TYPE_Q6_K: {
        if (m < 4) return 192 + 4 * m; /* the 16 scales */
        /* then per half h and word range v (hv = 2h + v), word k: ql word u,
         * ql word u + 8, qh word u of the half (u = 4v + k) */
        int r = m - 4, hv = r / 12, k = (r % 12) / 3, j = r % 3, h = hv / 2, u = 4 * (hv % 2) + k;
        return j == 0 ? 4 * (16 * h + u) : j == 1 ? 4 * (16 * h + 8 + u) : 128 + 4 * (8 * h + u);
    }
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16: return 4 * m; /* the values in order */
    case FITLM_TYPE_Q4_1: return 4 + 4 * m; /* the codes after d and m */
    case FITLM_TYPE_Q5_0: return 2 + 4 * m; /* qh (reordered, x16_qh_to_lane), then the codes */
    case FITLM_TYPE_Q5_1: return 4 + 4 * m;
    default: return 2 + 4 * m; /* Q4_0, Q8_0: the codes in order */
    }
}
static const x16_desc *x16_get_desc(int wtype) {
    for (size_t i = 0; i < sizeof k_x16 / sizeof k_x16[0]; i++)
        if (k_x16[i].type == wtype) return &k_x16[i];
    return NULL;
}

/* Bytes of one plain row of a type with an x16 layout that the layout takes
 * (a row fits the unpack buffer), else 0. */
static size_t x16_row_bytes(int wtype, int64_t cols) {
    const x16_desc *x = x16_get_desc(wtype);
    int64_t bs = x ? (int64_t)x->cols : 1;
    if (!x || cols <= 0 || cols % bs || (uint64_t)(cols / bs) * (uint64_t)x->bytes > UNPACK_BUF) return 0;
    return (size_t)(cols / bs) * (size_t)x->bytes;
}

/* Types (and shapes) whose "repacked" copy keeps the file layout (it only
 * moves into huge pages): Q8_0 and K-type rows too long for their x16
 * layout. */
static bool copy_only(int wtype, int64_t cols) {
    return wtype != FITLM_TYPE_Q4_0 && !x16_float(wtype) && x16_get_desc(wtype) && x16_row_bytes(wtype, cols) == 0;
}

void fitlm_cpu_matmul_repacked(fitlm_threadpool *pool, int wtype, const void *P, int64_t rows, int64_t cols,
                               const float *X, int64_t n_tokens, float *Y) {
    fitlm_cpu_mm m = {.W = P, .rows = rows, .Y = Y};
    matmul_run(pool, wtype, cols, X, n_tokens, 1, &m, !copy_only(wtype, cols)); /* copies keep the plain layout */
}

void fitlm_cpu_matmul_multi(fitlm_threadpool *pool, int wtype, int64_t cols, const float *X, int64_t n_tokens, int n,
                            const fitlm_cpu_mm *mats, bool repacked) {
    matmul_run(pool, wtype, cols, X, n_tokens, n, mats, repacked && !copy_only(wtype, cols));
}

/* ---- repacked Q4_0 and Q8_0 layouts (kernels.h) ---- */

void *fitlm_cpu_alloc_weights(size_t bytes) {
    size_t align = bytes >= ((size_t)2 << 20) ? ((size_t)2 << 20) : 64;
    void *p = NULL;
    if (bytes == 0 || bytes > SIZE_MAX - align || posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align > 64) madvise(p, bytes & ~(align - 1), MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}

bool fitlm_cpu_repackable(int wtype, int64_t rows, int64_t cols) {
    if (copy_only(wtype, cols)) {
        bool ok;
        const fitlm_type_info *ti = fitlm_type_get(wtype);
        return rows > 0 && cols > 0 && cols % ti->block_size == 0 &&
               fitlm_type_row_bytes(wtype, (uint64_t)cols, &ok) > 0 && ok && fitlm_cpu_isa_active() >= FITLM_ISA_AVX2;
    }
    if (x16_row_bytes(wtype, cols) == 0 || rows <= 0 || rows % FITLM_REPACK_ROWS) return false;
    /* a kernel for the layout under the active ISA */
    fitlm_cpu_isa isa = fitlm_cpu_isa_active();
    return isa >= FITLM_ISA_AVX512 ? fitlm_dot_repacked_avx512(wtype) != NULL
           : isa == FITLM_ISA_AVX2 ? pick_repacked_avx2(wtype) != NULL
                                   : false;
}

/* x16_put / x16_get move row k's block between the plain block and the
 * group at grp. */
#define X16_MAX_SLOTS 64 /* k_x16: at most 52 (Q6_K) */
/* The slots' block offsets of a type, looked up once per call (src[m]). */
static void x16_slots(const x16_desc *x, int *src) {
    for (int m = 0; m < x->nslots; m++) src[m] = x16_slot_src(x->type, m);
}
/* Q5_0 / Q5_1: the 32 high bits of a block (qh bit e = fifth bit of element
 * e; elements 0-15 are the low nibbles of the 16 code bytes, 16-31 the high
 * ones) reordered so that the kernel gets the fifth bits of its code vector m
 * (byte i = element 4m + i, or 16 + 4(m - 4) + i for m >= 4) at bit 4 of each
 * byte with one shift: element 4m + i at bit 8i + 4 + m (>> m), element 16 +
 * 4m' + i at bit 8i + m' (<< 4 - m'). */
static uint32_t x16_qh_to_lane(uint32_t qh) {
    uint32_t h = 0;
    for (int i = 0; i < 4; i++)
        for (int m = 0; m < 4; m++) {
            h |= ((qh >> (4 * m + i)) & 1u) << (8 * i + 4 + m);
            h |= ((qh >> (16 + 4 * m + i)) & 1u) << (8 * i + m);
        }
    return h;
}
static uint32_t x16_qh_from_lane(uint32_t h) {
    uint32_t qh = 0;
    for (int i = 0; i < 4; i++)
        for (int m = 0; m < 4; m++) {
            qh |= ((h >> (8 * i + 4 + m)) & 1u) << (4 * m + i);
            qh |= ((h >> (8 * i + m)) & 1u) << (16 + 4 * m + i);
        }
    return qh;
}
static bool x16_has_qh(const x16_desc *x) {
    return x->type == FITLM_TYPE_Q5_0 || x->type == FITLM_TYPE_Q5_1;
}
static void x16_put(const x16_desc *x, const int *src, uint8_t *grp, int k, const uint8_t *blk) {
    for (int i = 0; i < x->nh; i++) memcpy(grp + x->hdst[i] + 2 * k, blk + x->hsrc[i], 2);
    uint8_t *v = grp + 32 * x->nh + 4 * k;
    for (int m = 0; m < x->nslots; m++) memcpy(v + 64 * m, blk + src[m], 4);
    if (x16_has_qh(x)) { /* slot 0 */
        uint32_t qh;
        memcpy(&qh, v, 4);
        qh = x16_qh_to_lane(qh);
        memcpy(v, &qh, 4);
    }
}
static void x16_get(const x16_desc *x, const int *src, const uint8_t *grp, int k, uint8_t *blk) {
    for (int i = 0; i < x->nh; i++) memcpy(blk + x->hsrc[i], grp + x->hdst[i] + 2 * k, 2);
    const uint8_t *v = grp + 32 * x->nh + 4 * k;
    for (int m = 0; m < x->nslots; m++) memcpy(blk + src[m], v + 64 * m, 4);
    if (x16_has_qh(x)) {
        uint32_t h;
        memcpy(&h, v, 4);
        h = x16_qh_from_lane(h);
        memcpy(blk + src[0], &h, 4);
    }
}

typedef struct repack_job {
    const x16_desc *x;
    const uint8_t *W;
    uint8_t *dst;
    int64_t rows;
    size_t wrow; /* bytes per row; 0: a plain copy of `rows` x copy_row bytes */
    size_t copy_row;
} repack_job;

/* Each share takes a contiguous run of 16-row groups (or of rows for a plain
 * copy): the source pages are faulted in and the destination's huge pages
 * zeroed by all threads at once. */
static void repack_worker(void *arg, int ith, int nth) {
    repack_job *j = arg;
    if (!j->x) {
        int64_t per = (j->rows + nth - 1) / nth, r0 = per * ith, r1 = r0 + per < j->rows ? r0 + per : j->rows;
        if (r0 < r1) memcpy(j->dst + (size_t)r0 * j->copy_row, j->W + (size_t)r0 * j->copy_row, (size_t)(r1 - r0) * j->copy_row);
        return;
    }
    const x16_desc *x = j->x;
    size_t bb = (size_t)x->bytes, gbytes = FITLM_REPACK_ROWS * bb;
    int64_t nb = (int64_t)(j->wrow / bb), groups = j->rows / FITLM_REPACK_ROWS;
    int64_t per = (groups + nth - 1) / nth, g0 = per * ith, g1 = g0 + per < groups ? g0 + per : groups;
    int src[X16_MAX_SLOTS];
    x16_slots(x, src);
    for (int64_t rg = g0; rg < g1; rg++) {
        int64_t r = rg * FITLM_REPACK_ROWS;
        uint8_t *o = j->dst + (size_t)r * j->wrow;
        const uint8_t *in = j->W + (size_t)r * j->wrow;
        for (int64_t g = 0; g < nb; g++) /* each group written whole, its 16 blocks from 16 rows */
            for (int k = 0; k < FITLM_REPACK_ROWS; k++)
                x16_put(x, src, o + (size_t)g * gbytes, k, in + (size_t)k * j->wrow + (size_t)g * bb);
    }
}

int fitlm_cpu_repack(fitlm_threadpool *pool, int wtype, const void *W, int64_t rows, int64_t cols, void *dst) {
    if (!fitlm_cpu_repackable(wtype, rows, cols)) return -1;
    repack_job j = {.W = W, .dst = dst, .rows = rows};
    if (copy_only(wtype, cols)) { /* same layout */
        bool ok;
        j.copy_row = (size_t)fitlm_type_row_bytes(wtype, (uint64_t)cols, &ok);
    } else {
        j.x = x16_get_desc(wtype);
        j.wrow = x16_row_bytes(wtype, cols);
    }
    fitlm_threadpool_run(pool, repack_worker, &j);
    return 0;
}

void fitlm_cpu_unpack_rows(int wtype, const void *P, int64_t cols, int64_t row0, int64_t n_rows, void *dst) {
    if (copy_only(wtype, cols)) {
        bool ok;
        size_t rb = (size_t)fitlm_type_row_bytes(wtype, (uint64_t)cols, &ok);
        memcpy(dst, (const uint8_t *)P + (size_t)row0 * rb, rb * (size_t)n_rows);
        return;
    }
    const x16_desc *x = x16_get_desc(wtype);
    size_t bb = (size_t)x->bytes, wrow = x16_row_bytes(wtype, cols), gbytes = FITLM_REPACK_ROWS * bb;
    int64_t nb = (int64_t)(wrow / bb);
    int src[X16_MAX_SLOTS];
    x16_slots(x, src);
    for (int64_t r = row0; r < row0 + n_rows; r++) {
        const uint8_t *in = (const uint8_t *)P + (size_t)(r - r % FITLM_REPACK_ROWS) * wrow;
        uint8_t *b = (uint8_t *)dst + (size_t)(r - row0) * wrow;
        for (int64_t g = 0; g < nb; g++)
            x16_get(x, src, in + (size_t)g * gbytes, (int)(r % FITLM_REPACK_ROWS), b + (size_t)g * bb);
    }
}

int fitlm_cpu_get_row_repacked(int wtype, const void *P, int64_t cols, int64_t r, float *dst) {
    if (copy_only(wtype, cols)) return fitlm_cpu_get_row(wtype, P, cols, r, dst);
    if (x16_row_bytes(wtype, cols) == 0 || r < 0) return -1;
    const x16_desc *x = x16_get_desc(wtype);
    size_t bb = (size_t)x->bytes, wrow = x16_row_bytes(wtype, cols), gbytes = FITLM_REPACK_ROWS * bb;
    int64_t nb = (int64_t)(wrow / bb), bs = cols / nb;
    const uint8_t *in = (const uint8_t *)P + (size_t)(r - r % FITLM_REPACK_ROWS) * wrow;
    int k = (int)(r % FITLM_REPACK_ROWS);
    int src[X16_MAX_SLOTS];
    x16_slots(x, src);
    for (int64_t g = 0; g < nb; g++) {
        _Alignas(8) uint8_t b[256];
        x16_get(x, src, in + (size_t)g * gbytes, k, b);
        fitlm_dequantize_row(wtype, b, dst + bs * g, bs);
    }
    return 0;
}

/* ---- the references ---- */

void fitlm_cpu_matmul_ref(int wtype, const void *W, int64_t rows, int64_t cols, const float *X, int64_t n_tokens,
                          float *Y) {
    bool ok;
    uint64_t wrow = fitlm_type_row_bytes(wtype, (uint64_t)(cols > 0 ? cols : 0), &ok);
    const fitlm_type_info *ti = fitlm_type_get(wtype);
    if (!ok || !ti || !fitlm_cpu_type_supported(wtype) || cols <= 0) {
        for (int64_t i = 0; i < rows * n_tokens; i++) Y[i] = NAN;
        return;
    }
    float wbuf[256];
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *wr = (const uint8_t *)W + (size_t)r * wrow;
        for (int64_t t = 0; t < n_tokens; t++) {
            const float *x = X + t * cols;
            double s = 0.0;
            for (int64_t c = 0; c < cols; c += 256) {
                int64_t n = cols - c < 256 ? cols - c : 256;
                fitlm_dequantize_row(wtype, wr + (size_t)(c / ti->block_size) * ti->block_bytes, wbuf, n);
                for (int64_t k = 0; k < n; k++) s += (double)wbuf[k] * (double)x[c + k];
            }
            Y[t * rows + r] = (float)s;
        }
    }
}

void fitlm_cpu_matmul_ref_qact(int wtype, const void *W, int64_t rows, int64_t cols, const float *X,
                               int64_t n_tokens, double *Y, double *Yabs) {
    bool ok;
    uint64_t wrow = fitlm_type_row_bytes(wtype, (uint64_t)(cols > 0 ? cols : 0), &ok);
    const fitlm_type_info *ti = fitlm_type_get(wtype);
    act_format fmt = fitlm_act_format(wtype);
    if (!ok || !ti || !fitlm_cpu_type_supported(wtype) || cols <= 0 || (fmt == ACT_Q8K && cols % 256)) {
        for (int64_t i = 0; i < rows * n_tokens; i++) Y[i] = NAN;
        return;
    }
    float wbuf[256];
    double xbuf[256];
    _Alignas(16) uint8_t aq[8 * 40];
    act_q8k ak;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *wr = (const uint8_t *)W + (size_t)r * wrow;
        for (int64_t t = 0; t < n_tokens; t++) {
            const float *x = X + t * cols;
            double s = 0.0, sa = 0.0;
            for (int64_t c = 0; c < cols; c += 256) {
                int64_t n = cols - c < 256 ? cols - c : 256;
                fitlm_dequantize_row(wtype, wr + (size_t)(c / ti->block_size) * ti->block_bytes, wbuf, n);
                if (fmt == ACT_F32) {
                    for (int64_t k = 0; k < n; k++) xbuf[k] = x[c + k];
                } else if (fmt == ACT_BF16) {
                    for (int64_t k = 0; k < n; k++) xbuf[k] = fitlm_bf16_to_fp32(fitlm_fp32_to_bf16(x[c + k]));
                } else if (fmt == ACT_Q8) {
                    fitlm_quantize_act_q8(x + c, aq, n);
                    for (int64_t k = 0; k < n; k++)
                        xbuf[k] = (double)act_q8_d(aq, n / 32)[k / 32] * (double)act_q8_qs(aq)[k];
                } else {
                    fitlm_quantize_act_q8k(x + c, &ak, n);
                    for (int64_t k = 0; k < n; k++) xbuf[k] = (double)ak.d * (double)ak.qs[k];
                }
                for (int64_t k = 0; k < n; k++) {
                    double p = (double)wbuf[k] * xbuf[k];
                    s += p;
                    sa += fabs(p);
                }
            }
            Y[t * rows + r] = s;
            if (Yabs) Yabs[t * rows + r] = sa;
        }
    }
}

bool fitlm_cpu_type_supported(int type) {
    switch (type) {
    case FITLM_TYPE_F32:
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16:
    case FITLM_TYPE_Q4_0:
    case FITLM_TYPE_Q4_1:
    case FITLM_TYPE_Q5_0:
    case FITLM_TYPE_Q5_1:
    case FITLM_TYPE_Q8_0:
    case FITLM_TYPE_Q2_K:
    case FITLM_TYPE_Q3_K:
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q5_K:
    case FITLM_TYPE_Q6_K: return true;
    default: return false;
    }
}

int fitlm_cpu_get_row(int wtype, const void *W, int64_t cols, int64_t r, float *dst) {
    bool ok;
    if (!fitlm_cpu_type_supported(wtype) || cols < 0 || r < 0) return -1;
    uint64_t rb = fitlm_type_row_bytes(wtype, (uint64_t)cols, &ok);
    if (!ok) return -1;
    return fitlm_dequantize_row(wtype, (const uint8_t *)W + (size_t)r * rb, dst, cols);
}
