/* KV cache allocation on a backend. */
#include "runtime/kv_cache.h"

#include <stdlib.h>
#include <strings.h>

#include "backend/cpu/ops.h"
#include "format/ggml_type.h"

int fitlm_kv_type_from_name(const char *name) {
    if (!name) return -1;
    if (!strcasecmp(name, "f16")) return FITLM_TYPE_F16;
    if (!strcasecmp(name, "f32")) return FITLM_TYPE_F32;
    if (!strcasecmp(name, "q8_0")) return FITLM_TYPE_Q8_0;
    return -1;
}

int fitlm_kv_type_check(int type, int64_t kv_dim, fitlm_error *err) {
    if (type != FITLM_TYPE_F16 && type != FITLM_TYPE_F32 && type != FITLM_TYPE_Q8_0)
        return fitlm_fail(err, "KV cache type %s is not supported (use f16, f32 or q8_0)", fitlm_type_name(type));
    if (type == FITLM_TYPE_Q8_0 && kv_dim % 32)
        return fitlm_fail(err, "a q8_0 KV cache needs n_kv_heads*head_dim to be a multiple of 32 (it is %lld)",
                          (long long)kv_dim);
    return 0;
}

uint64_t fitlm_kv_cache_bytes(int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim) {
    return 2ull * n_layers * n_ctx * fitlm_ops_kv_row_bytes(type, kv_dim);
}

fitlm_kv_cache *fitlm_kv_cache_new(fitlm_backend *be, int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim,
                                   fitlm_error *err) {
    if (fitlm_kv_type_check(type, kv_dim, err)) return NULL;
    fitlm_kv_cache *c = calloc(1, sizeof *c);
    if (!c) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    c->type = type;
    c->n_ctx = n_ctx;
    c->n_layers = n_layers;
    c->kv_dim = kv_dim;
    c->k = calloc(n_layers, sizeof *c->k);
    c->v = calloc(n_layers, sizeof *c->v);
    if (!c->k || !c->v) {
        fitlm_fail(err, "out of memory");
        fitlm_kv_cache_free(be, c);
        return NULL;
    }
    for (uint32_t l = 0; l < n_layers; l++) {
        if (be->alloc(be, type, kv_dim, n_ctx, &c->k[l], err) || be->alloc(be, type, kv_dim, n_ctx, &c->v[l], err)) {
            fitlm_error_prefix(err, "KV cache");
            fitlm_kv_cache_free(be, c);
            return NULL;
        }
        c->nbytes += c->k[l].nbytes + c->v[l].nbytes;
    }
    return c;
}

void fitlm_kv_cache_free(fitlm_backend *be, fitlm_kv_cache *c) {
    if (!c) return;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        if (c->k) be->release(be, &c->k[l]);
        if (c->v) be->release(be, &c->v[l]);
    }
    free(c->k);
    free(c->v);
    free(c);
}
