/* The one-sequence runtime: the LLaMA-family forward pass (forward.h) over a
 * fitlm_model, on any backend (backend/backend.h), for one sequence — the
 * thin wrapper `run`, `logits`, `perplexity` and `bench` use. It owns its
 * prepared weights (weights.h), a KV pool (kv_pool.h) of ceil(n_ctx / 16)
 * blocks mapped to the sequence's positions in order, and a forward pass
 * sized for n_ubatch tokens. The serving engine (engine/engine.h) builds on
 * the same three pieces for many sequences.
 *
 * Usage:
 *     fitlm_runtime *rt = fitlm_runtime_new(model, backend, &params, &err);
 *     fitlm_runtime_eval(rt, prompt_ids, n, logits, false, &err); // prefill
 *     fitlm_runtime_eval(rt, &next_id, 1, logits, false, &err);   // decode
 *
 * Tokens are evaluated at positions n_past, n_past+1, ...; a call with many
 * tokens is processed in micro-batches of up to n_ubatch tokens, each going
 * through matmul with n_tokens > 1. Everything (KV cache, activations, logits
 * buffer, attention scratch) is allocated in fitlm_runtime_new: evaluating
 * tokens allocates nothing.
 */
#ifndef FITLM_RUNTIME_RUNTIME_H
#define FITLM_RUNTIME_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/weights.h"

#define FITLM_DEFAULT_CTX 4096
#define FITLM_DEFAULT_UBATCH 512

typedef struct fitlm_runtime_params {
    uint32_t n_ctx;    /* positions in the KV cache; 0 = min(model ctx_len, FITLM_DEFAULT_CTX) */
    int kv_type;       /* FITLM_TYPE_F16 (default when 0 is not meant: use fitlm_runtime_params_default) */
    uint32_t n_ubatch; /* tokens per forward micro-batch; 0 = FITLM_DEFAULT_UBATCH */
    struct fitlm_parallel *par; /* distributed run (parallel/parallel.h), borrowed; NULL: one process */
} fitlm_runtime_params;

fitlm_runtime_params fitlm_runtime_params_default(void);

typedef struct fitlm_runtime fitlm_runtime;

/* Checks, without allocating anything big, that the model can run on the
 * backend: architecture known, every tensor the forward pass reads present with
 * data, the shape the hyperparameters imply, and a type the backend supports
 * (e.g. "tensor blk.0.attn_q.weight has type IQ2_XXS, which the CPU backend
 * cannot run"); RoPE scaling supported; the KV cache type usable. 0 or -1. */
int fitlm_runtime_check_model(const fitlm_model *m, const fitlm_backend *be, int kv_type, fitlm_error *err);

/* Prepares the weights on the backend and allocates the KV cache and scratch.
 * n_ctx larger than the model's context length is an error. The model and the
 * backend must outlive the runtime. Caller frees with fitlm_runtime_free(). */
fitlm_runtime *fitlm_runtime_new(const fitlm_model *m, fitlm_backend *be, const fitlm_runtime_params *p,
                                 fitlm_error *err);
void fitlm_runtime_free(fitlm_runtime *rt);

/* Evaluates n tokens at positions n_past..n_past+n-1 and advances n_past.
 * logits (host, may be NULL) receives vocab_size floats per token if all_logits,
 * else only those of the last token. Errors (nothing evaluated): an id outside
 * the vocabulary, n_past + n > n_ctx. 0 or -1 with err. */
int fitlm_runtime_eval(fitlm_runtime *rt, const int32_t *ids, uint32_t n, float *logits, bool all_logits,
                       fitlm_error *err);

/* A non-root rank of a distributed run: evaluates the root's steps
 * (fitlm_forward_serve) until the root's runtime is freed. 0, or -1 with err. */
int fitlm_runtime_serve_steps(fitlm_runtime *rt, fitlm_error *err);

/* Forgets the sequence (n_past = 0); the cache is simply overwritten later. */
void fitlm_runtime_reset(fitlm_runtime *rt);

uint32_t fitlm_runtime_n_past(const fitlm_runtime *rt);
uint32_t fitlm_runtime_n_ctx(const fitlm_runtime *rt);
uint32_t fitlm_runtime_vocab(const fitlm_runtime *rt);

typedef struct fitlm_runtime_memory {
    uint64_t weight_bytes;       /* model tensors the forward pass reads (mapped or uploaded) */
    uint64_t weight_read_per_token; /* matrix bytes streamed per decoded token */
    uint64_t repacked_bytes;     /* part of weight_bytes held as backend-owned repacked copies */
    uint64_t bf16_from_f16_bytes; /* part of weight_bytes: F16 matrices run as BF16 (bfloat16 values) */
    uint64_t f16_matrix_bytes;    /* part of weight_bytes: every F16 matrix (as BF16 or not) */
    bool embd_mapped;            /* the token embedding is read from the mapped file (only the rows looked up
                                    become resident), not from a backend-owned copy */
    uint64_t kv_bytes;           /* KV cache */
    uint64_t scratch_bytes;      /* activations, logits buffer, backend scratch, converted vectors */
    int kv_type;
    uint32_t n_ctx;
    uint32_t n_ubatch;
} fitlm_runtime_memory;

void fitlm_runtime_get_memory(const fitlm_runtime *rt, fitlm_runtime_memory *out);

/* The weight memory one decode step reads, as (address, bytes) regions in the
 * order the forward pass reads them: per layer its norms, matrices and biases,
 * then the output norm and matrix (the embedding table, of which one row is
 * read, is left out). Addresses are the backend's (host memory for the CPU
 * backend), valid while rt lives. Fills up to cap regions; returns how many
 * there are. */
size_t fitlm_runtime_weight_regions(const fitlm_runtime *rt, const void **addr, uint64_t *bytes, size_t cap);

#endif
