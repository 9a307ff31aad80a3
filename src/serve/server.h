/* fitlm's OpenAI-compatible HTTP server on libmicrohttpd.
 *
 *   POST /v1/chat/completions, /v1/completions   generation (JSON or SSE stream)
 *   GET  /v1/models, /health, /metrics           model list, readiness, Prometheus
 *   POST /tokenize, /detokenize                  llama-server's helpers
 *
 * Threads: libmicrohttpd's internal polling threads run every handler; a
 * streaming response is a content reader that serves bytes formatted from the
 * request's event log, and suspends its connection when nothing is ready —
 * the engine's callback (on the engine thread) only copies the event into the
 * log under the request's mutex and resumes the connection. No thread per
 * stream. A request's state is reference counted (the connection, the
 * response and the engine each hold one), so it lives until the engine's done
 * event even when the client went away; a client that disconnects before the
 * end cancels its sequence (fitlm_engine_cancel).
 *
 * Lifecycle: serve_server_new + serve_server_start (listening; /health says
 * 503 "loading"), serve_server_set_model once the engine runs (ready),
 * serve_server_stop (new requests get 503, the engine shuts down so every
 * request gets its done event, streams end, the daemon stops), then
 * serve_server_free. */
#ifndef FITLM_SERVE_SERVER_H
#define FITLM_SERVE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "serve/openai.h"
#include "util/error.h"

typedef struct serve_params {
    const char *host;       /* numeric IPv4 or IPv6 address (default "127.0.0.1") */
    uint16_t port;          /* 0: any free port (serve_server_port tells which) */
    const char *api_key;    /* NULL: no authentication; else "Authorization: Bearer KEY" (not on /health) */
    size_t max_body_bytes;  /* larger bodies get 413 (default 8 MiB) */
    unsigned n_threads;     /* HTTP threads (default 2) */
    unsigned timeout_s;     /* idle connection timeout (default 600) */
} serve_params;

serve_params serve_params_default(void);

typedef struct serve_server serve_server;

/* Copies the params (strings too). Caller frees with serve_server_free(). */
serve_server *serve_server_new(const serve_params *p, fitlm_error *err);
/* Binds and starts the HTTP threads. 0 or -1 with err (address in use, ...). */
int serve_server_start(serve_server *s, fitlm_error *err);
uint16_t serve_server_port(const serve_server *s);

/* Makes the server ready: generation requests go to the n engines (n > 1:
 * data-parallel replicas; each request goes to the one with the fewest
 * running + waiting sequences). The engines (e[0] answers the model's
 * questions), tokenizer and the strings in mi must outlive the server (mi and
 * the array are copied). 0, or -1 with err (out of memory). */
int serve_server_set_model(serve_server *s, fitlm_engine *const *e, unsigned n, const serve_model_info *mi,
                           fitlm_error *err);

/* Refuses new work (503), shuts the engine down (every request ends), lets
 * the streams finish and stops the daemon. Idempotent; the engine is not freed. */
void serve_server_stop(serve_server *s);
/* The inter-token latency observed so far (the /metrics histogram): the sum
 * in seconds and the number of intervals. For `serve --plan-check`. */
void serve_server_itl(serve_server *s, double *sum_s, uint64_t *count);
/* Stops (if needed) and frees the server and every request state. */
void serve_server_free(serve_server *s);

#endif
