/* GGUF reader: parses and validates a whole GGUF v2/v3 file held in memory
 * (usually a read-only map).
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 value_type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to `general.alignment`, tensor data (offsets relative to its start).
 * A string is u64 byte length + bytes (no terminator). An array value is
 * u32 element_type, u64 count, then the elements.
 *
 * Every count and length is checked against the bytes that remain in the file
 * before anything is allocated, so memory use is bounded by a small multiple
 * of the file size whatever the header claims.
 */
#include "format/gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_arena.h"
#include "format/ggml_type.h"

/* Smallest possible encodings, used to bound counts before allocating. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)              /* key len, 1-byte key, type, 1-byte value */
#define MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8) /* name len, 1-byte name, n_dims, ne[0], type, offset */
#define MIN_ARRAY_BYTES (4 + 8)                   /* element type, count */
#define MIN_STRING_BYTES 8

typedef struct reader {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    fitlm_arena *arena;
    fitlm_error *err;
    char what[160]; /* the item being parsed, for messages: "key 'x'", "tensor 3 'y'" */
} reader;

static uint64_t left(const reader *r) {
    return r->size - r->pos;
}

static int fail_oom(reader *r) {
    return fitlm_fail(r->err, "out of memory while reading %s", r->what);
}

static int need(reader *r, uint64_t n, const char *field) {
    if (n > left(r))
        return fitlm_fail(r->err, "%s: truncated file: %s at offset %" PRIu64 " needs %" PRIu64 " bytes, only %" PRIu64
                                  " left (file is %" PRIu64 " bytes)",
                          r->what, field, r->pos, n, left(r), r->size);
    return 0;
}

static uint32_t le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t le64(const uint8_t *b) {
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

static int rd_u32(reader *r, uint32_t *v, const char *field) {
    if (need(r, 4, field)) return -1;
    *v = le32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v, const char *field) {
    if (need(r, 8, field)) return -1;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

const char *fitlm_gguf_type_name(int type) {
    static const char *const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32",  "float32",
                                        "bool",  "string", "array", "uint64", "int64",  "float64"};
    if (type >= 0 && type < (int)(sizeof names / sizeof names[0])) return names[type];
    return "unknown";
}

int fitlm_gguf_type_size(uint32_t t) {
    switch (t) {
    case FITLM_GGUF_UINT8:
    case FITLM_GGUF_INT8:
    case FITLM_GGUF_BOOL:
        return 1;
    case FITLM_GGUF_UINT16:
    case FITLM_GGUF_INT16:
        return 2;
    case FITLM_GGUF_UINT32:
    case FITLM_GGUF_INT32:
    case FITLM_GGUF_FLOAT32:
        return 4;
    case FITLM_GGUF_UINT64:
    case FITLM_GGUF_INT64:
    case FITLM_GGUF_FLOAT64:
        return 8;
    case FITLM_GGUF_STRING:
    case FITLM_GGUF_ARRAY:
        return 0;
    default:
        return -1;
    }
}

bool fitlm_gguf_alignment_ok(uint64_t a) {
    /* the GGUF spec: a power of two and a multiple of 8 (1, 2 or 4 would let
     * 8-byte-aligned loads of tensor data land misaligned) */
    return a >= 8 && a <= UINT32_MAX && (a & (a - 1)) == 0;
}

/* Reads a string into the arena. max_len bounds the length (UINT64_MAX: only
 * by the file). If `name` is set the string must be non-empty and NUL-free. */
static int rd_string(reader *r, fitlm_gguf_str *out, uint64_t max_len, bool name, const char *field) {
    uint64_t len;
    if (rd_u64(r, &len, field)) return -1;
    if (len > left(r))
        return fitlm_fail(r->err, "%s: %s length %" PRIu64 " at offset %" PRIu64 " exceeds the %" PRIu64
                                  " bytes left in the file",
                          r->what, field, len, r->pos - 8, left(r));
    if (len > max_len)
        return fitlm_fail(r->err, "%s: %s is %" PRIu64 " bytes long (limit %" PRIu64 ")", r->what, field, len, max_len);
    const uint8_t *src = r->p + r->pos;
    if (name) {
        if (len == 0) return fitlm_fail(r->err, "%s: empty %s", r->what, field);
        if (memchr(src, 0, (size_t)len)) return fitlm_fail(r->err, "%s: %s contains a NUL byte", r->what, field);
    }
    char *s = fitlm_arena_alloc_bytes(r->arena, (size_t)len + 1);
    if (!s) return fail_oom(r);
    memcpy(s, src, (size_t)len);
    s[len] = 0;
    r->pos += len;
    out->len = len;
    out->s = s;
    return 0;
}

/* Formats a name for messages, cut short and with control bytes escaped. */
static void printable(char *dst, size_t cap, const char *s, uint64_t len) {
    size_t k = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t w = (c < 0x20 || c >= 0x7f || c == '\'') ? 4 : 1;
        if (k + w + 4 > cap) { /* keep room for "..." and the terminator */
            memcpy(dst + k, "...", 3);
            k += 3;
            break;
        }
        if (w == 4) k += (size_t)snprintf(dst + k, cap - k, "\\x%02x", c);
        else dst[k++] = (char)c;
    }
    dst[k] = 0;
}

static int rd_array_body(reader *r, fitlm_gguf_value *v, int depth);

/* Reads a value of type `type` (already read) into v. depth = current array nesting. */
static int rd_value(reader *r, uint32_t type, fitlm_gguf_value *v, int depth) {
    v->type = (int)type;
    uint64_t x;
    switch (type) {
    case FITLM_GGUF_UINT8:
    case FITLM_GGUF_INT8:
    case FITLM_GGUF_BOOL:
        if (need(r, 1, "value")) return -1;
        x = r->p[r->pos];
        r->pos += 1;
        if (type == FITLM_GGUF_UINT8) v->v.u64 = x;
        else if (type == FITLM_GGUF_INT8) v->v.i64 = (int8_t)x;
        else {
            if (x > 1) return fitlm_fail(r->err, "%s: bool value %" PRIu64 " is neither 0 nor 1", r->what, x);
            v->v.u64 = x;
        }
        return 0;
    case FITLM_GGUF_UINT16:
    case FITLM_GGUF_INT16:
        if (need(r, 2, "value")) return -1;
        x = (uint64_t)r->p[r->pos] | (uint64_t)r->p[r->pos + 1] << 8;
        r->pos += 2;
        if (type == FITLM_GGUF_UINT16) v->v.u64 = x;
        else v->v.i64 = (int16_t)x;
        return 0;
    case FITLM_GGUF_UINT32:
    case FITLM_GGUF_INT32:
    case FITLM_GGUF_FLOAT32: {
        uint32_t w;
        if (rd_u32(r, &w, "value")) return -1;
        if (type == FITLM_GGUF_UINT32) v->v.u64 = w;
        else if (type == FITLM_GGUF_INT32) v->v.i64 = (int32_t)w;
        else {
            float f;
            memcpy(&f, &w, 4);
            v->v.f64 = f;
        }
        return 0;
    }
    case FITLM_GGUF_UINT64:
    case FITLM_GGUF_INT64:
    case FITLM_GGUF_FLOAT64:
        if (rd_u64(r, &x, "value")) return -1;
        if (type == FITLM_GGUF_UINT64) v->v.u64 = x;
        else if (type == FITLM_GGUF_INT64) v->v.i64 = (int64_t)x;
        else memcpy(&v->v.f64, &x, 8);
        return 0;
    case FITLM_GGUF_STRING:
        return rd_string(r, &v->v.str, UINT64_MAX, false, "string value");
    case FITLM_GGUF_ARRAY:
        return rd_array_body(r, v, depth + 1);
    default:
        return fitlm_fail(r->err, "%s: unknown value type %" PRIu32 " at offset %" PRIu64, r->what, type, r->pos - 4);
    }
}

/* Reads element type, count and elements of an array at nesting `depth` (1 = top level). */
static int rd_array_body(reader *r, fitlm_gguf_value *v, int depth) {
    v->type = FITLM_GGUF_ARRAY;
    if (depth > FITLM_GGUF_MAX_ARRAY_DEPTH)
        return fitlm_fail(r->err, "%s: arrays nested deeper than %d levels", r->what, FITLM_GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    if (rd_u32(r, &et, "array element type")) return -1;
    int es = fitlm_gguf_type_size(et);
    if (es < 0)
        return fitlm_fail(r->err, "%s: unknown array element type %" PRIu32 " at offset %" PRIu64, r->what, et,
                          r->pos - 4);
    if (rd_u64(r, &n, "array length")) return -1;
    uint64_t min_elem = es > 0 ? (uint64_t)es : et == FITLM_GGUF_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES;
    if (n > left(r) / min_elem)
        return fitlm_fail(r->err, "%s: array of %" PRIu64 " %s elements needs at least %" PRIu64
                                  " bytes per element but only %" PRIu64 " bytes are left in the file",
                          r->what, n, fitlm_gguf_type_name((int)et), min_elem, left(r));
    v->v.arr.elem_type = (int)et;
    v->v.arr.n = n;
    if (es > 0) {
        const uint8_t *raw = r->p + r->pos;
        if (et == FITLM_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (raw[i] > 1)
                    return fitlm_fail(r->err, "%s: bool array element %" PRIu64 " is %u (neither 0 nor 1)", r->what, i,
                                      raw[i]);
        }
        v->v.arr.raw = raw;
        r->pos += n * (uint64_t)es;
        return 0;
    }
    if (et == FITLM_GGUF_STRING) {
        fitlm_gguf_str *strs = fitlm_arena_alloc(r->arena, (size_t)n * sizeof *strs);
        if (!strs) return fail_oom(r);
        for (uint64_t i = 0; i < n; i++)
            if (rd_string(r, &strs[i], UINT64_MAX, false, "string array element")) return -1;
        v->v.arr.strs = strs;
        return 0;
    }
    fitlm_gguf_value *vals = fitlm_arena_alloc(r->arena, (size_t)n * sizeof *vals);
    if (!vals) return fail_oom(r);
    for (uint64_t i = 0; i < n; i++)
        if (rd_array_body(r, &vals[i], depth + 1)) return -1;
    v->v.arr.vals = vals;
    return 0;
}

static int cmp_name_index(const void *a, const void *b) {
    return strcmp(((const fitlm_gguf_name_index *)a)->name, ((const fitlm_gguf_name_index *)b)->name);
}

typedef struct span {
    uint64_t off, len, idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

static int parse_header(reader *r, fitlm_gguf *g) {
    snprintf(r->what, sizeof r->what, "header");
    if (r->size == 0) return fitlm_fail(r->err, "not a GGUF file: the file is empty");
    if (r->size < 4)
        return fitlm_fail(r->err, "not a GGUF file: only %" PRIu64 " bytes, too short for the magic", r->size);
    if (memcmp(r->p, "GGUF", 4) != 0) {
        char m[40];
        printable(m, sizeof m, (const char *)r->p, 4);
        return fitlm_fail(r->err, "not a GGUF file: magic is '%s', expected 'GGUF'", m);
    }
    r->pos = 4;
    uint32_t version;
    if (rd_u32(r, &version, "version")) return -1;
    if (version == 1) return fitlm_fail(r->err, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && (version >> 16) != 0)
            return fitlm_fail(r->err, "GGUF version field is 0x%08" PRIx32
                                      ": a big-endian GGUF file, which is not supported",
                              version);
        return fitlm_fail(r->err, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", version);
    }
    g->version = version;
    if (rd_u64(r, &g->n_tensors, "tensor count")) return -1;
    if (rd_u64(r, &g->n_kv, "metadata count")) return -1;
    uint64_t rest = left(r);
    if (g->n_kv > rest / MIN_KV_BYTES)
        return fitlm_fail(r->err, "header claims %" PRIu64 " metadata pairs but only %" PRIu64
                                  " bytes follow (at least %d bytes each)",
                          g->n_kv, rest, MIN_KV_BYTES);
    if (g->n_tensors > rest / MIN_TENSOR_INFO_BYTES)
        return fitlm_fail(r->err, "header claims %" PRIu64 " tensors but only %" PRIu64
                                  " bytes follow (at least %d bytes per tensor info)",
                          g->n_tensors, rest, MIN_TENSOR_INFO_BYTES);
    if (g->n_kv * MIN_KV_BYTES + g->n_tensors * MIN_TENSOR_INFO_BYTES > rest)
        return fitlm_fail(r->err, "header claims %" PRIu64 " metadata pairs and %" PRIu64
                                  " tensors but only %" PRIu64 " bytes follow",
                          g->n_kv, g->n_tensors, rest);
    return 0;
}

static int parse_kv(reader *r, fitlm_gguf *g) {
    g->kv = fitlm_arena_alloc(r->arena, (size_t)g->n_kv * sizeof *g->kv);
    if (!g->kv) return fail_oom(r);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        fitlm_gguf_kv *kv = &g->kv[i];
        snprintf(r->what, sizeof r->what, "metadata pair %" PRIu64, i);
        if (rd_string(r, &kv->key, FITLM_GGUF_MAX_KEY, true, "key")) return -1;
        char name[96];
        printable(name, sizeof name, kv->key.s, kv->key.len);
        snprintf(r->what, sizeof r->what, "key '%s'", name);
        uint32_t type;
        if (rd_u32(r, &type, "value type")) return -1;
        if (fitlm_gguf_type_size(type) < 0)
            return fitlm_fail(r->err, "key '%s': unknown value type %" PRIu32, name, type);
        if (type == FITLM_GGUF_ARRAY) {
            if (rd_array_body(r, &kv->value, 1)) return -1;
        } else if (rd_value(r, type, &kv->value, 0)) {
            return -1;
        }
    }
    /* sorted index: lookups and the duplicate check */
    g->kv_sorted = fitlm_arena_alloc(r->arena, (size_t)g->n_kv * sizeof *g->kv_sorted);
    if (!g->kv_sorted) return fail_oom(r);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        g->kv_sorted[i].name = g->kv[i].key.s;
        g->kv_sorted[i].idx = i;
    }
    if (g->n_kv > 1) qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_name_index);
    for (uint64_t i = 1; i < g->n_kv; i++)
        if (strcmp(g->kv_sorted[i - 1].name, g->kv_sorted[i].name) == 0) {
            char name[96];
            printable(name, sizeof name, g->kv_sorted[i].name, strlen(g->kv_sorted[i].name));
            return fitlm_fail(r->err, "duplicate metadata key '%s'", name);
        }
    return 0;
}

static int parse_alignment(reader *r, fitlm_gguf *g) {
    g->alignment = FITLM_GGUF_DEFAULT_ALIGNMENT;
    const fitlm_gguf_value *v = fitlm_gguf_get(g, "general.alignment");
    if (!v) return 0;
    if (v->type != FITLM_GGUF_UINT32)
        return fitlm_fail(r->err, "general.alignment has type %s, the GGUF spec requires uint32",
                          fitlm_gguf_type_name(v->type));
    uint64_t a = v->v.u64;
    if (!fitlm_gguf_alignment_ok(a))
        return fitlm_fail(r->err, "general.alignment is %" PRIu64 ", it must be a power of two and a multiple of 8", a);
    g->alignment = a;
    return 0;
}

static int parse_tensor_infos(reader *r, fitlm_gguf *g) {
    g->tensors = fitlm_arena_alloc(r->arena, (size_t)g->n_tensors * sizeof *g->tensors);
    if (!g->tensors) return fail_oom(r);
    char name[96];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        fitlm_gguf_tensor *t = &g->tensors[i];
        snprintf(r->what, sizeof r->what, "tensor %" PRIu64, i);
        if (rd_string(r, &t->name, FITLM_GGUF_MAX_TENSOR_NAME, true, "name")) return -1;
        printable(name, sizeof name, t->name.s, t->name.len);
        snprintf(r->what, sizeof r->what, "tensor '%s'", name);
        if (rd_u32(r, &t->n_dims, "n_dims")) return -1;
        if (t->n_dims < 1 || t->n_dims > FITLM_GGUF_MAX_DIMS)
            return fitlm_fail(r->err, "tensor '%s': %" PRIu32 " dimensions (must be 1 to %d)", name, t->n_dims,
                              FITLM_GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < FITLM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(r, &t->ne[d], "dimension")) return -1;
            if (t->ne[d] == 0) return fitlm_fail(r->err, "tensor '%s': dimension %" PRIu32 " is 0", name, d);
            if (t->ne[d] > (uint64_t)INT64_MAX / nel)
                return fitlm_fail(r->err, "tensor '%s': the element count overflows (dimension %" PRIu32 " is %" PRIu64
                                          ")",
                                  name, d, t->ne[d]);
            nel *= t->ne[d];
        }
        t->n_elements = nel;
        uint32_t type;
        if (rd_u32(r, &type, "type")) return -1;
        const fitlm_type_info *ti = type < FITLM_TYPE_GGML_COUNT ? fitlm_type_get((int)type) : NULL;
        if (!ti) return fitlm_fail(r->err, "tensor '%s': unknown or removed tensor type id %" PRIu32, name, type);
        t->type = (int)type;
        bool ok;
        uint64_t row = fitlm_type_row_bytes(t->type, t->ne[0], &ok);
        if (!ok && t->ne[0] % ti->block_size == 0)
            return fitlm_fail(r->err, "tensor '%s': data size overflows (row of %" PRIu64 " %s elements)", name, t->ne[0], ti->name);
        if (!ok)
            return fitlm_fail(r->err, "tensor '%s': row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                              name, t->ne[0], ti->name, ti->block_size);
        uint64_t rows = nel / t->ne[0];
        if (row != 0 && rows > UINT64_MAX / row)
            return fitlm_fail(r->err, "tensor '%s': data size overflows", name);
        t->nbytes = row * rows;
        if (rd_u64(r, &t->offset, "data offset")) return -1;
        if (t->offset % g->alignment != 0)
            return fitlm_fail(r->err, "tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                              name, t->offset, g->alignment);
    }
    /* data section start */
    uint64_t pad = (g->alignment - r->pos % g->alignment) % g->alignment;
    if (r->pos > UINT64_MAX - pad) return fitlm_fail(r->err, "data section offset overflows");
    g->data_offset = r->pos + pad;
    uint64_t room = r->size > g->data_offset ? r->size - g->data_offset : 0;
    span *sp = g->n_tensors ? malloc((size_t)g->n_tensors * sizeof *sp) : NULL;
    if (g->n_tensors && !sp) return fail_oom(r);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        fitlm_gguf_tensor *t = &g->tensors[i];
        if (t->offset > room || t->nbytes > room - t->offset) {
            printable(name, sizeof name, t->name.s, t->name.len);
            fitlm_fail(r->err, "tensor '%s': data (offset %" PRIu64 " + %" PRIu64
                               " bytes) extends past end of file (%" PRIu64 " bytes, data section starts at %" PRIu64
                               ")",
                       name, t->offset, t->nbytes, r->size, g->data_offset);
            free(sp);
            return -1;
        }
        sp[i].off = t->offset;
        sp[i].len = t->nbytes;
        sp[i].idx = i;
        t->offset += g->data_offset;
        t->data = r->p + t->offset;
    }
    if (g->n_tensors > 1) qsort(sp, (size_t)g->n_tensors, sizeof *sp, cmp_span);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (sp[i - 1].off + sp[i - 1].len > sp[i].off) {
            const fitlm_gguf_tensor *a = &g->tensors[sp[i - 1].idx], *b = &g->tensors[sp[i].idx];
            char name2[96];
            printable(name, sizeof name, a->name.s, a->name.len);
            printable(name2, sizeof name2, b->name.s, b->name.len);
            fitlm_fail(r->err, "tensors '%s' (offset %" PRIu64 " + %" PRIu64 " bytes) and '%s' (offset %" PRIu64
                               ") overlap",
                       name, sp[i - 1].off, sp[i - 1].len, name2, sp[i].off);
            free(sp);
            return -1;
        }
    }
    free(sp);
    g->tensor_sorted = fitlm_arena_alloc(r->arena, (size_t)g->n_tensors * sizeof *g->tensor_sorted);
    if (!g->tensor_sorted) return fail_oom(r);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        g->tensor_sorted[i].name = g->tensors[i].name.s;
        g->tensor_sorted[i].idx = i;
    }
    if (g->n_tensors > 1) qsort(g->tensor_sorted, (size_t)g->n_tensors, sizeof *g->tensor_sorted, cmp_name_index);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (strcmp(g->tensor_sorted[i - 1].name, g->tensor_sorted[i].name) == 0) {
            printable(name, sizeof name, g->tensor_sorted[i].name, strlen(g->tensor_sorted[i].name));
            return fitlm_fail(r->err, "duplicate tensor name '%s'", name);
        }
    return 0;
}

static fitlm_gguf *parse(const uint8_t *data, uint64_t size, fitlm_error *err) {
    fitlm_gguf *g = calloc(1, sizeof *g);
    fitlm_arena *arena = fitlm_arena_new();
    if (!g || !arena) {
        free(g);
        fitlm_arena_free(arena);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    g->arena = arena;
    reader r = {.p = data, .size = size, .arena = arena, .err = err};
    if (parse_header(&r, g) || parse_kv(&r, g) || parse_alignment(&r, g) || parse_tensor_infos(&r, g)) {
        fitlm_gguf_close(g);
        return NULL;
    }
    return g;
}

fitlm_gguf *fitlm_gguf_open_memory(const void *data, uint64_t size, fitlm_error *err) {
    if (!data && size) {
        fitlm_fail(err, "no data");
        return NULL;
    }
    return parse(data, size, err);
}

fitlm_gguf *fitlm_gguf_open(const char *path, fitlm_error *err) {
    fitlm_error e;
    fitlm_mapped_file *f = fitlm_file_map(path, &e);
    if (!f) {
        /* fitlm_file_map prefixes the path; this API's messages do not */
        size_t n = strlen(path);
        const char *m = e.msg;
        if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
        fitlm_fail(err, "%s", m);
        return NULL;
    }
    fitlm_gguf *g = parse(f->data, f->size, err);
    if (!g) {
        fitlm_file_unmap(f);
        return NULL;
    }
    g->file = f;
    return g;
}

void fitlm_gguf_close(fitlm_gguf *g) {
    if (!g) return;
    fitlm_arena_free(g->arena);
    fitlm_file_unmap(g->file);
    free(g);
}

static const fitlm_gguf_name_index *find_sorted(const fitlm_gguf_name_index *tab, uint64_t n, const char *name) {
    if (!tab || !name) return NULL;
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, tab[mid].name);
        if (c == 0) return &tab[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const fitlm_gguf_value *fitlm_gguf_get(const fitlm_gguf *g, const char *key) {
    if (!g) return NULL;
    const fitlm_gguf_name_index *e = find_sorted(g->kv_sorted, g->n_kv, key);
    return e ? &g->kv[e->idx].value : NULL;
}

const fitlm_gguf_tensor *fitlm_gguf_find_tensor(const fitlm_gguf *g, const char *name) {
    if (!g) return NULL;
    const fitlm_gguf_name_index *e = find_sorted(g->tensor_sorted, g->n_tensors, name);
    return e ? &g->tensors[e->idx] : NULL;
}

/* ---- typed getters ---- */

static bool is_unsigned(int t) {
    return t == FITLM_GGUF_UINT8 || t == FITLM_GGUF_UINT16 || t == FITLM_GGUF_UINT32 || t == FITLM_GGUF_UINT64;
}
static bool is_signed(int t) {
    return t == FITLM_GGUF_INT8 || t == FITLM_GGUF_INT16 || t == FITLM_GGUF_INT32 || t == FITLM_GGUF_INT64;
}

static int wrong_type(const char *key, const fitlm_gguf_value *v, const char *want, fitlm_error *err) {
    return fitlm_fail(err, "metadata '%s' has type %s, expected %s", key, fitlm_gguf_type_name(v->type), want);
}

int fitlm_gguf_get_u64(const fitlm_gguf *g, const char *key, uint64_t *out, fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (is_unsigned(v->type)) {
        *out = v->v.u64;
        return 1;
    }
    if (is_signed(v->type)) {
        if (v->v.i64 < 0)
            return fitlm_fail(err, "metadata '%s' is %" PRId64 ", expected a non-negative integer", key, v->v.i64);
        *out = (uint64_t)v->v.i64;
        return 1;
    }
    return wrong_type(key, v, "an unsigned integer", err);
}

int fitlm_gguf_get_u32(const fitlm_gguf *g, const char *key, uint32_t *out, fitlm_error *err) {
    uint64_t x = 0;
    int rc = fitlm_gguf_get_u64(g, key, &x, err);
    if (rc != 1) return rc;
    if (x > UINT32_MAX) return fitlm_fail(err, "metadata '%s' is %" PRIu64 ", too large for uint32", key, x);
    *out = (uint32_t)x;
    return 1;
}

int fitlm_gguf_get_i64(const fitlm_gguf *g, const char *key, int64_t *out, fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (is_signed(v->type)) {
        *out = v->v.i64;
        return 1;
    }
    if (is_unsigned(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX)
            return fitlm_fail(err, "metadata '%s' is %" PRIu64 ", too large for int64", key, v->v.u64);
        *out = (int64_t)v->v.u64;
        return 1;
    }
    return wrong_type(key, v, "an integer", err);
}

int fitlm_gguf_get_f32(const fitlm_gguf *g, const char *key, float *out, fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (v->type == FITLM_GGUF_FLOAT32 || v->type == FITLM_GGUF_FLOAT64) *out = (float)v->v.f64;
    else if (is_unsigned(v->type)) *out = (float)v->v.u64;
    else if (is_signed(v->type)) *out = (float)v->v.i64;
    else return wrong_type(key, v, "a number", err);
    return 1;
}

int fitlm_gguf_get_bool(const fitlm_gguf *g, const char *key, bool *out, fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (v->type != FITLM_GGUF_BOOL) return wrong_type(key, v, "bool", err);
    *out = v->v.u64 != 0;
    return 1;
}

int fitlm_gguf_get_str(const fitlm_gguf *g, const char *key, const char **out, fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (v->type != FITLM_GGUF_STRING) return wrong_type(key, v, "string", err);
    /* the container allows any bytes; read as a C string a NUL would silently
     * cut the value ("llama\0x" would read as "llama"), so it is an error */
    if (memchr(v->v.str.s, 0, (size_t)v->v.str.len))
        return fitlm_fail(err, "key '%s': the string contains a NUL byte at position %zu", key,
                          (size_t)((const char *)memchr(v->v.str.s, 0, (size_t)v->v.str.len) - v->v.str.s));
    *out = v->v.str.s;
    return 1;
}

int fitlm_gguf_get_arr(const fitlm_gguf *g, const char *key, int elem_type, const fitlm_gguf_value **out,
                       fitlm_error *err) {
    const fitlm_gguf_value *v = fitlm_gguf_get(g, key);
    if (!v) return 0;
    if (v->type != FITLM_GGUF_ARRAY) return wrong_type(key, v, "array", err);
    if (elem_type >= 0 && v->v.arr.elem_type != elem_type)
        return fitlm_fail(err, "metadata '%s' is an array of %s, expected an array of %s", key,
                          fitlm_gguf_type_name(v->v.arr.elem_type), fitlm_gguf_type_name(elem_type));
    *out = v;
    return 1;
}
