/* Synthetic llama models for calibration (`fitlm calibrate`): random weights
 * of a chosen shape and weight type written as GGUF, and the real runtime's
 * decode and prompt times on them, on the CPU or on a GPU backend. The CPU
 * cost model (cpu_cost.h) times its fixed costs and attention with them; the
 * GPU calibration (gpu_cost.h) times a device's kernels and fixed costs. */
#ifndef FITLM_PLANNER_SYNTH_MODEL_H
#define FITLM_PLANNER_SYNTH_MODEL_H

#include <stdint.h>

#include "planner/cpu_cost.h"
#include "util/error.h"

typedef struct fitlm_synth_shape {
    uint32_t dim, ffn, vocab;             /* hidden size, FFN size, vocabulary */
    uint32_t heads, kv_heads, head_dim;   /* attention heads */
    uint32_t ctx;                         /* context length */
    int type;                             /* fitlm_type of the layers' matrices (norms, embedding and
                                           * output stay F32) */
} fitlm_synth_shape;

/* Writes a random model of n_layers layers of shape s to path (temp file +
 * rename). dim, ffn and heads x head_dim must be multiples of the type's
 * block. 0 or -1 with err. */
int fitlm_synth_model_write(const char *path, uint32_t n_layers, const fitlm_synth_shape *s, fitlm_error *err);

/* Times the model at path with the real runtime: device NULL or "cpu" the CPU
 * backend on `threads` threads, else that GPU backend ("vulkan", "vulkan:N")
 * with every layer on it. After a prompt of n_prompt tokens (evaluated at
 * once), every one of n_timed tokens timed on its own over `reps` runs (the
 * first warms up): *per_token the 10th percentile (on a shared machine the
 * undisturbed figure, without trusting the single luckiest token); n_timed 0:
 * no decode (*per_token left alone). prompt_s (may be NULL): the prompt's
 * seconds from an empty cache, the best of the runs after the first. n_alt >
 * 0: a prompt of n_alt tokens from an empty cache too, in each run before the
 * main one, its best seconds in *alt_s (two lengths timed in turns, so a slow
 * phase slows both). *n_layers: the model's layers; work (may be NULL): its
 * work as the cost model counts it (work->hp left NULL: the model is freed).
 * 0 or -1 with err. */
int fitlm_synth_time(const char *path, const char *device, int threads, uint32_t n_prompt, uint32_t n_timed, int reps,
                     double *per_token, uint32_t *n_layers, fitlm_cpu_work *work, double *prompt_s, uint32_t n_alt,
                     double *alt_s, fitlm_error *err);

#endif
