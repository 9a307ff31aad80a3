/* The layout rules of tensor and pipeline parallelism, shared by the runtime
 * (src/parallel, weights.c) and usable by the planner: which tensor-parallel
 * degrees a model allows, which heads / FFN columns each rank holds, and how
 * layers are cut into pipeline stages.
 *
 * Tensor parallel over T ranks (Megatron-style):
 *   - Q, K, V, gate and up are split by output features (GGUF rows: whole
 *     rows, so any type), O and down by input features (GGUF columns: the
 *     cut must fall on a quantization block boundary);
 *   - rank r holds query heads [r*H/T, (r+1)*H/T) (T must divide n_heads);
 *   - KV heads are split the same way when T divides n_kv_heads, else (T a
 *     multiple of n_kv_heads) each rank holds the one KV head its query heads
 *     use (replicated across the ranks that share it);
 *   - FFN columns [r*F/T, (r+1)*F/T) (T must divide ffn_dim).
 * Pipeline parallel over P stages: contiguous layer ranges, balanced by the
 * bytes each stage streams per token (the output matrix counts on the last
 * stage) or given explicitly (--pp-layers 10,12).
 */
#ifndef FITLM_PARALLEL_LAYOUT_H
#define FITLM_PARALLEL_LAYOUT_H

#include <stdint.h>

#include "model/model.h"
#include "util/error.h"

/* The most ranks per dimension. */
#define FITLM_PARALLEL_MAX 256

typedef struct fitlm_tp_shard {
    uint32_t rank, size;
    uint32_t head0, n_heads;       /* query heads held */
    uint32_t kv_head0, n_kv_heads; /* KV heads held */
    uint64_t ffn0, n_ffn;          /* FFN columns held */
} fitlm_tp_shard;

/* Whether T ranks can split a model with these hyperparameters whose O and
 * down matrices have types o_type and down_type (FITLM_TYPE_* ids; -1 =
 * unknown, skip the block check). 0, or -1 with err saying why. */
int fitlm_tp_check_shape(const fitlm_hparams *hp, int o_type, int down_type, uint32_t T, fitlm_error *err);
/* fitlm_tp_check_shape for every layer of a loaded model. */
int fitlm_tp_check_model(const fitlm_model *m, uint32_t T, fitlm_error *err);
/* The shard of rank r of T (after a successful check). */
void fitlm_tp_shard_of(const fitlm_hparams *hp, uint32_t T, uint32_t r, fitlm_tp_shard *out);

/* Cuts the model's layers into P stages: stage s runs layers
 * [bounds[s], bounds[s+1]) (bounds has P+1 entries). spec: NULL to balance by
 * bytes, else P comma-separated layer counts summing to n_layers. Every stage
 * gets at least one layer. 0, or -1 with err. */
int fitlm_pp_split(const fitlm_model *m, uint32_t P, const char *spec, uint32_t *bounds, fitlm_error *err);

/* The micro-batches a forward step of n_rows rows is cut into over P pipeline
 * stages (runtime/forward.c: micro_batches, which has the reasons): below
 * FITLM_PP_MICRO_BIG_ROWS rows, up to P ranges of at least 4 rows; from it
 * on, ranges of at least half of it, up to 8. 1 when P < 2 or the step is too
 * small to cut. The planner times pipelined prompts with the same rule. */
#define FITLM_PP_MICRO_BIG_ROWS 64
uint32_t fitlm_pp_micro_batches(int64_t n_rows, uint32_t P);

#endif
