/* GPU calibration through fitlm's own GPU backend: see gpu_cost.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "format/ggml_type.h"
#include "planner/gpu_cost.h"
#include "planner/synth_model.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

/* The temporary model file k of this process. */
static void synth_path(char *buf, size_t cap, const char *what) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(buf, cap, "%s/fitlm-calibrate-%s-%ld.gguf", dir, what, (long)getpid());
}

/* Writes a synthetic model, times it on the device and removes it. */
static int time_synth(const char *device, int threads, uint32_t n_layers, const fitlm_synth_shape *sh,
                      uint32_t n_prompt, uint32_t n_timed, int reps, double *per_token, double *prompt_s,
                      const char *what, fitlm_error *err) {
    char path[1024];
    synth_path(path, sizeof path, what);
    int rc = fitlm_synth_model_write(path, n_layers, sh, err);
    uint32_t nl = 0;
    if (!rc)
        rc = fitlm_synth_time(path, device, threads, n_prompt, n_timed, reps, per_token, &nl, NULL, prompt_s, 0, NULL,
                              err);
    remove(path);
    return rc;
}

int fitlm_calibrate_device(fitlm_host_profile *p, const char *device, int threads, bool quick, FILE *log,
                           fitlm_error *err) {
    if (!device || !strncmp(device, "cpu", 3))
        return fitlm_fail(err, "calibrate --device: name a GPU backend (vulkan or vulkan:N); the CPU is measured "
                               "without --device");
    fitlm_device_rates d;
    memset(&d, 0, sizeof d);
    bool supported[FITLM_PROFILE_MAX_DEVICE_TYPES] = {false};
    static const int full_types[] = {FITLM_TYPE_F16, FITLM_TYPE_Q8_0, FITLM_TYPE_Q4_0, FITLM_TYPE_Q4_K, FITLM_TYPE_Q6_K};
    static const int quick_types[] = {FITLM_TYPE_F32, FITLM_TYPE_Q4_0};
    const int *types = quick ? quick_types : full_types;
    int n_types = quick ? 2 : 5;
    {
        fitlm_backend *gpu = fitlm_backend_new(device, threads, err);
        if (!gpu) return -1;
        if (gpu->device == FITLM_DEVICE_CPU) {
            gpu->free(gpu);
            return fitlm_fail(err, "calibrate --device %s: not a GPU backend", device);
        }
#ifdef FITLM_HAVE_VULKAN
        snprintf(d.name, sizeof d.name, "%s", fitlm_backend_vulkan_device_name(gpu));
        uint64_t heap = 0, held = 0;
        fitlm_backend_vulkan_memory(gpu, &heap, &held);
        d.memory_bytes = (double)heap;
#else
        snprintf(d.name, sizeof d.name, "%s", gpu->name);
#endif
        snprintf(d.backend, sizeof d.backend, "%s", gpu->name);
        for (int i = 0; i < n_types; i++) supported[i] = gpu->weight_type_supported(gpu, types[i]);
        gpu->free(gpu);
    }
    /* fixed costs: two tiny F32 models (weights in the caches), their slope per layer */
    fitlm_synth_shape tiny = {.dim = 128, .ffn = 256, .vocab = 256, .heads = 4, .kv_heads = 4, .head_dim = 32,
                              .ctx = 64, .type = FITLM_TYPE_F32};
    double t[2] = {0, 0};
    static const uint32_t fixed_layers[2] = {1, 9};
    for (int attempt = 0; attempt < 3 && (attempt == 0 || t[1] <= t[0]); attempt++)
        for (int k = 0; k < 2; k++)
            if (time_synth(device, threads, fixed_layers[k], &tiny, 0, quick ? 16 : 48, quick ? 2 : 4, &t[k], NULL,
                           "gpu-fixed", err))
                return -1;
    d.per_layer_s = t[1] > t[0] ? (t[1] - t[0]) / (fixed_layers[1] - fixed_layers[0]) : 0;
    d.per_step_s = t[0] - d.per_layer_s > 0 ? t[0] - d.per_layer_s : 0;
    if (log)
        fprintf(log, "device %s: fixed costs %.1f us per layer, %.1f us per step (decode of 1- and 9-layer models: "
                     "%.1f and %.1f us per token)\n",
                d.name, d.per_layer_s * 1e6, d.per_step_s * 1e6, t[0] * 1e6, t[1] * 1e6);
    /* the kernels: one model per weight type */
    fitlm_synth_shape big = {.dim = quick ? 512 : 2048, .ffn = quick ? 1408 : 5632, .vocab = 256,
                             .heads = quick ? 8 : 32, .kv_heads = quick ? 2 : 4, .head_dim = 64, .ctx = 1024};
    const uint32_t L = quick ? 2 : 8, P = quick ? 64 : 512; /* 512: the runtime's micro-batch */
    const uint64_t D = big.dim, F = big.ffn, QD = (uint64_t)big.heads * big.head_dim,
                   KD = (uint64_t)big.kv_heads * big.head_dim;
    for (int i = 0; i < n_types; i++) {
        if (!supported[i]) continue;
        big.type = types[i];
        bool ok = true;
        double rd = (double)fitlm_type_row_bytes(types[i], D, &ok), rq = (double)fitlm_type_row_bytes(types[i], QD, &ok),
               rf = (double)fitlm_type_row_bytes(types[i], F, &ok);
        if (!ok) continue;
        double bytes = L * (rd * (double)(QD + 2 * KD + 2 * F) + rq * (double)D + rf * (double)D);
        double params = L * ((double)D * (double)(QD + 2 * KD + 2 * F) + (double)QD * D + (double)F * D);
        double tok = 0, pr = 0;
        if (time_synth(device, threads, L, &big, P, quick ? 4 : 16, quick ? 2 : 3, &tok, &pr, "gpu-kernel", err))
            return -1;
        double fixed = d.per_step_s + L * d.per_layer_s;
        double tw = tok - fixed, floor_tw = 0.05 * tok;
        double bw = bytes / (tw > floor_tw ? tw : floor_tw);
        double tc = pr - fixed - bytes / bw, floor_tc = 0.05 * pr;
        double fl = 2.0 * params * P / (tc > floor_tc ? tc : floor_tc);
        int k = d.n_kern++;
        d.kern[k].type = types[i];
        d.kern[k].decode_bw = bw;
        d.kern[k].prefill_flops = fl;
        if (log)
            fprintf(log, "device %s: %-5s decode %8.2f GB/s (%.2f ms per token for %.1f MiB), prefill %8.2f GFLOP/s "
                         "(%d tokens in %.2f ms)\n",
                    d.name, fitlm_type_name(types[i]), bw / 1e9, tok * 1e3, bytes / 1048576.0, fl / 1e9, (int)P,
                    pr * 1e3);
    }
    if (d.n_kern == 0) return fitlm_fail(err, "calibrate --device %s: no weight type could be timed", device);
    d.quick = quick;
    fitlm_host_profile_put_device(p, &d);
    return 0;
}

/* The timed kernel of d nearest to type in bits per weight. */
static int nearest_kern(const fitlm_device_rates *d, int type) {
    int best = 0;
    double bt = fitlm_type_bpw(type), gap = 1e30;
    for (int i = 0; i < d->n_kern; i++) {
        if (d->kern[i].type == type) return i;
        double g = fabs(fitlm_type_bpw(d->kern[i].type) - bt);
        if (g < gap) gap = g, best = i;
    }
    return best;
}

void fitlm_device_rates_for_work(const fitlm_device_rates *d, const fitlm_cpu_work *w, double *bw, double *flops) {
    double bytes = 0, params = 0, ts = 0, tf = 0;
    for (int i = 0; i <= w->n; i++) {
        int type = i < w->n ? w->t[i].type : w->output_type;
        double b = i < w->n ? w->t[i].bytes : w->output_bytes, pa = i < w->n ? w->t[i].params : w->output_params;
        if (b <= 0) continue;
        int k = nearest_kern(d, type);
        bytes += b, params += pa;
        ts += b / d->kern[k].decode_bw;
        tf += pa / d->kern[k].prefill_flops;
    }
    *bw = ts > 0 ? bytes / ts : d->kern[0].decode_bw;
    *flops = tf > 0 ? params / tf : d->kern[0].prefill_flops;
}

bool fitlm_device_rates_for_file(const fitlm_device_rates *d, const char *path, double *bw, double *flops) {
    fitlm_error ignored = {{0}};
    fitlm_model *m = path ? fitlm_model_load(path, &ignored) : NULL;
    if (!m) return false;
    fitlm_cpu_work w;
    fitlm_cpu_work_of_model(m, FITLM_TYPE_F16, &w); /* the KV type does not change the weights' bytes */
    fitlm_device_rates_for_work(d, &w, bw, flops);
    fitlm_model_free(m);
    return true;
}
