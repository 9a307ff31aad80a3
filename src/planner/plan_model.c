/* The model the planner plans for: a built-in preset, an HF config.json / folder,
 * or (through the shared model loader) a GGUF file or HF folder with weights. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

/* Layer index from an HF-style source name ("model.layers.12.self_attn...") for
 * tensors the canonical table does not know (GPTQ/AWQ qweight, scales, ...). */
static int layer_from_src(const char *src) {
    const char *p = src ? strstr(src, "layers.") : NULL;
    if (!p) return -1;
    p += 7;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end != '.' || v < 0 || v > 1 << 20) return -1;
    return (int)v;
}

/* Through the shared model loader (inspect mode: GGUF, HF folder with or without
 * safetensors, config.json, llama2.c; GPTQ/AWQ packed tensors accepted). */
static int from_loader(fitlm_plan_model *m, const char *spec, fitlm_error *err) {
    fitlm_model *mm = fitlm_model_open(spec, FITLM_LOAD_INSPECT, err);
    if (!mm) return -1;
    int rc = -1;
    if (!mm->hp_valid || mm->hp.arch == FITLM_ARCH_UNKNOWN) {
        fitlm_fail(err, "%s: no usable model hyperparameters (a vocabulary-only file or an unsupported architecture)",
                   spec);
        goto done;
    }
    m->hp = mm->hp;
    if (m->hp.head_dim == 0 && m->hp.n_heads) m->hp.head_dim = m->hp.dim / m->hp.n_heads;
    snprintf(m->name, sizeof m->name, "%s", mm->name && *mm->name ? mm->name : spec);
    snprintf(m->source, sizeof m->source, "%s", spec);
    m->native_type = mm->dtype == FITLM_TYPE_F16 || mm->dtype == FITLM_TYPE_F32 ? mm->dtype : FITLM_TYPE_BF16;
    snprintf(m->file_format, sizeof m->file_format, "%s", fitlm_format_name(mm->format));
    if (mm->n_tensors > 0) {
        m->from_file = true;
        m->file_weight_bytes = fitlm_model_tensor_bytes(mm);
        m->file_layer_bytes = calloc(m->hp.n_layers ? m->hp.n_layers : 1, sizeof *m->file_layer_bytes);
        if (!m->file_layer_bytes) {
            fitlm_fail(err, "out of memory");
            goto done;
        }
        /* the dominant tensor type names the format ("file:Q4_K") */
        double by_type[FITLM_TYPE_GGML_COUNT + 4] = {0};
        for (size_t i = 0; i < mm->n_tensors; i++) {
            const fitlm_tensor *t = &mm->tensors[i];
            double b = (double)t->nbytes;
            int layer = t->layer >= 0 ? t->layer : (t->kind == FITLM_T_COUNT ? layer_from_src(t->src_name) : -1);
            if (layer >= 0 && (uint32_t)layer < m->hp.n_layers) m->file_layer_bytes[layer] += b;
            else if (t->kind == FITLM_T_TOKEN_EMBD) m->file_embd_bytes += b;
            else if (t->kind == FITLM_T_OUTPUT) m->file_output_bytes += b;
            else m->file_other_bytes += b;
            int ti = t->type >= 0 && t->type < FITLM_TYPE_GGML_COUNT ? t->type
                     : t->type == FITLM_TYPE_U8                      ? FITLM_TYPE_GGML_COUNT
                     : t->type == FITLM_TYPE_F8_E4M3                 ? FITLM_TYPE_GGML_COUNT + 1
                                                                     : FITLM_TYPE_GGML_COUNT + 2;
            by_type[ti] += b;
        }
        int best = 0;
        for (int i = 1; i < FITLM_TYPE_GGML_COUNT + 3; i++)
            if (by_type[i] > by_type[best]) best = i;
        const char *tn = best < FITLM_TYPE_GGML_COUNT ? fitlm_type_name(best)
                         : best == FITLM_TYPE_GGML_COUNT ? (mm->packed_quant ? "packed-int4" : "U8")
                         : best == FITLM_TYPE_GGML_COUNT + 1 ? "FP8" : "mixed";
        if (mm->packed_quant) tn = "GPTQ/AWQ";
        snprintf(m->file_type_name, sizeof m->file_type_name, "file:%s", tn);
    }
    rc = 0;
done:
    fitlm_model_free(mm);
    return rc;
}

int fitlm_plan_model_open(fitlm_plan_model *m, const char *spec, fitlm_error *err) {
    memset(m, 0, sizeof *m);
    if (!spec || !*spec) return fitlm_fail(err, "no model given (a preset name, a GGUF file, an HF folder or config.json)");
    if (fitlm_preset_count(err) < 0) return -1;
    const fitlm_preset_info *p = fitlm_preset_find(spec);
    struct stat st;
    if (p) {
        snprintf(m->name, sizeof m->name, "%s", p->name);
        snprintf(m->source, sizeof m->source, "%s", p->source);
        m->hp = p->hp;
        m->native_type = p->native_type;
    } else if (stat(spec, &st) == 0) {
        if (from_loader(m, spec, err)) return -1;
    } else {
        return fitlm_fail(err, "unknown model '%s': not a preset (see 'fitlm plan --list-models') nor a file", spec);
    }
    fitlm_param_counts pc;
    fitlm_plan_param_counts(&m->hp, &pc);
    m->params = pc.total;
    if (m->hp.n_layers == 0 || m->hp.n_layers > 4096 || m->params == 0)
        return fitlm_fail(err, "%s: implausible hyperparameters", spec);
    return 0;
}

void fitlm_plan_model_free(fitlm_plan_model *m) {
    if (!m) return;
    free(m->file_layer_bytes);
    m->file_layer_bytes = NULL;
}
