/* libFuzzer target for the GGUF reader (and the writer's value copies).
 *
 * For any input: fitlm_gguf_open_memory must either refuse it with a one-line
 * message or return an object whose every field is consistent with the input
 * (tensor data inside the buffer, aligned, non-overlapping sizes as computed
 * from type and shape). Accepted metadata and tensors are then walked with the
 * getters and deep-copied into a writer, which must accept everything the
 * reader accepted; the written file is read back and must hold the same
 * metadata and tensor bytes. Any violation aborts (a crash for libFuzzer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_type.h"
#include "format/gguf.h"
#include "support/gguf_values.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_gguf: invariant failed: %s (line %d)\n", #cond, __LINE__);                            \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static volatile uint64_t sink;

static void walk_value(const fitlm_gguf_value *v, int depth) {
    REQUIRE(depth <= FITLM_GGUF_MAX_ARRAY_DEPTH);
    switch (v->type) {
    case FITLM_GGUF_STRING:
        REQUIRE(v->v.str.s && v->v.str.s[v->v.str.len] == 0);
        if (v->v.str.len) sink += (uint8_t)v->v.str.s[v->v.str.len - 1];
        break;
    case FITLM_GGUF_ARRAY:
        if (v->v.arr.elem_type == FITLM_GGUF_STRING) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                REQUIRE(v->v.arr.strs[i].s[v->v.arr.strs[i].len] == 0);
                sink += v->v.arr.strs[i].len;
            }
        } else if (v->v.arr.elem_type == FITLM_GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                REQUIRE(v->v.arr.vals[i].type == FITLM_GGUF_ARRAY);
                walk_value(&v->v.arr.vals[i], depth + 1);
            }
        } else if (v->v.arr.n) {
            sink += ((const uint8_t *)v->v.arr.raw)[0];
        }
        break;
    default:
        REQUIRE(v->type >= 0 && v->type <= FITLM_GGUF_FLOAT64);
        sink += v->v.u64;
    }
}

/* Writes w to a scratch file, reads it back and compares it with g. */
static void check_rewrite(fitlm_gguf_writer *w, const fitlm_gguf *g) {
    char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz_gguf_rewrite.%ld.gguf", dir && *dir ? dir : "/tmp", (long)getpid());
    fitlm_error err = {{0}};
    if (fitlm_gguf_writer_write(w, path, NULL, NULL, &err) != 0) {
        fprintf(stderr, "fuzz_gguf: writing back an accepted file failed: %s\n", err.msg);
        abort();
    }
    fitlm_gguf *h = fitlm_gguf_open(path, &err);
    if (!h) {
        fprintf(stderr, "fuzz_gguf: the reader refused the writer's copy: %s\n", err.msg);
        abort();
    }
    unlink(path);
    REQUIRE(h->version == g->version && h->alignment == g->alignment);
    REQUIRE(h->n_kv == g->n_kv && h->n_tensors == g->n_tensors);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        REQUIRE(strcmp(h->kv[i].key.s, g->kv[i].key.s) == 0);
        REQUIRE(gguf_test_values_equal(&h->kv[i].value, &g->kv[i].value));
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fitlm_gguf_tensor *a = &g->tensors[i], *b = &h->tensors[i];
        REQUIRE(strcmp(a->name.s, b->name.s) == 0 && a->type == b->type && a->n_dims == b->n_dims);
        REQUIRE(memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nbytes == b->nbytes);
        REQUIRE(memcmp(a->data, b->data, a->nbytes) == 0);
    }
    fitlm_gguf_close(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open_memory(data, size, &err);
    if (!g) {
        REQUIRE(err.msg[0] != 0);
        REQUIRE(strchr(err.msg, '\n') == NULL);
        return 0;
    }
    REQUIRE(g->version == 2 || g->version == 3);
    REQUIRE(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(g->version, &err);
    REQUIRE(w != NULL);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const fitlm_gguf_kv *kv = &g->kv[i];
        const char *key = kv->key.s;
        REQUIRE(fitlm_gguf_get(g, key) == &kv->value);
        walk_value(&kv->value, 0);
        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        float f;
        bool b;
        const char *s;
        const fitlm_gguf_value *arr;
        REQUIRE(fitlm_gguf_get_u32(g, key, &u32, &err) != 0);
        REQUIRE(fitlm_gguf_get_u64(g, key, &u64, &err) != 0);
        REQUIRE(fitlm_gguf_get_i64(g, key, &i64, &err) != 0);
        REQUIRE(fitlm_gguf_get_f32(g, key, &f, &err) != 0);
        REQUIRE(fitlm_gguf_get_bool(g, key, &b, &err) != 0);
        REQUIRE(fitlm_gguf_get_str(g, key, &s, &err) != 0);
        REQUIRE(fitlm_gguf_get_arr(g, key, -1, &arr, &err) != 0);
        REQUIRE(fitlm_gguf_get_arr(g, key, FITLM_GGUF_STRING, &arr, &err) != 0);
        if (fitlm_gguf_writer_add_value(w, key, &kv->value, &err) != 0) {
            fprintf(stderr, "fuzz_gguf: writer refused what the reader accepted: %s\n", err.msg);
            abort();
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fitlm_gguf_tensor *t = &g->tensors[i];
        REQUIRE(fitlm_gguf_find_tensor(g, t->name.s) == t);
        REQUIRE(t->name.len >= 1 && t->name.len <= FITLM_GGUF_MAX_TENSOR_NAME);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= FITLM_GGUF_MAX_DIMS);
        const fitlm_type_info *ti = fitlm_type_get(t->type);
        REQUIRE(ti != NULL);
        uint64_t nel = 1;
        for (int d = 0; d < FITLM_GGUF_MAX_DIMS; d++) nel *= t->ne[d];
        REQUIRE(nel == t->n_elements);
        REQUIRE(t->nbytes == nel / ti->block_size * ti->block_bytes);
        REQUIRE(t->offset >= g->data_offset && (t->offset - g->data_offset) % g->alignment == 0);
        REQUIRE(t->offset <= size && t->nbytes <= size - t->offset);
        REQUIRE((const uint8_t *)t->data == data + t->offset);
        sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        if (fitlm_gguf_writer_add_tensor(w, t->name.s, t->type, t->n_dims, t->ne, t->data, &err) != 0) {
            fprintf(stderr, "fuzz_gguf: writer refused a tensor the reader accepted: %s\n", err.msg);
            abort();
        }
    }
    REQUIRE(fitlm_gguf_find_tensor(g, "token_embd.weight") == NULL || g->n_tensors > 0);
    check_rewrite(w, g);
    fitlm_gguf_writer_free(w);
    fitlm_gguf_close(g);
    return 0;
}
