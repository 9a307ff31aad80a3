/* The cache rows the attention lane kernels (attention_avx512.c,
 * attention_lanes_avx2.c) read, as floats: plain C, shared by both ISAs. */
#include <string.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/ops.h"

void fitlm_att_load_rows(const fitlm_att_lanes *a, const uint8_t *base, int64_t p0, int m, float *buf) {
    for (int r = 0; r < 8; r++) {
        if (r < m)
            fitlm_ops_kv_row_f32(a->kv_type, base + (uint64_t)fitlm_att_slot(a, p0 + r) * a->row_bytes, a->off,
                                 buf + (int64_t)r * a->D, a->D);
        else
            memset(buf + (int64_t)r * a->D, 0, (size_t)a->D * sizeof(float));
    }
}
