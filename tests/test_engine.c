/* The serving engine on the real stories260K model (llama2.c's reference
 * checkpoint in ../shared):
 *   - batching invariance: 24 greedy requests of different prompt and output
 *     lengths give, run all together (chunked prefill, 16 at a time), exactly
 *     the tokens each gives alone, and exactly the tokens of the one-sequence
 *     runtime's greedy loop (argmax of fitlm_runtime_eval's logits);
 *   - the same with a sliding window set on the model (blocks that fall out of
 *     the window are given back), against the one-sequence runtime;
 *   - prefix reuse: a request repeated finds its prompt's full blocks in the
 *     cache and gives bit-identical logprobs;
 *   - preemption: a pool far too small for the load preempts and recomputes,
 *     and every request still gives its tokens; every block is free at the end;
 *   - cancel, submission errors (too long, queue full, bad ids, bad sampler
 *     values), and the worker thread with shutdown.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "engine/engine.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "runtime/runtime.h"

#define NREQ 24
#define MAXGEN 40

typedef struct result {
    int32_t tokens[MAXGEN + 1];
    float logprob[MAXGEN + 1];
    float top0[MAXGEN + 1];
    int n;
    bool done;
    fitlm_finish_reason finish;
    uint32_t n_cached, n_completion, n_prompt;
} result;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static void on_event(void *user, const fitlm_gen_event *ev) {
    result *r = user;
    pthread_mutex_lock(&g_mu);
    if (ev->token >= 0 && r->n <= MAXGEN) {
        r->tokens[r->n] = ev->token;
        r->logprob[r->n] = ev->logprob;
        r->top0[r->n] = ev->n_top > 0 ? ev->top[0].logprob : NAN;
        r->n++;
    }
    if (ev->done) {
        r->done = true;
        r->finish = ev->finish;
        r->n_cached = ev->n_cached;
        r->n_completion = ev->n_completion;
        r->n_prompt = ev->n_prompt;
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);
}

/* prompt i: BOS then a deterministic walk over ids 3..258 (byte tokens), of
 * length 1 + (i * 7) % 37; outputs 5 + (i * 11) % 35 tokens */
static uint32_t make_prompt(int i, int32_t *p) {
    uint32_t n = 1 + (uint32_t)(i * 7) % 37;
    p[0] = 1;
    for (uint32_t k = 1; k < n; k++) p[k] = 3 + (int32_t)((i * 31 + k * 17) % 256);
    return n;
}

static uint32_t gen_len(int i) {
    return 5 + (uint32_t)(i * 11) % 35;
}

static fitlm_request greedy_request(const int32_t *prompt, uint32_t n, uint32_t max_tokens, result *r) {
    fitlm_request q = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .top_logprobs = 2,
                       .ignore_eos = true, .cb = on_event, .user = r};
    q.sampling = fitlm_sampler_params_default();
    q.sampling.temp = 0.0f;
    return q;
}

/* greedy tokens from the one-sequence runtime */
static int runtime_greedy(fitlm_model *m, fitlm_backend *be, const int32_t *prompt, uint32_t n, uint32_t max_tokens,
                          int32_t *out) {
    fitlm_error err;
    fitlm_runtime_params p = fitlm_runtime_params_default();
    p.n_ctx = 256;
    p.kv_type = FITLM_TYPE_F32; /* as the engines below */
    fitlm_runtime *rt = fitlm_runtime_new(m, be, &p, &err);
    if (!rt) return -1;
    uint32_t V = fitlm_runtime_vocab(rt);
    float *lg = malloc(V * sizeof *lg);
    int rc = fitlm_runtime_eval(rt, prompt, n, lg, false, &err);
    for (uint32_t k = 0; k < max_tokens && rc == 0; k++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = (int32_t)v;
        out[k] = best;
        if (k + 1 < max_tokens) rc = fitlm_runtime_eval(rt, &best, 1, lg, false, &err);
    }
    free(lg);
    fitlm_runtime_free(rt);
    return rc;
}

static fitlm_engine *make_engine(fitlm_model *m, fitlm_backend *be, uint32_t n_parallel, uint32_t batch,
                                 uint64_t kv_mem) {
    fitlm_engine_params ep = fitlm_engine_params_default();
    ep.n_ctx = 256;
    ep.n_parallel = n_parallel;
    ep.max_batch_tokens = batch;
    ep.kv_mem_bytes = kv_mem;
    ep.kv_type = FITLM_TYPE_F32;
    fitlm_error err;
    fitlm_engine *e = fitlm_engine_new(m, NULL, be, &ep, &err);
    CHECK(e != NULL, "engine: %s", e ? "" : err.msg);
    return e;
}

static void expect_all_free(fitlm_engine *e, const char *what) {
    fitlm_engine_stats st;
    fitlm_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0,
          "%s: afterwards used %u running %u waiting %u", what, st.kv_blocks_used, st.n_running, st.n_waiting);
}

static void test_invariance(fitlm_model *m, fitlm_backend *be, const char *label) {
    static int32_t prompts[NREQ][64];
    static uint32_t plen[NREQ];
    static result alone[NREQ], together[NREQ];
    for (int i = 0; i < NREQ; i++) plen[i] = make_prompt(i, prompts[i]);
    fitlm_error err;
    /* alone: one at a time through an engine that runs one sequence */
    fitlm_engine *e1 = make_engine(m, be, 1, 512, 0);
    if (!e1) return;
    for (int i = 0; i < NREQ; i++) {
        memset(&alone[i], 0, sizeof alone[i]);
        fitlm_request q = greedy_request(prompts[i], plen[i], gen_len(i), &alone[i]);
        uint64_t id;
        CHECK(fitlm_engine_submit(e1, &q, &id, &err) == 0, "submit: %s", err.msg);
        CHECK(fitlm_engine_run_until_idle(e1, &err) == 0, "run");
        CHECK(alone[i].done && alone[i].finish == FITLM_FINISH_LENGTH && alone[i].n == (int)gen_len(i),
              "%s alone %d: done %d finish %d n %d", label, i, alone[i].done, alone[i].finish, alone[i].n);
    }
    expect_all_free(e1, "alone");
    fitlm_engine_free(e1);
    /* together: 16 running at once, 48 tokens per step (prompts in chunks) */
    fitlm_engine *e = make_engine(m, be, 16, 48, 0);
    if (!e) return;
    for (int i = 0; i < NREQ; i++) {
        memset(&together[i], 0, sizeof together[i]);
        fitlm_request q = greedy_request(prompts[i], plen[i], gen_len(i), &together[i]);
        uint64_t id;
        CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0, "submit: %s", err.msg);
    }
    CHECK(fitlm_engine_run_until_idle(e, &err) == 0, "run");
    int same = 0, same_rt = 0;
    for (int i = 0; i < NREQ; i++) {
        bool eq = together[i].done && together[i].n == alone[i].n &&
                  !memcmp(together[i].tokens, alone[i].tokens, sizeof(int32_t) * (size_t)alone[i].n) &&
                  !memcmp(together[i].logprob, alone[i].logprob, sizeof(float) * (size_t)alone[i].n);
        same += eq;
        int32_t ref[MAXGEN];
        CHECK(runtime_greedy(m, be, prompts[i], plen[i], gen_len(i), ref) == 0, "runtime greedy");
        same_rt += !memcmp(ref, alone[i].tokens, sizeof(int32_t) * gen_len(i));
    }
    CHECK(same == NREQ, "%s: %d of %d requests give the same tokens and logprobs together as alone", label, same,
          NREQ);
    CHECK(same_rt == NREQ, "%s: %d of %d requests give the one-sequence runtime's greedy tokens", label, same_rt,
          NREQ);
    fitlm_engine_stats st;
    fitlm_engine_get_stats(e, &st);
    CHECK(st.generated_tokens > 0 && st.steps < 200, "%s: %llu steps for %d requests (batched)", label,
          (unsigned long long)st.steps, NREQ);
    expect_all_free(e, label);
    fitlm_engine_free(e);
}

static void test_prefix_reuse(fitlm_model *m, fitlm_backend *be) {
    fitlm_engine *e = make_engine(m, be, 4, 512, 0);
    if (!e) return;
    int32_t prompt[70];
    prompt[0] = 1;
    for (int k = 1; k < 70; k++) prompt[k] = 3 + (k * 13) % 200;
    result a = {0}, b = {0};
    fitlm_error err;
    uint64_t id;
    fitlm_request q = greedy_request(prompt, 70, 12, &a);
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0 && fitlm_engine_run_until_idle(e, &err) == 0, "first");
    q.user = &b;
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0 && fitlm_engine_run_until_idle(e, &err) == 0, "second");
    CHECK(a.n_cached == 0 && b.n_cached == 64, "prefix cache: first found %u, second %u tokens (expect 0, 64)",
          a.n_cached, b.n_cached);
    CHECK(a.n == 12 && b.n == 12 && !memcmp(a.tokens, b.tokens, sizeof a.tokens) &&
              !memcmp(a.logprob, b.logprob, 12 * sizeof(float)) && !memcmp(a.top0, b.top0, 12 * sizeof(float)),
          "reused prefix gives bit-identical tokens and logprobs");
    bool lp_ok = true;
    for (int k = 0; k < 12; k++) lp_ok &= a.logprob[k] <= 0.0f && fabsf(a.logprob[k] - a.top0[k]) < 1e-6f;
    CHECK(lp_ok, "greedy token's logprob is the top logprob and <= 0");
    fitlm_engine_stats st;
    fitlm_engine_get_stats(e, &st);
    CHECK(st.prefix_hit_tokens == 64 && st.prefix_query_tokens == 140, "stats: hits %llu of %llu",
          (unsigned long long)st.prefix_hit_tokens, (unsigned long long)st.prefix_query_tokens);
    CHECK(st.kv_blocks_cached > 0, "full blocks stay cached after the requests end (%u)", st.kv_blocks_cached);
    /* a different continuation of the same first block: a partial hit */
    result c = {0};
    prompt[40] = 5;
    q.user = &c;
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0 && fitlm_engine_run_until_idle(e, &err) == 0, "third");
    CHECK(c.n_cached == 32, "a prompt that differs at position 40 reuses the first 32 tokens (%u)", c.n_cached);
    expect_all_free(e, "prefix");
    fitlm_engine_free(e);
}

static void test_preemption(fitlm_model *m, fitlm_backend *be) {
    /* 12 requests of up to 37 + 39 tokens; a pool of 14 blocks of 16 tokens
     * (about 3 full sequences) */
    const fitlm_hparams *hp = &m->hp;
    uint64_t block = 2ull * hp->n_layers * 16 * hp->n_kv_heads * hp->head_dim * 4;
    fitlm_engine *e = make_engine(m, be, 12, 64, 14 * block);
    fitlm_engine *ref = make_engine(m, be, 1, 512, 0);
    if (!e || !ref) return;
    static int32_t prompts[12][64];
    static result got[12], want[12];
    fitlm_error err;
    uint64_t id;
    for (int i = 0; i < 12; i++) {
        uint32_t n = make_prompt(i + 3, prompts[i]);
        memset(&got[i], 0, sizeof got[i]);
        memset(&want[i], 0, sizeof want[i]);
        fitlm_request q = greedy_request(prompts[i], n, gen_len(i + 3), &want[i]);
        CHECK(fitlm_engine_submit(ref, &q, &id, &err) == 0 && fitlm_engine_run_until_idle(ref, &err) == 0, "ref");
        q.user = &got[i];
        CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0, "submit: %s", err.msg);
    }
    CHECK(fitlm_engine_run_until_idle(e, &err) == 0, "run");
    int same = 0;
    for (int i = 0; i < 12; i++)
        same += got[i].done && got[i].n == want[i].n && !memcmp(got[i].tokens, want[i].tokens, sizeof(int32_t) * 40);
    fitlm_engine_stats st;
    fitlm_engine_get_stats(e, &st);
    CHECK(st.preemptions > 0, "the small pool preempted (%llu)", (unsigned long long)st.preemptions);
    CHECK(same == 12, "after preemption %d of 12 requests give their tokens", same);
    CHECK(st.kv_blocks_total == 14, "pool of %u blocks", st.kv_blocks_total);
    expect_all_free(e, "preemption");
    fitlm_engine_free(e);
    fitlm_engine_free(ref);
}

static void test_errors_and_cancel(fitlm_model *m, fitlm_backend *be) {
    fitlm_engine_params ep = fitlm_engine_params_default();
    ep.n_ctx = 64;
    ep.max_queue = 2;
    fitlm_error err;
    fitlm_engine *e = fitlm_engine_new(m, NULL, be, &ep, &err);
    CHECK(e != NULL, "engine");
    if (!e) return;
    int32_t p[80];
    for (int k = 0; k < 80; k++) p[k] = 1 + k;
    result r = {0};
    uint64_t id;
    fitlm_request q = greedy_request(p, 64, 1, &r);
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_EINVAL && strstr(err.msg, "maximum context length"),
          "a prompt as long as the context is refused: %s", err.msg);
    q = greedy_request(p, 30, 40, &r);
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_EINVAL, "prompt + max_tokens > context refused");
    p[3] = 512;
    q = greedy_request(p, 10, 4, &r);
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_EINVAL && strstr(err.msg, "vocabulary"),
          "an id outside the vocabulary is refused: %s", err.msg);
    p[3] = 4;
    q.sampling.top_p = 2.0f;
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_EINVAL, "top_p 2 refused");
    q = greedy_request(p, 10, 4, &r);
    const char *stops[1] = {"x"};
    q.stop = stops;
    q.n_stop = 1;
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_EINVAL, "stop strings without a tokenizer refused");
    /* queue full */
    result a = {0}, b = {0}, c = {0};
    q = greedy_request(p, 10, 20, &a);
    uint64_t ida, idb, idc;
    CHECK(fitlm_engine_submit(e, &q, &ida, &err) == 0, "queue 1");
    q.user = &b;
    CHECK(fitlm_engine_submit(e, &q, &idb, &err) == 0, "queue 2");
    q.user = &c;
    CHECK(fitlm_engine_submit(e, &q, &idc, &err) == FITLM_ENGINE_EBUSY, "queue full: %s", err.msg);
    /* cancel one waiting request; the other runs */
    fitlm_engine_cancel(e, ida);
    CHECK(fitlm_engine_run_until_idle(e, &err) == 0, "run");
    CHECK(a.done && a.finish == FITLM_FINISH_CANCELLED && a.n == 0, "cancelled before running");
    CHECK(b.done && b.finish == FITLM_FINISH_LENGTH && b.n == 20, "the other completes");
    expect_all_free(e, "cancel");
    fitlm_engine_free(e);
}

/* The worker thread: requests from this thread, done events awaited,
 * a cancel mid-generation, then shutdown ending a running request. */
static void test_worker(fitlm_model *m, fitlm_backend *be) {
    fitlm_engine *e = make_engine(m, be, 4, 64, 0);
    if (!e) return;
    fitlm_error err;
    CHECK(fitlm_engine_start(e, &err) == 0, "start");
    int32_t p[8] = {1, 40, 41, 42, 43, 44, 45, 46};
    static result r[6];
    uint64_t ids[6];
    for (int i = 0; i < 6; i++) {
        memset(&r[i], 0, sizeof r[i]);
        fitlm_request q = greedy_request(p, 8, i == 5 ? 240 : 30, &r[i]);
        CHECK(fitlm_engine_submit(e, &q, &ids[i], &err) == 0, "submit");
    }
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 5; i++)
        while (!r[i].done) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    bool same = true;
    for (int i = 1; i < 5; i++) same &= r[i].n == 30 && !memcmp(r[i].tokens, r[0].tokens, 30 * sizeof(int32_t));
    CHECK(same, "five identical requests on the worker thread give identical tokens");
    fitlm_engine_shutdown(e);
    CHECK(r[5].done && (r[5].finish == FITLM_FINISH_CANCELLED || r[5].finish == FITLM_FINISH_LENGTH),
          "shutdown ends the running request (finish %d)", r[5].finish);
    uint64_t id;
    fitlm_request q = greedy_request(p, 8, 4, &r[0]);
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == FITLM_ENGINE_ESHUTDOWN, "no submissions after shutdown");
    expect_all_free(e, "worker");
    fitlm_engine_free(e);
}

/* A constraint that allows only even ids 10..40 and completes after 5 tokens. */
typedef struct even_state {
    int n, frees;
    bool bad;
} even_state;

static int even_mask(void *st, float *lg, uint32_t vocab) {
    (void)st;
    for (uint32_t v = 0; v < vocab; v++)
        if (v < 10 || v > 40 || v % 2) lg[v] = -INFINITY;
    return 0;
}

static bool even_accept(void *st, int32_t id) {
    even_state *e = st;
    if (id < 10 || id > 40 || id % 2) e->bad = true;
    return ++e->n == 5;
}

static void even_free(void *st) {
    ((even_state *)st)->frees++;
}

static void test_constraint(fitlm_model *m, fitlm_backend *be) {
    fitlm_engine *e = make_engine(m, be, 2, 64, 0);
    if (!e) return;
    int32_t p[4] = {1, 50, 51, 52};
    result r = {0};
    even_state st = {0};
    fitlm_request q = greedy_request(p, 4, 30, &r);
    q.sampling.temp = 1.0f; /* sampled: the mask must hold for any draw */
    q.sampling.seed = 7;
    q.constraint = (fitlm_token_constraint){.state = &st, .mask = even_mask, .accept = even_accept,
                                            .free_state = even_free};
    fitlm_error err;
    uint64_t id;
    CHECK(fitlm_engine_submit(e, &q, &id, &err) == 0 && fitlm_engine_run_until_idle(e, &err) == 0, "constrained");
    CHECK(r.done && r.finish == FITLM_FINISH_STOP && r.n == 5 && st.n == 5 && !st.bad,
          "a constraint limits the tokens and ends the request when complete (finish %d, n %d, bad %d)", r.finish,
          r.n, st.bad);
    CHECK(st.frees == 1, "the engine frees the constraint's state once (%d)", st.frees);
    bool lp_ok = true;
    for (int k = 0; k < r.n; k++) lp_ok &= r.logprob[k] <= 0.0f && isfinite(r.logprob[k]);
    CHECK(lp_ok, "logprobs of constrained tokens are the model's (finite, <= 0)");
    expect_all_free(e, "constraint");
    fitlm_engine_free(e);
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", shared);
    fitlm_error err;
    fitlm_model *m = fitlm_model_load(path, &err);
    if (!m) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    fitlm_backend *be = fitlm_backend_new("cpu", 2, &err);
    CHECK(be != NULL, "backend");
    if (!be) return check_report();
    test_invariance(m, be, "stories260K");
    test_prefix_reuse(m, be);
    test_preemption(m, be);
    test_errors_and_cancel(m, be);
    test_worker(m, be);
    test_constraint(m, be);
    /* a sliding window of 24 positions (blocks behind it are given back) */
    m->hp.sliding_window = 24;
    test_invariance(m, be, "window 24");
    m->hp.sliding_window = 0;
    be->free(be);
    fitlm_model_free(m);
    return check_report();
}
