/* GGUF writer -> reader round trip: every metadata type, scalar and string
 * arrays, nested arrays, tensors of every GGUF tensor type, alignments
 * 1/8/32/64, versions 2 and 3, tensor data from pointers and from the fill
 * callback; deep copies of a real vocab file's metadata; writer refusals. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "support/gguf_values.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#define N_TYPES 64
typedef struct sample {
    int n;
    char names[N_TYPES][64];
    int types[N_TYPES];
    uint64_t ne[N_TYPES][4];
    uint32_t n_dims[N_TYPES];
    uint8_t *data[N_TYPES];
    uint64_t nbytes[N_TYPES];
} sample;

static void sample_init(sample *s) {
    memset(s, 0, sizeof *s);
    for (int t = 0; t < FITLM_TYPE_GGML_COUNT; t++) {
        const fitlm_type_info *ti = fitlm_type_get(t);
        if (!ti) continue;
        int k = s->n++;
        snprintf(s->names[k], sizeof s->names[k], "blk.%d.%s.weight", k, ti->name);
        s->types[k] = t;
        s->n_dims[k] = (uint32_t)(1 + k % 4);
        uint64_t ne[4] = {ti->block_size * (uint64_t)(1 + k % 3), 3, 2, 2};
        uint64_t nel = 1;
        for (uint32_t d = 0; d < 4; d++) {
            s->ne[k][d] = d < s->n_dims[k] ? ne[d] : 1;
            nel *= s->ne[k][d];
        }
        s->nbytes[k] = nel / ti->block_size * ti->block_bytes;
        s->data[k] = malloc(s->nbytes[k]);
        for (uint64_t i = 0; i < s->nbytes[k]; i++) s->data[k][i] = (uint8_t)rng();
    }
}

static void sample_free(sample *s) {
    for (int k = 0; k < s->n; k++) free(s->data[k]);
}

static int fill_from_sample(void *user, uint64_t i, void *buf, uint64_t nbytes, fitlm_error *err) {
    sample *s = user;
    if (i >= (uint64_t)s->n || nbytes != s->nbytes[i]) return fitlm_fail(err, "fill: bad call %llu", (unsigned long long)i);
    memcpy(buf, s->data[i], nbytes);
    return 0;
}

static int fill_fail(void *user, uint64_t i, void *buf, uint64_t nbytes, fitlm_error *err) {
    (void)user; (void)buf; (void)nbytes;
    return i == 2 ? fitlm_fail(err, "fill refused tensor %llu", (unsigned long long)i) : 0;
}

/* Metadata covering every value type: kept in a table so the reader side can compare. */
static fitlm_gguf_value g_vals[64];
static const char *g_keys[64];
static int g_nvals;

static const uint8_t arr_u8[] = {0, 1, 255};
static const int8_t arr_i8[] = {-128, 0, 127};
static const uint16_t arr_u16[] = {0, 65535, 1234};
static const int16_t arr_i16[] = {-32768, 32767, -1};
static const uint32_t arr_u32[] = {0, 4294967295u, 7};
static const int32_t arr_i32[] = {-2147483647 - 1, 2147483647, -5};
static const float arr_f32[] = {1.5f, -0.0f, 3.0e38f, 1e-45f};
static const uint8_t arr_bool[] = {1, 0, 1, 1};
static const uint64_t arr_u64[] = {0, UINT64_MAX, 1ull << 63};
static const int64_t arr_i64[] = {INT64_MIN, INT64_MAX, -1};
static const double arr_f64[] = {3.141592653589793, -2.5e-300, 1e300};
static const fitlm_gguf_str arr_str[] = {{5, "hello"}, {0, ""}, {6, "w\xc3\xb6rld"}, {3, "a\0b"}};
static fitlm_gguf_value inner[3], inner2[2], deep[FITLM_GGUF_MAX_ARRAY_DEPTH];

static void add_val(const char *k, fitlm_gguf_value v) {
    g_keys[g_nvals] = k;
    g_vals[g_nvals++] = v;
}

static fitlm_gguf_value mk_arr(int et, const void *raw, uint64_t n) {
    fitlm_gguf_value v = {.type = FITLM_GGUF_ARRAY};
    v.v.arr.elem_type = et;
    v.v.arr.n = n;
    if (et == FITLM_GGUF_STRING) v.v.arr.strs = raw;
    else if (et == FITLM_GGUF_ARRAY) v.v.arr.vals = raw;
    else v.v.arr.raw = raw;
    return v;
}

static void build_values(void) {
    g_nvals = 0;
    add_val("t.u8", (fitlm_gguf_value){.type = FITLM_GGUF_UINT8, .v.u64 = 200});
    add_val("t.i8", (fitlm_gguf_value){.type = FITLM_GGUF_INT8, .v.i64 = -100});
    add_val("t.u16", (fitlm_gguf_value){.type = FITLM_GGUF_UINT16, .v.u64 = 60000});
    add_val("t.i16", (fitlm_gguf_value){.type = FITLM_GGUF_INT16, .v.i64 = -30000});
    add_val("t.u32", (fitlm_gguf_value){.type = FITLM_GGUF_UINT32, .v.u64 = 4000000000u});
    add_val("t.i32", (fitlm_gguf_value){.type = FITLM_GGUF_INT32, .v.i64 = -2000000000});
    add_val("t.f32", (fitlm_gguf_value){.type = FITLM_GGUF_FLOAT32, .v.f64 = 1.25});
    add_val("t.bool", (fitlm_gguf_value){.type = FITLM_GGUF_BOOL, .v.u64 = 1});
    add_val("t.str", (fitlm_gguf_value){.type = FITLM_GGUF_STRING, .v.str = {7, "h\xc3\xa9llo!"}});
    add_val("t.str_nul", (fitlm_gguf_value){.type = FITLM_GGUF_STRING, .v.str = {3, "x\0y"}});
    add_val("t.str_empty", (fitlm_gguf_value){.type = FITLM_GGUF_STRING, .v.str = {0, ""}});
    add_val("t.u64", (fitlm_gguf_value){.type = FITLM_GGUF_UINT64, .v.u64 = (1ull << 63) + 5});
    add_val("t.i64", (fitlm_gguf_value){.type = FITLM_GGUF_INT64, .v.i64 = -(1ll << 62)});
    add_val("t.f64", (fitlm_gguf_value){.type = FITLM_GGUF_FLOAT64, .v.f64 = 3.141592653589793});
    add_val("a.u8", mk_arr(FITLM_GGUF_UINT8, arr_u8, 3));
    add_val("a.i8", mk_arr(FITLM_GGUF_INT8, arr_i8, 3));
    add_val("a.u16", mk_arr(FITLM_GGUF_UINT16, arr_u16, 3));
    add_val("a.i16", mk_arr(FITLM_GGUF_INT16, arr_i16, 3));
    add_val("a.u32", mk_arr(FITLM_GGUF_UINT32, arr_u32, 3));
    add_val("a.i32", mk_arr(FITLM_GGUF_INT32, arr_i32, 3));
    add_val("a.f32", mk_arr(FITLM_GGUF_FLOAT32, arr_f32, 4));
    add_val("a.bool", mk_arr(FITLM_GGUF_BOOL, arr_bool, 4));
    add_val("a.u64", mk_arr(FITLM_GGUF_UINT64, arr_u64, 3));
    add_val("a.i64", mk_arr(FITLM_GGUF_INT64, arr_i64, 3));
    add_val("a.f64", mk_arr(FITLM_GGUF_FLOAT64, arr_f64, 3));
    add_val("a.str", mk_arr(FITLM_GGUF_STRING, arr_str, 4));
    add_val("a.empty", mk_arr(FITLM_GGUF_INT32, NULL, 0));
    add_val("a.empty_str", mk_arr(FITLM_GGUF_STRING, NULL, 0));
    inner[0] = mk_arr(FITLM_GGUF_INT32, arr_i32, 2);
    inner[1] = mk_arr(FITLM_GGUF_INT32, arr_i32 + 2, 1);
    inner[2] = mk_arr(FITLM_GGUF_INT32, NULL, 0);
    add_val("n.i32", mk_arr(FITLM_GGUF_ARRAY, inner, 3));
    inner2[0] = mk_arr(FITLM_GGUF_STRING, arr_str, 2);
    inner2[1] = mk_arr(FITLM_GGUF_ARRAY, inner, 2);
    add_val("n.mixed", mk_arr(FITLM_GGUF_ARRAY, inner2, 2));
    /* the deepest nesting the reader accepts */
    deep[0] = mk_arr(FITLM_GGUF_UINT8, arr_u8, 3);
    for (int d = 1; d < FITLM_GGUF_MAX_ARRAY_DEPTH; d++) deep[d] = mk_arr(FITLM_GGUF_ARRAY, &deep[d - 1], 1);
    add_val("n.deep", deep[FITLM_GGUF_MAX_ARRAY_DEPTH - 1]);
}

static void roundtrip(const char *dir, uint32_t version, uint64_t alignment, bool use_fill) {
    char path[8192];
    snprintf(path, sizeof path, "%s/rt-v%u-a%llu-%s.gguf", dir, version, (unsigned long long)alignment,
             use_fill ? "fill" : "ptr");
    fitlm_error err = {{0}};
    sample s;
    sample_init(&s);
    build_values();
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(version, &err);
    CHECK(w != NULL, "writer_new: %s", err.msg);
    if (!w) return;
    if (alignment != 32) CHECK(fitlm_gguf_writer_set_alignment(w, alignment, &err) == 0, "align: %s", err.msg);
    for (int i = 0; i < g_nvals; i++)
        CHECK(fitlm_gguf_writer_add_value(w, g_keys[i], &g_vals[i], &err) == 0, "add %s: %s", g_keys[i], err.msg);
    CHECK(fitlm_gguf_writer_add_u32(w, "c.u32", 77, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_i32(w, "c.i32", -77, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_u64(w, "c.u64", 1ull << 40, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_f32(w, "c.f32", 0.1f, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_bool(w, "c.bool", false, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_str(w, "c.str", "llama", &err) == 0, "%s", err.msg);
    const float fa[] = {0.5f, -1.0f};
    CHECK(fitlm_gguf_writer_add_arr(w, "c.arr", FITLM_GGUF_FLOAT32, fa, 2, &err) == 0, "%s", err.msg);
    const char *sa[] = {"<s>", "</s>", "\xe2\x96\x81the"};
    CHECK(fitlm_gguf_writer_add_str_arr(w, "c.strs", sa, 3, &err) == 0, "%s", err.msg);
    for (int k = 0; k < s.n; k++)
        CHECK(fitlm_gguf_writer_add_tensor(w, s.names[k], s.types[k], s.n_dims[k], s.ne[k], use_fill ? NULL : s.data[k],
                                           &err) == 0,
              "add tensor %s: %s", s.names[k], err.msg);
    CHECK(fitlm_gguf_writer_write(w, path, use_fill ? fill_from_sample : NULL, &s, &err) == 0, "write: %s", err.msg);
    fitlm_gguf_writer_free(w);

    fitlm_gguf *g = fitlm_gguf_open(path, &err);
    CHECK(g != NULL, "%s: %s", path, err.msg);
    if (!g) {
        sample_free(&s);
        return;
    }
    CHECK(g->version == version, "version %u", g->version);
    CHECK(g->alignment == alignment, "alignment %llu", (unsigned long long)g->alignment);
    CHECK(g->data_offset % alignment == 0, "data offset %llu", (unsigned long long)g->data_offset);
    CHECK(g->n_kv == (uint64_t)g_nvals + 8 + (alignment != 32), "n_kv %llu", (unsigned long long)g->n_kv);
    for (int i = 0; i < g_nvals; i++) {
        const fitlm_gguf_value *v = fitlm_gguf_get(g, g_keys[i]);
        CHECK(v && gguf_test_values_equal(v, &g_vals[i]), "value %s differs after round trip", g_keys[i]);
    }
    uint32_t u32 = 0;
    int64_t i64 = 0;
    uint64_t u64 = 0;
    float f = 0;
    bool b = true;
    const char *str = NULL;
    CHECK(fitlm_gguf_get_u32(g, "c.u32", &u32, &err) == 1 && u32 == 77, "c.u32");
    CHECK(fitlm_gguf_get_i64(g, "c.i32", &i64, &err) == 1 && i64 == -77, "c.i32");
    CHECK(fitlm_gguf_get_u64(g, "c.u64", &u64, &err) == 1 && u64 == 1ull << 40, "c.u64");
    CHECK(fitlm_gguf_get_f32(g, "c.f32", &f, &err) == 1 && f == 0.1f, "c.f32");
    CHECK(fitlm_gguf_get_bool(g, "c.bool", &b, &err) == 1 && !b, "c.bool");
    CHECK(fitlm_gguf_get_str(g, "c.str", &str, &err) == 1 && strcmp(str, "llama") == 0, "c.str");
    CHECK(fitlm_gguf_get_u32(g, "c.i32", &u32, &err) == -1, "negative into u32 refused");
    CHECK(fitlm_gguf_get_u32(g, "t.u64", &u32, &err) == -1, "2^63 into u32 refused");
    CHECK(fitlm_gguf_get_i64(g, "t.u64", &i64, &err) == -1, "2^63 into i64 refused");
    CHECK(fitlm_gguf_get_u32(g, "t.u16", &u32, &err) == 1 && u32 == 60000, "u16 into u32");
    CHECK(fitlm_gguf_get_i64(g, "t.i8", &i64, &err) == 1 && i64 == -100, "i8 into i64");
    CHECK(fitlm_gguf_get_f32(g, "t.f64", &f, &err) == 1 && fabsf(f - 3.1415927f) < 1e-6f, "f64 into f32");
    CHECK(fitlm_gguf_get_bool(g, "t.u8", &b, &err) == -1, "u8 is not a bool");
    const fitlm_gguf_value *arr = NULL;
    CHECK(fitlm_gguf_get_arr(g, "c.strs", FITLM_GGUF_STRING, &arr, &err) == 1 && arr->v.arr.n == 3 &&
              strcmp(arr->v.arr.strs[2].s, sa[2]) == 0,
          "c.strs");
    CHECK(g->n_tensors == (uint64_t)s.n, "n_tensors %llu vs %d", (unsigned long long)g->n_tensors, s.n);
    uint64_t prev_end = 0;
    for (int k = 0; k < s.n && (uint64_t)k < g->n_tensors; k++) {
        const fitlm_gguf_tensor *t = &g->tensors[k];
        CHECK(strcmp(t->name.s, s.names[k]) == 0, "tensor %d name %s", k, t->name.s);
        CHECK(fitlm_gguf_find_tensor(g, s.names[k]) == t, "find %s", s.names[k]);
        CHECK(t->type == s.types[k] && t->n_dims == s.n_dims[k], "tensor %s type/dims", s.names[k]);
        CHECK(memcmp(t->ne, s.ne[k], sizeof t->ne) == 0, "tensor %s shape", s.names[k]);
        CHECK(t->nbytes == s.nbytes[k], "tensor %s nbytes %llu vs %llu", s.names[k], (unsigned long long)t->nbytes,
              (unsigned long long)s.nbytes[k]);
        CHECK(t->offset % alignment == 0 && t->offset >= prev_end, "tensor %s offset %llu", s.names[k],
              (unsigned long long)t->offset);
        CHECK(memcmp(t->data, s.data[k], s.nbytes[k]) == 0, "tensor %s data differs", s.names[k]);
        prev_end = t->offset + t->nbytes;
    }
    CHECK(g->file->size % alignment == 0 && g->file->size >= prev_end, "file size %llu",
          (unsigned long long)g->file->size);
    fitlm_gguf_close(g);
    sample_free(&s);
}

/* Deep-copies every metadata pair of a real vocab file through add_value. */
static void copy_vocab(const char *dir, const char *shared, const char *name, uint32_t version) {
    char src[8192], dst[8192];
    snprintf(src, sizeof src, "%s/data/vocab/%s", shared, name);
    snprintf(dst, sizeof dst, "%s/copy-v%u-%s", dir, version, name);
    fitlm_error err = {{0}};
    fitlm_gguf *a = fitlm_gguf_open(src, &err);
    CHECK(a != NULL, "%s", err.msg);
    if (!a) return;
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(version, &err);
    for (uint64_t i = 0; i < a->n_kv; i++)
        CHECK(fitlm_gguf_writer_add_value(w, a->kv[i].key.s, &a->kv[i].value, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_write(w, dst, NULL, NULL, &err) == 0, "%s", err.msg);
    fitlm_gguf_writer_free(w);
    fitlm_gguf *b = fitlm_gguf_open(dst, &err);
    CHECK(b != NULL, "%s", err.msg);
    if (b) {
        CHECK(b->version == version && b->n_kv == a->n_kv, "copy header");
        for (uint64_t i = 0; i < a->n_kv && i < b->n_kv; i++)
            CHECK(strcmp(a->kv[i].key.s, b->kv[i].key.s) == 0 && gguf_test_values_equal(&a->kv[i].value, &b->kv[i].value),
                  "copied key %s differs", a->kv[i].key.s);
        /* same bytes after the version field: gguf-py and fitlm encode the same way */
        CHECK(a->file->size == b->file->size && memcmp(a->file->data + 8, b->file->data + 8, a->file->size - 8) == 0,
              "copy is not byte-identical to the gguf-py original (%llu vs %llu bytes)",
              (unsigned long long)a->file->size, (unsigned long long)b->file->size);
        fitlm_gguf_close(b);
    }
    fitlm_gguf_close(a);
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void refusals(const char *dir) {
    fitlm_error err = {{0}};
    CHECK(fitlm_gguf_writer_new(1, &err) == NULL && err.msg[0], "v1 writer refused");
    CHECK(fitlm_gguf_writer_new(4, &err) == NULL, "v4 writer refused");
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(3, &err);
    CHECK(fitlm_gguf_writer_add_u32(w, "k", 1, &err) == 0, "k");
    CHECK(fitlm_gguf_writer_add_u32(w, "k", 2, &err) == -1 && strstr(err.msg, "duplicate"), "dup key: %s", err.msg);
    CHECK(fitlm_gguf_writer_add_u32(w, "", 2, &err) == -1, "empty key");
    CHECK(fitlm_gguf_writer_set_alignment(w, 3, &err) == -1, "alignment 3");
    CHECK(fitlm_gguf_writer_set_alignment(w, 1, &err) == -1, "alignment 1 (the spec: a multiple of 8)");
    CHECK(fitlm_gguf_writer_set_alignment(w, 4, &err) == -1, "alignment 4 (the spec: a multiple of 8)");
    CHECK(fitlm_gguf_writer_set_alignment(w, 0, &err) == -1, "alignment 0");
    CHECK(fitlm_gguf_writer_add_str(w, "general.alignment", "32", &err) == -1, "string alignment");
    char longname[80];
    memset(longname, 'x', 65);
    longname[65] = 0;
    uint64_t ne[4] = {32, 2, 1, 1};
    float data[64] = {0};
    CHECK(fitlm_gguf_writer_add_tensor(w, longname, FITLM_TYPE_F32, 2, ne, data, &err) == -1, "65-byte name");
    longname[64] = 0;
    CHECK(fitlm_gguf_writer_add_tensor(w, longname, FITLM_TYPE_F32, 2, ne, data, &err) == 0, "64-byte name: %s",
          err.msg);
    CHECK(fitlm_gguf_writer_add_tensor(w, longname, FITLM_TYPE_F32, 2, ne, data, &err) == -1, "dup tensor");
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", 4, 2, ne, data, &err) == -1, "removed type 4");
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_U8, 2, ne, data, &err) == -1, "safetensors-only type");
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_F32, 5, ne, data, &err) == -1, "5 dims");
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_F32, 0, ne, data, &err) == -1, "0 dims");
    uint64_t ne_bad[2] = {16, 2};
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_Q8_0, 2, ne_bad, data, &err) == -1 &&
              strstr(err.msg, "block size"),
          "16 not a multiple of 32: %s", err.msg);
    uint64_t ne_zero[2] = {32, 0};
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_F32, 2, ne_zero, data, &err) == -1, "zero dim");
    uint64_t ne_huge[4] = {1ull << 32, 1ull << 32, 1, 1};
    CHECK(fitlm_gguf_writer_add_tensor(w, "a", FITLM_TYPE_F32, 2, ne_huge, data, &err) == -1, "overflow");
    CHECK(fitlm_gguf_writer_set_alignment(w, 64, &err) == -1, "alignment after tensors");
    /* nested deeper than the reader accepts */
    fitlm_gguf_value d[FITLM_GGUF_MAX_ARRAY_DEPTH + 1];
    d[0] = mk_arr(FITLM_GGUF_UINT8, arr_u8, 3);
    for (int i = 1; i <= FITLM_GGUF_MAX_ARRAY_DEPTH; i++) d[i] = mk_arr(FITLM_GGUF_ARRAY, &d[i - 1], 1);
    CHECK(fitlm_gguf_writer_add_value(w, "deep", &d[FITLM_GGUF_MAX_ARRAY_DEPTH], &err) == -1, "too deep");
    const uint8_t badbool[] = {0, 2};
    CHECK(fitlm_gguf_writer_add_arr(w, "bb", FITLM_GGUF_BOOL, badbool, 2, &err) == -1, "bool 2");
    CHECK(fitlm_gguf_writer_add_arr(w, "ss", FITLM_GGUF_STRING, badbool, 2, &err) == -1, "add_arr of strings");

    /* data missing, and a failing fill callback: no file (and no temp file) is left behind */
    char path[8192];
    snprintf(path, sizeof path, "%s/refused.gguf", dir);
    unlink(path);
    CHECK(fitlm_gguf_writer_add_tensor(w, "nodata", FITLM_TYPE_F32, 2, ne, NULL, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_add_tensor(w, "nodata2", FITLM_TYPE_F32, 2, ne, NULL, &err) == 0, "%s", err.msg);
    CHECK(fitlm_gguf_writer_write(w, path, NULL, NULL, &err) == -1 && strstr(err.msg, "nodata"), "no data: %s",
          err.msg);
    CHECK(!exists(path), "file written despite missing data");
    CHECK(fitlm_gguf_writer_write(w, path, fill_fail, NULL, &err) == -1 && strstr(err.msg, "refused"),
          "fill failure: %s", err.msg);
    CHECK(!exists(path), "file written despite fill failure");
    char tmp[8300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(!exists(tmp), "temp file left behind");
    snprintf(path, sizeof path, "%s/no-such-dir/x.gguf", dir);
    CHECK(fitlm_gguf_writer_write(w, path, fill_fail, NULL, &err) == -1 && err.msg[0], "unwritable path");
    fitlm_gguf_writer_free(w);
}

int main(void) {
    const char *tmp = check_env_or_skip("FITLM_TMP");
    const char *shared = check_env_or_skip("FITLM_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/gguf-roundtrip", tmp);
    mkdir(dir, 0777);
    const uint64_t aligns[] = {16, 8, 32, 64};
    for (uint32_t v = 2; v <= 3; v++)
        for (int a = 0; a < 4; a++) roundtrip(dir, v, aligns[a], (a + v) % 2 == 0);
    roundtrip(dir, 3, 32, true);
    roundtrip(dir, 3, 64, false);
    copy_vocab(dir, shared, "ggml-vocab-gpt-2.gguf", 2);
    copy_vocab(dir, shared, "ggml-vocab-llama-spm.gguf", 3);
    copy_vocab(dir, shared, "ggml-vocab-phi-3.gguf", 3);
    copy_vocab(dir, shared, "ggml-vocab-deepseek-llm.gguf", 3);
    refusals(dir);
    return check_report();
}
