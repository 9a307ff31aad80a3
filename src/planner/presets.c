/* Built-in model presets (data/models.json, compiled into the binary): each is
 * the published Hugging Face config.json of a model, read into fitlm_hparams by
 * the same reader that reads a user's config.json. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

extern const char fitlm_data_models_json[];
extern const size_t fitlm_data_models_json_len;

static fitlm_preset_info *g_presets;
static int g_n_presets = -1;

static int get_u32(const cJSON *o, const char *key, uint32_t lo, uint32_t hi, bool required, uint32_t *out,
                   fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return fitlm_fail(err, "config.json: missing '%s'", key);
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return fitlm_fail(err, "config.json: '%s' must be a whole number", key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fitlm_fail(err, "config.json: '%s' = %.0f is outside [%u, %u]", key, v->valuedouble, lo, hi);
    *out = (uint32_t)v->valuedouble;
    return 0;
}

static int get_f(const cJSON *o, const char *key, double lo, double hi, float *out, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return fitlm_fail(err, "config.json: '%s' must be a number in [%g, %g]", key, lo, hi);
    *out = (float)v->valuedouble;
    return 0;
}

static int hparams_from_cjson(const cJSON *c, fitlm_hparams *hp, int *native_type, fitlm_error *err) {
    memset(hp, 0, sizeof *hp);
    if (!cJSON_IsObject(c)) return fitlm_fail(err, "config.json: expected a JSON object");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    if (!cJSON_IsString(mt)) return fitlm_fail(err, "config.json: missing 'model_type'");
    if (!strcmp(mt->valuestring, "llama")) hp->arch = FITLM_ARCH_LLAMA;
    else if (!strcmp(mt->valuestring, "mistral")) hp->arch = FITLM_ARCH_MISTRAL;
    else if (!strcmp(mt->valuestring, "qwen2")) hp->arch = FITLM_ARCH_QWEN2;
    else
        return fitlm_fail(err, "config.json: model_type '%s' is not supported (llama, mistral, qwen2)",
                          mt->valuestring);
    const uint32_t BIG = 1u << 20;
    if (get_u32(c, "num_hidden_layers", 1, 4096, true, &hp->n_layers, err) ||
        get_u32(c, "hidden_size", 1, BIG, true, &hp->dim, err) ||
        get_u32(c, "num_attention_heads", 1, 65536, true, &hp->n_heads, err) ||
        get_u32(c, "intermediate_size", 1, 1u << 22, true, &hp->ffn_dim, err) ||
        get_u32(c, "vocab_size", 1, 1u << 24, true, &hp->vocab_size, err))
        return -1;
    hp->n_kv_heads = hp->n_heads;
    hp->ctx_len = 2048;
    if (get_u32(c, "num_key_value_heads", 1, 65536, false, &hp->n_kv_heads, err) ||
        get_u32(c, "head_dim", 1, 65536, false, &hp->head_dim, err) ||
        get_u32(c, "max_position_embeddings", 1, 1u << 30, false, &hp->ctx_len, err))
        return -1;
    hp->norm_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    if (get_f(c, "rms_norm_eps", 0, 1, &hp->norm_eps, err) || get_f(c, "rope_theta", 1, 1e12, &hp->rope_theta, err))
        return -1;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings");
    hp->tied_embeddings = cJSON_IsTrue(tie);
    hp->qkv_bias = hp->arch == FITLM_ARCH_QWEN2;
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(c, "attention_bias");
    if (cJSON_IsBool(ab)) hp->qkv_bias = cJSON_IsTrue(ab);
    hp->rope_layout = hp->arch == FITLM_ARCH_QWEN2 ? FITLM_ROPE_HALF : FITLM_ROPE_ADJACENT;
    /* sliding window: mistral uses it when set; qwen2 only with use_sliding_window */
    uint32_t sw = 0;
    if (get_u32(c, "sliding_window", 0, 1u << 30, false, &sw, err)) return -1;
    if (hp->arch == FITLM_ARCH_QWEN2 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "use_sliding_window"))) sw = 0;
    if (sw >= hp->ctx_len) sw = 0;
    hp->sliding_window = sw;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    if (cJSON_IsObject(rs)) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
        if (!strcmp(t, "llama3")) hp->rope_scaling = FITLM_ROPE_SCALING_LLAMA3;
        else if (!strcmp(t, "linear")) hp->rope_scaling = FITLM_ROPE_SCALING_LINEAR;
        else if (!strcmp(t, "yarn")) hp->rope_scaling = FITLM_ROPE_SCALING_YARN;
        if (get_f(rs, "factor", 0, 1e6, &hp->rope_factor, err) ||
            get_f(rs, "low_freq_factor", 0, 1e6, &hp->rope_low_freq_factor, err) ||
            get_f(rs, "high_freq_factor", 0, 1e6, &hp->rope_high_freq_factor, err) ||
            get_u32(rs, "original_max_position_embeddings", 0, 1u << 30, false, &hp->rope_orig_ctx, err))
            return -1;
    }
    if (hp->head_dim == 0) {
        if (hp->dim % hp->n_heads != 0)
            return fitlm_fail(err, "config.json: hidden_size %u is not a multiple of num_attention_heads %u", hp->dim,
                              hp->n_heads);
        hp->head_dim = hp->dim / hp->n_heads;
    }
    if (hp->n_heads % hp->n_kv_heads != 0)
        return fitlm_fail(err, "config.json: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                          hp->n_heads, hp->n_kv_heads);
    if ((uint64_t)hp->n_heads * hp->head_dim > (1u << 22))
        return fitlm_fail(err, "config.json: heads x head_dim is absurdly large");
    if (native_type) {
        *native_type = FITLM_TYPE_BF16;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "torch_dtype");
        if (cJSON_IsString(dt)) {
            if (!strcmp(dt->valuestring, "float16")) *native_type = FITLM_TYPE_F16;
            else if (!strcmp(dt->valuestring, "float32")) *native_type = FITLM_TYPE_F32;
        }
    }
    return 0;
}

int fitlm_hparams_from_config_text(const char *json_text, fitlm_hparams *hp, int *native_type, fitlm_error *err) {
    cJSON *root = cJSON_Parse(json_text);
    if (!root) return fitlm_fail(err, "config.json: not valid JSON");
    int rc = hparams_from_cjson(root, hp, native_type, err);
    cJSON_Delete(root);
    return rc;
}

static void presets_release(void) {
    free(g_presets);
    g_presets = NULL;
}

int fitlm_preset_count(fitlm_error *err) {
    if (g_n_presets >= 0) return g_n_presets;
    (void)fitlm_data_models_json_len;
    cJSON *root = cJSON_Parse(fitlm_data_models_json);
    if (!root) return fitlm_fail(err, "built-in model presets: not valid JSON");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "models");
    int n = cJSON_GetArraySize(arr);
    int rc = -1;
    fitlm_preset_info *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!cJSON_IsArray(arr) || !p) {
        fitlm_fail(err, "built-in model presets: no \"models\" array");
        goto done;
    }
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(o, "published_params");
        if (!cJSON_IsString(nm)) {
            fitlm_fail(err, "built-in model presets: entry %d has no name", i);
            goto done;
        }
        snprintf(p[i].name, sizeof p[i].name, "%s", nm->valuestring);
        if (cJSON_IsString(src)) snprintf(p[i].source, sizeof p[i].source, "%s", src->valuestring);
        if (cJSON_IsNumber(pp)) p[i].published_params = (uint64_t)pp->valuedouble;
        if (hparams_from_cjson(cJSON_GetObjectItemCaseSensitive(o, "config"), &p[i].hp, &p[i].native_type, err)) {
            fitlm_error_prefix(err, p[i].name);
            goto done;
        }
        i++;
    }
    g_presets = p;
    p = NULL;
    g_n_presets = n;
    atexit(presets_release);
    rc = n;
done:
    free(p);
    cJSON_Delete(root);
    return rc;
}

const fitlm_preset_info *fitlm_preset_at(int i) {
    if (fitlm_preset_count(NULL) < 0 || i < 0 || i >= g_n_presets) return NULL;
    return &g_presets[i];
}

static int eq_name(const char *a, const char *b) {
    for (;; a++, b++) {
        char x = (char)tolower((unsigned char)*a), y = (char)tolower((unsigned char)*b);
        if (x == '_' || x == ' ') x = '-';
        if (y == '_' || y == ' ') y = '-';
        if (x != y) return 0;
        if (!x) return 1;
    }
}

/* Aliases live in the JSON; we re-read them here (rarely called). */
const fitlm_preset_info *fitlm_preset_find(const char *name) {
    if (!name || fitlm_preset_count(NULL) < 0) return NULL;
    for (int i = 0; i < g_n_presets; i++)
        if (eq_name(g_presets[i].name, name)) return &g_presets[i];
    /* "org/Model" -> Model */
    const char *slash = strrchr(name, '/');
    if (slash && slash[1]) {
        for (int i = 0; i < g_n_presets; i++)
            if (eq_name(g_presets[i].name, slash + 1)) return &g_presets[i];
    }
    cJSON *root = cJSON_Parse(fitlm_data_models_json);
    const fitlm_preset_info *found = NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "models");
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "aliases"), *a;
        cJSON_ArrayForEach(a, al) {
            if (cJSON_IsString(a) && (eq_name(a->valuestring, name) || (slash && eq_name(a->valuestring, slash + 1)))) {
                if (i < g_n_presets) found = &g_presets[i];
                break;
            }
        }
        if (found) break;
        i++;
    }
    cJSON_Delete(root);
    return found;
}

void fitlm_plan_param_counts(const fitlm_hparams *hp, fitlm_param_counts *pc) {
    memset(pc, 0, sizeof *pc);
    uint64_t d = hp->dim, hd = hp->head_dim ? hp->head_dim : hp->dim / (hp->n_heads ? hp->n_heads : 1);
    uint64_t q = (uint64_t)hp->n_heads * hd, kv = (uint64_t)hp->n_kv_heads * hd, f = hp->ffn_dim;
    uint64_t linear = d * q + 2 * d * kv + q * d + 3 * d * f;
    uint64_t bias = hp->qkv_bias ? q + 2 * kv : 0;
    pc->per_layer_linear = linear;
    pc->per_layer = linear + bias + 2 * d;
    pc->embedding = (uint64_t)hp->vocab_size * d;
    pc->output = hp->tied_embeddings ? 0 : pc->embedding;
    pc->norms_final = d;
    pc->total = pc->per_layer * hp->n_layers + pc->embedding + pc->output + pc->norms_final;
    uint64_t big = pc->embedding;
    if (d * f > big) big = d * f;
    if (d * q > big) big = d * q;
    pc->largest_layer = big;
}
