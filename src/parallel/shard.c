/* Tensor-parallel slices of model tensors. */
#include "parallel/shard.h"

#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"

int fitlm_shard_rows(const fitlm_tensor *t, uint64_t r0, uint64_t nr, fitlm_tensor *view, fitlm_error *err) {
    *view = *t;
    bool ok = true;
    if (t->n_elements == t->ne[0]) { /* a vector: elements */
        const fitlm_type_info *ti = fitlm_type_get(t->type);
        if (!ti || ti->quantized || ti->block_size != 1)
            return fitlm_fail(err, "tensor %s: only plain vectors can be split", t->name);
        if (r0 + nr > t->ne[0]) return fitlm_fail(err, "tensor %s: slice past its end", t->name);
        uint64_t off = r0 * ti->block_bytes;
        view->data = (const uint8_t *)t->data + off;
        view->offset += off;
        view->ne[0] = nr;
        view->n_elements = nr;
        view->nbytes = nr * ti->block_bytes;
        view->n_dims = 1;
        return 0;
    }
    uint64_t rows = t->n_elements / t->ne[0];
    uint64_t rb = fitlm_type_row_bytes(t->type, t->ne[0], &ok);
    if (!ok || r0 + nr > rows) return fitlm_fail(err, "tensor %s: bad row slice", t->name);
    view->data = (const uint8_t *)t->data + r0 * rb;
    view->offset += r0 * rb;
    view->ne[1] = nr;
    view->ne[2] = view->ne[3] = 1;
    view->n_dims = 2;
    view->n_elements = nr * t->ne[0];
    view->nbytes = nr * rb;
    return 0;
}

int fitlm_shard_cols(const fitlm_tensor *t, uint64_t c0, uint64_t nc, fitlm_tensor *view, void **buf,
                     fitlm_error *err) {
    *buf = NULL;
    bool ok = true;
    uint64_t rows = t->n_elements / t->ne[0];
    uint64_t rb = fitlm_type_row_bytes(t->type, t->ne[0], &ok);
    uint64_t skip = ok && c0 ? fitlm_type_row_bytes(t->type, c0, &ok) : 0;
    bool ok2 = true;
    uint64_t part = fitlm_type_row_bytes(t->type, nc, &ok2);
    if (!ok || !ok2 || c0 + nc > t->ne[0] || part == 0)
        return fitlm_fail(err, "tensor %s (%s): columns %llu..%llu do not fall on whole quantization blocks", t->name,
                          fitlm_type_name(t->type), (unsigned long long)c0, (unsigned long long)(c0 + nc));
    uint8_t *d = malloc(rows ? part * rows : 1);
    if (!d) return fitlm_fail(err, "out of memory slicing tensor %s", t->name);
    const uint8_t *s = t->data;
    for (uint64_t r = 0; r < rows; r++) memcpy(d + r * part, s + r * rb + skip, part);
    *view = *t;
    view->data = d;
    view->file_index = -1;
    view->offset = 0;
    view->owned_data = NULL;
    view->ne[0] = nc;
    view->ne[1] = rows;
    view->ne[2] = view->ne[3] = 1;
    view->n_dims = 2;
    view->n_elements = nc * rows;
    view->nbytes = part * rows;
    *buf = d;
    /* the whole matrix was read once: give its mapped pages back */
    fitlm_tensor_drop_pages(t);
    return 0;
}
