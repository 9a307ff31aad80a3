/* The one-sequence runtime over weights + KV pool + forward pass. */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/kv_pool.h"
#include "runtime/mem_model.h"

/* Slots per KV block of the one-sequence cache: FITLM_RUNTIME_KV_BLOCK
 * (runtime/mem_model.h, which predicts this allocation). */
#define RUNTIME_KV_BLOCK FITLM_RUNTIME_KV_BLOCK

struct fitlm_runtime {
    fitlm_weights *w;
    fitlm_kv_pool *kv;
    fitlm_forward *fwd;
    fitlm_backend *be;
    uint32_t n_ctx, n_ubatch, n_past;
    /* the batch of one micro-batch: positions n_past.., slots in order */
    int32_t *table;   /* block i -> block i */
    int32_t *pos, *seq, *rows;
    int64_t *slot;
};

fitlm_runtime_params fitlm_runtime_params_default(void) {
    fitlm_runtime_params p = {.n_ctx = 0, .kv_type = FITLM_TYPE_F16, .n_ubatch = FITLM_DEFAULT_UBATCH};
    return p;
}

int fitlm_runtime_check_model(const fitlm_model *m, const fitlm_backend *be, int kv_type, fitlm_error *err) {
    return fitlm_weights_check_model(m, be, kv_type, err);
}

fitlm_runtime *fitlm_runtime_new(const fitlm_model *m, fitlm_backend *be, const fitlm_runtime_params *p,
                                 fitlm_error *err) {
    fitlm_runtime_params params = p ? *p : fitlm_runtime_params_default();
    if (fitlm_weights_check_model(m, be, params.kv_type, err)) return NULL;
    const fitlm_hparams *hp = &m->hp;
    uint32_t n_ctx = params.n_ctx;
    if (n_ctx == 0) n_ctx = hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX;
    if (n_ctx > hp->ctx_len) {
        fitlm_fail(err, "context %u is larger than the model's context length %u", n_ctx, hp->ctx_len);
        return NULL;
    }
    uint32_t ub = params.n_ubatch ? params.n_ubatch : FITLM_DEFAULT_UBATCH;
    if (ub > n_ctx) ub = n_ctx;

    fitlm_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    rt->be = be;
    rt->n_ctx = n_ctx;
    rt->n_ubatch = ub;
    uint32_t n_blocks = (n_ctx + RUNTIME_KV_BLOCK - 1) / RUNTIME_KV_BLOCK;
    rt->table = malloc(n_blocks * sizeof *rt->table);
    rt->pos = malloc(ub * sizeof *rt->pos);
    rt->seq = calloc(ub, sizeof *rt->seq);
    rt->rows = malloc(ub * sizeof *rt->rows);
    rt->slot = malloc(ub * sizeof *rt->slot);
    if (!rt->table || !rt->pos || !rt->seq || !rt->rows || !rt->slot) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    rt->w = fitlm_weights_new_part(m, be, params.kv_type, params.par, err);
    if (!rt->w) goto fail;
    rt->kv = fitlm_kv_pool_new(be, params.kv_type, rt->w->layer1 - rt->w->layer0, rt->w->kv_dim, RUNTIME_KV_BLOCK,
                               n_blocks, err);
    if (!rt->kv) goto fail;
    for (uint32_t i = 0; i < n_blocks; i++) rt->table[i] = fitlm_kv_pool_alloc(rt->kv); /* 0, 1, 2, ... */
    rt->fwd = fitlm_forward_new(rt->w, rt->kv, ub, n_ctx, err);
    if (!rt->fwd) goto fail;
    return rt;
fail:
    fitlm_runtime_free(rt);
    return NULL;
}

void fitlm_runtime_free(fitlm_runtime *rt) {
    if (!rt) return;
    fitlm_forward_free(rt->fwd);
    fitlm_kv_pool_free(rt->be, rt->kv);
    fitlm_weights_free(rt->w);
    free(rt->table);
    free(rt->pos);
    free(rt->seq);
    free(rt->rows);
    free(rt->slot);
    free(rt);
}

int fitlm_runtime_eval(fitlm_runtime *rt, const int32_t *ids, uint32_t n, float *logits, bool all_logits,
                       fitlm_error *err) {
    if (n == 0) return 0;
    const fitlm_hparams *hp = &rt->w->hp;
    if ((uint64_t)rt->n_past + n > rt->n_ctx)
        return fitlm_fail(err, "context overflow: %u tokens already in the context plus %u new exceed the context "
                               "size %u (raise -c, up to the model's %u)",
                          rt->n_past, n, rt->n_ctx, hp->ctx_len);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= hp->vocab_size)
            return fitlm_fail(err, "token id %d is outside the vocabulary (0..%u)", ids[i], hp->vocab_size - 1);
    const int32_t *tables[1] = {rt->table};
    for (uint32_t off = 0; off < n; off += rt->n_ubatch) {
        uint32_t nb = n - off < rt->n_ubatch ? n - off : rt->n_ubatch;
        for (uint32_t t = 0; t < nb; t++) {
            rt->pos[t] = (int32_t)(rt->n_past + t);
            rt->slot[t] = rt->n_past + t; /* identity block table */
            rt->rows[t] = (int32_t)t;
        }
        fitlm_batch b = {.n_tokens = nb, .ids = ids + off, .pos = rt->pos, .seq = rt->seq, .slot = rt->slot,
                         .block_table = tables, .n_seqs = 1};
        float *dst = NULL;
        if (logits && all_logits) {
            b.logit_rows = rt->rows;
            b.n_logits = nb;
            dst = logits + (uint64_t)off * hp->vocab_size;
        } else if (logits && off + nb == n) {
            b.logit_rows = rt->rows + nb - 1;
            b.n_logits = 1;
            dst = logits;
        }
        if (fitlm_forward_eval(rt->fwd, &b, dst, err)) return -1;
        rt->n_past += nb;
    }
    return 0;
}

int fitlm_runtime_serve_steps(fitlm_runtime *rt, fitlm_error *err) {
    return fitlm_forward_serve(rt->fwd, err);
}

void fitlm_runtime_reset(fitlm_runtime *rt) {
    rt->n_past = 0;
}

uint32_t fitlm_runtime_n_past(const fitlm_runtime *rt) {
    return rt->n_past;
}
uint32_t fitlm_runtime_n_ctx(const fitlm_runtime *rt) {
    return rt->n_ctx;
}
uint32_t fitlm_runtime_vocab(const fitlm_runtime *rt) {
    return rt->w->hp.vocab_size;
}

void fitlm_runtime_get_memory(const fitlm_runtime *rt, fitlm_runtime_memory *out) {
    memset(out, 0, sizeof *out);
    out->weight_bytes = rt->w->weight_bytes;
    out->weight_read_per_token = rt->w->weight_read_per_token;
    out->repacked_bytes = rt->w->repacked_bytes;
    out->bf16_from_f16_bytes = rt->w->bf16_from_f16_bytes;
    out->f16_matrix_bytes = rt->w->f16_matrix_bytes;
    out->embd_mapped = rt->w->has_embd && !rt->w->tok_embd.owned;
    out->kv_bytes = rt->kv->nbytes;
    out->scratch_bytes = rt->w->owned_bytes + fitlm_forward_scratch_bytes(rt->fwd) + (uint64_t)(rt->w->hp.head_dim / 2) * 4;
    out->kv_type = rt->kv->type;
    out->n_ctx = rt->n_ctx;
    out->n_ubatch = rt->n_ubatch;
}

size_t fitlm_runtime_weight_regions(const fitlm_runtime *rt, const void **addr, uint64_t *bytes, size_t cap) {
    return fitlm_weights_regions(rt->w, addr, bytes, cap);
}
