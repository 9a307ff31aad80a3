/* --fit's layer choice (runtime/gpu_fit.h) on the real stories260K model,
 * without a GPU: the device bytes for n layers against an independent sum
 * over the model's tensors (by their "blk.N." names, vectors as F32, every
 * allocation rounded up), the KV cache and activations against the sizes
 * runtime.c / forward.c allocate (written out here), and the chosen n being
 * the largest that fits for budgets around each step. (That the bytes are
 * what the Vulkan backend really holds is checked on lavapipe by
 * test_vulkan_model.py: --fit's choice runs under FITLM_VULKAN_MEM_LIMIT and
 * one more layer does not.) */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "runtime/gpu_fit.h"
#include "runtime/kv_cache.h"

static uint64_t up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

/* Device bytes of every tensor whose name starts with prefix (or equals it). */
static uint64_t named_bytes(const fitlm_model *m, const char *prefix, bool exact, uint64_t a) {
    uint64_t b = 0;
    size_t n = strlen(prefix);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        if (exact ? strcmp(t->name, prefix) : strncmp(t->name, prefix, n)) continue;
        uint64_t rows = t->n_elements / t->ne[0];
        b += up(rows == 1 ? t->ne[0] * 4 : t->nbytes, a);
    }
    return b;
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", shared);
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_load(path, &err);
    if (!m) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    const fitlm_hparams *hp = &m->hp;
    const uint64_t A = 256;
    static const uint32_t ctxs[] = {16, 100, 512};
    static const uint32_t ubs[] = {1, 64, 512};
    static const int kvs[] = {FITLM_TYPE_F32, FITLM_TYPE_F16};
    for (size_t c = 0; c < 3; c++)
        for (size_t u = 0; u < 3; u++)
            for (size_t k = 0; k < 2; k++) {
                uint32_t ub = ubs[u] < ctxs[c] ? ubs[u] : ctxs[c];
                uint64_t q = (uint64_t)hp->n_heads * hp->head_dim, kvd = (uint64_t)hp->n_kv_heads * hp->head_dim;
                uint64_t act_exact = 4ull * ub * (3ull * hp->dim + 2 * q + 2 * kvd + 2ull * hp->ffn_dim) +
                                     4ull * (ub < 32 ? ub : 32) * hp->vocab_size;
                /* K and V per layer: n_ctx in whole 16-position blocks */
                uint64_t kv_tensor = up(up(ctxs[c], 16) * fitlm_kv_row_bytes(kvs[k], (int64_t)kvd), A);
                uint64_t want[64] = {0};
                for (uint32_t n = 1; n <= hp->n_layers; n++) {
                    char pre[32];
                    snprintf(pre, sizeof pre, "blk.%u.", hp->n_layers - n);
                    want[n] = (n == 1 ? named_bytes(m, "output_norm.weight", true, A) +
                                            named_bytes(m, "output.weight", true, A) + 10 * (A - 1) + act_exact
                                      : want[n - 1]) +
                              named_bytes(m, pre, false, A) + 2 * kv_tensor;
                }
                want[hp->n_layers] += named_bytes(m, "token_embd.weight", true, A);
                for (uint32_t n = 0; n <= hp->n_layers; n++) {
                    fitlm_gpu_fit f;
                    uint64_t got = fitlm_gpu_fit_bytes(m, NULL, kvs[k], ctxs[c], ubs[u], A, n, &f);
                    CHECK(got == want[n] && f.used == got && f.weights + f.kv + f.activations == got,
                          "n_ctx %u ubatch %u %s, %u layers: %llu bytes, want %llu", ctxs[c], ubs[u],
                          fitlm_type_name(kvs[k]), n, (unsigned long long)got, (unsigned long long)want[n]);
                    CHECK(n == 0 || f.activations - act_exact < 10 * A, "activations %llu vs %llu",
                          (unsigned long long)f.activations, (unsigned long long)act_exact);
                }
                /* the choice: the largest n whose bytes fit, at and around each step */
                for (uint32_t n = 1; n <= hp->n_layers; n++) {
                    fitlm_gpu_fit f;
                    CHECK(fitlm_gpu_fit_layers(m, NULL, kvs[k], ctxs[c], ubs[u], A, want[n], &f) == n,
                          "exactly %u layers' bytes", n);
                    CHECK(f.free_bytes == want[n] && f.used == want[n], "figures of the choice");
                    CHECK(n == hp->n_layers ? f.next_layer == 0 : f.next_layer == want[n + 1] - want[n],
                          "one more layer: %llu", (unsigned long long)f.next_layer);
                    CHECK(fitlm_gpu_fit_layers(m, NULL, kvs[k], ctxs[c], ubs[u], A, want[n] - 1, &f) == n - 1,
                          "one byte short of %u layers", n);
                }
            }
    fitlm_model_free(m);
    return check_report();
}
