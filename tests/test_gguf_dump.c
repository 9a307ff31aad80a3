/* Canonical text dump of a GGUF file, as read by fitlm's reader; the python
 * test (tests/test_gguf_spec.py) compares it with the dump of its own,
 * independent spec-level parser and with the contents it wrote.
 *
 *   test_gguf_dump FILE                          dump FILE to stdout (exit 1 + message if refused)
 *   test_gguf_dump --write-sample OUT VER ALIGN  write the writer sample described below
 *   test_gguf_dump                               self-test on a file hand-encoded from the spec
 *
 * Dump format (one item per line):
 *   gguf version=V n_kv=N n_tensors=T alignment=A data_offset=D
 *   kv KEY TYPE VALUE
 *   tensor NAME type=ID dims=NE0,NE1.. offset=REL nbytes=N fnv=HEX
 * VALUE: integers in decimal, bool 0/1, float32/float64 as "0x" + the bits in
 * hex, string as "s:" + hex bytes, array as "[ELEMTYPE;N:ITEMS]" where ITEMS
 * is the raw element bytes in hex for scalars, or comma-separated items. REL is
 * relative to the data section; fnv is FNV-1a 64 of the tensor bytes. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "support/gguf_values.h"
#include "util/fp16.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) abort();
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_fmt(sbuf *b, const char *fmt, ...) FITLM_PRINTF(2, 3);
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void sb_hex(sbuf *b, const void *p, uint64_t n) {
    static const char digits[] = "0123456789abcdef";
    const uint8_t *q = p;
    char tmp[256];
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        tmp[k++] = digits[q[i] >> 4];
        tmp[k++] = digits[q[i] & 15];
        if (k == sizeof tmp) {
            sb_put(b, tmp, k);
            k = 0;
        }
    }
    sb_put(b, tmp, k);
}

static void dump_value(sbuf *b, const fitlm_gguf_value *v) {
    switch (v->type) {
    case FITLM_GGUF_UINT8: case FITLM_GGUF_UINT16: case FITLM_GGUF_UINT32: case FITLM_GGUF_UINT64:
    case FITLM_GGUF_BOOL:
        sb_fmt(b, "%" PRIu64, v->v.u64);
        break;
    case FITLM_GGUF_INT8: case FITLM_GGUF_INT16: case FITLM_GGUF_INT32: case FITLM_GGUF_INT64:
        sb_fmt(b, "%" PRId64, v->v.i64);
        break;
    case FITLM_GGUF_FLOAT32:
        sb_fmt(b, "0x%08" PRIx32, fitlm_fp32_to_bits((float)v->v.f64));
        break;
    case FITLM_GGUF_FLOAT64: {
        uint64_t bits;
        memcpy(&bits, &v->v.f64, 8);
        sb_fmt(b, "0x%016" PRIx64, bits);
        break;
    }
    case FITLM_GGUF_STRING:
        sb_put(b, "s:", 2);
        sb_hex(b, v->v.str.s, v->v.str.len);
        break;
    case FITLM_GGUF_ARRAY: {
        int et = v->v.arr.elem_type;
        sb_fmt(b, "[%s;%" PRIu64 ":", fitlm_gguf_type_name(et), v->v.arr.n);
        if (gguf_test_scalar_bytes(et)) {
            sb_hex(b, v->v.arr.raw, v->v.arr.n * (uint64_t)gguf_test_scalar_bytes(et));
        } else {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                if (i) sb_put(b, ",", 1);
                if (et == FITLM_GGUF_STRING) {
                    sb_put(b, "s:", 2);
                    sb_hex(b, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
                } else {
                    dump_value(b, &v->v.arr.vals[i]);
                }
            }
        }
        sb_put(b, "]", 1);
        break;
    }
    default:
        sb_put(b, "?", 1);
    }
}

static uint64_t fnv1a(const uint8_t *p, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static char *dump(const fitlm_gguf *g) {
    sbuf b = {0};
    sb_fmt(&b, "gguf version=%" PRIu32 " n_kv=%" PRIu64 " n_tensors=%" PRIu64 " alignment=%" PRIu64
               " data_offset=%" PRIu64 "\n",
           g->version, g->n_kv, g->n_tensors, g->alignment, g->data_offset);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        sb_put(&b, "kv ", 3);
        sb_put(&b, g->kv[i].key.s, g->kv[i].key.len);
        sb_fmt(&b, " %s ", fitlm_gguf_type_name(g->kv[i].value.type));
        dump_value(&b, &g->kv[i].value);
        sb_put(&b, "\n", 1);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fitlm_gguf_tensor *t = &g->tensors[i];
        sb_fmt(&b, "tensor %s type=%d dims=", t->name.s, t->type);
        for (uint32_t d = 0; d < t->n_dims; d++) sb_fmt(&b, d ? ",%" PRIu64 : "%" PRIu64, t->ne[d]);
        sb_fmt(&b, " offset=%" PRIu64 " nbytes=%" PRIu64 " fnv=%016" PRIx64 "\n", t->offset - g->data_offset,
               t->nbytes, fnv1a(t->data, t->nbytes));
    }
    return b.p;
}

/* ---- the writer sample: test_gguf_spec.py knows these values ---- */
static int sample_fill(void *user, uint64_t i, void *buf, uint64_t nbytes, fitlm_error *err) {
    (void)user;
    (void)err;
    uint8_t *p = buf;
    for (uint64_t j = 0; j < nbytes; j++) p[j] = (uint8_t)(i * 31 + j * 7);
    return 0;
}

static int write_sample(const char *out, uint32_t version, uint64_t alignment) {
    fitlm_error err = {{0}};
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(version, &err);
    if (!w) return fitlm_die("%s", err.msg);
    int rc = 0;
    if (alignment != 32) rc |= fitlm_gguf_writer_set_alignment(w, alignment, &err);
    rc |= fitlm_gguf_writer_add_str(w, "general.architecture", "llama", &err);
    rc |= fitlm_gguf_writer_add_u32(w, "s.u32", 4000000000u, &err);
    rc |= fitlm_gguf_writer_add_i32(w, "s.i32", -123456, &err);
    rc |= fitlm_gguf_writer_add_u64(w, "s.u64", 18446744073709551615ull, &err);
    rc |= fitlm_gguf_writer_add_f32(w, "s.f32", -0.15625f, &err);
    rc |= fitlm_gguf_writer_add_bool(w, "s.bool", true, &err);
    rc |= fitlm_gguf_writer_add_str(w, "s.str", "h\xc3\xa9llo \xe2\x96\x81world", &err);
    fitlm_gguf_value v = {.type = FITLM_GGUF_UINT8, .v.u64 = 250};
    rc |= fitlm_gguf_writer_add_value(w, "s.u8", &v, &err);
    v = (fitlm_gguf_value){.type = FITLM_GGUF_INT8, .v.i64 = -7};
    rc |= fitlm_gguf_writer_add_value(w, "s.i8", &v, &err);
    v = (fitlm_gguf_value){.type = FITLM_GGUF_UINT16, .v.u64 = 65000};
    rc |= fitlm_gguf_writer_add_value(w, "s.u16", &v, &err);
    v = (fitlm_gguf_value){.type = FITLM_GGUF_INT16, .v.i64 = -32000};
    rc |= fitlm_gguf_writer_add_value(w, "s.i16", &v, &err);
    v = (fitlm_gguf_value){.type = FITLM_GGUF_INT64, .v.i64 = -9000000000000000000ll};
    rc |= fitlm_gguf_writer_add_value(w, "s.i64", &v, &err);
    v = (fitlm_gguf_value){.type = FITLM_GGUF_FLOAT64, .v.f64 = 2.718281828459045};
    rc |= fitlm_gguf_writer_add_value(w, "s.f64", &v, &err);
    const int32_t ai[] = {1, -2, 3, -4, 2147483647};
    rc |= fitlm_gguf_writer_add_arr(w, "a.i32", FITLM_GGUF_INT32, ai, 5, &err);
    const float af[] = {0.5f, -1.25f, 1e10f};
    rc |= fitlm_gguf_writer_add_arr(w, "a.f32", FITLM_GGUF_FLOAT32, af, 3, &err);
    const char *as[] = {"<s>", "", "\xe2\x96\x81the", "a b"};
    rc |= fitlm_gguf_writer_add_str_arr(w, "a.str", as, 4, &err);
    /* [[1, 2], [3]] of uint16, and [["x"], [["y", "z"]]]-style nesting with strings */
    const uint16_t u16s[] = {1, 2, 3};
    fitlm_gguf_value in[2] = {{.type = FITLM_GGUF_ARRAY}, {.type = FITLM_GGUF_ARRAY}};
    in[0].v.arr.elem_type = FITLM_GGUF_UINT16;
    in[0].v.arr.n = 2;
    in[0].v.arr.raw = u16s;
    in[1].v.arr.elem_type = FITLM_GGUF_UINT16;
    in[1].v.arr.n = 1;
    in[1].v.arr.raw = u16s + 2;
    v = (fitlm_gguf_value){.type = FITLM_GGUF_ARRAY};
    v.v.arr.elem_type = FITLM_GGUF_ARRAY;
    v.v.arr.n = 2;
    v.v.arr.vals = in;
    rc |= fitlm_gguf_writer_add_value(w, "a.nested", &v, &err);
    const fitlm_gguf_str xs[] = {{1, "x"}, {2, "yz"}};
    fitlm_gguf_value sarr = {.type = FITLM_GGUF_ARRAY};
    sarr.v.arr.elem_type = FITLM_GGUF_STRING;
    sarr.v.arr.n = 2;
    sarr.v.arr.strs = xs;
    fitlm_gguf_value lvl2 = {.type = FITLM_GGUF_ARRAY};
    lvl2.v.arr.elem_type = FITLM_GGUF_ARRAY;
    lvl2.v.arr.n = 1;
    lvl2.v.arr.vals = &sarr;
    v = (fitlm_gguf_value){.type = FITLM_GGUF_ARRAY};
    v.v.arr.elem_type = FITLM_GGUF_ARRAY;
    v.v.arr.n = 1;
    v.v.arr.vals = &lvl2;
    rc |= fitlm_gguf_writer_add_value(w, "a.nested3", &v, &err);
    if (rc) {
        fitlm_gguf_writer_free(w);
        return fitlm_die("%s", err.msg);
    }
    /* tensors: F32 [8,3] with values i*0.5 (pointer), F16 [16] of -i (pointer), then
     * Q8_0 [64,2], Q4_K [256], BF16 [4,2] produced by the fill pattern */
    static float f32[24];
    for (int i = 0; i < 24; i++) f32[i] = (float)i * 0.5f;
    static uint16_t f16[16];
    for (int i = 0; i < 16; i++) f16[i] = fitlm_fp32_to_fp16(-(float)i);
    const uint64_t ne_f32[] = {8, 3}, ne_f16[] = {16}, ne_q8[] = {64, 2}, ne_q4k[] = {256}, ne_bf16[] = {4, 2};
    rc |= fitlm_gguf_writer_add_tensor(w, "t.f32", FITLM_TYPE_F32, 2, ne_f32, f32, &err);
    rc |= fitlm_gguf_writer_add_tensor(w, "t.f16", FITLM_TYPE_F16, 1, ne_f16, f16, &err);
    rc |= fitlm_gguf_writer_add_tensor(w, "t.q8_0", FITLM_TYPE_Q8_0, 2, ne_q8, NULL, &err);
    rc |= fitlm_gguf_writer_add_tensor(w, "t.q4_k", FITLM_TYPE_Q4_K, 1, ne_q4k, NULL, &err);
    rc |= fitlm_gguf_writer_add_tensor(w, "t.bf16", FITLM_TYPE_BF16, 2, ne_bf16, NULL, &err);
    if (rc || fitlm_gguf_writer_write(w, out, sample_fill, NULL, &err)) {
        fitlm_gguf_writer_free(w);
        return fitlm_die("%s", err.msg);
    }
    fitlm_gguf_writer_free(w);
    return 0;
}

/* A file encoded by hand from the spec: v3, 3 kv pairs, one F32 tensor [2,1]. */
static const uint8_t k_handmade[] = {
    'G', 'G', 'U', 'F', 3, 0, 0, 0,             /* magic, version 3 */
    1, 0, 0, 0, 0, 0, 0, 0,                     /* 1 tensor */
    3, 0, 0, 0, 0, 0, 0, 0,                     /* 3 kv */
    1, 0, 0, 0, 0, 0, 0, 0, 'a', 4, 0, 0, 0,    /* "a": uint32 */
    7, 0, 0, 0,                                 /* = 7 */
    1, 0, 0, 0, 0, 0, 0, 0, 'b', 8, 0, 0, 0,    /* "b": string */
    2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i',           /* = "hi" */
    1, 0, 0, 0, 0, 0, 0, 0, 'c', 9, 0, 0, 0,    /* "c": array */
    9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,         /* of 1 array */
    6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,         /* of 1 float32 */
    0, 0, 0x80, 0x3f,                           /* 1.0f */
    1, 0, 0, 0, 0, 0, 0, 0, 't', 2, 0, 0, 0,    /* tensor "t", 2 dims */
    2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, /* ne = 2, 1 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,         /* F32, offset 0 */
    /* 146 bytes so far: pad to 160 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x40, 0x40, 0, 0, 0x80, 0xbf,         /* 3.0f, -1.0f */
};

int main(int argc, char **argv) {
    if (argc == 2) {
        fitlm_error err = {{0}};
        fitlm_gguf *g = fitlm_gguf_open(argv[1], &err);
        if (!g) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        char *d = dump(g);
        fputs(d, stdout);
        free(d);
        fitlm_gguf_close(g);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "--write-sample") == 0)
        return write_sample(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (argc != 1) {
        fprintf(stderr, "usage: test_gguf_dump [FILE | --write-sample OUT VERSION ALIGNMENT]\n");
        return 2;
    }
    fitlm_error err = {{0}};
    CHECK(sizeof k_handmade == 168, "hand-made file is %zu bytes", sizeof k_handmade);
    fitlm_gguf *g = fitlm_gguf_open_memory(k_handmade, sizeof k_handmade, &err);
    CHECK(g != NULL, "hand-made file refused: %s", err.msg);
    if (g) {
        char *d = dump(g);
        const char *want = "gguf version=3 n_kv=3 n_tensors=1 alignment=32 data_offset=160\n"
                           "kv a uint32 7\n"
                           "kv b string s:6869\n"
                           "kv c array [array;1:[float32;1:0000803f]]\n"
                           "tensor t type=0 dims=2,1 offset=0 nbytes=8 fnv=%016llx\n";
        char expect[512];
        snprintf(expect, sizeof expect, want, (unsigned long long)fnv1a(k_handmade + 160, 8));
        CHECK(strcmp(d, expect) == 0, "dump:\n%s\nexpected:\n%s", d, expect);
        const fitlm_gguf_tensor *t = fitlm_gguf_find_tensor(g, "t");
        float x[2];
        if (t) memcpy(x, t->data, 8);
        CHECK(t && x[0] == 3.0f && x[1] == -1.0f, "tensor data");
        free(d);
        fitlm_gguf_close(g);
    }
    /* every prefix of the hand-made file is refused (truncation anywhere) */
    int accepted = 0;
    for (size_t n = 0; n < sizeof k_handmade; n++) {
        fitlm_gguf *p = fitlm_gguf_open_memory(k_handmade, n, &err);
        if (p) accepted++;
        fitlm_gguf_close(p);
    }
    CHECK(accepted == 0, "%d truncated prefixes accepted", accepted);
    return check_report();
}
