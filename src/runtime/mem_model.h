/* The memory model of the one-sequence CPU runtime: what fitlm_runtime_new
 * allocates for a model, from the hyperparameters alone (plus the weight
 * bytes). One function for the three places that need the figure before or
 * beside the allocation: the memory budget of the CLI commands (cli/mem_budget.c),
 * the planner's row for this machine (planner/estimate.c) and the prediction
 * `bench --plan-check` prints beside the runtime's own accounting
 * (fitlm_runtime_get_memory). tests/test_plan_check.c holds them together. */
#ifndef FITLM_RUNTIME_MEM_MODEL_H
#define FITLM_RUNTIME_MEM_MODEL_H

#include <stdint.h>

#include "model/model.h"

/* Slots per KV block of the one-sequence cache (runtime.c allocates whole blocks). */
#define FITLM_RUNTIME_KV_BLOCK 16
/* Rows of logits the forward pass computes at a time (forward.c's LOGIT_ROWS). */
#define FITLM_RUNTIME_LOGIT_ROWS 32

typedef struct fitlm_mem_model {
    uint32_t n_ctx, n_ubatch; /* after the runtime's defaults and clamps */
    uint64_t weights;         /* as given */
    uint64_t kv;              /* whole KV blocks for n_ctx positions */
    uint64_t activations;     /* forward buffers: n_ubatch rows each, logits rows */
    uint64_t attention;       /* CPU backend: per-thread attention scratch, tile table */
    uint64_t other;           /* RoPE frequencies */
    uint64_t scratch;         /* activations + attention + other (the runtime's "scratch") */
    uint64_t kv_per_position, scratch_per_position; /* growth with n_ctx */
} fitlm_mem_model;

/* Fills out for a runtime over a model with hyperparameters hp and weight_bytes
 * of tensors, KV type kv_type, n_ctx positions (0 = the runtime's default),
 * n_ubatch tokens per micro-batch (0 = default) and n_threads CPU threads
 * (<= 0: physical cores), exactly as runtime.c, forward.c and the CPU
 * backend size their buffers. Converted vectors (norms a backend turns into
 * F32) are not included: the runtime adds them when it sees the tensors. */
void fitlm_mem_model_cpu(const fitlm_hparams *hp, uint64_t weight_bytes, int kv_type, uint32_t n_ctx,
                         uint32_t n_ubatch, int n_threads, fitlm_mem_model *out);

#endif
