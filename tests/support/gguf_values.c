#include "support/gguf_values.h"

#include <stdint.h>
#include <string.h>

int gguf_test_scalar_bytes(int t) {
    switch (t) {
    case FITLM_GGUF_UINT8: case FITLM_GGUF_INT8: case FITLM_GGUF_BOOL: return 1;
    case FITLM_GGUF_UINT16: case FITLM_GGUF_INT16: return 2;
    case FITLM_GGUF_UINT32: case FITLM_GGUF_INT32: case FITLM_GGUF_FLOAT32: return 4;
    case FITLM_GGUF_UINT64: case FITLM_GGUF_INT64: case FITLM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

bool gguf_test_values_equal(const fitlm_gguf_value *a, const fitlm_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case FITLM_GGUF_UINT8: case FITLM_GGUF_UINT16: case FITLM_GGUF_UINT32: case FITLM_GGUF_UINT64:
    case FITLM_GGUF_BOOL:
        return a->v.u64 == b->v.u64;
    case FITLM_GGUF_INT8: case FITLM_GGUF_INT16: case FITLM_GGUF_INT32: case FITLM_GGUF_INT64:
        return a->v.i64 == b->v.i64;
    case FITLM_GGUF_FLOAT32: case FITLM_GGUF_FLOAT64:
        return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
    case FITLM_GGUF_STRING:
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.s, b->v.str.s, a->v.str.len) == 0 &&
               b->v.str.s[b->v.str.len] == 0;
    case FITLM_GGUF_ARRAY: {
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n) return false;
        int es = gguf_test_scalar_bytes(a->v.arr.elem_type);
        if (es) return a->v.arr.n == 0 || memcmp(a->v.arr.raw, b->v.arr.raw, a->v.arr.n * (uint64_t)es) == 0;
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            if (a->v.arr.elem_type == FITLM_GGUF_STRING) {
                const fitlm_gguf_str *x = &a->v.arr.strs[i], *y = &b->v.arr.strs[i];
                if (x->len != y->len || memcmp(x->s, y->s, x->len) != 0) return false;
            } else if (!gguf_test_values_equal(&a->v.arr.vals[i], &b->v.arr.vals[i])) {
                return false;
            }
        }
        return true;
    }
    default:
        return false;
    }
}
