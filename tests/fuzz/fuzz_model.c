/* libFuzzer target for the whole path a model file takes at run time: the
 * input is a GGUF file, loaded as `fitlm run` loads it (mapped from disk),
 * checked for the forward pass, its tokenizer built and a short text
 * tokenized, then a runtime of 8 positions evaluates the prompt and two
 * decode steps, sampling after each (seeded top-k/temperature sampling).
 *
 * Any file must be either refused with a message (model load, model check,
 * tokenizer) or run to the end without a crash, a sanitizer report, a leak or
 * an allocation beyond libFuzzer's RSS limit; sampled ids must lie in the
 * vocabulary and the logits must not have made the sampler fail. Invariant
 * violations abort. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_model: invariant failed: %s (line %d)\n", #cond, __LINE__);                           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static char g_path[256];
static fitlm_backend *g_be;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("TMPDIR");
    snprintf(g_path, sizeof g_path, "%s/fitlm-fuzz-model-%d.gguf", dir && *dir ? dir : "/tmp", (int)getpid());
    fitlm_error err;
    g_be = fitlm_backend_new("cpu", 1, &err);
    REQUIRE(g_be != NULL);
    return 0;
}

static int write_file(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_path, "wb");
    if (!f) return -1;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    int rc = fclose(f);
    return w == size && rc == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (8u << 20) || write_file(data, size)) return 0;
    fitlm_error err;
    fitlm_model *m = fitlm_model_load(g_path, &err);
    if (!m) {
        REQUIRE(err.msg[0] != 0); /* refused with a message */
        return 0;
    }
    fitlm_tokenizer *tok = NULL;
    fitlm_runtime *rt = NULL;
    fitlm_sampler *smp = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    if (fitlm_runtime_check_model(m, g_be, FITLM_TYPE_F16, &err)) {
        REQUIRE(err.msg[0] != 0);
        goto done;
    }
    uint32_t vocab = m->hp.vocab_size;
    /* the prompt: the tokenizer's ids for a short text when the file has one
     * (and they fit the model), else BOS-like id 1 or 0 */
    int32_t prompt[4] = {vocab > 1 ? 1 : 0};
    uint32_t n_prompt = 1;
    tok = fitlm_tokenizer_for_model(m, &err);
    if (tok) {
        size_t n = 0;
        if (fitlm_tokenizer_encode(tok, "Hello world!", 12, true, true, &ids, &n, &err) == 0) {
            uint32_t k = 0;
            for (size_t i = 0; i < n && k < 4; i++) {
                REQUIRE(ids[i] >= 0 && ids[i] < fitlm_tokenizer_vocab_size(tok));
                if ((uint32_t)ids[i] < vocab) prompt[k++] = ids[i];
            }
            if (k) n_prompt = k;
        }
    }
    fitlm_runtime_params p = fitlm_runtime_params_default();
    p.n_ctx = m->hp.ctx_len < 8 ? m->hp.ctx_len : 8;
    p.n_ubatch = 8;
    if (p.n_ctx < n_prompt + 2) goto done;
    rt = fitlm_runtime_new(m, g_be, &p, &err);
    if (!rt) {
        REQUIRE(err.msg[0] != 0);
        goto done;
    }
    fitlm_sampler_params sp = fitlm_sampler_params_default();
    sp.seed = 1;
    sp.top_k = 5;
    smp = fitlm_sampler_new(&sp, vocab, &err);
    logits = malloc((size_t)vocab * sizeof *logits);
    REQUIRE(smp && logits);
    if (fitlm_runtime_eval(rt, prompt, n_prompt, logits, false, &err)) goto done;
    for (int step = 0; step < 2; step++) {
        int32_t next = fitlm_sampler_sample(smp, logits);
        REQUIRE(next >= 0 && (uint32_t)next < vocab);
        fitlm_sampler_accept(smp, next);
        if (fitlm_runtime_eval(rt, &next, 1, logits, false, &err)) break;
    }
    int32_t last = fitlm_sampler_sample(smp, logits);
    REQUIRE(last >= 0 && (uint32_t)last < vocab);
done:
    free(logits);
    fitlm_sampler_free(smp);
    fitlm_runtime_free(rt);
    free(ids);
    fitlm_tokenizer_free(tok);
    fitlm_model_free(m);
    return 0;
}
