/* Prometheus text rendering of the server's and the engine's figures. */
#include "serve/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "serve/buf.h"

static const unsigned k_codes[SERVE_N_CODES] = {200, 400, 401, 404, 405, 408, 413, 422, 500, 503};

/* Seconds: token latencies on a CPU span sub-millisecond to many seconds. */
static const double k_latency_bounds[SERVE_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                                            0.1,   0.25,   0.5,   1.0,  2.5,  5.0,  10.0, 30.0};
static const double k_e2e_bounds[SERVE_HIST_BUCKETS] = {0.01, 0.025, 0.05, 0.1,  0.25,  0.5,   1.0,   2.5,
                                                        5.0,  10.0,  20.0, 40.0, 60.0, 120.0, 300.0, 600.0};

static void hist_init(serve_histogram *h, const double *bounds) {
    h->bounds = bounds;
    for (int i = 0; i <= SERVE_HIST_BUCKETS; i++) atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_us, 0);
}

void serve_metrics_init(serve_metrics *m) {
    for (int i = 0; i <= SERVE_N_CODES; i++) atomic_init(&m->http_by_code[i], 0);
    atomic_init(&m->streams_active, 0);
    hist_init(&m->ttft, k_latency_bounds);
    hist_init(&m->itl, k_latency_bounds);
    hist_init(&m->e2e, k_e2e_bounds);
}

void serve_metrics_count_status(serve_metrics *m, unsigned status) {
    int i = 0;
    while (i < SERVE_N_CODES && k_codes[i] != status) i++;
    atomic_fetch_add(&m->http_by_code[i], 1);
}

void serve_histogram_observe(serve_histogram *h, double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    int i = 0;
    while (i < SERVE_HIST_BUCKETS && seconds > h->bounds[i]) i++;
    atomic_fetch_add(&h->counts[i], 1);
    double us = seconds * 1e6;
    atomic_fetch_add(&h->sum_us, us > 1e15 ? (uint_fast64_t)1e15 : (uint_fast64_t)us);
}

static void render_hist(serve_buf *b, const char *name, const char *help, serve_histogram *h) {
    serve_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SERVE_HIST_BUCKETS; i++) {
        cum += atomic_load(&h->counts[i]);
        serve_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load(&h->counts[SERVE_HIST_BUCKETS]);
    serve_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    serve_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, (double)atomic_load(&h->sum_us) * 1e-6, name,
                     (unsigned long long)cum);
}

static void render_one(serve_buf *b, const char *name, const char *type, const char *help, double v) {
    serve_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *serve_metrics_render(serve_metrics *m, fitlm_engine *e, size_t *len) {
    serve_buf b = {0};
    serve_buf_str(&b, "# HELP fitlm_http_requests_total HTTP requests answered, by status code.\n"
                      "# TYPE fitlm_http_requests_total counter\n");
    for (int i = 0; i <= SERVE_N_CODES; i++) {
        if (i < SERVE_N_CODES)
            serve_buf_printf(&b, "fitlm_http_requests_total{code=\"%u\"} %llu\n", k_codes[i],
                             (unsigned long long)atomic_load(&m->http_by_code[i]));
        else
            serve_buf_printf(&b, "fitlm_http_requests_total{code=\"other\"} %llu\n",
                             (unsigned long long)atomic_load(&m->http_by_code[i]));
    }
    render_one(&b, "fitlm_http_streams_active", "gauge", "SSE responses being streamed.",
               (double)atomic_load(&m->streams_active));
    render_hist(&b, "fitlm_time_to_first_token_seconds", "Time from submitting a request to its first token.",
                &m->ttft);
    render_hist(&b, "fitlm_inter_token_latency_seconds", "Time between two tokens of one request.", &m->itl);
    render_hist(&b, "fitlm_e2e_request_latency_seconds", "Time from submitting a request to its end.", &m->e2e);
    if (e) {
        fitlm_engine_stats s;
        fitlm_engine_get_stats(e, &s);
        render_one(&b, "fitlm_num_requests_running", "gauge", "Sequences being computed.", s.n_running);
        render_one(&b, "fitlm_num_requests_waiting", "gauge", "Requests waiting to be admitted.", s.n_waiting);
        render_one(&b, "fitlm_kv_blocks_total", "gauge", "KV cache blocks in the pool.", s.kv_blocks_total);
        render_one(&b, "fitlm_kv_blocks_used", "gauge", "KV cache blocks held by running sequences.",
                   s.kv_blocks_used);
        render_one(&b, "fitlm_kv_blocks_free", "gauge", "KV cache blocks not held by any sequence.",
                   (double)(s.kv_blocks_total - (s.kv_blocks_used < s.kv_blocks_total ? s.kv_blocks_used
                                                                                      : s.kv_blocks_total)));
        render_one(&b, "fitlm_kv_blocks_cached", "gauge", "Free KV blocks holding a reusable prefix.",
                   s.kv_blocks_cached);
        render_one(&b, "fitlm_kv_block_tokens", "gauge", "Tokens per KV block.", s.kv_block_tokens);
        render_one(&b, "fitlm_kv_pool_bytes", "gauge", "Bytes of the KV pool.", (double)s.kv_pool_bytes);
        render_one(&b, "fitlm_kv_cache_usage_ratio", "gauge", "Fraction of KV blocks in use (0..1).",
                   s.kv_blocks_total ? (double)s.kv_blocks_used / s.kv_blocks_total : 0.0);
        render_one(&b, "fitlm_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
                   (double)s.prefix_query_tokens);
        render_one(&b, "fitlm_prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.",
                   (double)s.prefix_hit_tokens);
        render_one(&b, "fitlm_num_preemptions_total", "counter", "Sequences preempted for want of KV blocks.",
                   (double)s.preemptions);
        render_one(&b, "fitlm_prompt_tokens_total", "counter", "Prompt tokens computed (prefix-cache hits excluded).",
                   (double)s.prompt_tokens);
        render_one(&b, "fitlm_generation_tokens_total", "counter", "Tokens generated.", (double)s.generated_tokens);
        render_one(&b, "fitlm_engine_steps_total", "counter", "Engine steps (batched forward passes).",
                   (double)s.steps);
        serve_buf_str(&b, "# HELP fitlm_request_success_total Requests finished, by finish reason.\n"
                          "# TYPE fitlm_request_success_total counter\n");
        for (int r = FITLM_FINISH_STOP; r <= FITLM_FINISH_ERROR; r++)
            serve_buf_printf(&b, "fitlm_request_success_total{finished_reason=\"%s\"} %llu\n",
                             fitlm_finish_reason_name((fitlm_finish_reason)r),
                             (unsigned long long)s.requests_finished[r]);
    }
    if (b.oom) {
        serve_buf_free(&b);
        return NULL;
    }
    return serve_buf_take(&b, len);
}
