/* --device / -ngl / --fit: see gpu_open.h. */
#include "cli/gpu_open.h"

#include <stdio.h>
#include <string.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/split.h"
#include "format/ggml_type.h"
#include "runtime/gpu_fit.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

#ifdef FITLM_HAVE_VULKAN
#define MIB(x) ((double)(x) / 1048576.0)

/* The most layers that fit the device's free memory by the runtime's memory
 * model (runtime/gpu_fit.h), with the reason printed. */
static uint32_t fit_layers(const fitlm_backend *gpu, const fitlm_model *m, int kv_type, uint32_t n_ctx,
                           uint32_t n_ubatch) {
    char how[192];
    uint64_t free_b = fitlm_backend_vulkan_free_memory(gpu, how, sizeof how);
    fitlm_gpu_fit f;
    uint32_t n = fitlm_gpu_fit_layers(m, gpu, kv_type, n_ctx, n_ubatch, fitlm_backend_vulkan_alloc_align(), free_b, &f);
    fprintf(stderr,
            "fitlm: --fit: %u of %u layers on %s: %.2f MiB of %.2f MiB free (%s); by the runtime's memory model: "
            "weights %.2f MiB, KV cache %.2f MiB (%u positions of %s), activations %.2f MiB (%u-token batches)",
            n, f.n_layers, fitlm_backend_vulkan_device_name(gpu), MIB(f.used), MIB(free_b), how, MIB(f.weights),
            MIB(f.kv), f.mm.n_ctx, fitlm_type_name(kv_type), MIB(f.activations), f.mm.n_ubatch);
    if (n < f.n_layers)
        fprintf(stderr, "; one more layer needs %.2f MiB, %.2f MiB more than is free (a smaller -c, -ub or "
                "--kv-type q8_0 frees some)\n",
                MIB(f.next_layer), MIB(f.used + f.next_layer - free_b));
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
    bool cm_asked = false;
    const char *cm_why = "";
    bool cm = fitlm_backend_vulkan_coopmat(gpu, &cm_asked, &cm_why);
    if (cm)
        fprintf(stderr, "fitlm: note: FITLM_VULKAN_COOPMAT=1: prefill matmuls on %s's cooperative matrices (%s); "
                "inputs rounded to F16, so a token's result depends on whether it ran in a prefill batch\n",
                fitlm_backend_vulkan_device_name(gpu), cm_why);
    else if (cm_asked)
        fprintf(stderr, "fitlm: note: FITLM_VULKAN_COOPMAT=1 but %s cannot: %s; the F32 shaders run\n",
                fitlm_backend_vulkan_device_name(gpu), cm_why);
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

int backend_cpu_threads(const fitlm_backend *be) {
    const fitlm_backend *cpu = fitlm_backend_split_cpu(be);
    return fitlm_backend_cpu_threads(cpu ? cpu : be);
}

const char *gpu_device_running(const fitlm_backend *be) {
    const fitlm_backend *gpu = fitlm_backend_split_gpu(be);
    if (!gpu || fitlm_backend_split_gpu_layers(be) == 0) return NULL;
#ifdef FITLM_HAVE_VULKAN
    return fitlm_backend_vulkan_device_name(gpu);
#else
    return gpu->name;
#endif
}

uint32_t gpu_layers_running(const fitlm_backend *be) {
    return fitlm_backend_split_gpu(be) ? fitlm_backend_split_gpu_layers(be) : 0;
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
