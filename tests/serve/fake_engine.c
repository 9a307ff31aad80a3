/* A test double of the serving engine (src/engine/engine.h) for the HTTP
 * layer's tests: deterministic, slow on demand, no model. Each request
 * generates its prompt's tokens again, cyclically (token i = prompt[i %
 * n_prompt]), one token per request per step, a step every
 * $FITLM_FAKE_STEP_MS milliseconds (default 2), with logprob -(i+1)/8 and
 * top alternatives id+1, id+2, ... It finishes with LENGTH after max_tokens
 * (0: at the context, FAKE_CTX), with STOP at the first stop string found in
 * its text, or CANCELLED. $FITLM_FAKE_LOAD_MS delays fitlm_engine_new (a model
 * that takes long to load). Its "KV blocks" are ceil(tokens / 16) per running
 * request out of 64, so a leak of a request shows in the stats as it would
 * with the real engine. A request's constraint (fitlm_token_constraint) is
 * not applied (the tokens stay the prompt's) but owned as the real engine owns
 * it: taken by a successful submit, free_state called once when the request
 * ends. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

#define FAKE_CTX 256
#define FAKE_BLOCKS 64
#define FAKE_BLOCK 16

typedef struct fake_req {
    uint64_t id;
    int32_t *prompt;
    uint32_t n_prompt, max_tokens, n_gen;
    char *stop[8];
    size_t n_stop;
    int top_logprobs;
    char *text; /* generated so far */
    size_t text_len;
    fitlm_gen_callback cb;
    void *user;
    bool cancel;
    fitlm_token_constraint constraint; /* owned once submitted (engine.h): free_state'd with the request */
    struct fake_req *next;
} fake_req;

struct fitlm_engine {
    const fitlm_tokenizer *tok;
    fitlm_engine_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t worker;
    bool started, stop, shut;
    fake_req *reqs;
    uint32_t n_reqs;
    uint64_t next_id, generated, steps, finished[5];
    int step_ms;
};

fitlm_engine_params fitlm_engine_params_default(void) {
    fitlm_engine_params p = {0};
    p.kv_block = FAKE_BLOCK;
    p.n_parallel = 4;
    p.max_batch_tokens = 512;
    p.max_queue = 256;
    return p;
}

const char *fitlm_finish_reason_name(fitlm_finish_reason r) {
    static const char *const names[] = {"none", "stop", "length", "cancelled", "error"};
    return (unsigned)r < 5 ? names[r] : "?";
}

fitlm_engine *fitlm_engine_new(const fitlm_model *m, const fitlm_tokenizer *tok, fitlm_backend *be,
                               const fitlm_engine_params *p, fitlm_error *err) {
    (void)m;
    (void)be;
    fitlm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    e->tok = tok;
    e->p = *p;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    const char *ms = getenv("FITLM_FAKE_STEP_MS");
    e->step_ms = ms ? atoi(ms) : 2;
    const char *load_ms = getenv("FITLM_FAKE_LOAD_MS"); /* a slow start: the server answers 503 meanwhile */
    if (load_ms && atoi(load_ms) > 0) {
        struct timespec ts = {atoi(load_ms) / 1000, (long)(atoi(load_ms) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return e;
}

static void free_req(fake_req *r) {
    if (r->constraint.free_state) r->constraint.free_state(r->constraint.state);
    free(r->prompt);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->text);
    free(r);
}

static uint32_t blocks_of(const fake_req *r) { return (r->n_prompt + r->n_gen + FAKE_BLOCK - 1) / FAKE_BLOCK; }

/* Emits one event for r (under e->mu: the callbacks run in order). Returns true when r finished. */
static bool step_req(fitlm_engine *e, fake_req *r) {
    fitlm_gen_event ev = {.id = r->id, .token = -1, .text = "", .n_prompt = r->n_prompt};
    fitlm_top_logprob top[FITLM_MAX_TOP_LOGPROBS];
    char piece_buf[256];
    if (r->cancel || e->stop) {
        ev.done = true;
        ev.finish = FITLM_FINISH_CANCELLED;
    } else {
        int32_t id = r->prompt[r->n_gen % r->n_prompt];
        r->n_gen++;
        ev.token = id;
        ev.logprob = -(float)r->n_gen / 8;
        ev.n_top = r->top_logprobs > 0 ? r->top_logprobs : 0;
        for (int k = 0; k < ev.n_top; k++) top[k] = (fitlm_top_logprob){id + k, -(float)(k + 1)};
        ev.top = top;
        size_t len = 0;
        const char *piece = e->tok ? fitlm_tokenizer_piece(e->tok, id, false, &len) : NULL;
        if (!piece || len >= sizeof piece_buf) len = 0;
        memcpy(piece_buf, piece ? piece : "", len);
        char *t = realloc(r->text, r->text_len + len + 1);
        if (t) {
            r->text = t;
            memcpy(t + r->text_len, piece_buf, len);
            r->text_len += len;
            t[r->text_len] = 0;
            ev.text = piece_buf;
            ev.text_len = len;
        }
        for (size_t i = 0; i < r->n_stop && r->text; i++) {
            char *hit = strstr(r->text, r->stop[i]);
            if (hit) { /* the text ends before the stop string */
                size_t keep = (size_t)(hit - r->text);
                size_t before = r->text_len - len;
                ev.text_len = keep > before ? keep - before : 0;
                ev.done = true;
                ev.finish = FITLM_FINISH_STOP;
            }
        }
        uint32_t limit = r->max_tokens ? r->max_tokens : FAKE_CTX - r->n_prompt;
        if (!ev.done && (r->n_gen >= limit || r->n_prompt + r->n_gen >= FAKE_CTX)) {
            ev.done = true;
            ev.finish = FITLM_FINISH_LENGTH;
        }
        e->generated++;
    }
    ev.n_completion = r->n_gen;
    if (ev.done) e->finished[ev.finish]++;
    r->cb(r->user, &ev);
    return ev.done;
}

static void *worker(void *arg) {
    fitlm_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->reqs && !e->stop) pthread_cond_wait(&e->cv, &e->mu);
        if (!e->reqs && e->stop) break;
        e->steps++;
        uint32_t running = 0;
        for (fake_req **pp = &e->reqs; *pp;) {
            fake_req *r = *pp;
            if (running >= e->p.n_parallel && !r->cancel && !e->stop) break; /* the rest wait */
            running++;
            if (step_req(e, r)) {
                *pp = r->next;
                e->n_reqs--;
                free_req(r);
            } else {
                pp = &r->next;
            }
        }
        pthread_mutex_unlock(&e->mu);
        struct timespec ts = {e->step_ms / 1000, (long)(e->step_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int fitlm_engine_start(fitlm_engine *e, fitlm_error *err) {
    if (pthread_create(&e->worker, NULL, worker, e)) return fitlm_fail(err, "cannot start the worker");
    e->started = true;
    return 0;
}

void fitlm_engine_shutdown(fitlm_engine *e) {
    pthread_mutex_lock(&e->mu);
    if (e->shut) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->shut = e->stop = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->worker, NULL);
    while (e->reqs) { /* no worker: end them here */
        fake_req *r = e->reqs;
        e->reqs = r->next;
        step_req(e, r);
        free_req(r);
    }
}

/* The test double runs in one process: there are no other ranks to serve. */
int fitlm_engine_serve_steps(fitlm_engine *e, fitlm_error *err) {
    return 0;
}

void fitlm_engine_free(fitlm_engine *e) {
    if (!e) return;
    fitlm_engine_shutdown(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int fitlm_engine_submit(fitlm_engine *e, const fitlm_request *rq, uint64_t *id, fitlm_error *err) {
    if (!rq->cb || rq->n_prompt == 0) return fitlm_fail(err, "bad request"), FITLM_ENGINE_EINVAL;
    if (rq->n_prompt + (uint64_t)rq->max_tokens > FAKE_CTX)
        return fitlm_fail(err, "the prompt (%u tokens) and max_tokens (%u) exceed the context of %u tokens",
                          rq->n_prompt, rq->max_tokens, FAKE_CTX),
               FITLM_ENGINE_EINVAL;
    fake_req *r = calloc(1, sizeof *r);
    if (!r) return fitlm_fail(err, "out of memory"), FITLM_ENGINE_EINVAL;
    r->prompt = malloc(rq->n_prompt * sizeof *r->prompt);
    memcpy(r->prompt, rq->prompt, rq->n_prompt * sizeof *r->prompt);
    r->n_prompt = rq->n_prompt;
    r->max_tokens = rq->max_tokens;
    r->top_logprobs = rq->top_logprobs;
    for (size_t i = 0; i < rq->n_stop && i < 8; i++) r->stop[r->n_stop++] = strdup(rq->stop[i]);
    r->cb = rq->cb;
    r->user = rq->user;
    pthread_mutex_lock(&e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        free_req(r); /* (the constraint is not taken yet: a failed submit leaves it to the caller) */
        return fitlm_fail(err, "the engine is shutting down"), FITLM_ENGINE_ESHUTDOWN;
    }
    if (e->n_reqs >= e->p.n_parallel + e->p.max_queue) {
        pthread_mutex_unlock(&e->mu);
        free_req(r);
        return fitlm_fail(err, "%u requests are waiting", e->p.max_queue), FITLM_ENGINE_EBUSY;
    }
    if (rq->constraint.mask) r->constraint = rq->constraint; /* ours from here on (the real engine's contract) */
    r->id = *id = ++e->next_id;
    fake_req **pp = &e->reqs;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
    e->n_reqs++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void fitlm_engine_cancel(fitlm_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    for (fake_req *r = e->reqs; r; r = r->next)
        if (r->id == id) r->cancel = true;
    pthread_mutex_unlock(&e->mu);
}

int fitlm_engine_run_until_idle(fitlm_engine *e, fitlm_error *err) {
    (void)e;
    return fitlm_fail(err, "the fake engine has no synchronous mode");
}

void fitlm_engine_get_memory(const fitlm_engine *e, fitlm_runtime_memory *out) {
    memset(out, 0, sizeof *out); /* the double holds no model memory */
    out->n_ctx = e->p.n_ctx;
    out->n_ubatch = e->p.max_batch_tokens;
}

void fitlm_engine_get_stats(fitlm_engine *e, fitlm_engine_stats *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&e->mu);
    uint32_t i = 0;
    for (fake_req *r = e->reqs; r; r = r->next, i++) {
        if (i < e->p.n_parallel) {
            s->n_running++;
            s->kv_blocks_used += blocks_of(r);
        } else {
            s->n_waiting++;
        }
    }
    s->kv_blocks_total = FAKE_BLOCKS;
    s->kv_block_tokens = FAKE_BLOCK;
    s->generated_tokens = e->generated;
    s->steps = e->steps;
    memcpy(s->requests_finished, e->finished, sizeof e->finished);
    pthread_mutex_unlock(&e->mu);
}

uint32_t fitlm_engine_n_ctx(const fitlm_engine *e) {
    (void)e;
    return FAKE_CTX;
}

uint32_t fitlm_engine_vocab(const fitlm_engine *e) { return e->tok ? (uint32_t)fitlm_tokenizer_vocab_size(e->tok) : 32000; }

double fitlm_engine_max_concurrency(const fitlm_engine *e, uint32_t n_tokens) {
    (void)e;
    return n_tokens ? (double)FAKE_BLOCKS * FAKE_BLOCK / n_tokens : 0;
}
