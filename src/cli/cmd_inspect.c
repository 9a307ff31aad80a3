/* fitlm inspect FILE_OR_DIR [--json] [--tensors]
 * Describes a model file or folder: format, architecture, hyperparameters,
 * parameter counts, tensor table by type with exact byte totals, tokenizer
 * summary and (GGUF) metadata. The JSON schema is documented in docs/formats.md. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm inspect FILE_OR_DIR [--json] [--tensors]\n"
            "  FILE_OR_DIR  a GGUF file, a Hugging Face folder (config.json + safetensors) or its\n"
            "               config.json, or a llama2.c checkpoint (.bin)\n"
            "  --json       machine-readable output (schema fitlm.inspect/1, see docs/formats.md)\n"
            "  --tensors    also list every tensor (always included in --json)\n");
}

static cJSON *num(uint64_t v) { return cJSON_CreateNumber((double)v); }

static void add_u64(cJSON *o, const char *k, uint64_t v) { cJSON_AddItemToObject(o, k, num(v)); }

/* A float32 value as the shortest decimal that reads back to it (1e-05, not 9.99999974737875e-06). */
static double short_f32(double v) {
    float f = (float)v;
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
    }
    return v;
}

static cJSON *hparams_json(const fitlm_model *m) {
    const fitlm_hparams *hp = &m->hp;
    cJSON *o = cJSON_CreateObject();
    bool all = m->hp_valid;
#define U(field)                                                                                                       \
    if (all || hp->field) add_u64(o, #field, hp->field)
    U(n_layers);
    U(dim);
    U(n_heads);
    U(n_kv_heads);
    U(head_dim);
    U(ffn_dim);
    U(vocab_size);
    U(ctx_len);
#undef U
    if (all || hp->norm_eps != 0) cJSON_AddNumberToObject(o, "norm_eps", short_f32(hp->norm_eps));
    if (all || hp->rope_theta != 0) cJSON_AddNumberToObject(o, "rope_theta", short_f32(hp->rope_theta));
    if (all) {
        cJSON_AddStringToObject(o, "rope_layout", fitlm_rope_layout_name(hp->rope_layout));
        cJSON_AddStringToObject(o, "rope_scaling", fitlm_rope_scaling_name(hp->rope_scaling));
        if (hp->rope_scaling != FITLM_ROPE_SCALING_NONE) {
            cJSON_AddNumberToObject(o, "rope_factor", short_f32(hp->rope_factor));
            cJSON_AddNumberToObject(o, "rope_low_freq_factor", short_f32(hp->rope_low_freq_factor));
            cJSON_AddNumberToObject(o, "rope_high_freq_factor", short_f32(hp->rope_high_freq_factor));
            add_u64(o, "rope_orig_ctx", hp->rope_orig_ctx);
        }
        add_u64(o, "sliding_window", hp->sliding_window);
        cJSON_AddBoolToObject(o, "qkv_bias", hp->qkv_bias);
        cJSON_AddBoolToObject(o, "qk_norm", hp->qk_norm);
        cJSON_AddBoolToObject(o, "tied_embeddings", hp->tied_embeddings);
    }
    return o;
}

static bool counts_as_param(const fitlm_tensor *t) {
    if (t->kind == FITLM_T_ROPE_FREQS) return false;
    size_t l = strlen(t->src_name);
    return !(l >= 19 && strcmp(t->src_name + l - 19, "rotary_emb.inv_freq") == 0);
}

/* Short JSON rendering of a GGUF metadata value: scalars as-is, arrays as
 * {"array": elem_type, "n": count} (plus the value for short scalar arrays). */
static cJSON *gguf_value_json(const fitlm_gguf_value *v) {
    switch (v->type) {
    case FITLM_GGUF_UINT8:
    case FITLM_GGUF_UINT16:
    case FITLM_GGUF_UINT32:
    case FITLM_GGUF_UINT64: return cJSON_CreateNumber((double)v->v.u64);
    case FITLM_GGUF_INT8:
    case FITLM_GGUF_INT16:
    case FITLM_GGUF_INT32:
    case FITLM_GGUF_INT64: return cJSON_CreateNumber((double)v->v.i64);
    case FITLM_GGUF_FLOAT32: return cJSON_CreateNumber(short_f32(v->v.f64));
    case FITLM_GGUF_FLOAT64: return cJSON_CreateNumber(v->v.f64);
    case FITLM_GGUF_BOOL: return cJSON_CreateBool(v->v.u64 != 0);
    case FITLM_GGUF_STRING: return cJSON_CreateString(v->v.str.s ? v->v.str.s : "");
    case FITLM_GGUF_ARRAY: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "array", fitlm_gguf_type_name(v->v.arr.elem_type));
        add_u64(o, "n", v->v.arr.n);
        return o;
    }
    default: return cJSON_CreateNull();
    }
}

static void gguf_value_text(const fitlm_gguf_value *v, FILE *out) {
    if (v->type == FITLM_GGUF_ARRAY) {
        fprintf(out, "[%s x %" PRIu64 "]", fitlm_gguf_type_name(v->v.arr.elem_type), v->v.arr.n);
    } else if (v->type == FITLM_GGUF_STRING) {
        const char *s = v->v.str.s ? v->v.str.s : "";
        fputc('"', out);
        size_t n = 0;
        for (; *s && n < 60; s++, n++) {
            if (*s == '\n') fputs("\\n", out);
            else if ((unsigned char)*s < 0x20) fputc('?', out);
            else fputc(*s, out);
        }
        fputs(*s ? "...\"" : "\"", out);
    } else {
        cJSON *j = gguf_value_json(v);
        char *s = cJSON_PrintUnformatted(j);
        fputs(s ? s : "?", out);
        free(s);
        cJSON_Delete(j);
    }
}

static void add_gguf_u64_key(cJSON *o, const char *name, const fitlm_gguf *g, const char *key) {
    uint64_t v;
    if (fitlm_gguf_get_u64(g, key, &v, NULL) == 1) add_u64(o, name, v);
}

/* What fitlm's own tokenizer makes of the vocabulary: loaded or the reason not. */
static void add_loaded_tokenizer(cJSON *o, fitlm_tokenizer *t, const fitlm_error *err) {
    cJSON_AddBoolToObject(o, "loaded", t != NULL);
    if (!t) {
        cJSON_AddStringToObject(o, "error", err->msg);
        return;
    }
    cJSON_AddStringToObject(o, "algorithm", fitlm_tokenizer_get_type(t) == FITLM_TOK_SPM ? "spm" : "bpe");
    cJSON_AddStringToObject(o, "pre_tokenizer", fitlm_tokenizer_pre_name(t));
    add_u64(o, "n_tokens", (uint64_t)fitlm_tokenizer_vocab_size(t));
    static const char *names[] = {"bos_id", "eos_id", "eot_id", "pad_id", "unk_id"};
    int32_t ids[] = {fitlm_tokenizer_bos(t), fitlm_tokenizer_eos(t), fitlm_tokenizer_eot(t), fitlm_tokenizer_pad(t),
                     fitlm_tokenizer_unk(t)};
    for (int i = 0; i < 5; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, names[i]);
        if (ids[i] >= 0) add_u64(o, names[i], (uint64_t)ids[i]);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, "add_bos");
    cJSON_AddBoolToObject(o, "add_bos", fitlm_tokenizer_add_bos(t));
    cJSON_AddBoolToObject(o, "add_eos", fitlm_tokenizer_add_eos(t));
    cJSON_DeleteItemFromObjectCaseSensitive(o, "chat_template");
    cJSON_AddBoolToObject(o, "chat_template", fitlm_tokenizer_chat_template(t) != NULL);
    fitlm_tokenizer_free(t);
}

static cJSON *tokenizer_json(const fitlm_model *m) {
    cJSON *o = cJSON_CreateObject();
    if (m->gguf) {
        const fitlm_gguf *g = m->gguf;
        const char *s;
        if (fitlm_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL) != 1) {
            cJSON_Delete(o);
            return cJSON_CreateNull();
        }
        cJSON_AddStringToObject(o, "source", "gguf");
        cJSON_AddStringToObject(o, "model", s);
        if (fitlm_gguf_get_str(g, "tokenizer.ggml.pre", &s, NULL) == 1) cJSON_AddStringToObject(o, "pre", s);
        const fitlm_gguf_value *v = fitlm_gguf_get(g, "tokenizer.ggml.tokens");
        if (v && v->type == FITLM_GGUF_ARRAY) add_u64(o, "vocab_size", v->v.arr.n);
        v = fitlm_gguf_get(g, "tokenizer.ggml.merges");
        if (v && v->type == FITLM_GGUF_ARRAY) add_u64(o, "merges", v->v.arr.n);
        add_gguf_u64_key(o, "bos_id", g, "tokenizer.ggml.bos_token_id");
        add_gguf_u64_key(o, "eos_id", g, "tokenizer.ggml.eos_token_id");
        add_gguf_u64_key(o, "unk_id", g, "tokenizer.ggml.unknown_token_id");
        add_gguf_u64_key(o, "pad_id", g, "tokenizer.ggml.padding_token_id");
        bool b;
        if (fitlm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL) == 1) cJSON_AddBoolToObject(o, "add_bos", b);
        cJSON_AddBoolToObject(o, "chat_template", fitlm_gguf_get(g, "tokenizer.chat_template") != NULL);
        fitlm_error terr = {{0}};
        add_loaded_tokenizer(o, fitlm_tokenizer_from_gguf(g, &terr), &terr);
        return o;
    }
    if (m->hf_dir) {
        char *p = fitlm_path_join(m->hf_dir, "tokenizer.json");
        char *text = p ? fitlm_file_read_all(p, 64u << 20, NULL, NULL) : NULL;
        free(p);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (!root) {
            cJSON_Delete(o);
            return cJSON_CreateNull();
        }
        cJSON_AddStringToObject(o, "source", "tokenizer.json");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
        if (cJSON_IsString(type)) cJSON_AddStringToObject(o, "model", type->valuestring);
        const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
        if (vocab) add_u64(o, "vocab_size", (uint64_t)cJSON_GetArraySize(vocab));
        if (cJSON_IsArray(added)) add_u64(o, "added_tokens", (uint64_t)cJSON_GetArraySize(added));
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        if (cJSON_IsArray(merges)) add_u64(o, "merges", (uint64_t)cJSON_GetArraySize(merges));
        cJSON_Delete(root);
        fitlm_error terr = {{0}};
        add_loaded_tokenizer(o, fitlm_tokenizer_load(m->hf_dir, &terr), &terr);
        return o;
    }
    cJSON_Delete(o);
    return cJSON_CreateNull();
}

typedef struct {
    int type;
    uint64_t tensors, elements, bytes;
} type_row;

static int cmp_row(const void *a, const void *b) {
    const type_row *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    return x->type - y->type;
}

static cJSON *describe(const fitlm_model *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "schema", "fitlm.inspect/1");
    cJSON_AddStringToObject(o, "path", m->path ? m->path : "");
    cJSON_AddStringToObject(o, "format", fitlm_format_name(m->format));
    if (m->arch_str) cJSON_AddStringToObject(o, "architecture", m->arch_str);
    else cJSON_AddNullToObject(o, "architecture");
    cJSON_AddStringToObject(o, "arch", fitlm_arch_name(m->hp.arch));
    cJSON_AddStringToObject(o, "name", m->name ? m->name : "");
    cJSON_AddBoolToObject(o, "hparams_valid", m->hp_valid);
    cJSON_AddItemToObject(o, "hparams", hparams_json(m));
    cJSON *params = cJSON_AddObjectToObject(o, "params");
    uint64_t from_t = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (counts_as_param(&m->tensors[i])) from_t += m->tensors[i].n_elements;
    if (m->n_tensors && !m->packed_quant) add_u64(params, "from_tensors", from_t);
    else cJSON_AddNullToObject(params, "from_tensors");
    if (m->hp_valid) add_u64(params, "from_hparams", fitlm_hparams_param_count(&m->hp));
    else cJSON_AddNullToObject(params, "from_hparams");
    add_u64(o, "n_tensors", m->n_tensors);
    add_u64(o, "weight_bytes", fitlm_model_tensor_bytes(m));
    cJSON_AddBoolToObject(o, "packed_quant", m->packed_quant);
    fitlm_error rerr = {{0}};
    bool runnable = m->n_tensors && fitlm_model_check_runnable(m, &rerr) == 0;
    cJSON_AddBoolToObject(o, "runnable", runnable);
    if (!runnable)
        cJSON_AddStringToObject(o, "not_runnable_reason", m->n_tensors ? rerr.msg : "no weights (metadata/config only)");
    /* bytes by type */
    type_row *rows = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *rows);
    size_t nrows = 0;
    for (size_t i = 0; rows && i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        size_t r = 0;
        while (r < nrows && rows[r].type != t->type) r++;
        if (r == nrows) rows[nrows++].type = t->type;
        rows[r].tensors++;
        rows[r].elements += t->n_elements;
        rows[r].bytes += t->nbytes;
    }
    if (rows) qsort(rows, nrows, sizeof *rows, cmp_row);
    cJSON *types = cJSON_AddArrayToObject(o, "types");
    for (size_t r = 0; r < nrows; r++) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "type", fitlm_type_name(rows[r].type));
        add_u64(row, "tensors", rows[r].tensors);
        add_u64(row, "elements", rows[r].elements);
        add_u64(row, "bytes", rows[r].bytes);
        cJSON_AddItemToArray(types, row);
    }
    free(rows);
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; i < m->n_files; i++) cJSON_AddItemToArray(files, cJSON_CreateString(m->files[i]->path));
    cJSON *tensors = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", t->name);
        cJSON_AddStringToObject(j, "src_name", t->src_name);
        cJSON_AddStringToObject(j, "type", fitlm_type_name(t->type));
        cJSON *shape = cJSON_AddArrayToObject(j, "ne");
        for (uint32_t d = 0; d < (t->n_dims ? t->n_dims : 1); d++) cJSON_AddItemToArray(shape, num(t->ne[d]));
        add_u64(j, "file", (uint64_t)(t->file_index < 0 ? 0 : t->file_index));
        add_u64(j, "offset", t->offset);
        add_u64(j, "bytes", t->nbytes);
        cJSON_AddItemToArray(tensors, j);
    }
    cJSON_AddItemToObject(o, "tokenizer", tokenizer_json(m));
    if (m->gguf) {
        const fitlm_gguf *g = m->gguf;
        cJSON *gg = cJSON_AddObjectToObject(o, "gguf");
        add_u64(gg, "version", g->version);
        add_u64(gg, "alignment", g->alignment);
        add_u64(gg, "n_kv", g->n_kv);
        cJSON *md = cJSON_AddObjectToObject(gg, "metadata");
        for (uint64_t i = 0; i < g->n_kv; i++) /* the reader has refused duplicate keys */
            if (g->kv[i].key.s) cJSON_AddItemToObject(md, g->kv[i].key.s, gguf_value_json(&g->kv[i].value));
    }
    return o;
}

/* Writes s to out with every byte that is not part of a valid UTF-8 sequence
 * replaced by U+FFFD, so --json output is valid JSON text whatever the file's
 * strings hold (GGUF strings are not guaranteed to be UTF-8). */
static void put_utf8(const char *str, FILE *out) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned char c = *s;
        int len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        bool ok = len > 0;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
        for (int k = 1; ok && k < len; k++) {
            if ((s[k] & 0xC0) != 0x80) ok = false;
            else cp = cp << 6 | (s[k] & 0x3Fu);
        }
        if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
            ok = false;
        if (ok) {
            fwrite(s, 1, (size_t)len, out);
            s += len;
        } else {
            fputs("\xEF\xBF\xBD", out);
            s++;
        }
    }
}

static void human(uint64_t n, char *buf, size_t size) {
    if (n >= 1000000000ull) snprintf(buf, size, "%.2f B", (double)n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, size, "%.2f M", (double)n / 1e6);
    else if (n >= 1000ull) snprintf(buf, size, "%.2f K", (double)n / 1e3);
    else snprintf(buf, size, "%llu", (unsigned long long)n);
}

static uint64_t ju(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : 0;
}

static void print_text(const fitlm_model *m, const cJSON *d, bool list_tensors, FILE *out) {
    char h[32];
    fprintf(out, "path:          %s\n", m->path);
    fprintf(out, "format:        %s\n", fitlm_format_name(m->format));
    fprintf(out, "architecture:  %s%s\n", m->arch_str ? m->arch_str : "(none)",
            m->hp.arch == FITLM_ARCH_UNKNOWN ? " (not supported by the runtime)" : "");
    fprintf(out, "name:          %s\n", m->name ? m->name : "");
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(d, "hparams");
    fprintf(out, "hyperparameters%s:\n", m->hp_valid ? "" : " (incomplete: only those present)");
    for (const cJSON *c = hp->child; c; c = c->next) {
        if (cJSON_IsBool(c)) fprintf(out, "  %-22s %s\n", c->string, cJSON_IsTrue(c) ? "yes" : "no");
        else if (cJSON_IsString(c)) fprintf(out, "  %-22s %s\n", c->string, c->valuestring);
        else if (!strcmp(c->string, "norm_eps") || strstr(c->string, "factor") || !strcmp(c->string, "rope_theta"))
            fprintf(out, "  %-22s %g\n", c->string, c->valuedouble);
        else fprintf(out, "  %-22s %llu\n", c->string, (unsigned long long)c->valuedouble);
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(d, "params");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(params, "from_tensors");
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(params, "from_hparams");
    if (cJSON_IsNumber(pt)) {
        human((uint64_t)pt->valuedouble, h, sizeof h);
        fprintf(out, "parameters:    %llu (%s) from tensors\n", (unsigned long long)pt->valuedouble, h);
    }
    if (cJSON_IsNumber(ph)) {
        human((uint64_t)ph->valuedouble, h, sizeof h);
        fprintf(out, "parameters:    %llu (%s) from hyperparameters\n", (unsigned long long)ph->valuedouble, h);
    }
    fprintf(out, "tensors:       %zu\n", m->n_tensors);
    uint64_t total = fitlm_model_tensor_bytes(m);
    human(total, h, sizeof h);
    fprintf(out, "weight bytes:  %llu (%sB)\n", (unsigned long long)total, h);
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(d, "types");
    if (cJSON_GetArraySize(types) > 0) {
        fprintf(out, "  %-8s %8s %16s %16s\n", "type", "tensors", "elements", "bytes");
        for (const cJSON *r = types->child; r; r = r->next)
            fprintf(out, "  %-8s %8llu %16llu %16llu\n", cJSON_GetObjectItemCaseSensitive(r, "type")->valuestring,
                    (unsigned long long)ju(r, "tensors"), (unsigned long long)ju(r, "elements"),
                    (unsigned long long)ju(r, "bytes"));
    }
    if (m->packed_quant) fprintf(out, "note:          GPTQ/AWQ packed weights (listed; the runtime cannot run them)\n");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(d, "tokenizer");
    if (cJSON_IsObject(tok)) {
        fprintf(out, "tokenizer:\n");
        for (const cJSON *c = tok->child; c; c = c->next) {
            if (cJSON_IsString(c)) fprintf(out, "  %-22s %s\n", c->string, c->valuestring);
            else if (cJSON_IsBool(c)) fprintf(out, "  %-22s %s\n", c->string, cJSON_IsTrue(c) ? "yes" : "no");
            else fprintf(out, "  %-22s %llu\n", c->string, (unsigned long long)c->valuedouble);
        }
    } else {
        fprintf(out, "tokenizer:     (none found)\n");
    }
    if (m->gguf) {
        const fitlm_gguf *g = m->gguf;
        fprintf(out, "gguf:          version %u, alignment %llu, %llu metadata keys\n", g->version,
                (unsigned long long)g->alignment, (unsigned long long)g->n_kv);
        for (uint64_t i = 0; i < g->n_kv; i++) {
            fprintf(out, "  %-44s ", g->kv[i].key.s ? g->kv[i].key.s : "?");
            gguf_value_text(&g->kv[i].value, out);
            fputc('\n', out);
        }
    }
    if (list_tensors) {
        fprintf(out, "tensor list:\n");
        for (size_t i = 0; i < m->n_tensors; i++) {
            const fitlm_tensor *t = &m->tensors[i];
            char shape[96];
            int k = snprintf(shape, sizeof shape, "[");
            for (uint32_t dd = 0; dd < (t->n_dims ? t->n_dims : 1) && k < (int)sizeof shape; dd++)
                k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%llu", dd ? ", " : "", (unsigned long long)t->ne[dd]);
            if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
            fprintf(out, "  %-40s %-8s %-22s %12llu bytes%s%s\n", t->name, fitlm_type_name(t->type), shape,
                    (unsigned long long)t->nbytes, strcmp(t->name, t->src_name) ? "  <- " : "",
                    strcmp(t->name, t->src_name) ? t->src_name : "");
        }
    }
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, list = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--tensors")) list = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "fitlm: error: inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else if (!path) path = argv[i];
        else return fitlm_die("inspect: more than one path given ('%s' and '%s')", path, argv[i]);
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_open(path, FITLM_LOAD_INSPECT, &err);
    if (!m) {
        fitlm_error_print(&err);
        return 1;
    }
    cJSON *d = describe(m);
    if (json) {
        char *s = cJSON_Print(d);
        if (s) {
            put_utf8(s, stdout);
            putchar('\n');
        }
        free(s);
    } else {
        print_text(m, d, list, stdout);
    }
    cJSON_Delete(d);
    fitlm_model_free(m);
    return 0;
}
