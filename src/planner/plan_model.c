/* The model the planner plans for: a built-in preset, an HF config.json / folder,
 * or (through the shared model loader) a GGUF file or HF folder with weights. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

static int from_config_file(fitlm_plan_model *m, const char *path, const char *display, fitlm_error *err) {
    char *text = fitlm_file_read_all(path, 4u << 20, NULL, err);
    if (!text) return -1;
    int rc = fitlm_hparams_from_config_text(text, &m->hp, &m->native_type, err);
    free(text);
    if (rc) {
        fitlm_error_prefix(err, display);
        return -1;
    }
    return 0;
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
        snprintf(m->source, sizeof m->source, "%s", spec);
        if (S_ISDIR(st.st_mode)) {
            char *cfg = fitlm_path_join(spec, "config.json");
            if (!cfg) return fitlm_fail(err, "out of memory");
            struct stat cs;
            if (stat(cfg, &cs) != 0) {
                free(cfg);
                return fitlm_fail(err, "%s: folder has no config.json", spec);
            }
            int rc = from_config_file(m, cfg, spec, err);
            free(cfg);
            if (rc) return -1;
            const char *base = strrchr(spec, '/');
            while (base && base[1] == 0 && base > spec) { /* trailing slash */
                const char *q = base - 1;
                while (q > spec && *q != '/') q--;
                base = q;
            }
            snprintf(m->name, sizeof m->name, "%s", base ? base + (*base == '/') : spec);
            size_t nl = strlen(m->name);
            if (nl && m->name[nl - 1] == '/') m->name[nl - 1] = 0;
        } else {
            FILE *f = fopen(spec, "rb");
            if (!f) return fitlm_fail(err, "%s: cannot open", spec);
            char magic[4] = {0};
            size_t got = fread(magic, 1, 4, f);
            fclose(f);
            if (got == 4 && !memcmp(magic, "GGUF", 4))
                return fitlm_fail(err, "%s: GGUF input needs fitlm's model loader, which this build does not have yet",
                                  spec);
            if (from_config_file(m, spec, spec, err)) return -1;
            snprintf(m->name, sizeof m->name, "%s", spec);
        }
    } else {
        return fitlm_fail(err, "unknown model '%s': not a preset (see 'fitlm plan --list-models') nor a file", spec);
    }
    fitlm_param_counts pc;
    fitlm_plan_param_counts(&m->hp, &pc);
    m->params = pc.total;
    if (m->hp.n_layers > 4096 || m->params == 0) return fitlm_fail(err, "%s: implausible hyperparameters", spec);
    return 0;
}

void fitlm_plan_model_free(fitlm_plan_model *m) {
    if (!m) return;
    free(m->file_layer_bytes);
    m->file_layer_bytes = NULL;
}
