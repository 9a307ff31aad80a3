/* --device / -ngl / --fit: see gpu_open.h. */
#include "cli/gpu_open.h"

#include <stdio.h>
#include <string.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/split.h"
#include "runtime/kv_cache.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

#ifdef FITLM_HAVE_VULKAN
#define MIB(x) ((double)(x) / 1048576.0)

/* Device bytes of layer l's weights and KV cache. */
static uint64_t layer_bytes(const fitlm_model *m, uint32_t l, int kv_type, uint32_t n_ctx, uint64_t *kv) {
    uint64_t b = 0;
    for (int k = 0; k < FITLM_T_COUNT; k++)
        if (m->layer_tensors[l][k]) b += m->layer_tensors[l][k]->nbytes;
    int64_t kv_dim = (int64_t)m->hp.n_kv_heads * m->hp.head_dim;
    *kv = 2ull * n_ctx * fitlm_kv_row_bytes(kv_type, kv_dim);
    return b + *kv;
}

/* The most layers that fit the device heap (90% of it: the driver and other
 * processes keep some), with the reason printed. */
static uint32_t fit_layers(const fitlm_backend *gpu, const fitlm_model *m, int kv_type, uint32_t n_ctx,
                           uint32_t n_ubatch) {
    const fitlm_hparams *hp = &m->hp;
    uint64_t heap = 0, held = 0;
    fitlm_backend_vulkan_memory(gpu, &heap, &held);
    uint64_t budget = heap / 10 * 9;
    /* activations of the forward pass (runtime/forward.c) for n_ubatch tokens, logits of 32 rows */
    uint64_t q_dim = (uint64_t)hp->n_heads * hp->head_dim, kv_dim = (uint64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t act = 4ull * n_ubatch * (3ull * hp->dim + 2 * q_dim + 2 * kv_dim + 2ull * hp->ffn_dim) +
                   4ull * 32 * hp->vocab_size;
    fitlm_tensor *const *g = m->global_tensors;
    uint64_t out = (g[FITLM_T_OUTPUT] ? g[FITLM_T_OUTPUT]->nbytes : 0) +
                   (g[FITLM_T_OUTPUT_NORM] ? g[FITLM_T_OUTPUT_NORM]->nbytes : 0);
    uint64_t used = held + act + out, w_sum = 0, kv_sum = 0;
    uint32_t n = 0;
    uint64_t next = 0;
    for (uint32_t l = hp->n_layers; l-- > 0;) { /* the last layers go first */
        uint64_t kv, b = layer_bytes(m, l, kv_type, n_ctx, &kv);
        if (n + 1 == hp->n_layers && g[FITLM_T_TOKEN_EMBD]) b += g[FITLM_T_TOKEN_EMBD]->nbytes;
        if (used + b > budget) {
            next = b;
            break;
        }
        used += b;
        w_sum += b - kv;
        kv_sum += kv;
        n++;
    }
    uint64_t shown = n ? used : held; /* with no layer on the GPU it holds no activations either */
    fprintf(stderr,
            "fitlm: --fit: %u of %u layers on %s: %.1f MiB of the %.1f MiB budget (90%% of the %.1f MiB device "
            "heap): weights %.1f MiB, KV cache %.1f MiB (%u positions), activations and output %.1f MiB",
            n, hp->n_layers, fitlm_backend_vulkan_device_name(gpu), MIB(shown), MIB(budget), MIB(heap),
            MIB(w_sum), MIB(kv_sum), n_ctx, n ? MIB(act + out) : 0.0);
    if (n < hp->n_layers)
        fprintf(stderr, "; one more layer needs %.1f MiB more (a smaller -c or --kv-type q8_0 frees some)\n",
                MIB(used + next - budget));
    else
        fprintf(stderr, "\n");
    return n;
}
#endif

fitlm_backend *gpu_open_backend(const char *device, int n_threads, const fitlm_model *m, int n_gpu_layers, bool fit,
                                int kv_type, uint32_t n_ctx, uint32_t n_ubatch, fitlm_error *err) {
    if (strncmp(device, "vulkan", 6) != 0) {
        if (n_gpu_layers > 0 || fit)
            return fitlm_fail(err, "-ngl / --fit need a GPU device (--device vulkan); this run uses '%s'", device),
                   NULL;
        return fitlm_backend_new(device, n_threads, err);
    }
    fitlm_backend *gpu = fitlm_backend_new(device, n_threads, err);
    if (!gpu) return NULL;
    uint32_t n = n_gpu_layers < 0 ? m->hp.n_layers : (uint32_t)n_gpu_layers;
#ifdef FITLM_HAVE_VULKAN
    if (fit) n = fit_layers(gpu, m, kv_type, n_ctx, n_ubatch);
#else
    (void)fit;
    (void)kv_type;
    (void)n_ctx;
    (void)n_ubatch;
#endif
    fitlm_backend *cpu = fitlm_backend_cpu_new(n_threads, err);
    if (!cpu) {
        gpu->free(gpu);
        return NULL;
    }
    return fitlm_backend_split_new(gpu, cpu, m->hp.n_layers, n, err);
}

void gpu_print_memory(FILE *out, const fitlm_backend *be, uint32_t n_layers) {
    const fitlm_backend *gpu = fitlm_backend_split_gpu(be);
    if (!gpu) return;
    uint32_t n_gpu = fitlm_backend_split_gpu_layers(be);
    fprintf(out, "\n| %-40s | %-12s | %14s | %14s |\n", "device", "layers", "held MiB", "heap MiB");
    fprintf(out, "|%s|%s|%s|%s|\n", "------------------------------------------", "--------------",
            "----------------", "----------------");
#ifdef FITLM_HAVE_VULKAN
    uint64_t heap = 0, held = 0;
    fitlm_backend_vulkan_memory(gpu, &heap, &held);
    fprintf(out, "| %-40.40s | %5u of %-3u | %14.1f | %14.1f |\n", fitlm_backend_vulkan_device_name(gpu), n_gpu,
            n_layers, (double)held / 1048576.0, (double)heap / 1048576.0);
#endif
    fprintf(out, "| %-40s | %5u of %-3u | %14s | %14s |\n", "cpu (host memory: the report above)",
            n_layers - n_gpu, n_layers, "-", "-");
}
