/* The serving engine: many sequences generated at once over one model.
 *
 *     request (token ids, sampling, stop rules, callback)
 *        -> scheduler: which tokens of which sequences run this step
 *           (a token budget per step, a cap on running sequences, KV blocks)
 *        -> runtime: one forward pass over a batch of (token, position,
 *           sequence, cache slot) rows (runtime/batch.h)
 *        -> sampling, stop strings, UTF-8-safe detokenization
 *        -> the request's callback, one event per generated token
 *
 * The engine owns a worker thread (fitlm_engine_start) that runs steps while
 * there is work; submit/cancel/stats may be called from any thread. Results
 * do not depend on batching: a greedy request gives the same tokens alone or
 * among many (every kernel computes each row independently of the others).
 *
 * KV memory is a pool of blocks of `kv_block` tokens (runtime/kv_pool.h).
 * Full blocks are kept, keyed by the hash of their tokens and of everything
 * before them, so requests that share a prefix (a system prompt, a
 * conversation's history) reuse them. When the pool runs out while sequences
 * decode, the most recently admitted sequence is preempted (its blocks freed,
 * its tokens recomputed later): the engine never exceeds its budget and never
 * fails a request for want of memory once it was admitted.
 */
#ifndef FITLM_ENGINE_ENGINE_H
#define FITLM_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct fitlm_engine fitlm_engine;

typedef struct fitlm_engine_params {
    uint32_t n_ctx;            /* most positions one sequence may reach (-c); 0 = min(model, 4096) */
    uint32_t kv_block;         /* tokens per KV block (--kv-block; default 16) */
    uint64_t kv_mem_bytes;     /* KV pool budget (--kv-mem); 0 = n_parallel full contexts */
    int kv_type;               /* FITLM_TYPE_F16 (default), F32 or Q8_0 */
    uint32_t n_parallel;       /* most sequences running at once (-np; default 4) */
    uint32_t max_batch_tokens; /* tokens per step: decode tokens + prompt chunks (default 512) */
    uint32_t max_queue;        /* requests waiting before submit answers BUSY (default 256) */
    bool no_prefix_cache;      /* true: never reuse blocks across requests */
    struct fitlm_parallel *par; /* distributed run (parallel/parallel.h), borrowed; NULL: one process */
} fitlm_engine_params;

fitlm_engine_params fitlm_engine_params_default(void);

typedef enum fitlm_finish_reason {
    FITLM_FINISH_NONE = 0,  /* not finished (a token event) */
    FITLM_FINISH_STOP,      /* an end-of-generation token or a stop string */
    FITLM_FINISH_LENGTH,    /* max_tokens reached, or the context is full */
    FITLM_FINISH_CANCELLED, /* fitlm_engine_cancel, or the engine shut down */
    FITLM_FINISH_ERROR,     /* see fitlm_gen_event.error */
} fitlm_finish_reason;

/* "stop", "length", "cancelled", "error" (OpenAI's finish_reason for the first two). */
const char *fitlm_finish_reason_name(fitlm_finish_reason r);

#define FITLM_MAX_TOP_LOGPROBS 20

typedef struct fitlm_top_logprob {
    int32_t id;
    float logprob; /* natural log of the probability under the model's distribution (before sampling filters) */
} fitlm_top_logprob;

/* One event of a request, passed to its callback. Pointers are valid only
 * during the call. */
typedef struct fitlm_gen_event {
    uint64_t id;         /* the request */
    int32_t token;       /* the generated token this event reports, or -1 (a final event carries no token) */
    const char *text;    /* new output text: whole UTF-8 characters only; text that could still become a
                            stop string is held back until it cannot (may be empty) */
    size_t text_len;
    bool eog;            /* `token` is an end-of-generation token: it adds no text, the done event follows */
    float logprob;       /* of `token` (when the request asked for logprobs) */
    int n_top;           /* entries in top (0 unless top_logprobs > 0) */
    const fitlm_top_logprob *top;
    bool done;           /* the last event of this request: nothing follows */
    fitlm_finish_reason finish; /* set when done */
    const char *error;   /* FITLM_FINISH_ERROR: what went wrong */
    uint32_t n_prompt;   /* prompt tokens */
    uint32_t n_cached;   /* prompt tokens served from the prefix cache */
    uint32_t n_completion; /* tokens generated so far (this one included) */
} fitlm_gen_event;

/* Called on the engine's worker thread (or, with fitlm_engine_run_until_idle,
 * on the thread running it). It must return quickly and must not call
 * fitlm_engine_* functions other than fitlm_engine_cancel. */
typedef void (*fitlm_gen_callback)(void *user, const fitlm_gen_event *ev);

/* A constraint on what a request may generate (structured output: a JSON
 * schema, a grammar). Before each token is sampled, mask() sets the logit of
 * every token that cannot continue a valid output to -INFINITY; after it is
 * chosen, accept() advances over it. Both run on the engine's thread. When
 * accept() reports the output complete, the request finishes with STOP (as on
 * an end-of-generation token). The engine owns `state` once submit succeeded
 * and calls free_state(state) exactly once when the request ends; if submit
 * fails, the caller keeps it. */
typedef struct fitlm_token_constraint {
    void *state;
    /* 0, or -1 when no token can come next (the request then ends with STOP). */
    int (*mask)(void *state, float *logits, uint32_t vocab);
    /* true: the output is complete. */
    bool (*accept)(void *state, int32_t id);
    void (*free_state)(void *state);
} fitlm_token_constraint;

typedef struct fitlm_request {
    const int32_t *prompt;       /* token ids (copied by submit); at least one */
    uint32_t n_prompt;
    uint32_t max_tokens;         /* tokens to generate at most; 0 = until the context is full */
    fitlm_sampler_params sampling;
    const char *const *stop;     /* stop strings (copied by submit); the text ends before the first match */
    size_t n_stop;
    int top_logprobs;            /* -1: no logprobs; 0..FITLM_MAX_TOP_LOGPROBS: logprob of each token and this
                                    many alternatives */
    bool ignore_eos;             /* keep going past end-of-generation tokens */
    fitlm_token_constraint constraint; /* optional (mask NULL: none) */
    fitlm_gen_callback cb;       /* required */
    void *user;                  /* passed to cb; must stay valid until the done event */
} fitlm_request;

/* What fitlm_engine_submit returns besides 0. */
enum {
    FITLM_ENGINE_EINVAL = -1,   /* the request can never run (prompt + max_tokens beyond the context or the
                                   whole pool, a bad id or parameter): HTTP 400 */
    FITLM_ENGINE_EBUSY = -2,    /* the waiting queue is full: HTTP 503 with Retry-After */
    FITLM_ENGINE_ESHUTDOWN = -3 /* the engine is shutting down: HTTP 503 */
};

/* Creates the engine: prepares the weights on the backend (once, shared by
 * every sequence), sizes the KV pool and the step scratch. The model, the
 * tokenizer (NULL: ids only, no text in events, stop strings refused) and the
 * backend must outlive the engine. Caller frees with fitlm_engine_free(). */
fitlm_engine *fitlm_engine_new(const fitlm_model *m, const fitlm_tokenizer *tok, fitlm_backend *be,
                               const fitlm_engine_params *p, fitlm_error *err);

/* Stops the worker (as fitlm_engine_shutdown) and frees everything. */
void fitlm_engine_free(fitlm_engine *e);

/* A non-root rank of a distributed run: evaluates the root engine's steps
 * (fitlm_forward_serve) until the root's engine is freed. 0, or -1 with err. */
int fitlm_engine_serve_steps(fitlm_engine *e, fitlm_error *err);

/* Starts the worker thread. 0 or -1 with err. */
int fitlm_engine_start(fitlm_engine *e, fitlm_error *err);

/* Refuses new requests (ESHUTDOWN), ends every waiting and running request
 * with a CANCELLED done event, and joins the worker. Idempotent. */
void fitlm_engine_shutdown(fitlm_engine *e);

/* Queues a request. On success returns 0 and sets *id (never 0); on failure
 * one of FITLM_ENGINE_E* with err set, and the callback is never called. */
int fitlm_engine_submit(fitlm_engine *e, const fitlm_request *r, uint64_t *id, fitlm_error *err);

/* Ends a request early: its blocks are freed and its callback receives a
 * CANCELLED done event (unless it already had its done event). Asynchronous
 * when the worker runs; unknown or finished ids are ignored. */
void fitlm_engine_cancel(fitlm_engine *e, uint64_t id);

/* Without a worker thread: runs steps on the calling thread until no request
 * is waiting or running (the CLI's way). 0, or -1 with err on a backend error. */
int fitlm_engine_run_until_idle(fitlm_engine *e, fitlm_error *err);

typedef struct fitlm_engine_stats {
    uint32_t n_running, n_waiting;
    uint32_t kv_blocks_total;   /* blocks in the pool */
    uint32_t kv_blocks_used;    /* held by running sequences */
    uint32_t kv_blocks_cached;  /* free, but holding a reusable prefix */
    uint32_t kv_block_tokens;   /* tokens per block */
    uint64_t kv_pool_bytes;
    uint64_t prefix_query_tokens; /* prompt tokens looked up in the prefix cache */
    uint64_t prefix_hit_tokens;   /* of which found */
    uint64_t preemptions;
    uint64_t prompt_tokens;     /* prompt tokens computed (cache hits excluded) */
    uint64_t generated_tokens;
    uint64_t steps;
    uint64_t steps_overlapped; /* pipeline parallel: steps submitted while another lane's step was in flight */
    uint64_t requests_finished[5]; /* by fitlm_finish_reason */
} fitlm_engine_stats;

void fitlm_engine_get_stats(fitlm_engine *e, fitlm_engine_stats *s);

/* Memory the engine holds (weights, KV pool, scratch), in the one-sequence
 * runtime's report format (n_ctx: per sequence; n_ubatch: tokens per step). */
void fitlm_engine_get_memory(const fitlm_engine *e, fitlm_runtime_memory *out);

/* The context limit per sequence, and the vocabulary size. */
uint32_t fitlm_engine_n_ctx(const fitlm_engine *e);
uint32_t fitlm_engine_vocab(const fitlm_engine *e);

/* Sequences of n_tokens the pool holds at once (the maximum concurrency vLLM
 * prints for the configured context). */
double fitlm_engine_max_concurrency(const fitlm_engine *e, uint32_t n_tokens);

#endif
