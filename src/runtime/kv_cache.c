/* KV cache types and sizes. */
#include "runtime/kv_cache.h"

#include <stdbool.h>
#include <strings.h>

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

uint64_t fitlm_kv_row_bytes(int type, int64_t kv_dim) {
    bool ok = true;
    uint64_t b = kv_dim > 0 ? fitlm_type_row_bytes(type, (uint64_t)kv_dim, &ok) : 0;
    return ok ? b : 0;
}

uint64_t fitlm_kv_cache_bytes(int type, uint32_t n_ctx, uint32_t n_layers, int64_t kv_dim) {
    return 2ull * n_layers * n_ctx * fitlm_kv_row_bytes(type, kv_dim);
}
