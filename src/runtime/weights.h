/* A model's weights prepared on a backend, once, and shared by everything that
 * runs the model (the one-sequence runtime, the serving engine's steps).
 *
 * Matrices keep their file type (the CPU backend borrows the mapped file or
 * makes a repacked copy; a GPU backend uploads); norm weights and biases are
 * presented as F32. The RoPE frequency table is computed here once, so every
 * backend applies the same one.
 */
#ifndef FITLM_RUNTIME_WEIGHTS_H
#define FITLM_RUNTIME_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

typedef struct fitlm_layer_weights {
    fitlm_btensor attn_norm, wq, wk, wv, wo, bq, bk, bv; /* bq/bk/bv: qwen2 QKV biases */
    fitlm_btensor q_norm, k_norm; /* qwen3: per-head RMSNorm of q and k (head_dim each) */
    fitlm_btensor ffn_norm, w_gate, w_up, w_down;
    bool has_bias, has_qk_norm;
} fitlm_layer_weights;

struct fitlm_parallel;

typedef struct fitlm_weights {
    const fitlm_model *m;   /* borrowed: must outlive the weights */
    fitlm_backend *be;      /* borrowed */
    fitlm_hparams hp;       /* with tensor parallelism: n_heads, n_kv_heads and ffn_dim of this rank's shard */
    int64_t q_dim, kv_dim;  /* n_heads*head_dim, n_kv_heads*head_dim (this rank's) */
    struct fitlm_parallel *par; /* borrowed; NULL: one process runs the whole model */
    uint32_t layer0, layer1; /* layers prepared here (layers[] outside are zero): 0..n_layers without par */
    bool has_embd, has_head; /* tok_embd prepared (first stage); out_norm + output (the logits rank) */
    void **part_bufs;       /* column slices of O/down the backend borrows; owned */
    uint32_t n_part_bufs;
    fitlm_btensor tok_embd, out_norm, output; /* output: tok_embd's data when tied (borrowed) */
    fitlm_layer_weights *layers; /* [n_layers] */
    float *inv_freq;        /* [head_dim/2] RoPE angular frequencies */
    fitlm_rope_table rope;  /* points at inv_freq */
    uint64_t weight_bytes;  /* model tensors the forward pass reads */
    uint64_t weight_read_per_token; /* matrix bytes streamed per decoded token */
    uint64_t owned_bytes;   /* F32 copies of vectors (scratch-like) */
    uint64_t repacked_bytes; /* part of weight_bytes held as backend-owned repacked copies */
    uint64_t bf16_from_f16_bytes; /* part of weight_bytes: F16 matmul matrices of bfloat16 values the backend runs as BF16 */
    uint64_t f16_matrix_bytes;    /* part of weight_bytes: every F16 matmul matrix prepared (as BF16 or not; not an
                                   * embedding that is only looked up) */
} fitlm_weights;

/* Checks, without allocating anything big, that the model can run on the
 * backend: architecture known, every tensor the forward pass reads present with
 * data, the shape the hyperparameters imply, and a type the backend supports;
 * RoPE scaling supported; the KV cache type usable. 0 or -1 with err. */
int fitlm_weights_check_model(const fitlm_model *m, const fitlm_backend *be, int kv_type, fitlm_error *err);

/* Prepares every tensor the forward pass reads (after
 * fitlm_weights_check_model). The model and backend must outlive the result;
 * the caller frees it with fitlm_weights_free (which releases the backend
 * copies: btensors taken from it are invalid afterwards). NULL with err. */
fitlm_weights *fitlm_weights_new(const fitlm_model *m, fitlm_backend *be, int kv_type, fitlm_error *err);
/* The same for one rank of a distributed run (parallel/parallel.h; NULL = the
 * whole model): only this rank's layers, its heads and FFN columns of them,
 * and the embedding / output only where used. par must outlive the result. */
fitlm_weights *fitlm_weights_new_part(const fitlm_model *m, fitlm_backend *be, int kv_type,
                                      struct fitlm_parallel *par, fitlm_error *err);
void fitlm_weights_free(fitlm_weights *w);

/* Fills inv_freq[head_dim/2] with the RoPE angular frequencies the runtime uses:
 * theta^(-2i/head_dim), then linear scaling (divide by factor) or Llama 3.1
 * frequency-dependent scaling, then GGUF rope_freqs factors (divide) when
 * `freq_factors` is non-NULL. 0, or -1 with err (unsupported scaling). */
int fitlm_rope_inv_freq(const fitlm_hparams *hp, const float *freq_factors, float *inv_freq, fitlm_error *err);

/* The weight memory one decode step reads, as (address, bytes) regions in the
 * order the forward pass reads them (the embedding table is left out). Fills
 * up to cap regions; returns how many there are. */
size_t fitlm_weights_regions(const fitlm_weights *w, const void **addr, uint64_t *bytes, size_t cap);

#endif
