/* How many layers fit on a GPU (--fit): the runtime's memory model
 * (runtime/mem_model.h, the one the planner and the CPU memory budget use)
 * applied to the part of the model that goes to the device with -ngl N (the
 * last N layers; the output norm and matrix with them; the token embedding
 * only when every layer does; see backend/split.h), against the device memory
 * that is free. Pure computation: the GPU backend only answers which weight
 * types it runs, so the choice is unit-tested without a GPU. */
#ifndef FITLM_RUNTIME_GPU_FIT_H
#define FITLM_RUNTIME_GPU_FIT_H

#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/mem_model.h"

typedef struct fitlm_gpu_fit {
    uint32_t n_layers, n_gpu; /* the model's layers, the most that fit */
    uint64_t free_bytes;      /* as given: the device memory available */
    uint64_t weights;         /* of the chosen layers (and output, embedding), as the device stores them */
    uint64_t kv;              /* KV cache of the chosen layers */
    uint64_t activations;     /* the forward pass's buffers (held on the device once a layer is) */
    uint64_t used;            /* weights + kv + activations */
    uint64_t next_layer;      /* bytes one more layer would add (0 when all fit) */
    fitlm_mem_model mm;       /* the memory model the figures come from */
} fitlm_gpu_fit;

/* Device bytes of the GPU part with n of the model's layers on the device:
 * weights (vectors stored as F32 as the GPU backends do; tensors of types
 * `gpu` does not run stay on the CPU and count nothing; gpu may be NULL: all
 * types), KV cache and activations from fitlm_mem_model_cpu(kv_type, n_ctx,
 * n_ubatch); every device allocation rounded up to alloc_align bytes. Fills
 * out (its n_gpu = n, free_bytes and next_layer untouched) and returns used. */
uint64_t fitlm_gpu_fit_bytes(const fitlm_model *m, const fitlm_backend *gpu, int kv_type, uint32_t n_ctx,
                             uint32_t n_ubatch, uint64_t alloc_align, uint32_t n, fitlm_gpu_fit *out);

/* The largest n whose fitlm_gpu_fit_bytes is at most free_bytes; out gets its
 * figures, free_bytes, and next_layer (what n + 1 needs beyond n's bytes). */
uint32_t fitlm_gpu_fit_layers(const fitlm_model *m, const fitlm_backend *gpu, int kv_type, uint32_t n_ctx,
                              uint32_t n_ubatch, uint64_t alloc_align, uint64_t free_bytes, fitlm_gpu_fit *out);

#endif
