/* The one-sequence CPU runtime's memory, predicted (see mem_model.h). */
#include "runtime/mem_model.h"

#include <string.h>

#include "backend/cpu/attention.h"
#include "runtime/kv_cache.h"
#include "runtime/runtime.h"
#include "sys/threadpool.h"

static uint64_t round16(uint64_t x) { return (x + 15) & ~(uint64_t)15; }

void fitlm_mem_model_cpu(const fitlm_hparams *hp, uint64_t weight_bytes, int kv_type, uint32_t n_ctx,
                         uint32_t n_ubatch, int n_threads, fitlm_mem_model *out) {
    memset(out, 0, sizeof *out);
    if (n_ctx == 0) n_ctx = hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX;
    uint32_t ub = n_ubatch ? n_ubatch : FITLM_DEFAULT_UBATCH;
    if (ub > n_ctx) ub = n_ctx;
    if (n_threads <= 0) n_threads = fitlm_physical_cores();
    if (n_threads < 1) n_threads = 1;
    out->n_ctx = n_ctx;
    out->n_ubatch = ub;
    out->weights = weight_bytes;

    uint64_t q_dim = (uint64_t)hp->n_heads * hp->head_dim, kv_dim = (uint64_t)hp->n_kv_heads * hp->head_dim;
    /* runtime.c: n_ctx rounded up to whole blocks */
    uint64_t blocks = ((uint64_t)n_ctx + FITLM_RUNTIME_KV_BLOCK - 1) / FITLM_RUNTIME_KV_BLOCK;
    out->kv = fitlm_kv_cache_bytes(kv_type, (uint32_t)(blocks * FITLM_RUNTIME_KV_BLOCK), hp->n_layers,
                                   (int64_t)kv_dim);
    out->kv_per_position = fitlm_kv_cache_bytes(kv_type, 1, hp->n_layers, (int64_t)kv_dim);

    /* forward.c: x, xb, xb2 (dim), q, att (q_dim), k, v (kv_dim), hb, hb2 (ffn)
     * for ub rows, F32; logits for min(ub, LOGIT_ROWS) rows */
    uint64_t logit_rows = ub < FITLM_RUNTIME_LOGIT_ROWS ? ub : FITLM_RUNTIME_LOGIT_ROWS;
    out->activations = (uint64_t)ub * (3ull * hp->dim + 2 * q_dim + 2 * kv_dim + 2ull * hp->ffn_dim) * 4 +
                       logit_rows * hp->vocab_size * 4;

    /* the CPU backend's reserve: per thread the scores of a query-head group
     * over n_ctx positions plus 8 cache rows, at least the AVX-512 lanes
     * scratch; and a tile table of ub + 1 ints */
    uint64_t group = hp->n_kv_heads ? hp->n_heads / hp->n_kv_heads : 1;
    if (group < 1) group = 1;
    uint64_t scores = round16(n_ctx) * group, rows = round16((uint64_t)hp->head_dim * 8);
    uint64_t lanes = round16((uint64_t)fitlm_att_lanes_scratch(n_ctx, hp->head_dim));
    if (scores + rows < lanes) scores = lanes - rows;
    out->attention = (scores + rows) * (uint64_t)n_threads * 4 + ((uint64_t)ub + 1) * 4;
    /* growth per position: the scores (or the lanes scratch, 16 floats per position) */
    out->scratch_per_position = (group > 16 ? group : 16) * 4 * (uint64_t)n_threads;

    out->other = (uint64_t)(hp->head_dim / 2) * 4; /* RoPE inverse frequencies */
    out->scratch = out->activations + out->attention + out->other;
}
