/* The forward pass over a batch of sequences' tokens. */
#include "runtime/forward.h"

#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "parallel/parallel.h"

/* Logit rows computed per output-projection call (bounds the logits buffer
 * to LOGIT_ROWS x vocab floats). */
#define LOGIT_ROWS 32

struct fitlm_forward {
    const fitlm_weights *w;
    fitlm_kv_pool *kv;
    fitlm_backend *be;
    uint32_t max_tokens, max_ctx, n_logit_rows;
    /* activations: max_tokens rows each */
    fitlm_btensor x, xb, xb2, q, k, v, att, hb, hb2;
    fitlm_btensor logits; /* n_logit_rows x vocab */
    uint64_t owned_bytes;
    fitlm_parallel *par;  /* w->par: NULL in a single process */
    float *host_logits;   /* distributed, on the logits rank when it is not the root: n_logit_rows x vocab, owned */
};

static int alloc_act(fitlm_forward *f, fitlm_btensor *t, int64_t ne0, int64_t rows, fitlm_error *err) {
    if (f->be->alloc(f->be, FITLM_TYPE_F32, ne0, rows, t, err)) return -1;
    f->be->clear(f->be, t);
    f->owned_bytes += t->nbytes;
    return 0;
}

/* A distributed forward pass: every rank checks that it runs the same model
 * with the same sizes as rank 0 (a mismatched launch fails on every rank). */
static int forward_join(fitlm_forward *f, fitlm_error *err) {
    fitlm_parallel *par = f->w->par;
    if (f->be->device != FITLM_DEVICE_CPU)
        return fitlm_fail(err, "distributed inference runs on the CPU backend only (for now)");
    if (fitlm_parallel_head(par) && !fitlm_parallel_is_root(par)) {
        f->host_logits = malloc((size_t)f->n_logit_rows * f->w->hp.vocab_size * sizeof(float));
        if (!f->host_logits) return fitlm_fail(err, "out of memory");
    }
    uint64_t v[] = {par->model_hash, par->tp_size, par->pp_size, par->dp_size, f->max_tokens, f->max_ctx,
                    f->kv->n_blocks, f->kv->block_size, (uint64_t)f->kv->type};
    static const char *const what[] = {"the model file's header hash", "--tp", "--pp", "--dp",
                                       "the tokens per step", "the context size", "the KV blocks",
                                       "the KV block size", "the KV cache type"};
    if (fitlm_parallel_agree(par, v, what, (int)(sizeof v / sizeof v[0]), err)) return -1;
    f->par = par;
    return 0;
}

fitlm_forward *fitlm_forward_new(const fitlm_weights *w, fitlm_kv_pool *kv, uint32_t max_tokens, uint32_t max_ctx,
                                 fitlm_error *err) {
    if (max_tokens == 0) return fitlm_fail(err, "a forward step needs room for at least one token"), NULL;
    fitlm_forward *f = calloc(1, sizeof *f);
    if (!f) return fitlm_fail(err, "out of memory"), NULL;
    const fitlm_hparams *hp = &w->hp;
    f->w = w;
    f->kv = kv;
    f->be = w->be;
    f->max_tokens = max_tokens;
    f->max_ctx = max_ctx;
    f->n_logit_rows = max_tokens < LOGIT_ROWS ? max_tokens : LOGIT_ROWS;
    uint32_t ub = max_tokens;
    if (alloc_act(f, &f->x, hp->dim, ub, err) || alloc_act(f, &f->xb, hp->dim, ub, err) ||
        alloc_act(f, &f->xb2, hp->dim, ub, err) || alloc_act(f, &f->q, w->q_dim, ub, err) ||
        alloc_act(f, &f->k, w->kv_dim, ub, err) || alloc_act(f, &f->v, w->kv_dim, ub, err) ||
        alloc_act(f, &f->att, w->q_dim, ub, err) || alloc_act(f, &f->hb, hp->ffn_dim, ub, err) ||
        alloc_act(f, &f->hb2, hp->ffn_dim, ub, err) || alloc_act(f, &f->logits, hp->vocab_size, f->n_logit_rows, err))
        goto fail;
    if (f->be->reserve(f->be, max_tokens, max_ctx, hp->n_heads, hp->n_kv_heads, hp->head_dim, err)) goto fail;
    if (w->par && forward_join(f, err)) goto fail;
    return f;
fail:
    fitlm_forward_free(f);
    return NULL;
}

void fitlm_forward_free(fitlm_forward *f) {
    if (!f) return;
    if (f->par && fitlm_parallel_is_root(f->par)) {
        fitlm_error err = {{0}};
        if (fitlm_parallel_flush(f->par, &err) || fitlm_parallel_send_stop(f->par, &err)) fitlm_error_print(&err);
    }
    free(f->host_logits);
    fitlm_btensor *acts[] = {&f->x, &f->xb, &f->xb2, &f->q, &f->k, &f->v, &f->att, &f->hb, &f->hb2, &f->logits};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) f->be->release(f->be, acts[i]);
    free(f);
}

uint64_t fitlm_forward_scratch_bytes(const fitlm_forward *f) {
    return f->owned_bytes + f->be->scratch_bytes(f->be);
}

uint32_t fitlm_forward_max_tokens(const fitlm_forward *f) {
    return f->max_tokens;
}

/* Rows [r0, r0+n) of an F32 activation (a view: the CPU backend's host rows). */
static fitlm_btensor rows_of(const fitlm_btensor *t, int64_t r0, int64_t n) {
    fitlm_btensor v = *t;
    v.data = (float *)t->data + r0 * t->ne0;
    v.ne1 = n;
    v.nbytes = (uint64_t)n * (uint64_t)t->ne0 * sizeof(float);
    v.owned = false;
    return v;
}

/* The micro-batches of a step under pipeline parallelism: contiguous row
 * ranges that the stages pass on one after the other, so that stage s
 * computes range k while stage s+1 computes range k-1; with k ranges over P
 * stages a step takes (k + P - 1) range-times instead of P step-times.
 *   - Small steps (decode tokens, short chunks: fewer than
 *     FITLM_PP_MICRO_BIG_ROWS rows): up to P ranges of at least 4 rows. Each range
 *     reads the stage's weights again, and below 4 rows the matmuls are
 *     bandwidth-bound (4 decode rows cost about 1.5x one row, 2 rows 1.2x:
 *     docs/benchmarks.md, batched decode shapes), so two half-size ranges in
 *     flight over two stages (3 slots of a range's time) would take longer
 *     than the whole step run stage after stage (2 slots of the step's).
 *   - Prompt chunks (FITLM_PP_MICRO_BIG_ROWS rows or more): ranges of at
 *     least FITLM_PP_MICRO_BIG_ROWS / 2 rows, up to 8 (layout.c): the matmuls are
 *     compute-bound there, so more ranges cost no extra time and shrink the
 *     pipeline's fill and drain (a 512-token chunk over 2 stages: 9 slots of
 *     an eighth instead of 3 of a half, 1.125x one stage's time instead of 1.5x).
 * The root may fix the count in the step message (b->n_micro: the serving
 * engine asks for 1 when another lane's step keeps the stages busy). Every
 * rank derives the same split from the batch. One range in a single process,
 * and when the stages take turns (fitlm_parallel_set_turns). */
static uint32_t micro_batches(const fitlm_parallel *par, const fitlm_batch *b) {
    int64_t n = b->n_tokens;
    if (!par || par->remote || par->pp_size < 2 || par->turns) return 1; /* in turns: one stage computes at a time */
    if (b->n_micro) return b->n_micro < n ? b->n_micro : (uint32_t)n; /* the root's choice */
    return fitlm_pp_micro_batches(n, par->pp_size);
}

/* This rank's layers over rows [r0, r0+n) of batch b: the input rows come
 * from the embedding (first stage) or the previous stage, the output rows go
 * to the next stage (not the last). Rows of one sequence are in position
 * order, and a range runs all of this stage's layers before the next range,
 * so a row's attention finds every earlier row's K and V in the cache. */
static int forward_rows(fitlm_forward *f, const fitlm_batch *b, int64_t r0, int64_t n, fitlm_error *err) {
    fitlm_backend *be = f->be;
    const fitlm_weights *w = f->w;
    const fitlm_hparams *hp = &w->hp;
    fitlm_parallel *par = f->par;
    size_t n_x = (size_t)n * hp->dim;
    fitlm_btensor x = rows_of(&f->x, r0, n), xb = rows_of(&f->xb, r0, n), xb2 = rows_of(&f->xb2, r0, n),
                  q = rows_of(&f->q, r0, n), k = rows_of(&f->k, r0, n), v = rows_of(&f->v, r0, n),
                  att = rows_of(&f->att, r0, n), hb = rows_of(&f->hb, r0, n), hb2 = rows_of(&f->hb2, r0, n);
    const int32_t *pos = b->pos + r0;
    fitlm_attn_batch ab = {.n_tokens = n,
                           .pos = pos,
                           .seq = b->seq + r0,
                           .block_table = b->block_table,
                           .block_shift = f->kv->block_shift};
    /* a remote view (the root driving replica group d > 0): no layers here, only the logits come back */
    bool remote = par && par->remote;
    if (w->has_embd) be->embed(be, &w->tok_embd, b->ids + r0, n, &x);
    else if (!remote && fitlm_parallel_recv_prev(par, x.data, n_x, err)) return -1;
    bool tp = par && par->tp_size > 1;
    for (uint32_t l = w->layer0; l < w->layer1; l++) {
        const fitlm_layer_weights *lw = &w->layers[l];
        fitlm_btensor *kc = &f->kv->k[l - w->layer0], *vc = &f->kv->v[l - w->layer0];
        /* attention block */
        be->rmsnorm(be, &x, &lw->attn_norm, hp->norm_eps, n, &xb);
        const fitlm_btensor *qkv_w[3] = {&lw->wq, &lw->wk, &lw->wv};
        fitlm_btensor *qkv_y[3] = {&q, &k, &v};
        be->matmul_multi(be, 3, qkv_w, &xb, n, qkv_y);
        if (lw->has_bias) {
            be->add_bias(be, &q, &lw->bq, n);
            be->add_bias(be, &k, &lw->bk, n);
            be->add_bias(be, &v, &lw->bv, n);
        }
        if (lw->has_qk_norm) { /* q and k viewed as rows of one head each */
            fitlm_btensor qh = q, kh = k;
            qh.ne0 = kh.ne0 = hp->head_dim;
            qh.ne1 = q.ne1 * hp->n_heads;
            kh.ne1 = k.ne1 * hp->n_kv_heads;
            qh.owned = kh.owned = false;
            be->rmsnorm(be, &qh, &lw->q_norm, hp->norm_eps, n * hp->n_heads, &qh);
            be->rmsnorm(be, &kh, &lw->k_norm, hp->norm_eps, n * hp->n_kv_heads, &kh);
        }
        be->rope(be, &q, n, (int)hp->n_heads, pos, &w->rope);
        be->rope(be, &k, n, (int)hp->n_kv_heads, pos, &w->rope);
        be->kv_store(be, kc, b->slot + r0, &k, n);
        be->kv_store(be, vc, b->slot + r0, &v, n);
        be->attention(be, &q, kc, vc, &ab, (int)hp->n_heads, (int)hp->n_kv_heads, (int)hp->head_dim,
                      hp->sliding_window, &att);
        be->matmul(be, &lw->wo, &att, n, &xb2);
        if (tp && fitlm_parallel_allreduce(par, xb2.data, n_x, err)) return -1; /* sum of the heads' parts */
        be->add(be, &x, &xb2, n);
        /* feed-forward block (SwiGLU) */
        be->rmsnorm(be, &x, &lw->ffn_norm, hp->norm_eps, n, &xb);
        const fitlm_btensor *gu_w[2] = {&lw->w_gate, &lw->w_up};
        fitlm_btensor *gu_y[2] = {&hb, &hb2};
        be->matmul_multi(be, 2, gu_w, &xb, n, gu_y);
        be->silu_mul(be, &hb, &hb2, n, &hb);
        be->matmul(be, &lw->w_down, &hb, n, &xb2);
        if (tp && fitlm_parallel_allreduce(par, xb2.data, n_x, err)) return -1; /* sum of the FFN columns' parts */
        be->add(be, &x, &xb2, n);
    }
    if (par && !remote && !fitlm_parallel_last_stage(par)) {
        if (be->sync(be, err) || fitlm_parallel_send_next(par, x.data, n_x, err)) return -1;
    }
    return 0;
}

/* This rank's layers over the batch, in its micro-batches. */
static int forward_layers(fitlm_forward *f, const fitlm_batch *b, fitlm_error *err) {
    int64_t n = b->n_tokens;
    uint32_t mb = micro_batches(f->par, b);
    for (uint32_t k = 0; k < mb; k++) {
        int64_t r0 = n * k / mb, r1 = n * (k + 1) / mb;
        if (forward_rows(f, b, r0, r1 - r0, err)) return -1;
    }
    return 0;
}

/* The logits of the listed rows, LOGIT_ROWS at a time: gathered, normed,
 * projected; to `logits`, or (the logits rank of a distributed run) to the
 * root. */
static int forward_head(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err) {
    fitlm_backend *be = f->be;
    const fitlm_weights *w = f->w;
    const fitlm_hparams *hp = &w->hp;
    for (uint32_t done = 0; done < b->n_logits; done += f->n_logit_rows) {
        uint32_t k = b->n_logits - done < f->n_logit_rows ? b->n_logits - done : f->n_logit_rows;
        be->get_rows(be, &f->x, b->logit_rows + done, k, &f->xb2);
        be->rmsnorm(be, &f->xb2, &w->out_norm, hp->norm_eps, k, &f->xb);
        be->matmul(be, &w->output, &f->xb, k, &f->logits);
        if (f->host_logits) {
            be->download(be, &f->logits, 0, k, f->host_logits);
            if (fitlm_parallel_send_logits(f->par, f->host_logits, (size_t)k * hp->vocab_size, err)) return -1;
        } else {
            be->download(be, &f->logits, 0, k, logits + (uint64_t)done * hp->vocab_size);
        }
    }
    return be->sync(be, err);
}

/* A worker's part of a step it received. */
static int forward_run(fitlm_forward *f, const fitlm_batch *b, fitlm_error *err) {
    if (forward_layers(f, b, err)) return -1;
    if (f->w->has_head) return forward_head(f, b, NULL, err);
    return f->be->sync(f->be, err);
}

static int check_batch(const fitlm_forward *f, const fitlm_batch *b, fitlm_error *err) {
    if (b->n_tokens > f->max_tokens)
        return fitlm_fail(err, "a step of %u tokens exceeds the %u this forward pass was sized for", b->n_tokens,
                          f->max_tokens);
    return 0;
}

int fitlm_forward_submit(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err) {
    if (b->n_tokens == 0) return 0;
    if (check_batch(f, b, err)) return -1;
    if (f->par && fitlm_parallel_send_batch(f->par, b, f->kv->block_shift, err)) return -1;
    if (forward_layers(f, b, err)) return -1;
    if (f->w->has_head) return forward_head(f, b, logits, err);
    return f->be->sync(f->be, err);
}

int fitlm_forward_collect(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err) {
    if (b->n_tokens == 0 || f->w->has_head || !f->par || !fitlm_parallel_is_root(f->par)) return 0;
    /* the logits come from the last stage's tensor rank 0, in LOGIT_ROWS chunks */
    uint32_t vocab = f->w->hp.vocab_size;
    for (uint32_t done = 0; done < b->n_logits; done += f->n_logit_rows) {
        uint32_t k = b->n_logits - done < f->n_logit_rows ? b->n_logits - done : f->n_logit_rows;
        if (fitlm_parallel_recv_logits(f->par, logits + (uint64_t)done * vocab, (size_t)k * vocab, err)) return -1;
    }
    return 0;
}

int fitlm_forward_eval(fitlm_forward *f, const fitlm_batch *b, float *logits, fitlm_error *err) {
    if (fitlm_forward_submit(f, b, logits, err)) return -1;
    return fitlm_forward_collect(f, b, logits, err);
}

int fitlm_forward_serve(fitlm_forward *f, fitlm_error *err) {
    if (!f->par || fitlm_parallel_is_root(f->par)) return 0;
    for (;;) {
        fitlm_batch b;
        int r = fitlm_parallel_recv_batch(f->par, &b, err);
        if (r < 0) return -1;
        if (r == 0) return fitlm_parallel_flush(f->par, err); /* stop: the root received everything sent */
        if (check_batch(f, &b, err) || forward_run(f, &b, err)) return -1;
    }
}
