/* libFuzzer target: the safetensors header parser and the HF config.json
 * reader on arbitrary bytes. Both must return an object or a one-line error,
 * never crash, hang, or allocate in proportion to a lying size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fitlm_error err;
    fitlm_safetensors *st = fitlm_safetensors_parse(data, size, &err);
    if (st) {
        /* every accepted tensor lies inside the buffer */
        for (size_t i = 0; i < st->n_tensors; i++)
            if (st->tensors[i].offset > size || st->tensors[i].nbytes > size - st->tensors[i].offset) abort();
        fitlm_safetensors_free(st);
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    fitlm_model *m = fitlm_model_from_hf_config_json(text, "fuzz", &err);
    if (m) {
        if (!m->hp_valid) abort();
        (void)fitlm_hparams_param_count(&m->hp);
        fitlm_model_free(m);
    }
    free(text);
    return 0;
}
