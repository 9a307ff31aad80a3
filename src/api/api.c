/* The few functions of the public header (include/fitlm.h) that are not the
 * internal functions themselves. Including both headers here makes the compiler
 * check that every public prototype matches its implementation. */
#include "fitlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "planner/planner.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

void fitlm_model_get_info(const fitlm_model *m, fitlm_model_info *out) {
    memset(out, 0, sizeof *out);
    const fitlm_hparams *hp = &m->hp;
    out->name = m->name ? m->name : "";
    out->architecture = fitlm_arch_name(hp->arch);
    out->format = fitlm_format_name(m->format);
    out->n_layers = hp->n_layers;
    out->dim = hp->dim;
    out->n_heads = hp->n_heads;
    out->n_kv_heads = hp->n_kv_heads;
    out->head_dim = hp->head_dim;
    out->ffn_dim = hp->ffn_dim;
    out->vocab_size = hp->vocab_size;
    out->ctx_len = hp->ctx_len;
    out->n_params = fitlm_hparams_param_count(hp);
    out->n_tensors = m->n_tensors;
    out->weight_bytes = fitlm_model_tensor_bytes(m);
}

void fitlm_backend_free(fitlm_backend *be) {
    if (be) be->free(be);
}

fitlm_runtime *fitlm_runtime_open(const fitlm_model *m, fitlm_backend *be, uint32_t n_ctx, fitlm_error *err) {
    fitlm_runtime_params p = fitlm_runtime_params_default();
    p.n_ctx = n_ctx;
    if (fitlm_runtime_check_model(m, be, p.kv_type, err)) return NULL;
    return fitlm_runtime_new(m, be, &p, err);
}

fitlm_sampler *fitlm_sampler_open(float temp, int32_t top_k, float top_p, float min_p, uint64_t seed, size_t vocab,
                                  fitlm_error *err) {
    fitlm_sampler_params p = fitlm_sampler_params_default();
    p.temp = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    return fitlm_sampler_new(&p, vocab, err);
}

/* "NAME[:COUNT][,NAME[:COUNT]...]" -> r->gpusel. */
static int plan_add_gpus(fitlm_plan_request *r, const fitlm_catalog *cat, const char *spec, fitlm_error *err) {
    char buf[256];
    if (strlen(spec) >= sizeof buf) return fitlm_fail(err, "gpu: '%.40s...' is too long", spec);
    memcpy(buf, spec, strlen(spec) + 1);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int count = 0;
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = 0;
            char *end;
            long c = strtol(colon + 1, &end, 10);
            if (*end || c < 1 || c > 65536) return fitlm_fail(err, "gpu: bad count '%s'", colon + 1);
            count = (int)c;
        }
        int gi = fitlm_catalog_find(cat, tok);
        if (gi < 0) return fitlm_fail(err, "unknown GPU '%s' (see 'fitlm plan --list-gpus')", tok);
        if (r->n_gpusel >= FITLM_PLAN_MAX_GPUSEL) return fitlm_fail(err, "gpu: too many GPUs");
        r->gpusel[r->n_gpusel].gpu = gi;
        r->gpusel[r->n_gpusel].count = count;
        r->n_gpusel++;
    }
    return 0;
}

char *fitlm_plan_query_json(const fitlm_plan_query *q, fitlm_error *err) {
    if (!q || !q->model) {
        fitlm_fail(err, "plan: no model given");
        return NULL;
    }
    fitlm_catalog cat;
    if (fitlm_catalog_load_builtin(&cat, err)) return NULL;
    fitlm_catalog_add_host_cpu(&cat);
    fitlm_plan_model model;
    memset(&model, 0, sizeof model);
    fitlm_plan_output out;
    memset(&out, 0, sizeof out);
    char *json = NULL;
    if (fitlm_plan_model_open(&model, q->model, err)) goto done;

    fitlm_plan_request r;
    fitlm_plan_request_defaults(&r, &model);
    if (q->train) r.mode = FITLM_PLAN_TRAIN;
    if (q->ctx) r.ctx = q->ctx;
    if (q->batch) r.batch = q->batch;
    r.n_formats = 1;
    if (!q->weights && model.from_file) { /* exact bytes of the file's own tensors */
        memset(&r.formats[0], 0, sizeof r.formats[0]);
        r.formats[0].kind = FITLM_W_FILE;
        snprintf(r.formats[0].name, sizeof r.formats[0].name, "%s", model.file_type_name);
    } else {
        const char *w = q->weights ? q->weights
                        : model.native_type == FITLM_TYPE_F16 ? "f16"
                        : model.native_type == FITLM_TYPE_F32 ? "f32"
                                                              : "bf16";
        if (fitlm_wformat_parse(w, &r.formats[0], err)) goto done;
    }
    if (q->kv_type) {
        int t = !strcasecmp(q->kv_type, "fp8") ? FITLM_TYPE_F8_E4M3 : fitlm_type_from_name(q->kv_type);
        if (t == FITLM_TYPE_INVALID || fitlm_kv_type_bytes(t) <= 0) {
            fitlm_fail(err, "unknown KV cache type '%s'", q->kv_type);
            goto done;
        }
        r.kv_types[0] = t;
        r.n_kv_types = 1;
    }
    if (q->gpu && plan_add_gpus(&r, &cat, q->gpu, err)) goto done;
    if (fitlm_plan_request_validate(&r, &model, &cat, err)) goto done;
    if (fitlm_plan_search(&model, &r, &cat, &out, err)) goto done;
    if (out.n == 0) {
        fitlm_fail(err, "%s: %s", model.name, out.hint);
        goto done;
    }
    json = fitlm_plan_json(&model, &r, &cat, &out, err);
done:
    fitlm_plan_output_free(&out);
    fitlm_plan_model_free(&model);
    fitlm_catalog_free(&cat);
    return json;
}
