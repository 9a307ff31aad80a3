/* KV cache types and sizes, shared by the paged pool (kv_pool.h), the memory
 * checks and the planner: per layer one K and one V row of kv_dim
 * (n_kv_heads*head_dim) values per position, in the cache type (F16 by
 * default, F32, or Q8_0). */
#ifndef FITLM_RUNTIME_KV_CACHE_H
#define FITLM_RUNTIME_KV_CACHE_H

#include <stdint.h>

#include "util/error.h"

/* Parses "f16", "f32", "q8_0" (case-insensitive). Returns the type or -1. */
int fitlm_kv_type_from_name(const char *name);

/* Checks that `type` can hold rows of kv_dim values (Q8_0 needs kv_dim % 32 == 0). */
int fitlm_kv_type_check(int type, int64_t kv_dim, fitlm_error *err);

/* Bytes of one K (or V) row of kv_dim values in the cache type: the GGUF
 * row size of the type (F32 4, F16 2, Q8_0 34 per 32 values). */
uint64_t fitlm_kv_row_bytes(int type, int64_t kv_dim);

/* Bytes a cache of n_ctx positions takes (for planning / the memory report). */
uint64_t fitlm_kv_cache_bytes(int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim);

#endif
