/* CPU backend: the fitlm_backend table for host memory. */
#include "backend/cpu/backend_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant_blocks.h"
#include "sys/threadpool.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

/* Repacked weight copies live in slabs: large blocks, 2 MiB aligned with huge
 * pages requested (fitlm_cpu_alloc_weights), filled in the order the weights
 * are prepared — the order the forward pass reads them — so every copy, even
 * a small K or V matrix, sits on huge pages right after the matrix read
 * before it, and a thread's stream runs on from one matrix into the next. A
 * slab is freed when the last copy in it is released; the unused tail of a
 * slab is never touched, so it takes no memory. */
typedef struct weight_slab {
    struct weight_slab *next;
    uint8_t *base;
    size_t size, used;
    int live; /* copies in it not yet released */
} weight_slab;

#define SLAB_BYTES ((size_t)64 << 20)

typedef struct cpu_state {
    weight_slab *slabs; /* newest (the one being filled) first */
    fitlm_threadpool *pool;
    int n_threads;
    float *att_scratch;   /* n_threads * att_stride floats */
    int64_t att_stride;   /* floats per thread: att_scores scores, then 8 x head_dim */
    int64_t att_scores;   /* floats of scores per thread */
    uint32_t att_ctx;     /* positions the scratch covers */
    int32_t *att_tiles;   /* attention work tiles: first token of each (n_tokens + 1 entries) */
    int64_t att_tiles_cap;
} cpu_state;

static cpu_state *st(fitlm_backend *be) {
    return (cpu_state *)be->state;
}

/* Below this many elements an elementwise op runs on the calling thread: waking
 * the pool costs more than the work. */
#define PAR_MIN_ELEMS 32768

static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    *lo = per * ith;
    *hi = *lo + per;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

/* ---- memory ---- */

static bool cpu_weight_type_supported(const fitlm_backend *be, int type) {
    (void)be;
    return fitlm_cpu_type_supported(type);
}

static int cpu_alloc(fitlm_backend *be, int type, int64_t ne0, int64_t ne1, fitlm_btensor *out, fitlm_error *err) {
    (void)be;
    memset(out, 0, sizeof *out);
    bool ok = true;
    uint64_t row = ne0 > 0 ? fitlm_type_row_bytes(type, (uint64_t)ne0, &ok) : 0;
    if (!ok || ne0 <= 0 || ne1 <= 0 || row == 0 || (uint64_t)ne1 > UINT64_MAX / row)
        return fitlm_fail(err, "cannot allocate a %lld x %lld tensor of type %s", (long long)ne0, (long long)ne1,
                          fitlm_type_name(type));
    uint64_t nbytes = row * (uint64_t)ne1;
    if (nbytes > (uint64_t)SIZE_MAX / 2) return fitlm_fail(err, "tensor of %llu bytes is too large", (unsigned long long)nbytes);
    /* 64-byte alignment for SIMD loads; size rounded up as aligned_alloc requires */
    size_t sz = (size_t)((nbytes + 63) & ~(uint64_t)63);
    void *p = aligned_alloc(64, sz);
    if (!p) return fitlm_fail(err, "out of memory allocating %llu bytes", (unsigned long long)nbytes);
    out->type = type;
    out->device = FITLM_DEVICE_CPU;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->nbytes = nbytes;
    out->data = p;
    out->owned = true;
    return 0;
}

/* A slab that takes no more copies: the huge page its last copy ends in was
 * faulted whole (2 MiB), and the unused rest of it would stay resident, up to
 * 2 MiB a slab (about 10 MiB of a 600 MiB model). That rest is given back and
 * the page kept out of khugepaged's way (which would fill it again); the
 * copies' own pages stay, the last one's end on small pages. Hints: failure
 * only leaves the memory resident. */
static void slab_trim(weight_slab *h) {
#if defined(MADV_DONTNEED) && defined(MADV_NOHUGEPAGE)
    const size_t huge = (size_t)2 << 20;
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    size_t end = (h->used + page - 1) & ~(page - 1);
    size_t last = h->used & ~(huge - 1);
    if (end >= h->size || ((uintptr_t)h->base & (huge - 1))) return;
    madvise(h->base + last, h->size - last, MADV_NOHUGEPAGE);
    madvise(h->base + end, h->size - end, MADV_DONTNEED);
#else
    (void)h;
#endif
}

/* `bytes` of slab memory (64-byte aligned), or NULL when out of memory. Given
 * back with slab_put. */
static void *slab_get(cpu_state *s, size_t bytes) {
    weight_slab *h = s->slabs;
    size_t at = h ? (h->used + 63) & ~(size_t)63 : 0;
    if (!h || at > h->size || bytes > h->size - at) {
        if (h) slab_trim(h);
        size_t size = SLAB_BYTES;
        if (bytes > size) {
            if (bytes > SIZE_MAX - ((size_t)2 << 20)) return NULL;
            size = (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
        }
        h = calloc(1, sizeof *h);
        if (!h) return NULL;
        h->base = fitlm_cpu_alloc_weights(size);
        if (!h->base) {
            free(h);
            return NULL;
        }
        h->size = size;
        h->next = s->slabs;
        s->slabs = h;
        at = 0;
    }
    h->used = at + bytes;
    h->live++;
    return h->base + at;
}

static void slab_put(cpu_state *s, void *p) {
    for (weight_slab **pp = &s->slabs; *pp; pp = &(*pp)->next) {
        weight_slab *h = *pp;
        if ((uint8_t *)p < h->base || (uint8_t *)p >= h->base + h->size) continue;
        if (--h->live == 0) {
            *pp = h->next;
            free(h->base);
            free(h);
        }
        return;
    }
}

static void cpu_release(fitlm_backend *be, fitlm_btensor *t) {
    if (t->owned && t->repacked) slab_put(st(be), t->data);
    else if (t->owned) free(t->data);
    memset(t, 0, sizeof *t);
}

/* True if every F16 value of n is exactly a bfloat16 value: a normal F16
 * has 10 mantissa bits, bfloat16 7, so the low 3 must be 0; a subnormal
 * (m x 2^-24) is a normal bfloat16 if m has at most 8 significant bits. Inf
 * passes, a NaN with payload bits in the low 3 does not. */
static bool f16_all_bf16(const uint16_t *h, uint64_t n) {
    uint16_t low = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t v = h[i];
        if ((v & 0x7c00) == 0) {
            unsigned m = v & 0x3ffu;
            while (m && !(m & 1)) m >>= 1;
            if (m >= 256) return false;
        } else {
            low |= v & 7;
        }
    }
    return low == 0;
}

/* Whether an F16 matrix becomes BF16 at load, for the x16 bfloat16 kernel
 * (FITLM_CPU_F16: auto (default): only if that changes no weight; bf16:
 * always, values rounded to nearest even; exact: never). */
static bool f16_to_bf16(const fitlm_tensor *src) {
    const char *mode = getenv("FITLM_CPU_F16");
    if (mode && strcmp(mode, "exact") == 0) return false;
    if (mode && strcmp(mode, "bf16") == 0) return true;
    return f16_all_bf16((const uint16_t *)src->data, src->nbytes / 2);
}

static int cpu_prepare_weight(fitlm_backend *be, const fitlm_tensor *src, fitlm_btensor *out, fitlm_error *err) {
    memset(out, 0, sizeof *out);
    if (!src->data) return fitlm_fail(err, "tensor %s has no data", src->name);
    bool is_vector = src->n_dims == 1 || src->n_elements == src->ne[0];
    if (is_vector) {
        int64_t n = (int64_t)src->ne[0];
        if (src->type == FITLM_TYPE_F32) {
            out->type = FITLM_TYPE_F32;
            out->device = FITLM_DEVICE_CPU;
            out->ne0 = n;
            out->ne1 = 1;
            out->nbytes = (uint64_t)n * 4;
            out->data = (void *)src->data; /* borrowed from the mapped file */
            return 0;
        }
        if (src->type != FITLM_TYPE_F16 && src->type != FITLM_TYPE_BF16)
            return fitlm_fail(err, "tensor %s has type %s, which the CPU backend cannot use for a vector", src->name,
                              fitlm_type_name(src->type));
        if (cpu_alloc(be, FITLM_TYPE_F32, n, 1, out, err)) return -1;
        const uint8_t *p = src->data;
        float *d = out->data;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            d[i] = src->type == FITLM_TYPE_F16 ? fitlm_fp16_to_fp32(h) : fitlm_bf16_to_fp32(h);
        }
        return 0;
    }
    if (!fitlm_cpu_type_supported(src->type))
        return fitlm_fail(err, "tensor %s has type %s, which the CPU backend cannot run", src->name,
                          fitlm_type_name(src->type));
    out->type = src->type;
    out->device = FITLM_DEVICE_CPU;
    out->ne0 = (int64_t)src->ne[0];
    out->ne1 = (int64_t)(src->n_elements / src->ne[0]);
    out->nbytes = src->nbytes;
    out->data = (void *)src->data; /* the mapped file is used as is */
    out->owned = false;
    /* Q4_0, Q8_0, Q2_K to Q6_K, Q4_1, Q5_0, Q5_1, F16 and (with AVX512_BF16)
     * BF16 matrices get a repacked (x16) copy in huge pages (same size;
     * fitlm_cpu_repackable): the mapped pages are read once here and then
     * left alone. FITLM_CPU_REPACK=0 keeps the file's layout. An F16 matrix
     * whose every value is a bfloat16 value (F16 files converted from
     * bfloat16 checkpoints, as most are) becomes a BF16 one, the same values,
     * for the bfloat16 kernel (twice the float32 one's products per
     * instruction); the others keep F16 and its exact float32 x16 kernel
     * (FITLM_CPU_F16=bf16 converts every F16 matrix, rounding; =exact none). */
    const char *env = getenv("FITLM_CPU_REPACK");
    bool want = !(env && strcmp(env, "0") == 0);
    /* an F16 matrix of bfloat16 values runs as BF16: converted and repacked
     * in slices of whole 16-row groups (the x16 layout keeps each group's
     * bytes together), so the load holds one slice of conversion at a time,
     * not a second copy of the matrix */
    bool to_bf16 = want && out->type == FITLM_TYPE_F16 && fitlm_cpu_repackable(FITLM_TYPE_BF16, out->ne1, out->ne0) &&
                   src->nbytes % 2 == 0 && f16_to_bf16(src);
    if (to_bf16) out->type = FITLM_TYPE_BF16;
    bool row_ok = false;
    uint64_t row_bytes = out->ne0 > 0 ? fitlm_type_row_bytes(out->type, (uint64_t)out->ne0, &row_ok) : 0;
    bool sized = row_ok && row_bytes > 0 && src->nbytes / row_bytes == (uint64_t)out->ne1 &&
                 src->nbytes % row_bytes == 0; /* the copy covers exactly the tensor */
    bool repack = want && sized && fitlm_cpu_repackable(out->type, out->ne1, out->ne0) &&
                  src->nbytes <= (uint64_t)SIZE_MAX / 2;
    if (!repack && to_bf16) out->type = src->type; /* the file's F16 layout after all */
    if (repack) {
        uint8_t *p = slab_get(st(be), (size_t)src->nbytes);
        if (!p) {
            out->type = src->type;
            return fitlm_fail(err, "out of memory repacking tensor %s (%llu bytes)", src->name,
                              (unsigned long long)src->nbytes);
        }
        int rc = 0;
        if (to_bf16) {
            /* slices of about 4 MiB, whole groups of FITLM_REPACK_ROWS rows */
            int64_t slice = (int64_t)(((uint64_t)4 << 20) / row_bytes) / FITLM_REPACK_ROWS * FITLM_REPACK_ROWS;
            if (slice < FITLM_REPACK_ROWS) slice = FITLM_REPACK_ROWS;
            if (slice > out->ne1) slice = out->ne1;
            uint16_t *buf = malloc((size_t)slice * (size_t)row_bytes);
            if (!buf) {
                slab_put(st(be), p);
                out->type = src->type;
                return fitlm_fail(err, "out of memory converting tensor %s to bfloat16", src->name);
            }
            const uint16_t *h = src->data;
            for (int64_t r0 = 0; r0 < out->ne1 && rc == 0; r0 += slice) {
                int64_t n = out->ne1 - r0 < slice ? out->ne1 - r0 : slice;
                uint64_t n_el = (uint64_t)n * (uint64_t)out->ne0, at = (uint64_t)r0 * (uint64_t)out->ne0;
                for (uint64_t i = 0; i < n_el; i++) buf[i] = fitlm_fp32_to_bf16(fitlm_fp16_to_fp32(h[at + i]));
                rc = fitlm_cpu_repack(st(be)->pool, out->type, buf, n, out->ne0, p + (uint64_t)r0 * row_bytes);
            }
            free(buf);
        } else {
            rc = fitlm_cpu_repack(st(be)->pool, out->type, src->data, out->ne1, out->ne0, p);
        }
        if (rc != 0) {
            slab_put(st(be), p); /* cannot happen after repackable(); keep the file's layout */
            out->type = src->type;
            return 0;
        }
        out->data = p;
        out->owned = true;
        out->repacked = true;
        /* the mapped weight is not read again: resident memory holds it once, not twice */
        fitlm_tensor_drop_pages(src);
    }
    return 0;
}

static int cpu_reserve(fitlm_backend *be, uint32_t n_tokens, uint32_t n_ctx, uint32_t n_heads, uint32_t n_kv_heads,
                       uint32_t head_dim, fitlm_error *err) {
    cpu_state *s = st(be);
    if ((int64_t)n_tokens + 1 > s->att_tiles_cap) {
        int32_t *t = malloc(((size_t)n_tokens + 1) * sizeof *t);
        if (!t) return fitlm_fail(err, "out of memory reserving attention tiles for %u tokens", n_tokens);
        free(s->att_tiles);
        s->att_tiles = t;
        s->att_tiles_cap = (int64_t)n_tokens + 1;
    }
    uint32_t group = n_kv_heads ? n_heads / n_kv_heads : 1;
    if (group < 1) group = 1;
    /* per thread: scores of up to `group` query heads over n_ctx positions,
     * then 8 cache rows of head_dim floats */
    int64_t scores = (((int64_t)n_ctx + 15) & ~(int64_t)15) * group;
    int64_t rows = ((int64_t)head_dim * 8 + 15) & ~(int64_t)15;
    /* the AVX-512 path (attention.h) uses the whole stride as its scratch */
    int64_t lanes = (fitlm_att_lanes_scratch(n_ctx, head_dim) + 15) & ~(int64_t)15;
    if (scores + rows < lanes) scores = lanes - rows;
    if (scores <= s->att_scores && rows <= s->att_stride - s->att_scores) return 0;
    if (scores < s->att_scores) scores = s->att_scores;
    if (rows < s->att_stride - s->att_scores) rows = s->att_stride - s->att_scores;
    int64_t stride = scores + rows;
    float *p = aligned_alloc(64, (size_t)stride * (size_t)s->n_threads * sizeof(float));
    if (!p) return fitlm_fail(err, "out of memory reserving attention scratch for %u positions", n_ctx);
    free(s->att_scratch);
    s->att_scratch = p;
    s->att_stride = stride;
    s->att_scores = scores;
    s->att_ctx = n_ctx;
    return 0;
}

static uint64_t cpu_scratch_bytes(const fitlm_backend *be) {
    const cpu_state *s = be->state;
    return (uint64_t)s->att_stride * (uint64_t)s->n_threads * sizeof(float) +
           (uint64_t)s->att_tiles_cap * sizeof(int32_t);
}

static void cpu_upload(fitlm_backend *be, fitlm_btensor *t, int64_t row0, int64_t n_rows, const float *src) {
    (void)be;
    memcpy((float *)t->data + row0 * t->ne0, src, (size_t)(n_rows * t->ne0) * sizeof(float));
}

static void cpu_download(fitlm_backend *be, const fitlm_btensor *t, int64_t row0, int64_t n_rows, float *dst) {
    (void)be;
    memcpy(dst, (const float *)t->data + row0 * t->ne0, (size_t)(n_rows * t->ne0) * sizeof(float));
}

static void cpu_clear(fitlm_backend *be, fitlm_btensor *t) {
    (void)be;
    if (t->data) memset(t->data, 0, (size_t)t->nbytes);
}

static int cpu_sync(fitlm_backend *be, fitlm_error *err) {
    (void)be;
    (void)err;
    return 0;
}

/* ---- ops ---- */

/* Below this many multiply-adds a float-weight matmul runs on the calling
 * thread (waking the pool costs more). Only for F32/F16: the quantized and BF16
 * kernels need the pool's scratch for the activations (with no pool they would
 * allocate on every call). */
#define MATMUL_PAR_MIN_MACS (1 << 18)

static void cpu_matmul(fitlm_backend *be, const fitlm_btensor *W, const fitlm_btensor *x, int64_t n_tokens,
                       fitlm_btensor *y) {
    fitlm_threadpool *pool = st(be)->pool;
    bool plain = W->type == FITLM_TYPE_F32 || W->type == FITLM_TYPE_F16;
    if (plain && W->ne0 * W->ne1 * n_tokens < MATMUL_PAR_MIN_MACS) pool = NULL;
    if (W->repacked) fitlm_cpu_matmul_repacked(pool, W->type, W->data, W->ne1, W->ne0, x->data, n_tokens, y->data);
    else fitlm_cpu_matmul(pool, W->type, W->data, W->ne1, W->ne0, x->data, n_tokens, y->data);
}

static void cpu_matmul_multi(fitlm_backend *be, int n, const fitlm_btensor *const *W, const fitlm_btensor *x,
                             int64_t n_tokens, fitlm_btensor *const *y) {
    if (n <= 0) return;
    /* one pass when every matrix has the type, width and layout of the first */
    bool same = n <= FITLM_CPU_MM_MAX;
    for (int i = 1; i < n && same; i++)
        same = W[i]->type == W[0]->type && W[i]->ne0 == W[0]->ne0 && W[i]->repacked == W[0]->repacked;
    if (!same) {
        for (int i = 0; i < n; i++) cpu_matmul(be, W[i], x, n_tokens, y[i]);
        return;
    }
    fitlm_cpu_mm mats[FITLM_CPU_MM_MAX];
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        mats[i] = (fitlm_cpu_mm){.W = W[i]->data, .rows = W[i]->ne1, .Y = y[i]->data};
        rows += W[i]->ne1;
    }
    fitlm_threadpool *pool = st(be)->pool;
    bool plain = W[0]->type == FITLM_TYPE_F32 || W[0]->type == FITLM_TYPE_F16;
    if (plain && W[0]->ne0 * rows * n_tokens < MATMUL_PAR_MIN_MACS) pool = NULL;
    fitlm_cpu_matmul_multi(pool, W[0]->type, W[0]->ne0, x->data, n_tokens, n, mats, W[0]->repacked);
}

typedef struct rows_job {
    const float *x;
    const float *w;
    float *y;
    int64_t n;       /* elements per row */
    int64_t n_rows;
    float eps;
    /* rope */
    int n_heads;
    const int32_t *pos;
    const fitlm_rope_table *rope;
} rows_job;

static void rmsnorm_worker(void *arg, int ith, int nth) {
    rows_job *j = arg;
    int64_t lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) fitlm_ops_rmsnorm(j->x + t * j->n, j->w, j->eps, j->n, j->y + t * j->n);
}

static void run_rows(cpu_state *s, fitlm_parallel_fn fn, rows_job *j) {
    if (j->n_rows * j->n < PAR_MIN_ELEMS || j->n_rows < 2)
        fn(j, 0, 1);
    else
        fitlm_threadpool_run(s->pool, fn, j);
}

static void cpu_rmsnorm(fitlm_backend *be, const fitlm_btensor *x, const fitlm_btensor *w, float eps,
                        int64_t n_tokens, fitlm_btensor *y) {
    rows_job j = {.x = x->data, .w = w ? w->data : NULL, .y = y->data, .n = x->ne0, .n_rows = n_tokens, .eps = eps};
    run_rows(st(be), rmsnorm_worker, &j);
}

static void rope_worker(void *arg, int ith, int nth) {
    rows_job *j = arg;
    int64_t lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        fitlm_ops_rope(j->y + t * j->n, j->n_heads, j->rope->head_dim, j->pos[t], j->rope->inv_freq,
                       j->rope->layout);
}

static void cpu_rope(fitlm_backend *be, fitlm_btensor *x, int64_t n_tokens, int n_heads, const int32_t *pos,
                     const fitlm_rope_table *rope) {
    rows_job j = {.y = x->data, .n = x->ne0, .n_rows = n_tokens, .n_heads = n_heads, .pos = pos, .rope = rope};
    run_rows(st(be), rope_worker, &j);
}

static void cpu_kv_store(fitlm_backend *be, fitlm_btensor *cache, const int64_t *slot, const fitlm_btensor *src,
                         int64_t n_tokens) {
    (void)be;
    uint64_t row_bytes = fitlm_ops_kv_row_bytes(cache->type, cache->ne0);
    for (int64_t t = 0; t < n_tokens; t++)
        fitlm_ops_kv_store_row(cache->type, (const float *)src->data + t * src->ne0,
                               (uint8_t *)cache->data + (uint64_t)slot[t] * row_bytes, cache->ne0);
}

static void cpu_copy_slots(fitlm_backend *be, fitlm_btensor *cache, const int64_t *src_slot, const int64_t *dst_slot,
                           int64_t n) {
    (void)be;
    uint64_t row_bytes = fitlm_ops_kv_row_bytes(cache->type, cache->ne0);
    uint8_t *base = cache->data;
    for (int64_t i = 0; i < n; i++)
        if (src_slot[i] != dst_slot[i])
            memcpy(base + (uint64_t)dst_slot[i] * row_bytes, base + (uint64_t)src_slot[i] * row_bytes, row_bytes);
}

static void cpu_get_rows(fitlm_backend *be, const fitlm_btensor *src, const int32_t *rows, int64_t n,
                         fitlm_btensor *dst) {
    (void)be;
    for (int64_t i = 0; i < n; i++)
        memmove((float *)dst->data + i * dst->ne0, (const float *)src->data + (int64_t)rows[i] * src->ne0,
                (size_t)src->ne0 * sizeof(float));
}

typedef struct att_job {
    cpu_state *s;
    int tt; /* lanes path: tokens per work item (x sub heads <= 16 lanes, 8 with AVX2) */
    bool lanes8; /* the AVX2 lanes (8) instead of AVX-512's (16) */
    const int32_t *tiles; /* lanes path: tile i = tokens tiles[i] .. tiles[i+1]-1, one sequence */
    int64_t n_tiles;
    const float *q;
    const fitlm_btensor *k, *v;
    float *out;
    const fitlm_attn_batch *ab;
    int n_heads, n_kv_heads, head_dim;
    int sub; /* query heads per work item (they share one KV head) */
    uint32_t window;
    uint64_t row_bytes;
} att_job;

/* A head's slice of the cache rows of one work item, walked 8 positions at a
 * time: positions first .. first+n-1 of one sequence (slots through its block
 * table), elements [off, off+D) of each row (bytes [soff, soff+sbytes)). */
typedef struct kv_walk {
    const uint8_t *base;
    int type;
    uint64_t row_bytes, soff, sbytes;
    const int32_t *table;
    int shift;
    int64_t first, n, off, D;
} kv_walk;

static inline const uint8_t *kv_row(const kv_walk *w, int64_t p) {
    int64_t slot = ((int64_t)w->table[p >> w->shift] << w->shift) | (p & (((int64_t)1 << w->shift) - 1));
    return w->base + (uint64_t)slot * w->row_bytes;
}

/* Asks for the cache lines of the slices of positions first+p .. (clipped to
 * the walk): strided slices the weight stream has evicted come from memory
 * while earlier rows are computed on. */
static inline void kv_prefetch(const kv_walk *w, int64_t p, int64_t count) {
    if (p + count > w->n) count = w->n - p;
    for (int64_t r = 0; r < count; r++) {
        const uint8_t *a = kv_row(w, w->first + p + r) + w->soff;
        for (uint64_t b = 0; b < w->sbytes; b += 64) __builtin_prefetch(a + b, 0, 3);
    }
}

/* Positions p0 .. p0+7 of the walk as floats in rows8 (8 x D; rows past the
 * end are zero), asking for the block after the next one; returns how many
 * are real (<= 8). The first call (p0 == 0) also asks for the first two blocks. */
static int kv_rows8(const kv_walk *w, int64_t p0, float *rows8) {
    if (p0 == 0) kv_prefetch(w, 0, 16);
    kv_prefetch(w, p0 + 16, 8);
    int m = w->n - p0 < 8 ? (int)(w->n - p0) : 8;
    for (int r = 0; r < 8; r++) {
        if (r < m)
            fitlm_ops_kv_row_f32(w->type, kv_row(w, w->first + p0 + r), w->off, rows8 + (int64_t)r * w->D, w->D);
        else
            memset(rows8 + (int64_t)r * w->D, 0, (size_t)w->D * sizeof(float));
    }
    return m;
}

/* The first position token t attends. */
static inline int64_t att_first(const att_job *j, int64_t pos) {
    return j->window > 0 && pos + 1 > (int64_t)j->window ? pos + 1 - (int64_t)j->window : 0;
}

/* One work item = token t x `sub` consecutive query heads of one KV group: each
 * K and V row slice is read once for all of them. */
static void attention_worker(void *arg, int ith, int nth) {
    att_job *j = arg;
    int per_token = j->n_heads / j->sub;
    int64_t items = j->ab->n_tokens * per_token, lo, hi;
    split(items, ith, nth, &lo, &hi);
    float *scores = j->s->att_scratch + (int64_t)ith * j->s->att_stride;
    float *rows8 = scores + j->s->att_scores; /* 8 cache rows as floats */
    int group = j->n_heads / j->n_kv_heads, sub = j->sub, D = j->head_dim;
    int64_t q_stride = (int64_t)j->n_heads * D;
    float scale = 1.0f / sqrtf((float)D);
    const uint8_t *kbase = j->k->data, *vbase = j->v->data;
    int ktype = j->k->type, vtype = j->v->type;
    for (int64_t it = lo; it < hi; it++) {
        int64_t t = it / per_token;
        int h0 = (int)(it % per_token) * sub;
        int64_t pos = j->ab->pos[t];
        int64_t first = att_first(j, pos);
        int64_t off = (int64_t)(h0 / group) * D;
        int64_t n = pos + 1 - first;
        const float *q0 = j->q + t * q_stride + (int64_t)h0 * D;
        /* the head's slice of a cache row (K and V have the same type) */
        kv_walk kw = {.base = kbase, .type = ktype, .row_bytes = j->row_bytes,
                      .soff = fitlm_ops_kv_row_bytes(ktype, off), .sbytes = fitlm_ops_kv_row_bytes(ktype, D),
                      .table = j->ab->block_table[j->ab->seq[t]], .shift = j->ab->block_shift,
                      .first = first, .n = n, .off = off, .D = D};
        kv_walk vw = kw;
        vw.base = vbase;
        vw.type = vtype;
        /* 8 positions at a time: their K (then V) slices are converted to
         * floats once for all `sub` query heads of the group */
        for (int64_t p0 = 0; p0 < n; p0 += 8) {
            int m = kv_rows8(&kw, p0, rows8);
            for (int g = 0; g < sub; g++) {
                float s8[8];
                fitlm_ops_dot8(rows8, q0 + (int64_t)g * D, D, s8);
                for (int r = 0; r < m; r++) scores[g * n + p0 + r] = s8[r] * scale;
            }
        }
        float *o0 = j->out + t * q_stride + (int64_t)h0 * D;
        for (int g = 0; g < sub; g++) {
            fitlm_ops_softmax(scores + g * n, n);
            memset(o0 + (int64_t)g * D, 0, (size_t)D * sizeof(float));
        }
        for (int64_t p0 = 0; p0 < n; p0 += 8) {
            int m = kv_rows8(&vw, p0, rows8);
            for (int g = 0; g < sub; g++) {
                float w8[8] = {0};
                for (int r = 0; r < m; r++) w8[r] = scores[g * n + p0 + r];
                fitlm_ops_axpy8(rows8, w8, D, o0 + (int64_t)g * D);
            }
        }
    }
}

/* The AVX-512 path: one work item = up to 16 lanes (the tokens of one tile,
 * all of one sequence, x sub query heads of one KV group) through
 * fitlm_attention_lanes_avx512; each lane's result does not depend on which
 * lanes share its item. */
static void attention_lanes_worker(void *arg, int ith, int nth) {
    att_job *j = arg;
    int group = j->n_heads / j->n_kv_heads, sub = j->sub, D = j->head_dim;
    int64_t per_tile = (int64_t)j->n_kv_heads * (group / sub);
    int64_t items = j->n_tiles * per_tile, lo, hi;
    split(items, ith, nth, &lo, &hi);
    int64_t q_stride = (int64_t)j->n_heads * D;
    fitlm_att_lanes a;
    memset(&a, 0, sizeof a);
    a.D = D;
    a.k_base = j->k->data;
    a.v_base = j->v->data;
    a.kv_type = j->k->type;
    a.row_bytes = j->row_bytes;
    a.block_shift = j->ab->block_shift;
    a.scale = 1.0f / sqrtf((float)D);
    a.scratch = j->s->att_scratch + (int64_t)ith * j->s->att_stride;
    for (int64_t it = lo; it < hi; it++) {
        int64_t tile = it / per_tile;
        int64_t t0 = j->tiles[tile];
        int nt = (int)(j->tiles[tile + 1] - t0);
        int h0 = (int)(it % per_tile) * sub; /* first query head; its KV head is h0 / group */
        a.off = (int64_t)(h0 / group) * D;
        a.n_lanes = nt * sub;
        a.table = j->ab->block_table[j->ab->seq[t0]];
        a.plo = INT64_MAX;
        a.phi = 0;
        for (int t = 0; t < nt; t++) {
            int64_t pos = j->ab->pos[t0 + t], first = att_first(j, pos);
            for (int h = 0; h < sub; h++) {
                int l = t * sub + h;
                a.q[l] = j->q + (t0 + t) * q_stride + (int64_t)(h0 + h) * D;
                a.out[l] = j->out + (t0 + t) * q_stride + (int64_t)(h0 + h) * D;
                a.lo[l] = first;
                a.hi[l] = pos;
            }
            if (first < a.plo) a.plo = first;
            if (pos > a.phi) a.phi = pos;
        }
        if (j->lanes8) fitlm_attention_lanes_avx2(&a);
        else fitlm_attention_lanes_avx512(&a);
    }
}

/* Splits the tokens into tiles of at most tt consecutive tokens of one
 * sequence (tiles[i] = first token of tile i, tiles[n] = n_tokens); returns
 * the number of tiles. */
static int64_t att_make_tiles(const fitlm_attn_batch *ab, int tt, int32_t *tiles) {
    int64_t n = 0;
    for (int64_t t = 0; t < ab->n_tokens; t++)
        if (n == 0 || t - tiles[n - 1] >= tt || ab->seq[t] != ab->seq[tiles[n - 1]]) tiles[n++] = (int32_t)t;
    tiles[n] = (int32_t)ab->n_tokens;
    return n;
}

static void cpu_attention(fitlm_backend *be, const fitlm_btensor *q, const fitlm_btensor *k_cache,
                          const fitlm_btensor *v_cache, const fitlm_attn_batch *ab, int n_heads, int n_kv_heads,
                          int head_dim, uint32_t window, fitlm_btensor *out) {
    cpu_state *s = st(be);
    int64_t n_tokens = ab->n_tokens;
    if (n_tokens <= 0) return;
    int64_t max_pos = 0;
    for (int64_t t = 0; t < n_tokens; t++)
        if (ab->pos[t] > max_pos) max_pos = ab->pos[t];
    int group = n_heads / n_kv_heads;
    fitlm_cpu_isa isa = fitlm_cpu_isa_active();
    bool lanes8 = isa == FITLM_ISA_AVX2;
    int max_lanes = lanes8 ? 8 : 16;
    bool lanes = (isa >= FITLM_ISA_AVX512 ? fitlm_att_lanes_ok(head_dim)
                  : lanes8              ? fitlm_att_lanes8_ok(head_dim)
                                        : false) &&
                 fitlm_att_lanes_scratch(max_pos + 1, head_dim) <= s->att_stride && n_tokens < s->att_tiles_cap;
    /* whole groups per item (the lanes path: at most 16 heads, and as many
     * tokens of one sequence as fill 16 lanes), halved while that leaves
     * threads idle */
    int sub = group, tt = 1;
    if (lanes) {
        while (sub > max_lanes && sub % 2 == 0) sub /= 2;
        if (sub > max_lanes) lanes = false;
        else tt = max_lanes / sub;
    }
    int64_t n_tiles = lanes ? att_make_tiles(ab, tt, s->att_tiles) : n_tokens;
    while (sub % 2 == 0 && n_tiles * (n_heads / sub) < s->n_threads) {
        if (tt > 1) tt /= 2;
        else sub /= 2;
        if (lanes) n_tiles = att_make_tiles(ab, tt, s->att_tiles);
    }
    att_job j = {.s = s,
                 .q = q->data,
                 .k = k_cache,
                 .v = v_cache,
                 .out = out->data,
                 .ab = ab,
                 .n_heads = n_heads,
                 .n_kv_heads = n_kv_heads,
                 .head_dim = head_dim,
                 .sub = sub,
                 .tt = tt,
                 .lanes8 = lanes8,
                 .tiles = s->att_tiles,
                 .n_tiles = n_tiles,
                 .window = window,
                 .row_bytes = fitlm_ops_kv_row_bytes(k_cache->type, k_cache->ne0)};
    /* work ~ items * context * head_dim */
    int64_t work = n_tokens * n_heads * (max_pos + 1) * head_dim;
    void (*worker)(void *, int, int) = lanes ? attention_lanes_worker : attention_worker;
    if (work < PAR_MIN_ELEMS || s->n_threads == 1)
        worker(&j, 0, 1);
    else
        fitlm_threadpool_run(s->pool, worker, &j);
}

typedef struct ew_job {
    float *x;
    const float *a, *b;
    int64_t n;
    int kind; /* 0 silu_mul, 1 add */
} ew_job;

static void ew_worker(void *arg, int ith, int nth) {
    ew_job *j = arg;
    int64_t lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    /* keep chunk boundaries on 16-float multiples */
    lo &= ~(int64_t)15;
    if (ith == nth - 1)
        hi = j->n;
    else
        hi &= ~(int64_t)15;
    if (hi <= lo) return;
    if (j->kind == 0)
        fitlm_ops_silu_mul(j->a + lo, j->b + lo, j->x + lo, hi - lo);
    else
        fitlm_ops_add(j->x + lo, j->b + lo, hi - lo);
}

static void run_ew(cpu_state *s, ew_job *j) {
    if (j->n < PAR_MIN_ELEMS)
        ew_worker(j, 0, 1);
    else
        fitlm_threadpool_run(s->pool, ew_worker, j);
}

static void cpu_silu_mul(fitlm_backend *be, const fitlm_btensor *gate, const fitlm_btensor *up, int64_t n_tokens,
                         fitlm_btensor *out) {
    ew_job j = {.x = out->data, .a = gate->data, .b = up->data, .n = n_tokens * gate->ne0, .kind = 0};
    run_ew(st(be), &j);
}

static void cpu_add(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *y, int64_t n_tokens) {
    ew_job j = {.x = x->data, .b = y->data, .n = n_tokens * x->ne0, .kind = 1};
    run_ew(st(be), &j);
}

static void cpu_add_bias(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *b, int64_t n_tokens) {
    (void)be;
    for (int64_t t = 0; t < n_tokens; t++) fitlm_ops_add((float *)x->data + t * x->ne0, b->data, x->ne0);
}

static void cpu_embed(fitlm_backend *be, const fitlm_btensor *E, const int32_t *ids, int64_t n_tokens,
                      fitlm_btensor *out) {
    (void)be;
    for (int64_t t = 0; t < n_tokens; t++)
        if (E->repacked) fitlm_cpu_get_row_repacked(E->type, E->data, E->ne0, ids[t], (float *)out->data + t * out->ne0);
        else fitlm_cpu_get_row(E->type, E->data, E->ne0, ids[t], (float *)out->data + t * out->ne0);
}

static void cpu_free(fitlm_backend *be) {
    if (!be) return;
    cpu_state *s = be->state;
    if (s) {
        fitlm_threadpool_free(s->pool);
        free(s->att_scratch);
        free(s->att_tiles);
        while (s->slabs) { /* copies the caller did not release */
            weight_slab *h = s->slabs;
            s->slabs = h->next;
            free(h->base);
            free(h);
        }
        free(s);
    }
    free(be);
}

fitlm_backend *fitlm_backend_cpu_new(int n_threads, fitlm_error *err) {
    fitlm_backend *be = calloc(1, sizeof *be);
    cpu_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    if (n_threads <= 0) n_threads = fitlm_physical_cores();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 1) {
        s->pool = fitlm_threadpool_new(n_threads);
        if (!s->pool) {
            free(be);
            free(s);
            fitlm_fail(err, "cannot start %d threads", n_threads);
            return NULL;
        }
        s->n_threads = fitlm_threadpool_size(s->pool);
    } else {
        s->n_threads = 1; /* pool NULL: everything runs on the calling thread */
    }
    fitlm_ops_use_avx2(); /* decide the SIMD path once, before any worker thread runs */
    be->name = "cpu";
    be->device = FITLM_DEVICE_CPU;
    be->state = s;
    be->free = cpu_free;
    be->weight_type_supported = cpu_weight_type_supported;
    be->alloc = cpu_alloc;
    be->release = cpu_release;
    be->prepare_weight = cpu_prepare_weight;
    be->reserve = cpu_reserve;
    be->scratch_bytes = cpu_scratch_bytes;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->clear = cpu_clear;
    be->sync = cpu_sync;
    be->matmul = cpu_matmul;
    be->matmul_multi = cpu_matmul_multi;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = cpu_rope;
    be->kv_store = cpu_kv_store;
    be->attention = cpu_attention;
    be->silu_mul = cpu_silu_mul;
    be->add = cpu_add;
    be->add_bias = cpu_add_bias;
    be->embed = cpu_embed;
    be->get_rows = cpu_get_rows;
    be->copy_slots = cpu_copy_slots;
    return be;
}

int fitlm_backend_cpu_threads(const fitlm_backend *be) {
    if (be->device != FITLM_DEVICE_CPU) return 0;
    return ((const cpu_state *)be->state)->n_threads;
}

fitlm_threadpool *fitlm_backend_cpu_pool(const fitlm_backend *be) {
    if (be->device != FITLM_DEVICE_CPU) return NULL;
    return ((const cpu_state *)be->state)->pool;
}
