#include "format/safetensors.h"

#include "util/utf8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "util/file.h"

static const struct {
    const char *name;
    int type;
} k_dtypes[] = {
    {"F64", FITLM_TYPE_F64},         {"F32", FITLM_TYPE_F32},         {"F16", FITLM_TYPE_F16},
    {"BF16", FITLM_TYPE_BF16},       {"I64", FITLM_TYPE_I64},         {"I32", FITLM_TYPE_I32},
    {"I16", FITLM_TYPE_I16},         {"I8", FITLM_TYPE_I8},           {"U8", FITLM_TYPE_U8},
    {"F8_E4M3", FITLM_TYPE_F8_E4M3}, {"F8_E5M2", FITLM_TYPE_F8_E5M2},
};

int fitlm_safetensors_dtype_from_name(const char *name) {
    if (!name) return FITLM_TYPE_INVALID;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (!strcmp(name, k_dtypes[i].name)) return k_dtypes[i].type;
    return FITLM_TYPE_INVALID;
}

const char *fitlm_safetensors_dtype_name(int type) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (k_dtypes[i].type == type) return k_dtypes[i].name;
    return NULL;
}

void fitlm_safetensors_free(fitlm_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st);
}

/* One pass over a JSON text, outside strings: the deepest bracket nesting
 * (stopping early once it exceeds depth_limit, reported as depth_limit + 1)
 * and the number of values it would parse into (every value is the root or
 * follows a ':', ',' or '[', so those characters plus one bound the parse
 * tree's nodes). */
static void json_shape(const uint8_t *s, uint64_t n, int depth_limit, int *depth_out, uint64_t *nodes_out) {
    int depth = 0, max = 0;
    uint64_t nodes = 1;
    bool in_str = false;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (c == '[') nodes++;
            if (++depth > max) max = depth;
            if (max > depth_limit) break;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ':' || c == ',') {
            nodes++;
        }
    }
    *depth_out = max;
    *nodes_out = nodes;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const fitlm_st_tensor *x = *(const fitlm_st_tensor *const *)a, *y = *(const fitlm_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const fitlm_st_tensor *const *)a)->name, (*(const fitlm_st_tensor *const *)b)->name);
}

static int parse_tensor(const cJSON *item, fitlm_st_tensor *t, uint64_t data_size, fitlm_error *err) {
    const char *nm = item->string;
    if (!cJSON_IsObject(item)) return fitlm_fail(err, "tensor '%s': entry is not a JSON object", nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt)) return fitlm_fail(err, "tensor '%s': missing or non-string \"dtype\"", nm);
    t->type = fitlm_safetensors_dtype_from_name(dt->valuestring);
    if (t->type == FITLM_TYPE_INVALID) return fitlm_fail(err, "tensor '%s': unsupported dtype '%.32s'", nm, dt->valuestring);
    if (!cJSON_IsArray(shape)) return fitlm_fail(err, "tensor '%s': missing or non-array \"shape\"", nm);
    int nd = cJSON_GetArraySize(shape);
    if (nd > FITLM_ST_MAX_DIMS) return fitlm_fail(err, "tensor '%s': %d dimensions (at most %d supported)", nm, nd, FITLM_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t n = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        uint64_t v;
        if (json_u64(e, &v) != 0) return fitlm_fail(err, "tensor '%s': shape[%d] is not a non-negative integer", nm, d);
        t->shape[d] = v;
        if (v != 0 && n > UINT64_MAX / v) overflow = true;
        else n *= v;
    }
    const fitlm_type_info *ti = fitlm_type_get(t->type);
    if (overflow || n > UINT64_MAX / ti->block_bytes)
        return fitlm_fail(err, "tensor '%s': shape is too large (element count overflows)", nm);
    t->n_elements = n;
    t->nbytes = n * ti->block_bytes;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return fitlm_fail(err, "tensor '%s': \"data_offsets\" must be an array [begin, end]", nm);
    uint64_t b, e;
    if (json_u64(offs->child, &b) != 0 || json_u64(offs->child->next, &e) != 0)
        return fitlm_fail(err, "tensor '%s': data_offsets are not non-negative integers", nm);
    if (b > e) return fitlm_fail(err, "tensor '%s': data_offsets [%llu, %llu] are reversed", nm, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return fitlm_fail(err, "tensor '%s': data_offsets [%llu, %llu] run past the data section (%llu bytes)", nm,
                          (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    if (e - b != t->nbytes)
        return fitlm_fail(err, "tensor '%s': data_offsets span %llu bytes but dtype %s and its shape need %llu", nm,
                          (unsigned long long)(e - b), dt->valuestring, (unsigned long long)t->nbytes);
    t->offset = b; /* relative for now */
    return 0;
}

fitlm_safetensors *fitlm_safetensors_parse(const uint8_t *data, uint64_t size, fitlm_error *err) {
    if (size < 8) {
        fitlm_fail(err, "safetensors: file is %llu bytes, too short for the 8-byte header length", (unsigned long long)size);
        return NULL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > FITLM_ST_MAX_HEADER) {
        fitlm_fail(err, "safetensors: header length %llu exceeds the %u-byte limit", (unsigned long long)hlen,
                   FITLM_ST_MAX_HEADER);
        return NULL;
    }
    if (hlen > size - 8) {
        fitlm_fail(err, "safetensors: header length %llu runs past the end of the file (%llu bytes)",
                   (unsigned long long)hlen, (unsigned long long)size);
        return NULL;
    }
    if (hlen < 2 || data[8] != '{') {
        fitlm_fail(err, "safetensors: the header is not a JSON object");
        return NULL;
    }
    int depth;
    uint64_t nodes;
    json_shape(data + 8, hlen, FITLM_ST_MAX_DEPTH, &depth, &nodes);
    if (depth > FITLM_ST_MAX_DEPTH) {
        fitlm_fail(err, "safetensors: header JSON is nested deeper than %d levels", FITLM_ST_MAX_DEPTH);
        return NULL;
    }
    if (!fitlm_utf8_valid(data + 8, (size_t)hlen)) {
        fitlm_fail(err, "safetensors: the header is not valid UTF-8");
        return NULL;
    }
    /* the parse tree costs about FITLM_ST_NODE_BYTES per value: a header of
     * millions of tiny entries is refused before it takes gigabytes */
    if (nodes > FITLM_ST_MAX_NODES) {
        fitlm_fail(err, "safetensors: the header has %llu JSON values; at most %u are read (about %u MiB of parse "
                        "tree)",
                   (unsigned long long)nodes, FITLM_ST_MAX_NODES,
                   (unsigned)((uint64_t)FITLM_ST_MAX_NODES * FITLM_ST_NODE_BYTES >> 20));
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data + 8, (size_t)hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fitlm_fail(err, "safetensors: the header is not valid JSON");
        return NULL;
    }
    /* after the object only the writer's space padding may follow */
    for (const char *p = end; p < (const char *)data + 8 + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            fitlm_fail(err, "safetensors: bytes other than spaces follow the header's JSON object");
            return NULL;
        }
    uint64_t data_size = size - 8 - hlen;
    size_t count = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (!c->string || strcmp(c->string, "__metadata__") != 0) count++;
    fitlm_safetensors *st = calloc(1, sizeof *st);
    fitlm_st_tensor **sorted = NULL;
    if (!st || (count && !(st->tensors = calloc(count, sizeof *st->tensors)))) goto oom;
    st->header_len = hlen;
    st->data_offset = 8 + hlen;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!c->string || !c->string[0]) {
            fitlm_fail(err, "safetensors: a tensor has an empty name");
            goto fail;
        }
        if (!strcmp(c->string, "__metadata__")) {
            if (!cJSON_IsObject(c) && !cJSON_IsNull(c)) {
                fitlm_fail(err, "safetensors: __metadata__ is not an object");
                goto fail;
            }
            continue;
        }
        fitlm_st_tensor *t = &st->tensors[st->n_tensors];
        if (!(t->name = strdup(c->string))) goto oom;
        st->n_tensors++;
        if (parse_tensor(c, t, data_size, err) != 0) goto fail;
    }
    if (count) {
        if (!(sorted = malloc(count * sizeof *sorted))) goto oom;
        for (size_t i = 0; i < count; i++) sorted[i] = &st->tensors[i];
        qsort(sorted, count, sizeof *sorted, cmp_name);
        for (size_t i = 1; i < count; i++)
            if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
                fitlm_fail(err, "safetensors: tensor '%s' is listed twice", sorted[i]->name);
                goto fail;
            }
        qsort(sorted, count, sizeof *sorted, cmp_offset);
        uint64_t pos = 0;
        for (size_t i = 0; i < count; i++) {
            const fitlm_st_tensor *t = sorted[i];
            if (t->offset < pos) {
                fitlm_fail(err, "safetensors: tensors '%s' and '%s' overlap", sorted[i - 1]->name, t->name);
                goto fail;
            }
            if (t->offset > pos) {
                fitlm_fail(err, "safetensors: %llu bytes before tensor '%s' belong to no tensor",
                           (unsigned long long)(t->offset - pos), t->name);
                goto fail;
            }
            pos = t->offset + t->nbytes;
        }
        if (pos != data_size) {
            fitlm_fail(err, "safetensors: the data section has %llu bytes but the tensors cover %llu",
                       (unsigned long long)data_size, (unsigned long long)pos);
            goto fail;
        }
    } else if (data_size != 0) {
        fitlm_fail(err, "safetensors: %llu data bytes but no tensors", (unsigned long long)data_size);
        goto fail;
    }
    for (size_t i = 0; i < st->n_tensors; i++) st->tensors[i].offset += st->data_offset;
    free(sorted);
    cJSON_Delete(root);
    return st;
oom:
    fitlm_fail(err, "safetensors: out of memory");
fail:
    free(sorted);
    cJSON_Delete(root);
    fitlm_safetensors_free(st);
    return NULL;
}

/* ---- writer ---- */

int fitlm_safetensors_write(const char *path, const fitlm_st_out_tensor *tensors, size_t n, fitlm_st_fill_fn fill,
                            void *user, fitlm_error *err) {
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    void *buf = NULL;
    fitlm_atomic_file *af = NULL;
    uint64_t *sizes = calloc(n ? n : 1, sizeof *sizes);
    if (!root || !sizes) goto oom;
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto oom;
    uint64_t pos = 0, max_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const fitlm_st_out_tensor *t = &tensors[i];
        const char *dt = fitlm_safetensors_dtype_name(t->type);
        const fitlm_type_info *ti = fitlm_type_get(t->type);
        if (!dt || !ti || t->n_dims > FITLM_ST_MAX_DIMS) {
            fitlm_fail(err, "%s: tensor '%s': type %s cannot be stored in safetensors", path, t->name,
                       fitlm_type_name(t->type));
            goto fail;
        }
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) ne *= t->shape[d];
        sizes[i] = ne * ti->block_bytes;
        if (sizes[i] > max_bytes) max_bytes = sizes[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = cJSON_CreateArray();
        cJSON *offs = cJSON_CreateArray();
        if (!o || !shape || !offs) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            goto oom;
        }
        cJSON_AddStringToObject(o, "dtype", dt);
        for (uint32_t d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(o, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(pos + sizes[i])));
        cJSON_AddItemToObject(o, "data_offsets", offs);
        pos += sizes[i];
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    size_t jl = strlen(json);
    size_t padded = (jl + 7) / 8 * 8;
    af = fitlm_atomic_open(path, err);
    if (!af) goto fail;
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fwrite(lenbuf, 1, 8, af->fp);
    fwrite(json, 1, jl, af->fp);
    for (size_t i = jl; i < padded; i++) fputc(' ', af->fp);
    if (fill && max_bytes && !(buf = malloc((size_t)max_bytes))) goto oom;
    for (size_t i = 0; i < n; i++) {
        const void *src = tensors[i].data;
        if (!src && sizes[i]) {
            if (!fill) {
                fitlm_fail(err, "%s: tensor '%s' has no data", path, tensors[i].name);
                goto fail;
            }
            if (fill(user, i, buf, sizes[i], err) != 0) goto fail;
            src = buf;
        }
        if (sizes[i] && fwrite(src, 1, (size_t)sizes[i], af->fp) != sizes[i]) {
            fitlm_fail(err, "%s: write error", path);
            goto fail;
        }
    }
    int rc = fitlm_atomic_commit(af, err);
    af = NULL;
    free(buf);
    free(json);
    free(sizes);
    cJSON_Delete(root);
    return rc;
oom:
    fitlm_fail(err, "%s: out of memory", path);
fail:
    if (af) fitlm_atomic_abort(af);
    free(buf);
    free(json);
    free(sizes);
    cJSON_Delete(root);
    return -1;
}
