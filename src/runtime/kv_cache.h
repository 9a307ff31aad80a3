/* The key/value cache of one sequence: per layer one K and one V tensor of
 * n_ctx rows (positions) x kv_dim (n_kv_heads*head_dim) in the cache type (F16
 * by default, F32, or Q8_0), allocated once on the backend. */
#ifndef FITLM_RUNTIME_KV_CACHE_H
#define FITLM_RUNTIME_KV_CACHE_H

#include <stdint.h>

#include "backend/backend.h"

typedef struct fitlm_kv_cache {
    int type;          /* FITLM_TYPE_F16, F32 or Q8_0 */
    uint32_t n_ctx;    /* positions */
    uint32_t n_layers;
    int64_t kv_dim;
    fitlm_btensor *k;  /* n_layers tensors, owned */
    fitlm_btensor *v;
    uint64_t nbytes;   /* total bytes of all K and V tensors */
} fitlm_kv_cache;

/* Parses "f16", "f32", "q8_0" (case-insensitive). Returns the type or -1. */
int fitlm_kv_type_from_name(const char *name);

/* Checks that `type` can hold rows of kv_dim values (Q8_0 needs kv_dim % 32 == 0). */
int fitlm_kv_type_check(int type, int64_t kv_dim, fitlm_error *err);

/* Bytes the cache would take (for planning / the memory report). */
uint64_t fitlm_kv_cache_bytes(int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim);

/* Allocates the cache on the backend. It is not cleared: attention only reads
 * positions already written, and untouched pages cost no resident memory until
 * the context fills. The caller frees it with fitlm_kv_cache_free(). NULL with
 * err. */
fitlm_kv_cache *fitlm_kv_cache_new(fitlm_backend *be, int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim,
                                   fitlm_error *err);
void fitlm_kv_cache_free(fitlm_backend *be, fitlm_kv_cache *c);

#endif
