/* A backend that runs the last n_gpu_layers of a model on a GPU backend and
 * the rest on the CPU backend (llama.cpp's -ngl), behind the one backend
 * interface the runtime uses.
 *
 * Weights are placed by prepare_weight from the tensor's layer: layers
 * >= n_layers - n_gpu_layers on the GPU, the output norm and output matrix
 * with the last GPU layer, the token embedding on the GPU only when every
 * layer is; a GPU-side matrix whose type the GPU backend cannot run stays on
 * the CPU (with a note on stderr). Each op runs where its weight is (matmul,
 * rmsnorm, add_bias, embed), else where its input's current contents are.
 * Activations and KV caches allocated through this backend get a copy on each
 * side on first use there; which copies are current is tracked, and only the
 * bytes written since the sides last agreed cross over (in a layer-split
 * forward pass: the residual stream at the boundary, the logits at the end). */
#ifndef FITLM_BACKEND_SPLIT_H
#define FITLM_BACKEND_SPLIT_H

#include <stdint.h>

#include "backend/backend.h"

/* Takes ownership of gpu and cpu (freed with the split backend, or here on
 * failure). The caller frees the result with be->free(be). NULL with err. */
fitlm_backend *fitlm_backend_split_new(fitlm_backend *gpu, fitlm_backend *cpu, uint32_t n_layers,
                                       uint32_t n_gpu_layers, fitlm_error *err);

/* The GPU backend inside a split backend (NULL if be is not one). */
fitlm_backend *fitlm_backend_split_gpu(const fitlm_backend *be);
/* The CPU backend inside a split backend (NULL if be is not one). */
fitlm_backend *fitlm_backend_split_cpu(const fitlm_backend *be);
/* The layers a split backend runs on the GPU (0 if be is not one). */
uint32_t fitlm_backend_split_gpu_layers(const fitlm_backend *be);

#endif
