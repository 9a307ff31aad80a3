/* A backend that splits a model's layers between a GPU backend and the CPU
 * backend (-ngl N): see split.h. */
#include "backend/split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"

enum { SIDE_CPU = 1, SIDE_GPU = 2 };

/* dual addresses: tag bit 62, (id + 1) << 40, byte offset */
#define DUAL_TAG (1ull << 62)
#define DUAL_SHIFT 40

/* An activation or cache tensor that may live on either side: each side's
 * copy is made on first use; `valid` says which copies hold the current
 * contents, [dlo, dhi) bounds what the one valid side wrote since the two
 * last agreed. */
typedef struct dual {
    bool used;
    uint64_t bytes;
    int type;
    int64_t ne0, ne1;
    void *host;        /* CPU copy (malloc'd here), NULL until used */
    fitlm_btensor dev; /* GPU copy (owned by the GPU backend), data NULL until used */
    int valid;         /* SIDE_* bits */
    bool pristine;     /* not written since allocation or clear() */
    bool zero;         /* cleared: a copy made now starts as zeros */
    uint64_t dlo, dhi;
} dual;

typedef struct split_state {
    fitlm_backend *gpu, *cpu;
    uint32_t n_layers, n_gpu;
    dual *d;
    uint32_t n_d, cap_d;
    int cur; /* side of the last op */
    bool failed;
    fitlm_error err;
    bool noted[64]; /* types already reported as kept on the CPU */
} split_state;

static split_state *ss(const fitlm_backend *be) {
    return (split_state *)be->state;
}

static void sp_fail(split_state *s, const char *msg) {
    if (s->failed) return;
    s->failed = true;
    fitlm_fail(&s->err, "%s", msg);
}

static dual *dual_of(split_state *s, const void *p, uint64_t *off) {
    uint64_t v = (uint64_t)(uintptr_t)p;
    if (!(v & DUAL_TAG)) return NULL;
    v &= ~DUAL_TAG;
    uint64_t id = v >> DUAL_SHIFT;
    if (id == 0 || id > s->n_d || !s->d[id - 1].used) return NULL;
    *off = v & ((1ull << DUAL_SHIFT) - 1);
    return &s->d[id - 1];
}

static fitlm_backend *side_be(split_state *s, int side) {
    return side == SIDE_GPU ? s->gpu : s->cpu;
}

/* The side a tensor's current contents are on (a weight: its backend's). */
static int side_of(split_state *s, const fitlm_btensor *t) {
    uint64_t off;
    dual *d = dual_of(s, t->data, &off);
    if (!d) return t->device == FITLM_DEVICE_CPU ? SIDE_CPU : SIDE_GPU;
    if (d->valid & s->cur) return s->cur;
    if (d->valid) return d->valid & SIDE_GPU ? SIDE_GPU : SIDE_CPU;
    return s->cur;
}

/* An F32 view of bytes [lo, hi) of d's GPU copy. */
static fitlm_btensor dev_bytes(dual *d, uint64_t lo, uint64_t hi) {
    fitlm_btensor v = d->dev;
    v.type = FITLM_TYPE_F32;
    v.data = (uint8_t *)d->dev.data + lo;
    v.ne0 = (int64_t)((hi - lo) / 4);
    v.ne1 = 1;
    v.nbytes = hi - lo;
    v.owned = false;
    return v;
}

/* Copies bytes [lo, hi) of d from side `from` to the other side. */
static void copy_across(split_state *s, dual *d, int from, uint64_t lo, uint64_t hi) {
    lo &= ~3ull;
    hi = (hi + 3) & ~3ull; /* both copies are allocated in multiples of 4 (and more) */
    if (hi <= lo) return;
    fitlm_btensor v = dev_bytes(d, lo, hi);
    if (from == SIDE_CPU)
        s->gpu->upload(s->gpu, &v, 0, 1, (const float *)((uint8_t *)d->host + lo));
    else
        s->gpu->download(s->gpu, &v, 0, 1, (float *)((uint8_t *)d->host + lo));
}

/* Makes d's copy on `side` current (creating it if needed). */
static bool ensure(split_state *s, dual *d, int side) {
    bool have = side == SIDE_CPU ? d->host != NULL : d->dev.data != NULL;
    if (!have) {
        if (side == SIDE_CPU) {
            d->host = aligned_alloc(64, (d->bytes + 63) / 64 * 64); /* freed by release() or free() */
            if (!d->host) {
                sp_fail(s, "out of memory for an activation copy on the CPU");
                return false;
            }
            if (d->zero) memset(d->host, 0, d->bytes);
        } else {
            fitlm_error err = {{0}};
            if (s->gpu->alloc(s->gpu, d->type, d->ne0, d->ne1, &d->dev, &err)) {
                sp_fail(s, err.msg);
                return false;
            }
            d->dev.owned = true;
            if (d->zero) s->gpu->clear(s->gpu, &d->dev);
        }
        if (d->pristine) {
            d->valid |= side;
        } else if (d->valid) {
            copy_across(s, d, d->valid, 0, d->bytes);
            d->valid |= side;
        }
        return true;
    }
    if (!(d->valid & side) && d->valid) {
        copy_across(s, d, d->valid, d->dlo, d->dhi);
        d->valid |= side;
        d->dlo = d->dhi = 0;
    }
    d->valid |= side;
    return true;
}

static void mark_written(split_state *s, const fitlm_btensor *t, int side, uint64_t len) {
    uint64_t off;
    dual *d = dual_of(s, t->data, &off);
    if (!d) return;
    uint64_t lo = off, hi = off + len > d->bytes ? d->bytes : off + len;
    int other = side == SIDE_CPU ? SIDE_GPU : SIDE_CPU;
    if ((d->valid & other) || d->pristine) {
        d->dlo = lo;
        d->dhi = hi;
    } else {
        if (lo < d->dlo) d->dlo = lo;
        if (hi > d->dhi) d->dhi = hi;
    }
    d->valid = side;
    d->pristine = false;
}

/* t as the backend of `side` sees it (the side's copy made current). */
static fitlm_btensor on(split_state *s, const fitlm_btensor *t, int side) {
    uint64_t off;
    dual *d = dual_of(s, t->data, &off);
    if (!d) return *t;
    fitlm_btensor v = *t;
    v.owned = false;
    if (!ensure(s, d, side)) {
        v.data = NULL;
        return v;
    }
    if (side == SIDE_CPU) {
        v.data = (uint8_t *)d->host + off;
        v.device = FITLM_DEVICE_CPU;
    } else {
        v.data = (uint8_t *)d->dev.data + off;
        v.device = d->dev.device;
    }
    return v;
}

static uint64_t f32_rows(const fitlm_btensor *t, int64_t n) {
    return (uint64_t)n * (uint64_t)t->ne0 * 4;
}

/* ---- table ---- */

static void sp_free(fitlm_backend *be) {
    split_state *s = ss(be);
    for (uint32_t i = 0; i < s->n_d; i++)
        if (s->d[i].used) {
            free(s->d[i].host);
            if (s->d[i].dev.data) s->gpu->release(s->gpu, &s->d[i].dev);
        }
    free(s->d);
    s->gpu->free(s->gpu);
    s->cpu->free(s->cpu);
    free(s);
    free(be);
}

static bool sp_supported(const fitlm_backend *be, int type) {
    split_state *s = ss(be);
    return s->gpu->weight_type_supported(s->gpu, type) || s->cpu->weight_type_supported(s->cpu, type);
}

static int sp_alloc(fitlm_backend *be, int type, int64_t ne0, int64_t ne1, fitlm_btensor *out, fitlm_error *err) {
    split_state *s = ss(be);
    memset(out, 0, sizeof *out);
    bool ok = true;
    uint64_t rb = fitlm_type_row_bytes(type, (uint64_t)ne0, &ok);
    if (ne0 <= 0 || ne1 <= 0 || !ok || !rb)
        return fitlm_fail(err, "cannot allocate a %lldx%lld tensor", (long long)ne0, (long long)ne1);
    uint32_t id = 0;
    while (id < s->n_d && s->d[id].used) id++;
    if (id == s->n_d) {
        if (s->n_d == s->cap_d) {
            uint32_t cap = s->cap_d ? 2 * s->cap_d : 64;
            dual *g = realloc(s->d, cap * sizeof *g);
            if (!g) return fitlm_fail(err, "out of memory");
            s->d = g;
            s->cap_d = cap;
        }
        s->n_d++;
    }
    dual *d = &s->d[id];
    memset(d, 0, sizeof *d);
    d->used = true;
    d->bytes = rb * (uint64_t)ne1;
    d->type = type;
    d->ne0 = ne0;
    d->ne1 = ne1;
    d->pristine = true;
    out->type = type;
    out->device = be->device;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->nbytes = d->bytes;
    out->data = (void *)(uintptr_t)(DUAL_TAG | ((uint64_t)(id + 1) << DUAL_SHIFT));
    out->owned = true;
    return 0;
}

static void sp_release(fitlm_backend *be, fitlm_btensor *t) {
    split_state *s = ss(be);
    uint64_t off;
    dual *d = dual_of(s, t->data, &off);
    if (d) {
        if (t->owned) {
            free(d->host);
            if (d->dev.data) s->gpu->release(s->gpu, &d->dev);
            memset(d, 0, sizeof *d);
        }
        memset(t, 0, sizeof *t);
        return;
    }
    if (t->data) {
        fitlm_backend *owner = side_be(s, t->device == FITLM_DEVICE_CPU ? SIDE_CPU : SIDE_GPU);
        owner->release(owner, t);
    }
    memset(t, 0, sizeof *t);
}

static int sp_prepare(fitlm_backend *be, const fitlm_tensor *src, fitlm_btensor *out, fitlm_error *err) {
    split_state *s = ss(be);
    int side;
    if (src->layer >= 0)
        side = (uint32_t)src->layer + s->n_gpu >= s->n_layers ? SIDE_GPU : SIDE_CPU;
    else if (src->kind == FITLM_T_TOKEN_EMBD)
        side = s->n_gpu >= s->n_layers ? SIDE_GPU : SIDE_CPU;
    else
        side = s->n_gpu > 0 ? SIDE_GPU : SIDE_CPU; /* the output layer goes with the last GPU layer */
    bool is_vector = src->n_dims == 1 || src->n_elements == src->ne[0];
    if (side == SIDE_GPU && !is_vector && !s->gpu->weight_type_supported(s->gpu, src->type)) {
        side = SIDE_CPU;
        if (src->type >= 0 && src->type < 64 && !s->noted[src->type]) {
            s->noted[src->type] = true;
            fprintf(stderr, "fitlm: note: %s weights stay on the CPU (the %s backend has no kernels for them)\n",
                    fitlm_type_name(src->type), s->gpu->name);
        }
    }
    return side_be(s, side)->prepare_weight(side_be(s, side), src, out, err);
}

static int sp_reserve(fitlm_backend *be, uint32_t n_tokens, uint32_t n_ctx, uint32_t n_heads, uint32_t n_kv_heads,
                      uint32_t head_dim, fitlm_error *err) {
    split_state *s = ss(be);
    if (s->n_gpu > 0 && s->gpu->reserve(s->gpu, n_tokens, n_ctx, n_heads, n_kv_heads, head_dim, err)) return -1;
    return s->cpu->reserve(s->cpu, n_tokens, n_ctx, n_heads, n_kv_heads, head_dim, err);
}

static uint64_t sp_scratch(const fitlm_backend *be) {
    split_state *s = ss(be);
    return s->gpu->scratch_bytes(s->gpu) + s->cpu->scratch_bytes(s->cpu);
}

static void sp_upload(fitlm_backend *be, fitlm_btensor *t, int64_t row0, int64_t n_rows, const float *src) {
    split_state *s = ss(be);
    int side = side_of(s, t);
    fitlm_btensor v = on(s, t, side);
    if (!v.data) return;
    side_be(s, side)->upload(side_be(s, side), &v, row0, n_rows, src);
    fitlm_btensor r = fitlm_btensor_rows(t, row0, n_rows);
    mark_written(s, &r, side, r.nbytes);
}

static void sp_download(fitlm_backend *be, const fitlm_btensor *t, int64_t row0, int64_t n_rows, float *dst) {
    split_state *s = ss(be);
    int side = side_of(s, t);
    fitlm_btensor v = on(s, t, side);
    if (!v.data) return;
    side_be(s, side)->download(side_be(s, side), &v, row0, n_rows, dst);
}

static void sp_clear(fitlm_backend *be, fitlm_btensor *t) {
    split_state *s = ss(be);
    uint64_t off;
    dual *d = dual_of(s, t->data, &off);
    if (!d) {
        int side = t->device == FITLM_DEVICE_CPU ? SIDE_CPU : SIDE_GPU;
        side_be(s, side)->clear(side_be(s, side), t);
        return;
    }
    d->zero = true;
    d->pristine = true;
    d->valid = 0;
    if (d->host) {
        memset(d->host, 0, d->bytes);
        d->valid |= SIDE_CPU;
    }
    if (d->dev.data) {
        s->gpu->clear(s->gpu, &d->dev);
        d->valid |= SIDE_GPU;
    }
}

static int sp_sync(fitlm_backend *be, fitlm_error *err) {
    split_state *s = ss(be);
    int rc = s->gpu->sync(s->gpu, err);
    if (!rc) rc = s->cpu->sync(s->cpu, err);
    if (!rc && s->failed) {
        if (err) *err = s->err;
        s->failed = false;
        rc = -1;
    }
    return rc;
}

/* ---- ops: they run where their weight is, else where their input is ---- */

static void sp_matmul(fitlm_backend *be, const fitlm_btensor *W, const fitlm_btensor *x, int64_t n, fitlm_btensor *y) {
    split_state *s = ss(be);
    int side = side_of(s, W);
    fitlm_btensor xv = on(s, x, side), yv = on(s, y, side);
    if (!xv.data || !yv.data) return;
    side_be(s, side)->matmul(side_be(s, side), W, &xv, n, &yv);
    mark_written(s, y, side, f32_rows(y, n));
    s->cur = side;
}

static void sp_matmul_multi(fitlm_backend *be, int n, const fitlm_btensor *const *W, const fitlm_btensor *x,
                            int64_t n_tokens, fitlm_btensor *const *y) {
    split_state *s = ss(be);
    int side = side_of(s, W[0]);
    for (int i = 1; i < n; i++)
        if (side_of(s, W[i]) != side) {
            for (int j = 0; j < n; j++) sp_matmul(be, W[j], x, n_tokens, y[j]);
            return;
        }
    fitlm_btensor xv = on(s, x, side), yv[FITLM_MATMUL_MULTI_MAX];
    fitlm_btensor *yp[FITLM_MATMUL_MULTI_MAX];
    for (int i = 0; i < n; i++) {
        yv[i] = on(s, y[i], side);
        yp[i] = &yv[i];
        if (!yv[i].data) return;
    }
    if (!xv.data) return;
    side_be(s, side)->matmul_multi(side_be(s, side), n, W, &xv, n_tokens, yp);
    for (int i = 0; i < n; i++) mark_written(s, y[i], side, f32_rows(y[i], n_tokens));
    s->cur = side;
}

static void sp_rmsnorm(fitlm_backend *be, const fitlm_btensor *x, const fitlm_btensor *w, float eps, int64_t n,
                       fitlm_btensor *y) {
    split_state *s = ss(be);
    int side = w ? side_of(s, w) : side_of(s, x);
    fitlm_btensor xv = on(s, x, side), yv = on(s, y, side);
    if (!xv.data || !yv.data) return;
    side_be(s, side)->rmsnorm(side_be(s, side), &xv, w, eps, n, &yv);
    mark_written(s, y, side, f32_rows(y, n));
    s->cur = side;
}

static void sp_rope(fitlm_backend *be, fitlm_btensor *x, int64_t n, int n_heads, const int32_t *pos,
                    const fitlm_rope_table *rope) {
    split_state *s = ss(be);
    int side = side_of(s, x);
    fitlm_btensor xv = on(s, x, side);
    if (!xv.data) return;
    side_be(s, side)->rope(side_be(s, side), &xv, n, n_heads, pos, rope);
    mark_written(s, x, side, f32_rows(x, n));
    s->cur = side;
}

static void sp_kv_store(fitlm_backend *be, fitlm_btensor *cache, const int64_t *slot, const fitlm_btensor *src,
                        int64_t n) {
    split_state *s = ss(be);
    int side = side_of(s, src);
    fitlm_btensor sv = on(s, src, side), cv = on(s, cache, side);
    if (!sv.data || !cv.data) return;
    side_be(s, side)->kv_store(side_be(s, side), &cv, slot, &sv, n);
    mark_written(s, cache, side, cache->nbytes);
    s->cur = side;
}

static void sp_attention(fitlm_backend *be, const fitlm_btensor *q, const fitlm_btensor *k, const fitlm_btensor *v,
                         const fitlm_attn_batch *ab, int n_heads, int n_kv_heads, int head_dim, uint32_t window,
                         fitlm_btensor *out) {
    split_state *s = ss(be);
    int side = side_of(s, q);
    fitlm_btensor qv = on(s, q, side), kv = on(s, k, side), vv = on(s, v, side), ov = on(s, out, side);
    if (!qv.data || !kv.data || !vv.data || !ov.data) return;
    side_be(s, side)->attention(side_be(s, side), &qv, &kv, &vv, ab, n_heads, n_kv_heads, head_dim, window, &ov);
    mark_written(s, out, side, (uint64_t)ab->n_tokens * (uint64_t)n_heads * (uint64_t)head_dim * 4);
    s->cur = side;
}

static void sp_get_rows(fitlm_backend *be, const fitlm_btensor *src, const int32_t *rows, int64_t n,
                        fitlm_btensor *dst) {
    split_state *s = ss(be);
    int side = side_of(s, src);
    fitlm_btensor sv = on(s, src, side), dv = on(s, dst, side);
    if (!sv.data || !dv.data) return;
    side_be(s, side)->get_rows(side_be(s, side), &sv, rows, n, &dv);
    mark_written(s, dst, side, f32_rows(dst, n));
    s->cur = side;
}

static void sp_copy_slots(fitlm_backend *be, fitlm_btensor *cache, const int64_t *from, const int64_t *to, int64_t n) {
    split_state *s = ss(be);
    int side = side_of(s, cache);
    fitlm_btensor cv = on(s, cache, side);
    if (!cv.data) return;
    side_be(s, side)->copy_slots(side_be(s, side), &cv, from, to, n);
    mark_written(s, cache, side, cache->nbytes);
}

static void sp_silu_mul(fitlm_backend *be, const fitlm_btensor *gate, const fitlm_btensor *up, int64_t n,
                        fitlm_btensor *out) {
    split_state *s = ss(be);
    int side = side_of(s, gate);
    fitlm_btensor gv = on(s, gate, side), uv = on(s, up, side), ov = on(s, out, side);
    if (!gv.data || !uv.data || !ov.data) return;
    side_be(s, side)->silu_mul(side_be(s, side), &gv, &uv, n, &ov);
    mark_written(s, out, side, f32_rows(out, n));
    s->cur = side;
}

static void sp_add(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *y, int64_t n) {
    split_state *s = ss(be);
    int side = side_of(s, y); /* the freshly computed branch: usually where the layer ran */
    fitlm_btensor xv = on(s, x, side), yv = on(s, y, side);
    if (!xv.data || !yv.data) return;
    side_be(s, side)->add(side_be(s, side), &xv, &yv, n);
    mark_written(s, x, side, f32_rows(x, n));
    s->cur = side;
}

static void sp_add_bias(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *b, int64_t n) {
    split_state *s = ss(be);
    int side = side_of(s, b);
    fitlm_btensor xv = on(s, x, side);
    if (!xv.data) return;
    side_be(s, side)->add_bias(side_be(s, side), &xv, b, n);
    mark_written(s, x, side, f32_rows(x, n));
    s->cur = side;
}

static void sp_embed(fitlm_backend *be, const fitlm_btensor *E, const int32_t *ids, int64_t n, fitlm_btensor *out) {
    split_state *s = ss(be);
    int side = side_of(s, E);
    fitlm_btensor ov = on(s, out, side);
    if (!ov.data) return;
    side_be(s, side)->embed(side_be(s, side), E, ids, n, &ov);
    mark_written(s, out, side, (uint64_t)n * (uint64_t)E->ne0 * 4);
    s->cur = side;
}

fitlm_backend *fitlm_backend_split_new(fitlm_backend *gpu, fitlm_backend *cpu, uint32_t n_layers,
                                       uint32_t n_gpu_layers, fitlm_error *err) {
    fitlm_backend *be = calloc(1, sizeof *be);
    split_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        gpu->free(gpu);
        cpu->free(cpu);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    s->gpu = gpu;
    s->cpu = cpu;
    s->n_layers = n_layers;
    s->n_gpu = n_gpu_layers > n_layers ? n_layers : n_gpu_layers;
    s->cur = s->n_gpu > 0 ? SIDE_GPU : SIDE_CPU;
    be->state = s;
    be->name = gpu->name;
    be->device = gpu->device;
    be->free = sp_free;
    be->weight_type_supported = sp_supported;
    be->alloc = sp_alloc;
    be->release = sp_release;
    be->prepare_weight = sp_prepare;
    be->reserve = sp_reserve;
    be->scratch_bytes = sp_scratch;
    be->upload = sp_upload;
    be->download = sp_download;
    be->clear = sp_clear;
    be->sync = sp_sync;
    be->matmul = sp_matmul;
    be->matmul_multi = sp_matmul_multi;
    be->rmsnorm = sp_rmsnorm;
    be->rope = sp_rope;
    be->kv_store = sp_kv_store;
    be->attention = sp_attention;
    be->get_rows = sp_get_rows;
    be->copy_slots = sp_copy_slots;
    be->silu_mul = sp_silu_mul;
    be->add = sp_add;
    be->add_bias = sp_add_bias;
    be->embed = sp_embed;
    return be;
}

fitlm_backend *fitlm_backend_split_gpu(const fitlm_backend *be) {
    return be->free == sp_free ? ss(be)->gpu : NULL;
}

fitlm_backend *fitlm_backend_split_cpu(const fitlm_backend *be) {
    return be->free == sp_free ? ss(be)->cpu : NULL;
}

uint32_t fitlm_backend_split_gpu_layers(const fitlm_backend *be) {
    return be->free == sp_free ? ss(be)->n_gpu : 0;
}
