/* The LLaMA-family forward pass (llama, mistral with sliding-window
 * attention, qwen2 with QKV biases, qwen3 with per-head Q/K RMSNorm) over a batch of many sequences' tokens,
 * on any backend, reading prepared weights (weights.h) and a paged KV pool
 * (kv_pool.h).
 *
 * A fitlm_forward holds the activations for up to max_tokens rows per call
 * and the logits buffer; everything is allocated in fitlm_forward_new, so
 * evaluating allocates nothing. Each row's result depends only on its own
 * token, position and sequence (every op computes rows independently), so a
 * sequence's logits are the same bits whichever other sequences share the
 * step.
 */
#ifndef FITLM_RUNTIME_FORWARD_H
#define FITLM_RUNTIME_FORWARD_H

#include <stdint.h>

#include "runtime/batch.h"
#include "runtime/kv_pool.h"
#include "parallel/layout.h"
#include "runtime/weights.h"

typedef struct fitlm_forward fitlm_forward;

/* Pipeline parallel: steps of at least this many rows (prompt chunks) are cut
 * into several micro-batches (forward.c, parallel/layout.h); smaller ones into
 * at most P. */
#define FITLM_MICRO_BIG_ROWS FITLM_PP_MICRO_BIG_ROWS

/* Allocates activations for max_tokens rows per call and reserves backend
 * scratch for sequences of up to max_ctx positions. w and kv are borrowed and
 * must outlive the result; the caller frees it with fitlm_forward_free. NULL
 * with err. */
fitlm_forward *fitlm_forward_new(const fitlm_weights *w, fitlm_kv_pool *kv, uint32_t max_tokens, uint32_t max_ctx,
                                 fitlm_error *err);
void fitlm_forward_free(fitlm_forward *f);

/* Runs the batch (n_tokens <= max_tokens, ids already checked against the
 * vocabulary, positions < max_ctx): stores every row's K and V in its slot
 * and writes vocab floats per listed logit row to logits (host). 0, or -1
 * with the backend's error. */
int fitlm_forward_eval(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err);

/* fitlm_forward_eval in two halves, so that the root of a pipeline-parallel
 * run can keep several steps in flight (the serving engine's lanes): submit
 * sends the batch to the group and runs this rank's stage (in a single
 * process, or when this rank computes the logits, everything: the logits are
 * then in `logits` already); collect receives the step's logits from the
 * last stage into `logits`. Steps are collected in the order they were
 * submitted, each with its batch (the same n_logits); the caller keeps the
 * sequences of a step in flight out of later steps. 0, or -1 with err. */
int fitlm_forward_submit(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err);
int fitlm_forward_collect(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err);

/* Distributed runs (weights made with fitlm_weights_new_part): on the root,
 * fitlm_forward_eval broadcasts each batch to the group and gets the logits
 * back; freeing the root's forward pass tells the group to stop. On every
 * other rank the caller runs fitlm_forward_serve, which evaluates the root's
 * batches (its layers, its shard) until then: 0 when told to stop, -1 with
 * err. Returns 0 at once on a root or in a single process. */
int fitlm_forward_serve(fitlm_forward *f, fitlm_error *err);

/* Bytes of activations, logits buffer and backend scratch. */
uint64_t fitlm_forward_scratch_bytes(const fitlm_forward *f);
uint32_t fitlm_forward_max_tokens(const fitlm_forward *f);

#endif
