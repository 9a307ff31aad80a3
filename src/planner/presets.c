/* Built-in model presets (data/models.json, compiled into the binary): each is
 * the published Hugging Face config.json of a model, read into fitlm_hparams by
 * the model loader's config.json reader (fitlm_model_from_hf_config_json). */
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

/* One preset's config object -> hyperparameters, through the model loader's own
 * config.json reader (the same code that reads a user's config.json). */
static int hparams_from_cjson(const cJSON *c, const char *name, fitlm_hparams *hp, int *native_type,
                              fitlm_error *err) {
    char *text = cJSON_PrintUnformatted(c);
    if (!text) return fitlm_fail(err, "out of memory");
    fitlm_model *mm = fitlm_model_from_hf_config_json(text, name, err);
    free(text);
    if (!mm) return -1;
    *hp = mm->hp;
    if (hp->head_dim == 0 && hp->n_heads) hp->head_dim = hp->dim / hp->n_heads;
    *native_type = mm->dtype == FITLM_TYPE_F16 || mm->dtype == FITLM_TYPE_F32 ? mm->dtype : FITLM_TYPE_BF16;
    fitlm_model_free(mm);
    return 0;
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
        if (hparams_from_cjson(cJSON_GetObjectItemCaseSensitive(o, "config"), p[i].name, &p[i].hp, &p[i].native_type,
                               err)) {
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
static const fitlm_preset_info *find_exact(const char *name) {
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

/* Suffixes of fine-tuned variants with the base model's architecture, as users
 * type them from Hugging Face names (Llama-3.1-8B-Instruct, Llama-2-7b-chat-hf,
 * TinyLlama-1.1B-Chat-v1.0): stripped one at a time from the end. */
static const char *const k_variant_suffixes[] = {"-hf", "-instruct", "-chat", "-it", "-base", "-chat-v1.0", "-v1.0"};

const fitlm_preset_info *fitlm_preset_find(const char *name) {
    const fitlm_preset_info *p = find_exact(name);
    if (p || !name) return p;
    const char *slash = strrchr(name, '/');
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", slash && slash[1] ? slash + 1 : name) >= (int)sizeof buf) return NULL;
    for (bool stripped = true; stripped;) {
        stripped = false;
        size_t n = strlen(buf);
        for (size_t k = 0; k < sizeof k_variant_suffixes / sizeof k_variant_suffixes[0]; k++) {
            size_t m = strlen(k_variant_suffixes[k]);
            if (n > m && eq_name(buf + n - m, k_variant_suffixes[k])) {
                buf[n - m] = 0;
                if ((p = find_exact(buf))) return p;
                stripped = true;
                break;
            }
        }
    }
    return NULL;
}

void fitlm_plan_param_counts(const fitlm_hparams *hp, fitlm_param_counts *pc) {
    memset(pc, 0, sizeof *pc);
    uint64_t d = hp->dim, hd = hp->head_dim ? hp->head_dim : hp->dim / (hp->n_heads ? hp->n_heads : 1);
    uint64_t q = (uint64_t)hp->n_heads * hd, kv = (uint64_t)hp->n_kv_heads * hd, f = hp->ffn_dim;
    uint64_t linear = d * q + 2 * d * kv + q * d + 3 * d * f;
    uint64_t bias = hp->qkv_bias ? q + 2 * kv : 0;
    if (hp->qk_norm) bias += 2 * hd; /* per-head Q/K norm weights (qwen3) */
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
