/* The tokenizer that goes with a loaded fitlm_model. */
#include "model/model.h"
#include "tokenizer/tokenizer.h"

fitlm_tokenizer *fitlm_tokenizer_for_model(const fitlm_model *m, fitlm_error *err) {
    const char *path = m->path ? m->path : "model";
    fitlm_tokenizer *t = NULL;
    if (m->format == FITLM_FORMAT_GGUF && m->gguf) {
        t = fitlm_tokenizer_from_gguf((const fitlm_gguf *)m->gguf, err);
        if (!t) fitlm_error_prefix(err, path);
        return t;
    }
    if (m->hf_dir) return fitlm_tokenizer_load(m->hf_dir, err);
    fitlm_fail(err, "%s: this model carries no tokenizer (%s); pass token ids instead", path,
               fitlm_format_name(m->format));
    return NULL;
}
