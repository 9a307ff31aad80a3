/* Hugging Face folders -> fitlm_model: config.json (transformers' LlamaConfig,
 * MistralConfig, Qwen2Config field names) plus model.safetensors or shards
 * listed in model.safetensors.index.json. HF Linear weights are [out, in], so
 * GGUF-order ne is the reversed shape. The q/k rows stay in HF's rotate-half
 * order (rope layout HALF); nothing is permuted at load. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "format/safetensors.h"
#include "model/model_internal.h"

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_INDEX_BYTES (64u << 20)

/* ---- config.json ---- */

/* True if brackets (outside strings) nest deeper than 64: refuse before parsing. */
static bool json_nesting_too_deep(const char *s) {
    int depth = 0;
    bool in_str = false;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) s++;
            else if (*s == '"') in_str = false;
        } else if (*s == '"') {
            in_str = true;
        } else if (*s == '{' || *s == '[') {
            if (++depth > 64) return true;
        } else if (*s == '}' || *s == ']') {
            depth--;
        }
    }
    return false;
}

/* Reads an optional non-negative integer field. 1 found, 0 absent/null, -1 error. */
static int cfg_u32(const cJSON *root, const char *key, uint32_t *out, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return fitlm_fail(err, "config.json: \"%s\" is not a number", key);
    double d = v->valuedouble;
    if (!isfinite(d) || floor(d) != d) return fitlm_fail(err, "config.json: \"%s\" is %g, not an integer", key, d);
    if (d < 0) return fitlm_fail(err, "config.json: \"%s\" is negative (%g)", key, d);
    if (d > 4294967295.0) return fitlm_fail(err, "config.json: \"%s\" is too large (%g)", key, d);
    *out = (uint32_t)d;
    return 1;
}

static int cfg_req_u32(const cJSON *root, const char *key, uint32_t *out, fitlm_error *err) {
    int r = cfg_u32(root, key, out, err);
    if (r == 0) return fitlm_fail(err, "config.json: missing \"%s\"", key);
    return r < 0 ? -1 : 0;
}

static int cfg_f32(const cJSON *root, const char *key, float *out, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return fitlm_fail(err, "config.json: \"%s\" is not a number", key);
    if (!isfinite(v->valuedouble) || fabs(v->valuedouble) > 3e38)
        return fitlm_fail(err, "config.json: \"%s\" is out of range", key);
    *out = (float)v->valuedouble;
    return 1;
}

static int cfg_bool(const cJSON *root, const char *key, bool *out, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fitlm_fail(err, "config.json: \"%s\" is not true/false", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static const char *cfg_str(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_rope_scaling(const cJSON *rs, fitlm_hparams *hp, fitlm_error *err) {
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return fitlm_fail(err, "config.json: \"rope_scaling\" is not an object");
    const char *type = cfg_str(rs, "rope_type");
    if (!type) type = cfg_str(rs, "type");
    if (!type) return fitlm_fail(err, "config.json: rope_scaling has no \"rope_type\"");
    if (!strcmp(type, "default")) return 0;
    if (!strcmp(type, "linear")) hp->rope_scaling = FITLM_ROPE_SCALING_LINEAR;
    else if (!strcmp(type, "llama3")) hp->rope_scaling = FITLM_ROPE_SCALING_LLAMA3;
    else if (!strcmp(type, "yarn")) hp->rope_scaling = FITLM_ROPE_SCALING_YARN;
    else return fitlm_fail(err, "config.json: rope_scaling type '%.40s' is not supported (linear, llama3, yarn)", type);
    if (cfg_f32(rs, "factor", &hp->rope_factor, err) < 0) return -1;
    if (hp->rope_factor == 0.0f) return fitlm_fail(err, "config.json: rope_scaling has no \"factor\"");
    if (cfg_u32(rs, "original_max_position_embeddings", &hp->rope_orig_ctx, err) < 0) return -1;
    if (hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3) {
        hp->rope_low_freq_factor = 1.0f; /* the transformers defaults */
        hp->rope_high_freq_factor = 4.0f;
        if (cfg_f32(rs, "low_freq_factor", &hp->rope_low_freq_factor, err) < 0 ||
            cfg_f32(rs, "high_freq_factor", &hp->rope_high_freq_factor, err) < 0)
            return -1;
        if (hp->rope_orig_ctx == 0)
            return fitlm_fail(err, "config.json: llama3 rope_scaling needs \"original_max_position_embeddings\"");
    }
    return 0;
}

/* Fills m->hp, m->arch_str, m->dtype from a parsed config.json. 0 or -1 with err. */
static int parse_config(const cJSON *root, fitlm_model *m, fitlm_error *err) {
    if (!cJSON_IsObject(root)) return fitlm_fail(err, "config.json: not a JSON object");
    fitlm_hparams *hp = &m->hp;
    const char *archname = NULL;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(archs->child)) archname = archs->child->valuestring;
    const char *model_type = cfg_str(root, "model_type");
    if (!archname) archname = model_type;
    if (!archname) return fitlm_fail(err, "config.json: no \"architectures\" or \"model_type\"");
    if (!strcmp(archname, "LlamaForCausalLM") || !strcmp(archname, "llama")) hp->arch = FITLM_ARCH_LLAMA;
    else if (!strcmp(archname, "MistralForCausalLM") || !strcmp(archname, "mistral")) hp->arch = FITLM_ARCH_MISTRAL;
    else if (!strcmp(archname, "Qwen2ForCausalLM") || !strcmp(archname, "qwen2")) hp->arch = FITLM_ARCH_QWEN2;
    else if (!strcmp(archname, "Qwen3ForCausalLM") || !strcmp(archname, "qwen3")) hp->arch = FITLM_ARCH_QWEN3;
    else
        return fitlm_fail(err, "config.json: unsupported architecture '%.60s' (LlamaForCausalLM, MistralForCausalLM, "
                               "Qwen2ForCausalLM, Qwen3ForCausalLM)", archname);
    free(m->arch_str);
    if (!(m->arch_str = strdup(archname))) return fitlm_fail(err, "out of memory");
    const char *act = cfg_str(root, "hidden_act");
    if (act && strcmp(act, "silu") != 0) return fitlm_fail(err, "config.json: hidden_act '%.40s' is not supported (silu)", act);
    if (cfg_req_u32(root, "hidden_size", &hp->dim, err) || cfg_req_u32(root, "intermediate_size", &hp->ffn_dim, err) ||
        cfg_req_u32(root, "num_hidden_layers", &hp->n_layers, err) ||
        cfg_req_u32(root, "num_attention_heads", &hp->n_heads, err) ||
        cfg_req_u32(root, "vocab_size", &hp->vocab_size, err) ||
        cfg_req_u32(root, "max_position_embeddings", &hp->ctx_len, err))
        return -1;
    hp->n_kv_heads = hp->n_heads;
    if (cfg_u32(root, "num_key_value_heads", &hp->n_kv_heads, err) < 0 || cfg_u32(root, "head_dim", &hp->head_dim, err) < 0)
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(root, "num_key_value_heads") && hp->n_kv_heads == 0)
        return fitlm_fail(err, "config.json: \"num_key_value_heads\" is 0");
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "head_dim")) && hp->head_dim == 0)
        return fitlm_fail(err, "config.json: \"head_dim\" is 0");
    hp->norm_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    if (cfg_f32(root, "rms_norm_eps", &hp->norm_eps, err) < 0 || cfg_f32(root, "rope_theta", &hp->rope_theta, err) < 0)
        return -1;
    hp->rope_layout = FITLM_ROPE_HALF;
    if (parse_rope_scaling(cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), hp, err) != 0) return -1;
    if (hp->arch == FITLM_ARCH_MISTRAL) {
        if (cfg_u32(root, "sliding_window", &hp->sliding_window, err) < 0) return -1;
    } else if (hp->arch == FITLM_ARCH_QWEN2 || hp->arch == FITLM_ARCH_QWEN3) {
        bool use = false;
        if (cfg_bool(root, "use_sliding_window", &use, err) < 0) return -1;
        if (use && cfg_u32(root, "sliding_window", &hp->sliding_window, err) < 0) return -1;
    }
    bool b = false;
    if (cfg_bool(root, "tie_word_embeddings", &hp->tied_embeddings, err) < 0) return -1;
    hp->qkv_bias = hp->arch == FITLM_ARCH_QWEN2;
    hp->qk_norm = hp->arch == FITLM_ARCH_QWEN3;
    if (cfg_bool(root, "attention_bias", &b, err) < 0) return -1;
    if (b && hp->arch != FITLM_ARCH_QWEN2) return fitlm_fail(err, "config.json: attention_bias (o_proj bias) is not supported");
    b = false;
    if (cfg_bool(root, "mlp_bias", &b, err) < 0) return -1;
    if (b) return fitlm_fail(err, "config.json: mlp_bias is not supported");
    const char *dt = cfg_str(root, "torch_dtype");
    if (!dt) dt = cfg_str(root, "dtype");
    m->dtype = FITLM_TYPE_INVALID;
    if (dt) {
        if (!strcmp(dt, "float32")) m->dtype = FITLM_TYPE_F32;
        else if (!strcmp(dt, "float16")) m->dtype = FITLM_TYPE_F16;
        else if (!strcmp(dt, "bfloat16")) m->dtype = FITLM_TYPE_BF16;
    }
    return 0;
}

fitlm_model *fitlm_model_from_hf_config_json(const char *json_text, const char *name, fitlm_error *err) {
    fitlm_model *m = calloc(1, sizeof *m);
    if (!m) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    m->format = FITLM_FORMAT_NONE;
    cJSON *root = json_text && !json_nesting_too_deep(json_text) ? cJSON_Parse(json_text) : NULL;
    if (!root) {
        fitlm_fail(err, "config.json: invalid JSON");
        goto fail;
    }
    if (parse_config(root, m, err) != 0 || fitlm_hparams_validate(&m->hp, err) != 0) goto fail;
    m->hp_valid = true;
    if (!(m->name = strdup(name ? name : "config"))) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    cJSON_Delete(root);
    return m;
fail:
    cJSON_Delete(root);
    fitlm_model_free(m);
    return NULL;
}

/* ---- weights ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Maps one safetensors file, appends it to m->files and its tensors to m->tensors.
 * `only` (optional) restricts to tensors the index assigns to this file. */
static int add_safetensors_file(fitlm_model *m, const char *path, fitlm_error *err) {
    fitlm_mapped_file *f = fitlm_file_map(path, err);
    if (!f) return -1;
    fitlm_safetensors *st = fitlm_safetensors_parse(f->data, f->size, err);
    if (!st) {
        const char *b = strrchr(path, '/');
        fitlm_error_prefix(err, b ? b + 1 : path);
        fitlm_file_unmap(f);
        return -1;
    }
    fitlm_mapped_file **files = realloc(m->files, (m->n_files + 1) * sizeof *files);
    if (!files) {
        fitlm_safetensors_free(st);
        fitlm_file_unmap(f);
        return fitlm_fail(err, "out of memory");
    }
    m->files = files;
    int fi = (int)m->n_files;
    m->files[m->n_files++] = f;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const fitlm_st_tensor *s = &st->tensors[i];
        fitlm_tensor_kind kind;
        int layer;
        char canon[96];
        const char *name = s->name;
        if (fitlm_tensor_parse_hf_name(s->name, &kind, &layer) == 0 &&
            fitlm_tensor_name(kind, layer, canon, sizeof canon) == 0)
            name = canon;
        fitlm_tensor *t = fitlm_model_add_tensor(m, name, s->name, err);
        if (!t) {
            fitlm_safetensors_free(st);
            return -1;
        }
        if (name != canon) { /* not an HF name we know: keep it, but never as a canonical tensor */
            t->kind = FITLM_T_COUNT;
            t->layer = -1;
        }
        t->type = s->type;
        t->n_dims = s->n_dims;
        for (uint32_t d = 0; d < s->n_dims; d++) t->ne[d] = s->shape[s->n_dims - 1 - d];
        t->n_elements = s->n_elements;
        t->nbytes = s->nbytes;
        t->file_index = fi;
        t->offset = s->offset;
        t->data = f->data ? f->data + s->offset : NULL;
    }
    fitlm_safetensors_free(st);
    return 0;
}

static bool safe_shard_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strlen(s) < 512;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int cmp_tensor_src(const void *a, const void *b) {
    return strcmp((*(const fitlm_tensor *const *)a)->src_name, (*(const fitlm_tensor *const *)b)->src_name);
}

static int load_sharded(fitlm_model *m, const char *dir, const char *index_path, fitlm_error *err) {
    char *text = fitlm_file_read_all(index_path, MAX_INDEX_BYTES, NULL, err);
    if (!text) return -1;
    int rc = -1;
    const char **names = NULL;
    fitlm_tensor **sorted = NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        fitlm_fail(err, "model.safetensors.index.json: invalid JSON");
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        fitlm_fail(err, "model.safetensors.index.json: missing or empty \"weight_map\"");
        goto out;
    }
    size_t n = 0;
    for (const cJSON *c = wm->child; c; c = c->next) n++;
    names = malloc(n * sizeof *names);
    if (!names) {
        fitlm_fail(err, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !safe_shard_name(c->valuestring)) {
            fitlm_fail(err, "model.safetensors.index.json: tensor '%.80s' maps to an invalid file name",
                       c->string ? c->string : "?");
            goto out;
        }
        names[k++] = c->valuestring;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i && !strcmp(names[i], names[i - 1])) continue; /* each shard once */
        char *p = fitlm_path_join(dir, names[i]);
        if (!p) {
            fitlm_fail(err, "out of memory");
            goto out;
        }
        if (!file_exists(p)) {
            fitlm_fail(err, "shard '%s' listed in model.safetensors.index.json is missing", names[i]);
            free(p);
            goto out;
        }
        int r = add_safetensors_file(m, p, err);
        free(p);
        if (r != 0) goto out;
    }
    /* every weight_map entry must be in the shard it names (binary search by name) */
    if (m->n_tensors && !(sorted = malloc(m->n_tensors * sizeof *sorted))) {
        fitlm_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m->n_tensors; i++) sorted[i] = &m->tensors[i];
    if (m->n_tensors) qsort(sorted, m->n_tensors, sizeof *sorted, cmp_tensor_src);
    for (const cJSON *c = wm->child; c; c = c->next) {
        fitlm_tensor key = {0}, *kp = &key, **hit = NULL;
        key.src_name = c->string;
        if (m->n_tensors) hit = bsearch(&kp, sorted, m->n_tensors, sizeof *sorted, cmp_tensor_src);
        bool found = false;
        if (hit) {
            const char *fp = m->files[(*hit)->file_index]->path, *b = strrchr(fp, '/');
            found = !strcmp(b ? b + 1 : fp, c->valuestring);
        }
        if (!found) {
            fitlm_fail(err, "model.safetensors.index.json: tensor '%.80s' is not in '%s'", c->string, c->valuestring);
            goto out;
        }
    }
    rc = 0;
out:
    free(sorted);
    free(names);
    cJSON_Delete(root);
    return rc;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    char *d = malloc((size_t)(slash - path) + 1);
    if (!d) return NULL;
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = 0;
    return d;
}

fitlm_model *fitlm_model_open_hf(const char *path, int mode, fitlm_error *err) {
    fitlm_model *m = calloc(1, sizeof *m);
    char *cfg_path = NULL, *cfg_text = NULL, *p = NULL;
    cJSON *root = NULL;
    if (!m) {
        fitlm_fail(err, "%s: out of memory", path);
        return NULL;
    }
    m->format = FITLM_FORMAT_SAFETENSORS;
    m->path = strdup(path);
    bool is_dir = fitlm_is_dir(path);
    m->hf_dir = is_dir ? strdup(path) : dir_of(path);
    if (!m->path || !m->hf_dir) goto oom;
    {
        const char *d = m->hf_dir;
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/') l--;
        const char *b = d + l;
        while (b > d && b[-1] != '/') b--;
        m->name = malloc((size_t)(d + l - b) + 1);
        if (!m->name) goto oom;
        memcpy(m->name, b, (size_t)(d + l - b));
        m->name[d + l - b] = 0;
    }
    /* A .json file given directly is the config (any name); a config file not
     * named config.json stands alone: no weights are looked for beside it. */
    bool standalone_cfg = !is_dir && ends_with(path, ".json") && !ends_with(path, "/config.json") &&
                          strcmp(path, "config.json") != 0;
    cfg_path = (!is_dir && ends_with(path, ".json")) ? strdup(path) : fitlm_path_join(m->hf_dir, "config.json");
    if (!cfg_path) goto oom;
    if (!file_exists(cfg_path)) {
        fitlm_fail(err, "no config.json (a Hugging Face model folder needs one)");
        goto fail;
    }
    cfg_text = fitlm_file_read_all(cfg_path, MAX_CONFIG_BYTES, NULL, err);
    if (!cfg_text) goto fail;
    if (json_nesting_too_deep(cfg_text)) {
        fitlm_fail(err, "config.json: JSON nested too deeply");
        goto fail;
    }
    root = cJSON_Parse(cfg_text);
    if (!root) {
        fitlm_fail(err, "config.json: invalid JSON");
        goto fail;
    }
    if (parse_config(root, m, err) != 0) goto fail;
    if (standalone_cfg) { /* hyperparameters only; named after the file ("llama-3-8b.json" -> "llama-3-8b") */
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        size_t bl = strlen(b) - 5;
        char *nm = malloc(bl + 1);
        if (!nm) goto oom;
        memcpy(nm, b, bl);
        nm[bl] = 0;
        free(m->name);
        m->name = nm;
    } else if (!is_dir && ends_with(path, ".safetensors")) {
        if (add_safetensors_file(m, path, err) != 0) goto fail;
    } else {
        p = fitlm_path_join(m->hf_dir, "model.safetensors.index.json");
        if (!p) goto oom;
        if (file_exists(p)) {
            if (load_sharded(m, m->hf_dir, p, err) != 0) goto fail;
        } else {
            free(p);
            p = fitlm_path_join(m->hf_dir, "model.safetensors");
            if (!p) goto oom;
            if (file_exists(p)) {
                if (add_safetensors_file(m, p, err) != 0) goto fail;
            } else if (mode == FITLM_LOAD_RUN) {
                char *pt = fitlm_path_join(m->hf_dir, "pytorch_model.bin");
                bool has_pt = pt && file_exists(pt);
                free(pt);
                fitlm_fail(err, "no model.safetensors or model.safetensors.index.json%s",
                           has_pt ? " (pytorch_model.bin pickles are not read: convert them to safetensors)" : "");
                goto fail;
            } else {
                m->format = FITLM_FORMAT_NONE; /* config only: hyperparameters, no weights */
            }
        }
    }
    if (m->n_tensors > 1) { /* the same name in two shards */
        fitlm_tensor **s = malloc(m->n_tensors * sizeof *s);
        if (!s) goto oom;
        for (size_t i = 0; i < m->n_tensors; i++) s[i] = &m->tensors[i];
        qsort(s, m->n_tensors, sizeof *s, cmp_tensor_src);
        for (size_t i = 1; i < m->n_tensors; i++)
            if (!strcmp(s[i]->src_name, s[i - 1]->src_name)) {
                fitlm_fail(err, "tensor '%s' appears in more than one safetensors file", s[i]->src_name);
                free(s);
                goto fail;
            }
        free(s);
    }
    if (fitlm_model_finish(m, mode, err) != 0) goto fail;
    free(cfg_path);
    free(cfg_text);
    free(p);
    cJSON_Delete(root);
    return m;
oom:
    fitlm_fail(err, "out of memory");
fail:
    fitlm_error_prefix(err, path);
    free(cfg_path);
    free(cfg_text);
    free(p);
    cJSON_Delete(root);
    fitlm_model_free(m);
    return NULL;
}
