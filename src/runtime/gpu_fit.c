/* --fit: the layers that fit on a GPU, from the runtime's memory model (see gpu_fit.h). */
#include "runtime/gpu_fit.h"

#include <string.h>


static uint64_t round_up(uint64_t x, uint64_t a) {
    return a > 1 ? (x + a - 1) / a * a : x;
}

/* Device bytes of tensor t (0 if absent or of a type the GPU does not run). */
static uint64_t tensor_bytes(const fitlm_tensor *t, const fitlm_backend *gpu, uint64_t align) {
    if (!t) return 0;
    bool vec = t->n_dims == 1 || t->n_elements == t->ne[0];
    if (vec) return round_up(t->ne[0] * 4, align); /* vectors are converted to F32 */
    if (gpu && gpu->weight_type_supported && !gpu->weight_type_supported(gpu, t->type)) return 0;
    return round_up(t->nbytes, align);
}

uint64_t fitlm_gpu_fit_bytes(const fitlm_model *m, const fitlm_backend *gpu, int kv_type, uint32_t n_ctx,
                             uint32_t n_ubatch, uint64_t alloc_align, uint32_t n, fitlm_gpu_fit *out) {
    const fitlm_hparams *hp = &m->hp;
    uint64_t weights_total = 0; /* the memory model takes the weight bytes as given: the whole model's */
    for (uint32_t l = 0; l < hp->n_layers; l++)
        for (int k = 0; k < FITLM_T_COUNT; k++)
            if (m->layer_tensors[l][k]) weights_total += m->layer_tensors[l][k]->nbytes;
    fitlm_mem_model_cpu(hp, weights_total, kv_type, n_ctx, n_ubatch, 1, &out->mm);
    if (n > hp->n_layers) n = hp->n_layers;
    out->n_layers = hp->n_layers;
    out->n_gpu = n;
    out->weights = out->kv = out->activations = 0;
    if (n > 0) {
        for (uint32_t l = hp->n_layers - n; l < hp->n_layers; l++)
            for (int k = 0; k < FITLM_T_COUNT; k++)
                out->weights += tensor_bytes(m->layer_tensors[l][k], gpu, alloc_align);
        fitlm_tensor *const *g = m->global_tensors;
        out->weights += tensor_bytes(g[FITLM_T_OUTPUT_NORM], gpu, alloc_align) +
                        tensor_bytes(g[FITLM_T_OUTPUT], gpu, alloc_align);
        if (n == hp->n_layers) out->weights += tensor_bytes(g[FITLM_T_TOKEN_EMBD], gpu, alloc_align);
        /* the model's KV cache is n_layers x (K, V); each is one device allocation */
        uint64_t per_tensor = out->mm.kv / hp->n_layers / 2;
        out->kv = 2ull * n * round_up(per_tensor, alloc_align);
        /* the forward pass's 10 buffers (x, xb, xb2, q, k, v, att, hb, hb2,
         * logits: runtime/forward.c), each rounded up */
        out->activations = out->mm.activations + 10 * (alloc_align > 1 ? alloc_align - 1 : 0);
    }
    out->used = out->weights + out->kv + out->activations;
    return out->used;
}

uint32_t fitlm_gpu_fit_layers(const fitlm_model *m, const fitlm_backend *gpu, int kv_type, uint32_t n_ctx,
                              uint32_t n_ubatch, uint64_t alloc_align, uint64_t free_bytes, fitlm_gpu_fit *out) {
    memset(out, 0, sizeof *out);
    uint32_t best = 0;
    fitlm_gpu_fit f;
    /* bytes grow with n: the largest n that fits */
    for (uint32_t n = 1; n <= m->hp.n_layers; n++) {
        if (fitlm_gpu_fit_bytes(m, gpu, kv_type, n_ctx, n_ubatch, alloc_align, n, &f) > free_bytes) break;
        best = n;
    }
    fitlm_gpu_fit_bytes(m, gpu, kv_type, n_ctx, n_ubatch, alloc_align, best, out);
    out->free_bytes = free_bytes;
    out->next_layer = 0;
    if (best < m->hp.n_layers)
        out->next_layer = fitlm_gpu_fit_bytes(m, gpu, kv_type, n_ctx, n_ubatch, alloc_align, best + 1, &f) - out->used;
    return best;
}
