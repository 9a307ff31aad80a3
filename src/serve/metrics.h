/* The server's Prometheus metrics: HTTP requests by status code, latency
 * histograms (time to first token, inter-token latency, end-to-end), and the
 * engine's own figures (running / waiting sequences, KV blocks, prefix-cache
 * hits, preemptions, tokens) rendered in the Prometheus text exposition
 * format (version 0.0.4) with the prefix "fitlm_".
 *
 * Counters and histograms are updated with C11 atomics, so the engine's
 * callback (on the engine thread) and the HTTP threads may record at once
 * without a lock. */
#ifndef FITLM_SERVE_METRICS_H
#define FITLM_SERVE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#define SERVE_HIST_BUCKETS 16

typedef struct serve_histogram {
    const double *bounds; /* SERVE_HIST_BUCKETS upper bounds in seconds, ascending */
    atomic_uint_fast64_t counts[SERVE_HIST_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    atomic_uint_fast64_t sum_us;                         /* sum of observations in microseconds */
} serve_histogram;

/* The HTTP status codes the server answers with (others count as "other"). */
#define SERVE_N_CODES 10

typedef struct serve_metrics {
    atomic_uint_fast64_t http_by_code[SERVE_N_CODES + 1];
    atomic_uint_fast64_t streams_active; /* SSE responses being sent */
    serve_histogram ttft, itl, e2e;
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
void serve_metrics_count_status(serve_metrics *m, unsigned status);
void serve_histogram_observe(serve_histogram *h, double seconds);

/* Renders every metric (and the engines' stats, summed, when e is non-NULL)
 * as Prometheus text. With n_engines > 1 (data-parallel replicas) it adds
 * per-replica series labelled replica="d": requests routed (routed[d], may be
 * NULL), sequences running + waiting, tokens generated. Returns a malloc'd
 * NUL-terminated string the caller frees (its length in *len), or NULL when
 * out of memory. */
char *serve_metrics_render(serve_metrics *m, fitlm_engine *const *e, unsigned n_engines, atomic_uint_fast64_t *routed,
                           size_t *len);

#endif
