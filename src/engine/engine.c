/* The serving engine: sequences, the continuous-batching scheduler over the
 * paged KV pool, and the generation step (sample, stop rules, text, events). */
#include "engine/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/textout.h"
#include "format/ggml_type.h"
#include "parallel/parallel.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/kv_pool.h"
#include "runtime/runtime.h"
#include "runtime/weights.h"

#define DEFAULT_KV_BLOCK 16
#define DEFAULT_PARALLEL 4
#define DEFAULT_BATCH_TOKENS 512
#define DEFAULT_QUEUE 256

fitlm_engine_params fitlm_engine_params_default(void) {
    fitlm_engine_params p = {.n_ctx = 0,
                             .kv_block = DEFAULT_KV_BLOCK,
                             .kv_mem_bytes = 0,
                             .kv_type = FITLM_TYPE_F16,
                             .n_parallel = DEFAULT_PARALLEL,
                             .max_batch_tokens = DEFAULT_BATCH_TOKENS,
                             .max_queue = DEFAULT_QUEUE,
                             .no_prefix_cache = false};
    return p;
}

const char *fitlm_finish_reason_name(fitlm_finish_reason r) {
    switch (r) {
    case FITLM_FINISH_STOP: return "stop";
    case FITLM_FINISH_LENGTH: return "length";
    case FITLM_FINISH_CANCELLED: return "cancelled";
    case FITLM_FINISH_ERROR: return "error";
    case FITLM_FINISH_NONE: break;
    }
    return "none";
}

/* ---- sequences ---- */

typedef struct seq {
    struct seq *next;       /* in the inbox / waiting list */
    uint64_t id;
    fitlm_gen_callback cb;
    void *user;
    int32_t *tokens;        /* prompt, then generated tokens (the end-of-generation token never) */
    uint32_t n_tokens, n_prompt, max_tokens, n_gen;
    uint32_t n_computed;    /* leading tokens whose K and V are in the pool */
    int32_t *blocks;        /* block table: block i holds positions [i*bs, (i+1)*bs); -1 = not held */
    uint32_t n_blocks;      /* entries set */
    uint32_t n_published;   /* leading blocks published (or looked at) for the prefix cache */
    uint64_t chain_hash;    /* hash of block n_published-1 */
    uint32_t n_cached;      /* prompt tokens served from the prefix cache at first admission */
    bool admitted_once;
    uint64_t admit_order;
    int top_logprobs;
    bool ignore_eos;
    fitlm_sampler *smp;
    fitlm_textout *text;    /* NULL without a tokenizer */
    fitlm_token_constraint constraint; /* owned (mask NULL: none) */
    uint32_t step_rows;     /* this step: tokens scheduled */
    int32_t step_logit;     /* this step: index of its logit row, or -1 */
    uint32_t lane;          /* pipeline parallel: the lane whose steps carry it (0 otherwise) */
    bool inflight;          /* in a step submitted and not yet collected: its blocks and counts are frozen */
    bool cancel_pending;    /* cancelled while in flight: ends when its step is collected */
} seq;

/* Most lanes (pipeline stages) the engine keeps in flight. */
#define MAX_LANES 64

typedef struct cancel_req {
    struct cancel_req *next;
    uint64_t id;
} cancel_req;

struct fitlm_engine {
    const fitlm_model *m;
    const fitlm_tokenizer *tok;
    fitlm_backend *be;
    fitlm_engine_params p;
    uint32_t vocab;
    fitlm_weights *w;
    fitlm_kv_pool *kv;
    fitlm_forward *fwd;

    /* shared with submitters: under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    seq *inbox_head, *inbox_tail;
    cancel_req *cancels;
    uint32_t n_queued;      /* submitted, never admitted yet (inbox + waiting) */
    uint32_t n_inbox;       /* in the inbox */
    uint64_t next_id;
    bool shutting_down, worker_running, worker_exit;
    pthread_t worker;
    fitlm_engine_stats stats;

    /* the worker's own */
    seq *wait_head, *wait_tail; /* preempted sequences go to the head */
    seq **running;          /* [n_parallel], in admission order */
    uint32_t n_running;
    uint64_t admit_counter;
    uint32_t max_blocks_per_seq;
    /* step scratch */
    int32_t *b_ids, *b_pos, *b_seq, *b_rows;
    int64_t *b_slot;
    const int32_t **b_tables;
    float *logits;          /* n_parallel x vocab */
    /* lanes: under pipeline parallelism (P stages) the running sequences are
     * split into P lanes whose steps are in flight at the same time, so that
     * every stage computes a different lane's step (engine_step) */
    uint32_t n_lanes, lane_next;
    bool lane_busy[MAX_LANES];       /* a step submitted and not yet collected */
    uint32_t lane_rows[MAX_LANES];   /* that step's rows and logit rows */
    uint32_t lane_logits[MAX_LANES];
    bool overlapped;                 /* the step submitted last found another lane's in flight */
    fitlm_top_logprob top[FITLM_MAX_TOP_LOGPROBS];
    int32_t *hash_tokens;
};

static void seq_free(seq *s) {
    if (!s) return;
    if (s->constraint.mask && s->constraint.free_state) s->constraint.free_state(s->constraint.state);
    free(s->tokens);
    free(s->blocks);
    fitlm_sampler_free(s->smp);
    fitlm_textout_free(s->text);
    free(s);
}

/* ---- construction ---- */

fitlm_engine *fitlm_engine_new(const fitlm_model *m, const fitlm_tokenizer *tok, fitlm_backend *be,
                               const fitlm_engine_params *pp, fitlm_error *err) {
    fitlm_engine_params p = pp ? *pp : fitlm_engine_params_default();
    if (p.kv_block == 0) p.kv_block = DEFAULT_KV_BLOCK;
    if (p.n_parallel == 0) p.n_parallel = DEFAULT_PARALLEL;
    if (p.max_batch_tokens == 0) p.max_batch_tokens = DEFAULT_BATCH_TOKENS;
    if (p.max_queue == 0) p.max_queue = DEFAULT_QUEUE;
    if (p.kv_block > 1024 || (p.kv_block & (p.kv_block - 1)))
        return fitlm_fail(err, "--kv-block %u must be a power of two from 1 to 1024", p.kv_block), NULL;
    if (p.n_parallel > 4096) return fitlm_fail(err, "--parallel %u is out of range (1..4096)", p.n_parallel), NULL;
    if (p.max_batch_tokens > 65536)
        return fitlm_fail(err, "--max-batch-tokens %u is out of range (1..65536)", p.max_batch_tokens), NULL;
    if (p.max_batch_tokens < p.n_parallel) p.max_batch_tokens = p.n_parallel; /* every running sequence decodes each step */
    if (fitlm_weights_check_model(m, be, p.kv_type, err)) return NULL;
    const fitlm_hparams *hp = &m->hp;
    if (p.n_ctx == 0) p.n_ctx = hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX;
    if (p.n_ctx > hp->ctx_len)
        return fitlm_fail(err, "context %u is larger than the model's context length %u", p.n_ctx, hp->ctx_len), NULL;
    /* a step never holds more tokens than its sequences have positions (the
     * activations are sized by max_batch_tokens) */
    if ((uint64_t)p.max_batch_tokens > (uint64_t)p.n_ctx * p.n_parallel)
        p.max_batch_tokens = p.n_ctx * p.n_parallel;
    if (tok && (uint32_t)fitlm_tokenizer_vocab_size(tok) > hp->vocab_size)
        return fitlm_fail(err, "the tokenizer has %d tokens, the model %u", fitlm_tokenizer_vocab_size(tok),
                          hp->vocab_size),
               NULL;
    int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t block_bytes = fitlm_kv_pool_block_bytes(p.kv_type, hp->n_layers, kv_dim, p.kv_block);
    uint32_t per_seq = (p.n_ctx + p.kv_block - 1) / p.kv_block;
    uint64_t n_blocks;
    if (p.kv_mem_bytes) {
        n_blocks = p.kv_mem_bytes / block_bytes;
        if (n_blocks == 0)
            return fitlm_fail(err, "--kv-mem %llu bytes is less than one KV block (%llu bytes: %u tokens)",
                              (unsigned long long)p.kv_mem_bytes, (unsigned long long)block_bytes, p.kv_block),
                   NULL;
    } else {
        n_blocks = (uint64_t)per_seq * p.n_parallel;
    }
    if (n_blocks > (1u << 30) / p.kv_block)
        return fitlm_fail(err, "a KV pool of %llu blocks is too large", (unsigned long long)n_blocks), NULL;

    fitlm_engine *e = calloc(1, sizeof *e);
    if (!e) return fitlm_fail(err, "out of memory"), NULL;
    e->m = m;
    e->tok = tok;
    e->be = be;
    e->p = p;
    e->vocab = hp->vocab_size;
    e->next_id = 1;
    e->max_blocks_per_seq = per_seq;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    uint32_t T = p.max_batch_tokens;
    e->running = calloc(p.n_parallel, sizeof *e->running);
    e->b_ids = malloc(T * sizeof *e->b_ids);
    e->b_pos = malloc(T * sizeof *e->b_pos);
    e->b_seq = malloc(T * sizeof *e->b_seq);
    e->b_rows = malloc(T * sizeof *e->b_rows);
    e->b_slot = malloc(T * sizeof *e->b_slot);
    e->b_tables = calloc(p.n_parallel, sizeof *e->b_tables);
    e->logits = malloc((size_t)p.n_parallel * hp->vocab_size * sizeof *e->logits);
    e->hash_tokens = malloc(p.kv_block * sizeof *e->hash_tokens);
    if (!e->running || !e->b_ids || !e->b_pos || !e->b_seq || !e->b_rows || !e->b_slot || !e->b_tables ||
        !e->logits || !e->hash_tokens) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    e->w = fitlm_weights_new_part(m, be, p.kv_type, p.par, err);
    if (!e->w) goto fail;
    /* this rank's layers and KV heads (all of them in a single process) */
    e->kv = fitlm_kv_pool_new(be, p.kv_type, e->w->layer1 - e->w->layer0, e->w->kv_dim, p.kv_block,
                              (uint32_t)n_blocks, err);
    if (!e->kv) goto fail;
    e->fwd = fitlm_forward_new(e->w, e->kv, T, p.n_ctx, err);
    if (!e->fwd) goto fail;
    e->n_lanes = 1;
    /* one lane when the stages take turns: one step in flight reads the weights once */
    if (p.par && p.par->pp_size > 1 && !p.par->turns)
        e->n_lanes = p.par->pp_size < MAX_LANES ? p.par->pp_size : MAX_LANES;
    e->stats.kv_blocks_total = e->kv->n_blocks;
    e->stats.kv_block_tokens = p.kv_block;
    e->stats.kv_pool_bytes = e->kv->nbytes;
    return e;
fail:
    fitlm_engine_free(e);
    return NULL;
}

void fitlm_engine_get_memory(const fitlm_engine *e, fitlm_runtime_memory *out) {
    memset(out, 0, sizeof *out);
    out->weight_bytes = e->w->weight_bytes;
    out->weight_read_per_token = e->w->weight_read_per_token;
    out->repacked_bytes = e->w->repacked_bytes;
    out->bf16_from_f16_bytes = e->w->bf16_from_f16_bytes;
    out->f16_matrix_bytes = e->w->f16_matrix_bytes;
    out->embd_mapped = e->w->has_embd && !e->w->tok_embd.owned;
    out->kv_bytes = e->kv->nbytes;
    out->scratch_bytes = e->w->owned_bytes + fitlm_forward_scratch_bytes(e->fwd) +
                         (uint64_t)e->p.n_parallel * e->vocab * sizeof(float) + (uint64_t)(e->w->hp.head_dim / 2) * 4;
    out->kv_type = e->kv->type;
    out->n_ctx = e->p.n_ctx;
    out->n_ubatch = e->p.max_batch_tokens;
}

uint32_t fitlm_engine_n_ctx(const fitlm_engine *e) {
    return e->p.n_ctx;
}

uint32_t fitlm_engine_vocab(const fitlm_engine *e) {
    return e->vocab;
}

double fitlm_engine_max_concurrency(const fitlm_engine *e, uint32_t n_tokens) {
    if (n_tokens == 0) n_tokens = 1;
    uint32_t per = (n_tokens + e->p.kv_block - 1) / e->p.kv_block;
    return (double)e->kv->n_blocks / per;
}

void fitlm_engine_get_stats(fitlm_engine *e, fitlm_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    s->n_waiting += e->n_inbox;
    pthread_mutex_unlock(&e->mu);
}

/* ---- submission ---- */

int fitlm_engine_submit(fitlm_engine *e, const fitlm_request *r, uint64_t *id, fitlm_error *err) {
    if (!r->cb) return fitlm_fail(err, "a request needs a callback"), FITLM_ENGINE_EINVAL;
    if (r->n_prompt == 0 || !r->prompt) return fitlm_fail(err, "the prompt is empty"), FITLM_ENGINE_EINVAL;
    for (uint32_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || (uint32_t)r->prompt[i] >= e->vocab)
            return fitlm_fail(err, "token id %d is outside the vocabulary (0..%u)", r->prompt[i], e->vocab - 1),
                   FITLM_ENGINE_EINVAL;
    uint32_t n_ctx = e->p.n_ctx;
    if (r->n_prompt >= n_ctx)
        return fitlm_fail(err,
                          "This model's maximum context length is %u tokens. However, you requested %u tokens in the "
                          "prompt, which leaves no room for the completion.",
                          n_ctx, r->n_prompt),
               FITLM_ENGINE_EINVAL;
    uint32_t max_tokens = r->max_tokens ? r->max_tokens : n_ctx - r->n_prompt;
    if ((uint64_t)r->n_prompt + max_tokens > n_ctx)
        return fitlm_fail(err,
                          "This model's maximum context length is %u tokens. However, you requested %llu tokens (%u "
                          "in the prompt, %u for the completion). Please reduce the prompt or max_tokens.",
                          n_ctx, (unsigned long long)r->n_prompt + max_tokens, r->n_prompt, max_tokens),
               FITLM_ENGINE_EINVAL;
    uint64_t need_blocks = ((uint64_t)r->n_prompt + max_tokens + e->p.kv_block - 1) / e->p.kv_block;
    if (need_blocks > e->kv->n_blocks)
        return fitlm_fail(err,
                          "the request needs %llu KV blocks (%u prompt + %u completion tokens) but the whole pool has "
                          "%u blocks of %u tokens (raise --kv-mem)",
                          (unsigned long long)need_blocks, r->n_prompt, max_tokens, e->kv->n_blocks, e->p.kv_block),
               FITLM_ENGINE_EINVAL;
    if (r->top_logprobs < -1 || r->top_logprobs > FITLM_MAX_TOP_LOGPROBS)
        return fitlm_fail(err, "top_logprobs must be between 0 and %d", FITLM_MAX_TOP_LOGPROBS), FITLM_ENGINE_EINVAL;
    if (r->n_stop && !e->tok)
        return fitlm_fail(err, "stop strings need the model's tokenizer"), FITLM_ENGINE_EINVAL;
    if (fitlm_textout_check_stops(r->stop, r->n_stop, err)) return FITLM_ENGINE_EINVAL;
    if (fitlm_sampler_params_check(&r->sampling, err)) return FITLM_ENGINE_EINVAL;

    seq *s = calloc(1, sizeof *s);
    if (!s) return fitlm_fail(err, "out of memory"), FITLM_ENGINE_EBUSY;
    s->cb = r->cb;
    s->user = r->user;
    s->n_prompt = s->n_tokens = r->n_prompt;
    s->max_tokens = max_tokens;
    s->top_logprobs = r->top_logprobs;
    s->ignore_eos = r->ignore_eos;
    s->step_logit = -1;
    s->tokens = malloc(((size_t)r->n_prompt + max_tokens) * sizeof *s->tokens);
    s->blocks = malloc(e->max_blocks_per_seq * sizeof *s->blocks);
    s->smp = fitlm_sampler_new(&r->sampling, e->vocab, err);
    if (!s->tokens || !s->blocks || !s->smp) {
        if (s->smp) fitlm_fail(err, "out of memory");
        seq_free(s);
        return FITLM_ENGINE_EBUSY;
    }
    memcpy(s->tokens, r->prompt, r->n_prompt * sizeof *s->tokens);
    for (uint32_t i = 0; i < r->n_prompt; i++) fitlm_sampler_accept(s->smp, r->prompt[i]);
    if (e->tok) {
        s->text = fitlm_textout_new(e->tok, r->stop, r->n_stop, err);
        if (!s->text) {
            seq_free(s);
            return FITLM_ENGINE_EINVAL;
        }
    }
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (e->shutting_down) {
        rc = FITLM_ENGINE_ESHUTDOWN;
        fitlm_fail(err, "the server is shutting down");
    } else if (e->n_queued >= e->p.max_queue) {
        rc = FITLM_ENGINE_EBUSY;
        fitlm_fail(err, "the server is busy: %u requests are waiting (--max-queue); retry later", e->n_queued);
    } else {
        s->id = e->next_id++;
        *id = s->id;
        if (e->inbox_tail) e->inbox_tail->next = s;
        else e->inbox_head = s;
        e->inbox_tail = s;
        e->n_queued++;
        e->n_inbox++;
        pthread_cond_signal(&e->cv);
    }
    if (rc == 0) s->constraint = r->constraint; /* the engine owns it from here on */
    pthread_mutex_unlock(&e->mu);
    if (rc) seq_free(s);
    return rc;
}

void fitlm_engine_cancel(fitlm_engine *e, uint64_t id) {
    cancel_req *c = malloc(sizeof *c);
    pthread_mutex_lock(&e->mu);
    if (c) {
        c->id = id;
        c->next = e->cancels;
        e->cancels = c;
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---- blocks of a sequence ---- */

static void seq_release_blocks(fitlm_engine *e, seq *s) {
    for (uint32_t i = 0; i < s->n_blocks; i++)
        if (s->blocks[i] >= 0) fitlm_kv_pool_release(e->kv, s->blocks[i]);
    s->n_blocks = 0;
    s->n_published = 0;
    s->chain_hash = 0;
}

/* Publishes the sequence's full, computed blocks to the prefix cache. */
static void seq_publish(fitlm_engine *e, seq *s) {
    uint32_t bs = e->p.kv_block, full = s->n_computed / bs;
    while (s->n_published < full && s->n_published < s->n_blocks) {
        uint32_t b = s->n_published;
        uint64_t h = fitlm_kv_block_hash(e->kv, s->chain_hash, s->tokens + (size_t)b * bs);
        if (!e->p.no_prefix_cache && s->blocks[b] >= 0)
            fitlm_kv_pool_publish(e->kv, s->blocks[b], h, s->tokens + (size_t)b * bs);
        s->chain_hash = h;
        s->n_published++;
    }
}

/* Sliding-window models: blocks no future token of s can attend are given back. */
static void seq_drop_window(fitlm_engine *e, seq *s) {
    uint32_t W = e->w->hp.sliding_window, bs = e->p.kv_block;
    if (W == 0 || s->n_computed < W) return;
    uint32_t first_needed = s->n_computed - W + 1; /* the next token's lowest position */
    for (uint32_t b = 0; b < s->n_blocks && (b + 1) * bs <= first_needed; b++)
        if (s->blocks[b] >= 0 && b < s->n_published) {
            fitlm_kv_pool_release(e->kv, s->blocks[b]);
            s->blocks[b] = -1;
        }
}

/* Looks the sequence's leading full blocks up in the prefix cache (leaving at
 * least one token to compute) and pins the hits. Returns the tokens found. */
static uint32_t seq_prefix_lookup(fitlm_engine *e, seq *s) {
    uint32_t bs = e->p.kv_block, max_blocks = (s->n_tokens - 1) / bs, hits = 0;
    uint64_t h = 0;
    if (e->p.no_prefix_cache) return 0;
    for (; hits < max_blocks; hits++) {
        uint64_t hh = fitlm_kv_block_hash(e->kv, h, s->tokens + (size_t)hits * bs);
        int32_t b = fitlm_kv_pool_lookup(e->kv, hh, s->tokens + (size_t)hits * bs);
        if (b < 0) break;
        fitlm_kv_pool_retain(e->kv, b);
        s->blocks[hits] = b;
        h = hh;
    }
    s->n_blocks = hits;
    s->n_published = hits;
    s->chain_hash = h;
    s->n_computed = hits * bs;
    return hits * bs;
}

/* Blocks a sequence still needs for tokens up to n (positions < n). */
static uint32_t blocks_short(const fitlm_engine *e, const seq *s, uint32_t n) {
    uint32_t need = (n + e->p.kv_block - 1) / e->p.kv_block;
    return need > s->n_blocks ? need - s->n_blocks : 0;
}

/* Cached-but-unpinned blocks among a sequence's prefix hits would leave the
 * available count when pinned: counted before admission. */
static uint32_t prefix_hits_unpinned(fitlm_engine *e, const seq *s, uint32_t *hit_blocks) {
    uint32_t bs = e->p.kv_block, max_blocks = (s->n_tokens - 1) / bs, hits = 0, unpinned = 0;
    uint64_t h = 0;
    if (!e->p.no_prefix_cache)
        for (; hits < max_blocks; hits++) {
            uint64_t hh = fitlm_kv_block_hash(e->kv, h, s->tokens + (size_t)hits * bs);
            int32_t b = fitlm_kv_pool_lookup(e->kv, hh, s->tokens + (size_t)hits * bs);
            if (b < 0) break;
            if (e->kv->ref[b] == 0) unpinned++;
            h = hh;
        }
    *hit_blocks = hits;
    return unpinned;
}

/* ---- events ---- */

static void emit(fitlm_engine *e, seq *s, int32_t token, bool eog, const char *text, size_t len, float logprob,
                 int n_top, bool done, fitlm_finish_reason fin, const char *error) {
    fitlm_gen_event ev = {.id = s->id,
                          .token = token,
                          .eog = eog,
                          .text = text ? text : "",
                          .text_len = text ? len : 0,
                          .logprob = logprob,
                          .n_top = n_top,
                          .top = e->top,
                          .done = done,
                          .finish = fin,
                          .error = error,
                          .n_prompt = s->n_prompt,
                          .n_cached = s->n_cached,
                          .n_completion = s->n_gen};
    s->cb(s->user, &ev);
}

/* Ends a sequence: its last event, blocks back to the pool (full ones stay
 * findable as cached prefixes), freed. Not on any list any more. */
static void seq_finish(fitlm_engine *e, seq *s, fitlm_finish_reason fin, const char *error) {
    const char *text = NULL;
    size_t len = 0;
    if (s->text && fin != FITLM_FINISH_CANCELLED && fin != FITLM_FINISH_ERROR) fitlm_textout_finish(s->text, &text, &len);
    seq_publish(e, s);
    seq_release_blocks(e, s);
    pthread_mutex_lock(&e->mu);
    e->stats.requests_finished[fin]++;
    pthread_mutex_unlock(&e->mu);
    emit(e, s, -1, false, text, len, 0.0f, 0, true, fin, error);
    seq_free(s);
}

/* ---- the worker's lists ---- */

static void wait_push_front(fitlm_engine *e, seq *s) {
    s->next = e->wait_head;
    e->wait_head = s;
    if (!e->wait_tail) e->wait_tail = s;
}

static seq *wait_pop(fitlm_engine *e) {
    seq *s = e->wait_head;
    if (s) {
        e->wait_head = s->next;
        if (!e->wait_head) e->wait_tail = NULL;
        s->next = NULL;
    }
    return s;
}

static void running_remove(fitlm_engine *e, uint32_t i) {
    memmove(e->running + i, e->running + i + 1, (e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
}

/* Takes new requests and cancellations from the submitters. */
static void take_inbox(fitlm_engine *e) {
    pthread_mutex_lock(&e->mu);
    seq *in = e->inbox_head;
    e->inbox_head = e->inbox_tail = NULL;
    e->n_inbox = 0;
    cancel_req *c = e->cancels;
    e->cancels = NULL;
    pthread_mutex_unlock(&e->mu);
    while (in) {
        seq *nx = in->next;
        in->next = NULL;
        if (e->wait_tail) e->wait_tail->next = in;
        else e->wait_head = in;
        e->wait_tail = in;
        in = nx;
    }
    while (c) {
        cancel_req *nx = c->next;
        bool found = false;
        for (uint32_t i = 0; i < e->n_running && !found; i++)
            if (e->running[i]->id == c->id) {
                seq *s = e->running[i];
                found = true;
                if (s->inflight) { /* its step is still computing: ends when it is collected */
                    s->cancel_pending = true;
                    continue;
                }
                running_remove(e, i);
                seq_finish(e, s, FITLM_FINISH_CANCELLED, NULL);
            }
        for (seq **pp = &e->wait_head; *pp && !found; pp = &(*pp)->next)
            if ((*pp)->id == c->id) {
                seq *s = *pp;
                *pp = s->next;
                if (e->wait_tail == s) {
                    e->wait_tail = NULL;
                    for (seq *t = e->wait_head; t; t = t->next) e->wait_tail = t;
                }
                if (!s->admitted_once) {
                    pthread_mutex_lock(&e->mu);
                    e->n_queued--;
                    pthread_mutex_unlock(&e->mu);
                }
                seq_finish(e, s, FITLM_FINISH_CANCELLED, NULL);
                found = true;
            }
        free(c);
        c = nx;
    }
}

/* Moves running[i] back to the head of the waiting queue: its blocks go back
 * to the pool (full ones stay findable as cached prefixes, so recomputing it
 * later is often cheap) and its tokens are recomputed when it is admitted
 * again. */
static void preempt(fitlm_engine *e, uint32_t i) {
    seq *s = e->running[i];
    running_remove(e, i);
    seq_publish(e, s);
    seq_release_blocks(e, s);
    s->n_computed = 0;
    wait_push_front(e, s);
    pthread_mutex_lock(&e->mu);
    e->stats.preemptions++;
    pthread_mutex_unlock(&e->mu);
}

/* Preempts the most recently admitted running sequence if it was admitted
 * after `keep` (running[] is in admission order) and is not in flight.
 * Returns false when there is none. */
static bool preempt_newer(fitlm_engine *e, const seq *keep) {
    for (uint32_t j = e->n_running; j-- > 0;) {
        if (e->running[j] == keep) return false;
        if (!e->running[j]->inflight) {
            preempt(e, j);
            return true;
        }
    }
    return false;
}

/* Gives s blocks for positions < n, preempting newer sequences when the pool
 * is empty. Returns how many positions it could cover (>= s->n_computed). */
static uint32_t ensure_blocks(fitlm_engine *e, seq *s, uint32_t n, bool may_preempt) {
    uint32_t bs = e->p.kv_block;
    while (s->n_blocks * bs < n) {
        int32_t b = fitlm_kv_pool_alloc(e->kv);
        if (b < 0) {
            if (may_preempt && preempt_newer(e, s)) continue;
            break;
        }
        s->blocks[s->n_blocks++] = b;
    }
    uint32_t covered = s->n_blocks * bs;
    return covered < n ? covered : n;
}

/* ---- one step ---- */

/* Whether lane L may take one more newly admitted sequence: lanes are kept
 * within one sequence of each other, so that every stage has work. */
static bool lane_has_room(const fitlm_engine *e, uint32_t L) {
    if (e->n_lanes == 1) return true;
    uint32_t count[MAX_LANES] = {0};
    for (uint32_t i = 0; i < e->n_running; i++) count[e->running[i]->lane]++;
    for (uint32_t l = 0; l < e->n_lanes; l++)
        if (l != L && count[l] < count[L]) return false;
    return true;
}

/* Chooses the rows of lane L's step: first one decode token for every running
 * sequence of the lane, then prompt chunks of its running sequences, then
 * newly admitted sequences (which join the lane), within the token budget.
 * Returns the rows scheduled. */
static uint32_t schedule(fitlm_engine *e, uint32_t L) {
    uint32_t budget = e->p.max_batch_tokens, rows = 0;
    for (uint32_t i = 0; i < e->n_running; i++) {
        if (e->running[i]->lane != L) continue;
        e->running[i]->step_rows = 0;
        e->running[i]->step_logit = -1;
    }
    /* decoding sequences first (oldest first), one token each; a sequence
     * that needs a block when none is free preempts the newest sequence, or
     * itself when it is the newest (only newer, still unscheduled sequences
     * are ever preempted here) */
    for (uint32_t i = 0; i < e->n_running && budget > 0;) {
        seq *s = e->running[i];
        if (s->lane != L || s->n_tokens - s->n_computed != 1) {
            i++;
            continue;
        }
        if (ensure_blocks(e, s, s->n_computed + 1, true) < s->n_computed + 1) {
            preempt(e, i); /* s is the newest: it waits */
            continue;
        }
        s->step_rows = 1;
        budget--;
        rows++;
        i++;
    }
    /* prompt chunks of running sequences */
    for (uint32_t i = 0; i < e->n_running && budget > 0; i++) {
        seq *s = e->running[i];
        uint32_t need = s->n_tokens - s->n_computed;
        if (s->lane != L || need <= 1 || s->step_rows) continue;
        uint32_t k = need < budget ? need : budget;
        uint32_t upto = ensure_blocks(e, s, s->n_computed + k, false);
        if (upto <= s->n_computed) continue;
        s->step_rows = upto - s->n_computed;
        budget -= s->step_rows;
        rows += s->step_rows;
    }
    /* admissions, first come first served: the whole remaining prompt must
     * fit beside what running sequences' prompts still need */
    uint32_t promised = 0;
    for (uint32_t i = 0; i < e->n_running; i++) promised += blocks_short(e, e->running[i], e->running[i]->n_tokens);
    while (budget > 0 && e->n_running < e->p.n_parallel && e->wait_head && lane_has_room(e, L)) {
        seq *s = e->wait_head;
        uint32_t hit_blocks;
        uint32_t unpinned = prefix_hits_unpinned(e, s, &hit_blocks);
        uint32_t total_blocks = (s->n_tokens + e->p.kv_block - 1) / e->p.kv_block;
        uint32_t avail = fitlm_kv_pool_available(e->kv);
        if (avail < unpinned + promised || avail - unpinned - promised < total_blocks - hit_blocks) {
            if (e->n_running > 0 || rows > 0) break;
            /* nothing runs: only cached prefixes hold the pool, which alloc evicts */
        }
        wait_pop(e);
        uint32_t found = seq_prefix_lookup(e, s);
        if (!s->admitted_once) {
            s->n_cached = found;
            s->admitted_once = true;
            pthread_mutex_lock(&e->mu);
            e->n_queued--;
            e->stats.prefix_query_tokens += s->n_prompt;
            e->stats.prefix_hit_tokens += found;
            pthread_mutex_unlock(&e->mu);
        }
        s->admit_order = ++e->admit_counter;
        s->step_rows = 0;
        s->step_logit = -1;
        s->lane = L;
        e->running[e->n_running++] = s;
        uint32_t need = s->n_tokens - s->n_computed;
        uint32_t k = need < budget ? need : budget;
        uint32_t upto = ensure_blocks(e, s, s->n_computed + k, false);
        if (upto > s->n_computed) {
            s->step_rows = upto - s->n_computed;
            budget -= s->step_rows;
            rows += s->step_rows;
        }
        promised += blocks_short(e, s, s->n_tokens);
    }
    return rows;
}

/* log-softmax figures of a logit row: fills e->top with the n_top most likely
 * tokens and their logprobs; returns the log of the normalizer (a token's
 * logprob is its logit minus it). */
static double logprobs(fitlm_engine *e, const float *lg, int n_top) {
    double lz = fitlm_logsumexp(lg, e->vocab);
    int n = 0;
    for (uint32_t i = 0; i < e->vocab && n_top > 0; i++) {
        float v = lg[i];
        if (n == n_top && v <= e->top[n - 1].logprob) continue;
        int at = n < n_top ? n++ : n - 1;
        while (at > 0 && e->top[at - 1].logprob < v) {
            e->top[at] = e->top[at - 1];
            at--;
        }
        e->top[at].id = (int32_t)i;
        e->top[at].logprob = v;
    }
    for (int i = 0; i < n; i++) e->top[i].logprob = (float)(e->top[i].logprob - lz);
    return lz;
}

static bool is_eog(const fitlm_engine *e, int32_t id) {
    if (e->tok) return fitlm_tokenizer_is_eog(e->tok, id);
    return id == 1 || id == 2; /* llama2.c: BOS delimits stories, EOS */
}

/* Every sequence of lane L's step in flight ends with an error event. */
static void lane_fail(fitlm_engine *e, const char *msg) {
    for (uint32_t i = e->n_running; i-- > 0;) {
        seq *s = e->running[i];
        if (!s->inflight) continue;
        running_remove(e, i);
        seq_finish(e, s, FITLM_FINISH_ERROR, msg);
    }
    for (uint32_t l = 0; l < e->n_lanes; l++) e->lane_busy[l] = false;
}

/* Builds lane L's step from its scheduled sequences (running order, each its
 * chunk) and submits it: its sequences are in flight until lane_collect. */
static int lane_submit(fitlm_engine *e, uint32_t L, fitlm_error *err) {
    uint32_t t = 0, n_logits = 0, n_seqs = 0, bs_shift = (uint32_t)e->kv->block_shift;
    bool others_busy = false;
    for (uint32_t l = 0; l < e->n_lanes; l++) others_busy |= l != L && e->lane_busy[l];
    for (uint32_t i = 0; i < e->n_running; i++) {
        seq *s = e->running[i];
        if (s->lane != L || s->step_rows == 0) continue;
        uint32_t si = n_seqs++;
        e->b_tables[si] = s->blocks;
        for (uint32_t k = 0; k < s->step_rows; k++, t++) {
            uint32_t p = s->n_computed + k;
            e->b_ids[t] = s->tokens[p];
            e->b_pos[t] = (int32_t)p;
            e->b_seq[t] = (int32_t)si;
            e->b_slot[t] = ((int64_t)s->blocks[p >> bs_shift] << bs_shift) | (p & (e->p.kv_block - 1));
        }
        if (s->n_computed + s->step_rows == s->n_tokens) {
            s->step_logit = (int32_t)n_logits;
            e->b_rows[n_logits++] = (int32_t)(t - 1);
        }
        s->inflight = true;
    }
    /* with another lane's step in the pipeline every stage already has work:
     * a decode step goes through whole (cutting it would read the weights
     * twice); a prompt chunk is still cut (forward.c: micro_batches), so that
     * the next stage starts on it before the first is done */
    fitlm_batch b = {.n_tokens = t,
                     .ids = e->b_ids,
                     .pos = e->b_pos,
                     .seq = e->b_seq,
                     .slot = e->b_slot,
                     .block_table = e->b_tables,
                     .n_seqs = n_seqs,
                     .logit_rows = e->b_rows,
                     .n_logits = n_logits,
                     .n_micro = others_busy && t < FITLM_MICRO_BIG_ROWS ? 1 : 0};
    e->overlapped = others_busy;
    e->lane_busy[L] = true;
    e->lane_rows[L] = t;
    e->lane_logits[L] = n_logits;
    if (fitlm_forward_submit(e->fwd, &b, e->logits, err)) {
        lane_fail(e, err->msg);
        return -1;
    }
    return 0;
}

/* Adds a step's prompt rows and generated tokens so far to the engine's
 * statistics and zeroes them. */
static void flush_step_stats(fitlm_engine *e, uint64_t *prompt_rows, uint64_t *gen) {
    if (!*prompt_rows && !*gen) return;
    pthread_mutex_lock(&e->mu);
    e->stats.prompt_tokens += *prompt_rows;
    e->stats.generated_tokens += *gen;
    pthread_mutex_unlock(&e->mu);
    *prompt_rows = *gen = 0;
}

/* Receives lane L's logits and samples its sequences' next tokens. */
static int lane_collect(fitlm_engine *e, uint32_t L, fitlm_error *err) {
    fitlm_batch b = {.n_tokens = e->lane_rows[L], .n_logits = e->lane_logits[L]};
    e->lane_busy[L] = false;
    if (fitlm_forward_collect(e->fwd, &b, e->logits, err)) {
        e->lane_busy[L] = true;
        lane_fail(e, err->msg);
        return -1;
    }
    uint64_t prompt_rows = 0, gen = 0;
    for (uint32_t i = 0; i < e->n_running;) {
        seq *s = e->running[i];
        if (s->lane != L || !s->inflight) {
            i++;
            continue;
        }
        s->inflight = false;
        if (s->cancel_pending) {
            running_remove(e, i);
            seq_finish(e, s, FITLM_FINISH_CANCELLED, NULL);
            continue;
        }
        if (s->n_computed < s->n_prompt)
            prompt_rows += (s->n_computed + s->step_rows < s->n_prompt ? s->n_computed + s->step_rows : s->n_prompt) -
                           s->n_computed;
        s->n_computed += s->step_rows;
        seq_publish(e, s);
        seq_drop_window(e, s);
        if (s->step_logit < 0) {
            i++;
            continue;
        }
        float *lg = e->logits + (size_t)s->step_logit * e->vocab;
        float lp = 0.0f;
        int n_top = s->top_logprobs > 0 ? s->top_logprobs : 0;
        /* logprobs are the model's, before a constraint masks tokens (a chosen
         * token is never masked, so its logit is still the model's) */
        double lz = s->top_logprobs >= 0 ? logprobs(e, lg, n_top) : 0.0;
        if (s->constraint.mask && s->constraint.mask(s->constraint.state, lg, e->vocab) != 0) {
            running_remove(e, i);
            seq_finish(e, s, FITLM_FINISH_STOP, NULL);
            continue;
        }
        int32_t next = fitlm_sampler_sample(s->smp, lg);
        if (s->top_logprobs >= 0) lp = (float)(lg[next] - lz);
        fitlm_sampler_accept(s->smp, next);
        s->n_gen++;
        gen++;
        fitlm_finish_reason fin = FITLM_FINISH_NONE;
        const char *text = NULL;
        size_t len = 0;
        /* counted before the token reaches its client: a client that reads
         * /metrics right after its last token sees it */
        flush_step_stats(e, &prompt_rows, &gen);
        if (is_eog(e, next) && !s->ignore_eos) {
            fin = FITLM_FINISH_STOP;
            /* the end-of-generation token adds no text */
            emit(e, s, next, true, "", 0, lp, n_top, false, FITLM_FINISH_NONE, NULL);
        } else {
            s->tokens[s->n_tokens++] = next;
            bool stopped = false;
            if (s->text && fitlm_textout_push(s->text, next, &text, &len, &stopped, err)) {
                running_remove(e, i);
                seq_finish(e, s, FITLM_FINISH_ERROR, err->msg);
                continue;
            }
            bool complete = s->constraint.mask && s->constraint.accept(s->constraint.state, next);
            if (stopped || complete) fin = FITLM_FINISH_STOP;
            else if (s->n_gen >= s->max_tokens || s->n_tokens >= e->p.n_ctx) fin = FITLM_FINISH_LENGTH;
            emit(e, s, next, false, text, len, lp, n_top, false, FITLM_FINISH_NONE, NULL);
        }
        if (fin != FITLM_FINISH_NONE) {
            running_remove(e, i);
            seq_finish(e, s, fin, NULL);
            continue;
        }
        i++;
    }
    flush_step_stats(e, &prompt_rows, &gen);
    return 0;
}

static bool any_lane_busy(const fitlm_engine *e) {
    for (uint32_t l = 0; l < e->n_lanes; l++)
        if (e->lane_busy[l]) return true;
    return false;
}

/* Runs one step of the next lane: collects its step in flight (sampling its
 * sequences' tokens), schedules and submits its next one. With one lane (no
 * pipeline) a step is submitted and collected at once; with P lanes, P steps
 * are in flight and each stage computes a different one. Returns 1 if there
 * is work, 0 if idle, -1 with err on a backend or communication error (the
 * requests of the failed step then end with an error event). */
static int engine_step(fitlm_engine *e, fitlm_error *err) {
    uint32_t L = e->lane_next;
    e->lane_next = (L + 1) % e->n_lanes;
    bool did = false;
    if (e->lane_busy[L]) {
        if (lane_collect(e, L, err)) return -1;
        did = true;
    }
    take_inbox(e);
    uint32_t rows = schedule(e, L);
    /* a safety net: sequences stuck waiting for blocks with nothing else
     * scheduled (nor in flight) give way to the oldest, newest first */
    for (int tries = 0; rows == 0 && e->n_running > 1 && !any_lane_busy(e) && tries < 64; tries++) {
        preempt(e, e->n_running - 1);
        rows = schedule(e, L);
    }
    if (rows > 0) {
        if (lane_submit(e, L, err)) return -1;
        if (e->n_lanes == 1 && lane_collect(e, L, err)) return -1;
        did = true;
    }
    pthread_mutex_lock(&e->mu);
    if (rows > 0) e->stats.steps++;
    if (rows > 0 && e->overlapped) e->stats.steps_overlapped++;
    e->stats.n_running = e->n_running;
    uint32_t w = 0;
    for (seq *s = e->wait_head; s; s = s->next) w++;
    e->stats.n_waiting = w;
    e->stats.kv_blocks_used = fitlm_kv_pool_used(e->kv);
    e->stats.kv_blocks_cached = fitlm_kv_pool_cached(e->kv);
    pthread_mutex_unlock(&e->mu);
    return did || e->n_running > 0 || e->wait_head || any_lane_busy(e) ? 1 : 0;
}

static void refresh_idle_stats(fitlm_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stats.n_running = e->n_running;
    uint32_t w = 0;
    for (seq *s = e->wait_head; s; s = s->next) w++;
    e->stats.n_waiting = w;
    e->stats.kv_blocks_used = fitlm_kv_pool_used(e->kv);
    e->stats.kv_blocks_cached = fitlm_kv_pool_cached(e->kv);
    pthread_mutex_unlock(&e->mu);
}

/* Ends every waiting and running request with a CANCELLED event. */
static void cancel_all(fitlm_engine *e) {
    /* steps in flight are received first (the last stage sends their logits
     * whatever happens), their sequences then end here */
    for (uint32_t l = 0; l < e->n_lanes; l++)
        if (e->lane_busy[l]) {
            fitlm_batch b = {.n_tokens = e->lane_rows[l], .n_logits = e->lane_logits[l]};
            fitlm_error err;
            e->lane_busy[l] = false;
            if (fitlm_forward_collect(e->fwd, &b, e->logits, &err)) fprintf(stderr, "fitlm: error: %s\n", err.msg);
        }
    for (uint32_t i = 0; i < e->n_running; i++) e->running[i]->inflight = false;
    take_inbox(e);
    while (e->n_running) {
        seq *s = e->running[e->n_running - 1];
        e->n_running--;
        seq_finish(e, s, FITLM_FINISH_CANCELLED, NULL);
    }
    seq *s;
    while ((s = wait_pop(e))) {
        if (!s->admitted_once) {
            pthread_mutex_lock(&e->mu);
            e->n_queued--;
            pthread_mutex_unlock(&e->mu);
        }
        seq_finish(e, s, FITLM_FINISH_CANCELLED, NULL);
    }
    refresh_idle_stats(e);
}

int fitlm_engine_run_until_idle(fitlm_engine *e, fitlm_error *err) {
    for (;;) {
        int r = engine_step(e, err);
        if (r < 0) return -1;
        if (r == 0) break;
    }
    refresh_idle_stats(e);
    return 0;
}

static void *worker_main(void *arg) {
    fitlm_engine *e = arg;
    fitlm_error err;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->worker_exit && !e->inbox_head && !e->cancels && e->n_running == 0 && !e->wait_head &&
               !any_lane_busy(e))
            pthread_cond_wait(&e->cv, &e->mu);
        bool quit = e->worker_exit;
        pthread_mutex_unlock(&e->mu);
        if (quit) break;
        int r = engine_step(e, &err);
        if (r == 0) refresh_idle_stats(e);
        if (r < 0) fprintf(stderr, "fitlm: error: %s\n", err.msg);
    }
    cancel_all(e);
    return NULL;
}

int fitlm_engine_start(fitlm_engine *e, fitlm_error *err) {
    pthread_mutex_lock(&e->mu);
    if (e->worker_running || e->shutting_down) {
        pthread_mutex_unlock(&e->mu);
        return fitlm_fail(err, "the engine is already started or shut down");
    }
    int rc = pthread_create(&e->worker, NULL, worker_main, e);
    if (rc == 0) e->worker_running = true;
    pthread_mutex_unlock(&e->mu);
    return rc ? fitlm_fail(err, "cannot start the engine's thread") : 0;
}

void fitlm_engine_shutdown(fitlm_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->shutting_down = true;
    e->worker_exit = true;
    bool joining = e->worker_running;
    e->worker_running = false;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (joining) pthread_join(e->worker, NULL);
    else cancel_all(e);
}

int fitlm_engine_serve_steps(fitlm_engine *e, fitlm_error *err) {
    return fitlm_forward_serve(e->fwd, err);
}

void fitlm_engine_free(fitlm_engine *e) {
    if (!e) return;
    if (e->kv) fitlm_engine_shutdown(e);
    fitlm_forward_free(e->fwd);
    fitlm_kv_pool_free(e->be, e->kv);
    fitlm_weights_free(e->w);
    while (e->cancels) {
        cancel_req *c = e->cancels;
        e->cancels = c->next;
        free(c);
    }
    free(e->running);
    free(e->b_ids);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_rows);
    free(e->b_slot);
    free(e->b_tables);
    free(e->logits);
    free(e->hash_tokens);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
