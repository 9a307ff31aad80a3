/* GGUF writer: collects metadata and tensor descriptions, then streams the file
 * (header, tensor infos, aligned tensor data) into a temp file that is renamed
 * onto the destination on success.
 *
 * Values are validated and deep-copied when added, so the writer never emits a
 * file its own reader would refuse (same limits: key length, tensor name
 * length, dimensions, block-size multiples, array nesting). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "format/gguf.h"
#include "format/gguf_arena.h"
#include "util/hash.h"

typedef struct writer_kv {
    char *key; /* arena */
    uint64_t key_len;
    fitlm_gguf_value value; /* deep copy in the arena */
} writer_kv;

typedef struct writer_tensor {
    char name[FITLM_GGUF_MAX_TENSOR_NAME + 1];
    int type;
    uint32_t n_dims;
    uint64_t ne[FITLM_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t rel_offset; /* from the start of the data section */
    const void *data;    /* borrowed, may be NULL (fill callback) */
} writer_tensor;

struct fitlm_gguf_writer {
    uint32_t version;
    uint64_t alignment;
    fitlm_arena *arena;
    writer_kv *kv;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t data_bytes; /* end of the last tensor, relative to the data section */
    fitlm_index_set kv_set;     /* kv[] indices by key: the duplicate check in O(1) */
    fitlm_index_set tensor_set; /* tensors[] indices by name */
};

static const char *kv_key_of(const void *ctx, uint32_t i, size_t *len) {
    const writer_kv *kv = &((const fitlm_gguf_writer *)ctx)->kv[i];
    *len = (size_t)kv->key_len;
    return kv->key;
}

static const char *tensor_name_of(const void *ctx, uint32_t i, size_t *len) {
    const char *name = ((const fitlm_gguf_writer *)ctx)->tensors[i].name;
    *len = strlen(name);
    return name;
}

fitlm_gguf_writer *fitlm_gguf_writer_new(uint32_t version, fitlm_error *err) {
    if (version != 2 && version != 3) {
        fitlm_fail(err, "GGUF writer: version %" PRIu32 " is not supported (2 or 3)", version);
        return NULL;
    }
    fitlm_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->arena = fitlm_arena_new();
    if (!w || !w->arena) {
        free(w);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    w->version = version;
    w->alignment = FITLM_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void fitlm_gguf_writer_free(fitlm_gguf_writer *w) {
    if (!w) return;
    fitlm_arena_free(w->arena);
    fitlm_index_set_free(&w->kv_set);
    fitlm_index_set_free(&w->tensor_set);
    free(w->kv);
    free(w->tensors);
    free(w);
}

/* Deep copy of src into dst (arena). depth: array nesting of src (1 = top-level array). */
static int copy_value(fitlm_gguf_writer *w, const char *key, fitlm_gguf_value *dst, const fitlm_gguf_value *src,
                      int depth, fitlm_error *err) {
    int es = fitlm_gguf_type_size(src->type);
    if (es < 0) return fitlm_fail(err, "GGUF writer: key '%s': unknown value type %d", key, src->type);
    *dst = *src;
    if (src->type == FITLM_GGUF_BOOL && src->v.u64 > 1)
        return fitlm_fail(err, "GGUF writer: key '%s': bool value %" PRIu64, key, src->v.u64);
    if (src->type == FITLM_GGUF_STRING) {
        if (!src->v.str.s && src->v.str.len) return fitlm_fail(err, "GGUF writer: key '%s': NULL string", key);
        char *s = fitlm_arena_alloc_bytes(w->arena, (size_t)src->v.str.len + 1);
        if (!s) return fitlm_fail(err, "out of memory");
        if (src->v.str.len) memcpy(s, src->v.str.s, (size_t)src->v.str.len);
        s[src->v.str.len] = 0;
        dst->v.str.s = s;
        return 0;
    }
    if (src->type != FITLM_GGUF_ARRAY) return 0;
    if (depth > FITLM_GGUF_MAX_ARRAY_DEPTH)
        return fitlm_fail(err, "GGUF writer: key '%s': arrays nested deeper than %d levels", key,
                          FITLM_GGUF_MAX_ARRAY_DEPTH);
    int et = src->v.arr.elem_type;
    int ees = fitlm_gguf_type_size(et);
    uint64_t n = src->v.arr.n;
    if (ees < 0) return fitlm_fail(err, "GGUF writer: key '%s': unknown array element type %d", key, et);
    memset(&dst->v.arr, 0, sizeof dst->v.arr);
    dst->v.arr.elem_type = et;
    dst->v.arr.n = n;
    if (ees > 0) {
        if (n > SIZE_MAX / (uint64_t)ees) return fitlm_fail(err, "GGUF writer: key '%s': array too large", key);
        if (n && !src->v.arr.raw) return fitlm_fail(err, "GGUF writer: key '%s': NULL array data", key);
        void *raw = fitlm_arena_alloc(w->arena, (size_t)(n * (uint64_t)ees));
        if (!raw) return fitlm_fail(err, "out of memory");
        if (n) memcpy(raw, src->v.arr.raw, (size_t)(n * (uint64_t)ees));
        if (et == FITLM_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (((const uint8_t *)raw)[i] > 1)
                    return fitlm_fail(err, "GGUF writer: key '%s': bool array element %" PRIu64 " is not 0 or 1", key,
                                      i);
        dst->v.arr.raw = raw;
        return 0;
    }
    if (et == FITLM_GGUF_STRING) {
        if (n > SIZE_MAX / sizeof(fitlm_gguf_str)) return fitlm_fail(err, "GGUF writer: key '%s': array too large", key);
        if (n && !src->v.arr.strs) return fitlm_fail(err, "GGUF writer: key '%s': NULL string array", key);
        fitlm_gguf_str *strs = fitlm_arena_alloc(w->arena, (size_t)n * sizeof *strs);
        if (!strs) return fitlm_fail(err, "out of memory");
        for (uint64_t i = 0; i < n; i++) {
            const fitlm_gguf_str *s = &src->v.arr.strs[i];
            char *c = fitlm_arena_alloc_bytes(w->arena, (size_t)s->len + 1);
            if (!c) return fitlm_fail(err, "out of memory");
            if (s->len) memcpy(c, s->s, (size_t)s->len);
            c[s->len] = 0;
            strs[i].len = s->len;
            strs[i].s = c;
        }
        dst->v.arr.strs = strs;
        return 0;
    }
    if (n > SIZE_MAX / sizeof(fitlm_gguf_value)) return fitlm_fail(err, "GGUF writer: key '%s': array too large", key);
    if (n && !src->v.arr.vals) return fitlm_fail(err, "GGUF writer: key '%s': NULL nested array", key);
    fitlm_gguf_value *vals = fitlm_arena_alloc(w->arena, (size_t)n * sizeof *vals);
    if (!vals) return fitlm_fail(err, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        if (src->v.arr.vals[i].type != FITLM_GGUF_ARRAY)
            return fitlm_fail(err, "GGUF writer: key '%s': element %" PRIu64 " of an array of arrays is a %s", key, i,
                              fitlm_gguf_type_name(src->v.arr.vals[i].type));
        if (copy_value(w, key, &vals[i], &src->v.arr.vals[i], depth + 1, err)) return -1;
    }
    dst->v.arr.vals = vals;
    return 0;
}

static writer_kv *find_kv(fitlm_gguf_writer *w, const char *key) {
    int64_t i = fitlm_index_set_find(&w->kv_set, key, strlen(key), kv_key_of, w);
    return i < 0 ? NULL : &w->kv[i];
}

int fitlm_gguf_writer_add_value(fitlm_gguf_writer *w, const char *key, const fitlm_gguf_value *v, fitlm_error *err) {
    if (!key || !*key) return fitlm_fail(err, "GGUF writer: empty metadata key");
    size_t klen = strlen(key);
    if (klen > FITLM_GGUF_MAX_KEY)
        return fitlm_fail(err, "GGUF writer: metadata key is %zu bytes long (limit %d)", klen, FITLM_GGUF_MAX_KEY);
    if (find_kv(w, key)) return fitlm_fail(err, "GGUF writer: duplicate metadata key '%s'", key);
    bool is_alignment = strcmp(key, "general.alignment") == 0;
    if (is_alignment) {
        if (w->n_tensors) return fitlm_fail(err, "GGUF writer: set general.alignment before adding tensors");
        if (v->type != FITLM_GGUF_UINT32)
            return fitlm_fail(err, "GGUF writer: general.alignment must be a uint32, not %s",
                              fitlm_gguf_type_name(v->type));
        if (!fitlm_gguf_alignment_ok(v->v.u64))
            return fitlm_fail(err, "GGUF writer: general.alignment %" PRIu64 " is not a power of two and a multiple of 8",
                              v->v.u64);
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        writer_kv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) return fitlm_fail(err, "out of memory");
        w->kv = nk;
        w->cap_kv = cap;
    }
    writer_kv *kv = &w->kv[w->n_kv];
    kv->key = fitlm_arena_alloc(w->arena, klen + 1);
    if (!kv->key) return fitlm_fail(err, "out of memory");
    memcpy(kv->key, key, klen + 1);
    kv->key_len = klen;
    if (copy_value(w, key, &kv->value, v, 1, err)) return -1;
    if (fitlm_index_set_add(&w->kv_set, (uint32_t)w->n_kv, kv_key_of, w, NULL, err) != 1) return -1;
    w->n_kv++;
    if (is_alignment) w->alignment = v->v.u64;
    return 0;
}

int fitlm_gguf_writer_set_alignment(fitlm_gguf_writer *w, uint64_t alignment, fitlm_error *err) {
    if (!fitlm_gguf_alignment_ok(alignment))
        return fitlm_fail(err, "GGUF writer: alignment %" PRIu64 " is not a power of two between 8 and 2^31",
                          alignment);
    if (w->n_tensors) return fitlm_fail(err, "GGUF writer: set the alignment before adding tensors");
    writer_kv *kv = find_kv(w, "general.alignment");
    if (kv) {
        kv->value.v.u64 = alignment;
        w->alignment = alignment;
        return 0;
    }
    fitlm_gguf_value v = {.type = FITLM_GGUF_UINT32, .v.u64 = alignment};
    return fitlm_gguf_writer_add_value(w, "general.alignment", &v, err);
}

int fitlm_gguf_writer_add_u32(fitlm_gguf_writer *w, const char *key, uint32_t x, fitlm_error *err) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_UINT32, .v.u64 = x};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_i32(fitlm_gguf_writer *w, const char *key, int32_t x, fitlm_error *err) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_INT32, .v.i64 = x};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_u64(fitlm_gguf_writer *w, const char *key, uint64_t x, fitlm_error *err) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_UINT64, .v.u64 = x};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_f32(fitlm_gguf_writer *w, const char *key, float x, fitlm_error *err) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_FLOAT32, .v.f64 = x};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_bool(fitlm_gguf_writer *w, const char *key, bool x, fitlm_error *err) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_BOOL, .v.u64 = x ? 1 : 0};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_str(fitlm_gguf_writer *w, const char *key, const char *x, fitlm_error *err) {
    if (!x) return fitlm_fail(err, "GGUF writer: key '%s': NULL string", key ? key : "");
    fitlm_gguf_value v = {.type = FITLM_GGUF_STRING, .v.str = {.len = strlen(x), .s = x}};
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_arr(fitlm_gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n,
                              fitlm_error *err) {
    if (fitlm_gguf_type_size(elem_type) <= 0)
        return fitlm_fail(err, "GGUF writer: key '%s': add_arr takes scalar element types, not %s", key ? key : "",
                          fitlm_gguf_type_name(elem_type));
    fitlm_gguf_value v = {.type = FITLM_GGUF_ARRAY};
    v.v.arr.elem_type = elem_type;
    v.v.arr.n = n;
    v.v.arr.raw = data;
    return fitlm_gguf_writer_add_value(w, key, &v, err);
}

int fitlm_gguf_writer_add_str_arr(fitlm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                                  fitlm_error *err) {
    if (n > SIZE_MAX / sizeof(fitlm_gguf_str)) return fitlm_fail(err, "GGUF writer: array too large");
    fitlm_gguf_str *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return fitlm_fail(err, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(tmp);
            return fitlm_fail(err, "GGUF writer: key '%s': string %" PRIu64 " is NULL", key ? key : "", i);
        }
        tmp[i].s = strs[i];
        tmp[i].len = strlen(strs[i]);
    }
    fitlm_gguf_value v = {.type = FITLM_GGUF_ARRAY};
    v.v.arr.elem_type = FITLM_GGUF_STRING;
    v.v.arr.n = n;
    v.v.arr.strs = tmp;
    int rc = fitlm_gguf_writer_add_value(w, key, &v, err);
    free(tmp);
    return rc;
}

int fitlm_gguf_writer_add_tensor(fitlm_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, fitlm_error *err) {
    if (!name || !*name) return fitlm_fail(err, "GGUF writer: empty tensor name");
    size_t nlen = strlen(name);
    if (nlen > FITLM_GGUF_MAX_TENSOR_NAME)
        return fitlm_fail(err, "GGUF writer: tensor name '%s' is %zu bytes long (limit %d)", name, nlen,
                          FITLM_GGUF_MAX_TENSOR_NAME);
    if (fitlm_index_set_find(&w->tensor_set, name, nlen, tensor_name_of, w) >= 0)
        return fitlm_fail(err, "GGUF writer: duplicate tensor name '%s'", name);
    if (w->n_kv >= UINT32_MAX || w->n_tensors >= UINT32_MAX) return fitlm_fail(err, "GGUF writer: too many tensors");
    const fitlm_type_info *ti = type >= 0 && type < FITLM_TYPE_GGML_COUNT ? fitlm_type_get(type) : NULL;
    if (!ti) return fitlm_fail(err, "GGUF writer: tensor '%s': type %d cannot be stored in GGUF", name, type);
    if (n_dims < 1 || n_dims > FITLM_GGUF_MAX_DIMS)
        return fitlm_fail(err, "GGUF writer: tensor '%s': %" PRIu32 " dimensions (must be 1 to %d)", name, n_dims,
                          FITLM_GGUF_MAX_DIMS);
    writer_tensor t = {.type = type, .n_dims = n_dims, .data = data};
    memcpy(t.name, name, nlen + 1);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < FITLM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0) return fitlm_fail(err, "GGUF writer: tensor '%s': dimension %" PRIu32 " is 0", name, d);
        if (t.ne[d] > (uint64_t)INT64_MAX / nel)
            return fitlm_fail(err, "GGUF writer: tensor '%s': element count overflows", name);
        nel *= t.ne[d];
    }
    bool ok;
    uint64_t row = fitlm_type_row_bytes(type, t.ne[0], &ok);
    if (!ok && t.ne[0] % ti->block_size == 0)
        return fitlm_fail(err, "GGUF writer: tensor '%s': data size overflows", name);
    if (!ok)
        return fitlm_fail(err, "GGUF writer: tensor '%s': row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                          name, t.ne[0], ti->name, ti->block_size);
    uint64_t rows = nel / t.ne[0];
    if (rows > UINT64_MAX / row) return fitlm_fail(err, "GGUF writer: tensor '%s': size overflows", name);
    t.nbytes = row * rows;
    uint64_t start = w->data_bytes + (w->alignment - w->data_bytes % w->alignment) % w->alignment;
    if (start < w->data_bytes || t.nbytes > UINT64_MAX - start)
        return fitlm_fail(err, "GGUF writer: tensor '%s': data section size overflows", name);
    t.rel_offset = start;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        writer_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return fitlm_fail(err, "out of memory");
        w->tensors = nt;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors] = t;
    if (fitlm_index_set_add(&w->tensor_set, (uint32_t)w->n_tensors, tensor_name_of, w, NULL, err) != 1) return -1;
    w->n_tensors++;
    w->data_bytes = start + t.nbytes;
    return 0;
}

/* ---- serialization ---- */

typedef struct out {
    FILE *fp;
    uint64_t pos;
    bool bad;
} out;

static void put(out *o, const void *p, uint64_t n) {
    if (o->bad || n == 0) return;
    if (fwrite(p, 1, (size_t)n, o->fp) != (size_t)n) o->bad = true;
    o->pos += n;
}

static void put_u32(out *o, uint32_t x) {
    uint8_t b[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    put(o, b, 4);
}

static void put_u64(out *o, uint64_t x) {
    put_u32(o, (uint32_t)x);
    put_u32(o, (uint32_t)(x >> 32));
}

static void put_str(out *o, const char *s, uint64_t len) {
    put_u64(o, len);
    put(o, s, len);
}

static void put_pad(out *o, uint64_t alignment) {
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad) {
        uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
        put(o, zeros, k);
        pad -= k;
    }
}

static void put_array_body(out *o, const fitlm_gguf_value *v);

static void put_value(out *o, const fitlm_gguf_value *v) {
    switch (v->type) {
    case FITLM_GGUF_UINT8:
    case FITLM_GGUF_INT8:
    case FITLM_GGUF_BOOL: {
        uint8_t b = (uint8_t)v->v.u64;
        put(o, &b, 1);
        break;
    }
    case FITLM_GGUF_UINT16:
    case FITLM_GGUF_INT16: {
        uint16_t x = (uint16_t)v->v.u64;
        uint8_t b[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
        put(o, b, 2);
        break;
    }
    case FITLM_GGUF_UINT32:
    case FITLM_GGUF_INT32:
        put_u32(o, (uint32_t)v->v.u64);
        break;
    case FITLM_GGUF_FLOAT32: {
        float f = (float)v->v.f64;
        uint32_t x;
        memcpy(&x, &f, 4);
        put_u32(o, x);
        break;
    }
    case FITLM_GGUF_UINT64:
    case FITLM_GGUF_INT64:
        put_u64(o, v->v.u64);
        break;
    case FITLM_GGUF_FLOAT64: {
        uint64_t x;
        memcpy(&x, &v->v.f64, 8);
        put_u64(o, x);
        break;
    }
    case FITLM_GGUF_STRING:
        put_str(o, v->v.str.s, v->v.str.len);
        break;
    case FITLM_GGUF_ARRAY:
        put_array_body(o, v);
        break;
    default:
        o->bad = true; /* unreachable: validated when added */
    }
}

static void put_array_body(out *o, const fitlm_gguf_value *v) {
    int et = v->v.arr.elem_type;
    put_u32(o, (uint32_t)et);
    put_u64(o, v->v.arr.n);
    int es = fitlm_gguf_type_size(et);
    if (es > 0) {
        put(o, v->v.arr.raw, v->v.arr.n * (uint64_t)es); /* host is little-endian, like GGUF */
    } else if (et == FITLM_GGUF_STRING) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) put_str(o, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
    } else {
        for (uint64_t i = 0; i < v->v.arr.n; i++) put_array_body(o, &v->v.arr.vals[i]);
    }
}

int fitlm_gguf_writer_write(fitlm_gguf_writer *w, const char *path, fitlm_gguf_fill_fn fill, void *user,
                            fitlm_error *err) {
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].data && !fill)
            return fitlm_fail(err, "GGUF writer: tensor '%s' has no data and no fill callback was given",
                              w->tensors[i].name);
    fitlm_atomic_file *af = fitlm_atomic_open(path, err);
    if (!af) return -1;
    out o = {.fp = af->fp};
    put(&o, "GGUF", 4);
    put_u32(&o, w->version);
    put_u64(&o, w->n_tensors);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key, w->kv[i].key_len);
        put_u32(&o, (uint32_t)w->kv[i].value.type);
        put_value(&o, &w->kv[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_str(&o, t->name, strlen(t->name));
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, t->ne[d]);
        put_u32(&o, (uint32_t)t->type);
        put_u64(&o, t->rel_offset);
    }
    /* like gguf-py, a file without tensors ends right after the metadata */
    if (w->n_tensors) put_pad(&o, w->alignment);
    uint64_t data_start = o.pos;
    void *buf = NULL;
    uint64_t buf_cap = 0;
    int rc = 0;
    for (size_t i = 0; i < w->n_tensors && rc == 0 && !o.bad; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_pad(&o, w->alignment);
        if (o.pos - data_start != t->rel_offset) {
            rc = fitlm_fail(err, "GGUF writer: internal error: tensor '%s' offset mismatch", t->name);
            break;
        }
        const void *src = t->data;
        if (!src) {
            if ((uint64_t)(size_t)t->nbytes != t->nbytes) {
                rc = fitlm_fail(err, "GGUF writer: tensor '%s' is too large for memory", t->name);
                break;
            }
            if (t->nbytes > buf_cap) {
                void *nb = realloc(buf, (size_t)t->nbytes);
                if (!nb) {
                    rc = fitlm_fail(err, "GGUF writer: out of memory for tensor '%s' (%" PRIu64 " bytes)", t->name,
                                    t->nbytes);
                    break;
                }
                buf = nb;
                buf_cap = t->nbytes;
            }
            if (fill(user, i, buf, t->nbytes, err) != 0) {
                rc = -1;
                break;
            }
            src = buf;
        }
        put(&o, src, t->nbytes);
    }
    free(buf);
    if (rc == 0 && w->n_tensors) put_pad(&o, w->alignment);
    if (rc == 0 && o.bad) rc = fitlm_fail(err, "%s: write error", af->tmp_path);
    if (rc != 0) {
        fitlm_atomic_abort(af);
        return -1;
    }
    return fitlm_atomic_commit(af, err);
}
