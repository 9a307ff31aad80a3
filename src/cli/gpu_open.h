/* Opening the compute backend of a runtime command from --device, -ngl and
 * --fit (cli/runtime_opts.c): the CPU backend, or a GPU backend wrapped in the
 * layer-split backend (backend/split.h). */
#ifndef FITLM_CLI_GPU_OPEN_H
#define FITLM_CLI_GPU_OPEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "model/model.h"
#include "util/error.h"

/* device: "cpu", "vulkan", "vulkan:N"; n_gpu_layers < 0: all layers; fit:
 * choose the most layers whose weights, KV cache (n_ctx positions of kv_type)
 * and activations (n_ubatch tokens) fit in the device's memory, printing why
 * to stderr. The caller frees the backend with be->free(be). NULL with err. */
fitlm_backend *gpu_open_backend(const char *device, int n_threads, const fitlm_model *m, int n_gpu_layers, bool fit,
                                int kv_type, uint32_t n_ctx, uint32_t n_ubatch, fitlm_error *err);

/* For a layer-split backend: a table of the device memory it holds and the
 * layers on each side (nothing for other backends). */
void gpu_print_memory(FILE *out, const fitlm_backend *be, uint32_t n_layers);

/* The GPU that runs layers of a layer-split backend (its name, owned by the
 * backend, valid while it lives); NULL for the CPU backend or when every
 * layer stays on the CPU (-ngl 0). */
const char *gpu_device_running(const fitlm_backend *be);
/* The layers a split backend runs on its GPU (0: none, or not a split backend). */
uint32_t gpu_layers_running(const fitlm_backend *be);

/* The threads of the CPU backend, alone or inside a layer-split backend. */
int backend_cpu_threads(const fitlm_backend *be);

#endif
