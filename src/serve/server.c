/* The HTTP server: routing, limits, authentication, request lifecycle and
 * streaming over libmicrohttpd. See server.h for the threading model. */
#include "serve/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "serve/buf.h"
#include "serve/metrics.h"

struct serve_server {
    serve_params p;
    char *host, *api_key;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_bool ready, stopping;
    bool stopped;
    fitlm_engine *engine;   /* set (with mi) before ready turns true: engines[0] */
    fitlm_engine **engines; /* data parallel: one engine per replica group, owned array (engines borrowed) */
    unsigned n_engines;
    atomic_uint_fast64_t *routed; /* [n_engines] generation requests sent to each */
    atomic_uint rotate;     /* where the least-loaded search starts (spreads ties) */
    serve_model_info mi;
    serve_metrics metrics;
    atomic_int live;        /* generation requests whose connection has not completed */
    atomic_uint_fast64_t counter;
    uint64_t nonce;
    long long started;      /* unix time, for /v1/models */
};

typedef enum route {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_MODELS,
    ROUTE_CHAT,
    ROUTE_COMPLETIONS,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
} route;

static const struct {
    const char *path;
    route r;
    bool post;
} k_routes[] = {
    {"/health", ROUTE_HEALTH, false},
    {"/metrics", ROUTE_METRICS, false},
    {"/v1/models", ROUTE_MODELS, false},
    {"/v1/chat/completions", ROUTE_CHAT, true},
    {"/v1/completions", ROUTE_COMPLETIONS, true},
    {"/tokenize", ROUTE_TOKENIZE, true},
    {"/detokenize", ROUTE_DETOKENIZE, true},
};

/* One generation request. Freed when the last of its references goes: the
 * connection's (dropped when MHD completes the request), the engine's
 * (dropped at the done event) and, for streams, the response's. */
typedef struct gen_req {
    atomic_int refs;
    pthread_mutex_t mu;           /* guards everything below */
    serve_server *srv;
    struct MHD_Connection *conn;  /* NULL once the connection completed */
    bool suspended;               /* the connection waits for the engine (resumed by on_event) */
    bool submitted;
    uint64_t engine_id;
    fitlm_engine *engine;         /* the replica's engine it went to */
    serve_gen_params params;
    serve_gen_log log;
    serve_resp_id rid;
    serve_stream_state st;        /* stream: what went out so far */
    serve_buf out;                /* stream: formatted bytes not yet handed to MHD */
    /* engine thread only */
    double t_submit, t_last;
    bool got_first;
} gen_req;

/* Per HTTP request (MHD's con_cls). */
typedef struct conn_state {
    route r;
    serve_buf body;
    bool too_large;
    size_t discarded;
    gen_req *req;
} conn_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t next_random(serve_server *s) { return splitmix64(s->nonce ^ atomic_fetch_add(&s->counter, 1) * 0xD1B54A32D192ED03ull); }

serve_params serve_params_default(void) {
    serve_params p = {0};
    p.host = "127.0.0.1";
    p.port = 8080;
    p.max_body_bytes = 8u << 20;
    p.n_threads = 2;
    p.timeout_s = 600;
    return p;
}

/* ------------------------------------------------------------ responses */

static enum MHD_Result respond(serve_server *s, struct MHD_Connection *c, unsigned status, const char *ctype,
                               serve_buf *body, const char *hdr, const char *hdr_val) {
    if (body->oom) {
        serve_buf_free(body);
        serve_buf_str(body, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                            "\"code\":null}}");
        status = 500;
        ctype = "application/json";
    }
    size_t len = 0;
    char *data = serve_buf_take(body, &len);
    struct MHD_Response *r = data ? MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE)
                                  : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hdr) MHD_add_response_header(r, hdr, hdr_val);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    serve_metrics_count_status(&s->metrics, status);
    return ret;
}

static enum MHD_Result respond_json(serve_server *s, struct MHD_Connection *c, unsigned status, serve_buf *body) {
    return respond(s, c, status, "application/json", body, NULL, NULL);
}

static enum MHD_Result respond_error(serve_server *s, struct MHD_Connection *c, const serve_error *e,
                                     const char *hdr, const char *hdr_val) {
    serve_buf b = {0};
    serve_error_json(e, &b);
    return respond(s, c, e->status, "application/json", &b, hdr, hdr_val);
}

static enum MHD_Result fail(serve_server *s, struct MHD_Connection *c, unsigned status, const char *type,
                            const char *code, const char *msg) {
    serve_error e;
    serve_error_set(&e, status, type, NULL, code, "%s", msg);
    return respond_error(s, c, &e, NULL, NULL);
}

/* ------------------------------------------------------------ request state */

static void req_unref(gen_req *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    pthread_mutex_destroy(&r->mu);
    serve_gen_params_free(&r->params);
    serve_gen_log_free(&r->log);
    serve_buf_free(&r->out);
    serve_stream_state_free(&r->st);
    free(r);
}

/* The engine's callback (engine thread): copy the event, wake the connection. */
static void on_event(void *user, const fitlm_gen_event *ev) {
    gen_req *r = user;
    serve_metrics *m = &r->srv->metrics;
    double t = now_s();
    if (ev->token >= 0) {
        if (!r->got_first) serve_histogram_observe(&m->ttft, t - r->t_submit);
        else serve_histogram_observe(&m->itl, t - r->t_last);
        r->got_first = true;
        r->t_last = t;
    }
    if (ev->done) serve_histogram_observe(&m->e2e, t - r->t_submit);
    pthread_mutex_lock(&r->mu);
    serve_gen_log_add(&r->log, ev);
    if (r->suspended && (r->params.stream || r->log.done)) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
    bool done = ev->done;
    pthread_mutex_unlock(&r->mu);
    if (done) req_unref(r);
}

/* The SSE body: formatted chunks of the log; suspends when nothing is ready. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen_req *r = cls;
    serve_server *s = r->srv;
    pthread_mutex_lock(&r->mu);
    if (r->out.len == 0)
        serve_format_chunks(&s->mi, &r->params, &r->log, &r->rid, &r->st, &r->out);
    if (r->out.oom) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (r->out.len) {
        size_t n = r->out.len < max ? r->out.len : max;
        memcpy(buf, r->out.data, n);
        serve_buf_consume(&r->out, n);
        pthread_mutex_unlock(&r->mu);
        return (ssize_t)n;
    }
    if (r->st.finished) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* nothing yet: sleep until the engine's next event (on_event resumes) */
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static void stream_free(void *cls) {
    gen_req *r = cls;
    atomic_fetch_sub(&r->srv->metrics.streams_active, 1);
    req_unref(r);
}

/* The whole answer of a finished non-streaming request. */
static enum MHD_Result respond_done(serve_server *s, struct MHD_Connection *c, gen_req *r) {
    serve_error e;
    if (r->log.finish == FITLM_FINISH_CANCELLED) {
        serve_error_set(&e, 503, "server_error", NULL, NULL, "the request was cancelled: the server is shutting down");
        return respond_error(s, c, &e, NULL, NULL);
    }
    if (r->log.finish == FITLM_FINISH_ERROR) {
        serve_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", r->log.error);
        return respond_error(s, c, &e, NULL, NULL);
    }
    serve_buf b = {0};
    serve_format_response(&s->mi, &r->params, &r->log, &r->rid, &b);
    return respond_json(s, c, 200, &b);
}

/* ------------------------------------------------------------ handlers */

/* The replica with the fewest running + waiting sequences; ties go round
 * robin (requests arriving together spread over idle replicas). */
static unsigned pick_engine(serve_server *s) {
    unsigned n = s->n_engines;
    if (n <= 1) return 0;
    unsigned start = atomic_fetch_add(&s->rotate, 1) % n, best = start;
    uint64_t best_load = UINT64_MAX;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (start + k) % n;
        fitlm_engine_stats st;
        fitlm_engine_get_stats(s->engines[i], &st);
        uint64_t load = (uint64_t)st.n_running + st.n_waiting;
        if (load < best_load) best_load = load, best = i;
    }
    return best;
}

static enum MHD_Result handle_gen(serve_server *s, struct MHD_Connection *c, conn_state *cs, serve_kind kind) {
    serve_error e;
    serve_gen_params gp;
    if (serve_parse_gen(&s->mi, kind, cs->body.data ? cs->body.data : "", cs->body.len, next_random(s), &gp, &e))
        return respond_error(s, c, &e, NULL, NULL);
    serve_buf_free(&cs->body);
    gen_req *r = calloc(1, sizeof *r);
    if (!r) {
        serve_gen_params_free(&gp);
        return fail(s, c, 500, "server_error", NULL, "out of memory");
    }
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 2); /* the connection's and the engine's */
    r->srv = s;
    r->conn = c;
    r->params = gp;
    uint64_t idr = next_random(s);
    snprintf(r->rid.id, sizeof r->rid.id, "%s-%016llx", kind == SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)idr);
    r->rid.created = (long long)time(NULL);
    cs->req = r;
    atomic_fetch_add(&s->live, 1);

    fitlm_request rq = {
        .prompt = gp.prompt,
        .n_prompt = gp.n_prompt,
        .max_tokens = gp.max_tokens,
        .sampling = gp.sampling,
        .stop = (const char *const *)r->params.stop,
        .n_stop = gp.n_stop,
        .top_logprobs = gp.top_logprobs,
        .ignore_eos = gp.ignore_eos,
        .cb = on_event,
        .user = r,
    };
    /* response_format's constraint: the engine owns it once submitted */
    fitlm_token_matcher *tm = r->params.matcher;
    r->params.matcher = NULL;
    if (tm) rq.constraint = fitlm_token_matcher_constraint(tm);
    r->t_submit = now_s();
    fitlm_error fe = {{0}};
    uint64_t id = 0;
    unsigned replica = pick_engine(s);
    r->engine = s->engines[replica];
    int rc = fitlm_engine_submit(r->engine, &rq, &id, &fe);
    if (rc == 0) atomic_fetch_add(&s->routed[replica], 1);
    if (rc) fitlm_token_matcher_free(tm);
    if (rc) {
        atomic_fetch_sub(&r->refs, 1); /* the engine never calls back */
        r->log.done = true;
        if (rc == FITLM_ENGINE_EBUSY) {
            serve_error_set(&e, 503, "server_error", NULL, "queue_full", "the server is busy (%s): retry later", fe.msg);
            return respond_error(s, c, &e, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        }
        if (rc == FITLM_ENGINE_ESHUTDOWN)
            return fail(s, c, 503, "server_error", NULL, "the server is shutting down");
        serve_error_set(&e, 400, "invalid_request_error", NULL, NULL, "%s", fe.msg);
        return respond_error(s, c, &e, NULL, NULL);
    }
    pthread_mutex_lock(&r->mu);
    r->engine_id = id;
    r->submitted = true;
    if (r->params.stream) {
        pthread_mutex_unlock(&r->mu);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, r,
                                                                      stream_free);
        if (!resp) {
            fitlm_engine_cancel(r->engine, id);
            return MHD_NO;
        }
        atomic_fetch_add(&r->refs, 1); /* the response's */
        atomic_fetch_add(&s->metrics.streams_active, 1);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        serve_metrics_count_status(&s->metrics, 200);
        return ret;
    }
    if (!r->log.done) {
        r->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&r->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&r->mu);
    return respond_done(s, c, r);
}

/* A non-streaming request whose connection was resumed. */
static enum MHD_Result handle_resumed(serve_server *s, struct MHD_Connection *c, gen_req *r) {
    pthread_mutex_lock(&r->mu);
    if (!r->log.done) { /* woken early: wait again */
        r->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&r->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&r->mu);
    return respond_done(s, c, r);
}

static cJSON *parse_object(const conn_state *cs, serve_error *e) {
    if (!serve_utf8_valid(cs->body.data ? cs->body.data : "", cs->body.len)) {
        serve_error_set(e, 400, "invalid_request_error", NULL, NULL, "the request body is not valid UTF-8");
        return NULL;
    }
    cJSON *o = cJSON_ParseWithLength(cs->body.data ? cs->body.data : "", cs->body.len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        serve_error_set(e, 400, "invalid_request_error", NULL, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

static enum MHD_Result handle_tokenize(serve_server *s, struct MHD_Connection *c, conn_state *cs) {
    serve_error e;
    cJSON *o = parse_object(cs, &e);
    if (!o) return respond_error(s, c, &e, NULL, NULL);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(o, "add_special");
    enum MHD_Result ret;
    if (cJSON_GetObjectItemCaseSensitive(o, "messages")) {
        /* a chat request's prompt (as vLLM's /tokenize): the messages and tools rendered and tokenized exactly
         * as /v1/chat/completions would */
        serve_gen_params gp;
        if (serve_parse_gen(&s->mi, SERVE_CHAT, cs->body.data, cs->body.len, 0, &gp, &e)) {
            ret = respond_error(s, c, &e, NULL, NULL);
        } else {
            serve_buf b = {0};
            serve_buf_str(&b, "{\"tokens\":[");
            for (uint32_t i = 0; i < gp.n_prompt; i++) serve_buf_printf(&b, i ? ",%d" : "%d", gp.prompt[i]);
            serve_buf_printf(&b, "],\"count\":%u}", gp.n_prompt);
            serve_gen_params_free(&gp);
            ret = respond_json(s, c, 200, &b);
        }
    } else if (!cJSON_IsString(content) || (add && !cJSON_IsBool(add))) {
        serve_error_set(&e, 400, "invalid_request_error", "content", NULL,
                        "expected {\"content\": STRING, \"add_special\": BOOL (optional)}");
        ret = respond_error(s, c, &e, NULL, NULL);
    } else if (!s->mi.tok) {
        ret = fail(s, c, 400, "invalid_request_error", NULL, "this model has no vocabulary");
    } else {
        fitlm_error fe = {{0}};
        int32_t *ids = NULL;
        size_t n = 0;
        if (fitlm_tokenizer_encode(s->mi.tok, content->valuestring, strlen(content->valuestring), cJSON_IsTrue(add),
                                   true, &ids, &n, &fe)) {
            serve_error_set(&e, 400, "invalid_request_error", "content", NULL, "%s", fe.msg);
            ret = respond_error(s, c, &e, NULL, NULL);
        } else {
            serve_buf b = {0};
            serve_buf_str(&b, "{\"tokens\":[");
            for (size_t i = 0; i < n; i++) serve_buf_printf(&b, i ? ",%d" : "%d", ids[i]);
            serve_buf_str(&b, "]}");
            free(ids);
            ret = respond_json(s, c, 200, &b);
        }
    }
    cJSON_Delete(o);
    return ret;
}

static enum MHD_Result handle_detokenize(serve_server *s, struct MHD_Connection *c, conn_state *cs) {
    serve_error e;
    cJSON *o = parse_object(cs, &e);
    if (!o) return respond_error(s, c, &e, NULL, NULL);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    enum MHD_Result ret;
    int n = cJSON_IsArray(toks) ? cJSON_GetArraySize(toks) : -1;
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    bool ok = n >= 0 && (n == 0 || ids);
    const cJSON *it;
    int k = 0;
    if (ok) cJSON_ArrayForEach(it, toks) {
            double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
            if (!cJSON_IsNumber(it) || d != (double)(int32_t)d || d < 0 || d >= (double)s->mi.vocab) {
                ok = false;
                break;
            }
            ids[k++] = (int32_t)d;
        }
    if (!ok) {
        serve_error_set(&e, 400, "invalid_request_error", "tokens", NULL,
                        "expected {\"tokens\": [ids in 0..%u]}", s->mi.vocab ? s->mi.vocab - 1 : 0);
        ret = respond_error(s, c, &e, NULL, NULL);
    } else if (!s->mi.tok) {
        ret = fail(s, c, 400, "invalid_request_error", NULL, "this model has no vocabulary");
    } else {
        fitlm_error fe = {{0}};
        size_t len = 0;
        char *text = fitlm_tokenizer_decode(s->mi.tok, ids, (size_t)k, false, &len, &fe);
        if (!text) {
            serve_error_set(&e, 400, "invalid_request_error", "tokens", NULL, "%s", fe.msg);
            ret = respond_error(s, c, &e, NULL, NULL);
        } else {
            serve_buf b = {0};
            serve_buf_str(&b, "{\"content\":");
            serve_json_string(&b, text, len);
            serve_buf_str(&b, "}");
            free(text);
            ret = respond_json(s, c, 200, &b);
        }
    }
    free(ids);
    cJSON_Delete(o);
    return ret;
}

static enum MHD_Result handle_models(serve_server *s, struct MHD_Connection *c) {
    serve_buf b = {0};
    serve_buf_str(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    serve_json_string(&b, s->mi.name, strlen(s->mi.name));
    serve_buf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"fitlm\",\"max_model_len\":%u}]}",
                     s->started, s->mi.n_ctx);
    return respond_json(s, c, 200, &b);
}

static enum MHD_Result handle_metrics(serve_server *s, struct MHD_Connection *c) {
    size_t len = 0;
    bool ready = atomic_load(&s->ready);
    char *text = serve_metrics_render(&s->metrics, ready ? s->engines : NULL, ready ? s->n_engines : 0,
                                      ready ? s->routed : NULL, &len);
    if (!text) return fail(s, c, 500, "server_error", NULL, "out of memory");
    serve_buf b = {.data = text, .len = len, .cap = len + 1};
    return respond(s, c, 200, "text/plain; version=0.0.4", &b, NULL, NULL);
}

static bool authorized(const serve_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->api_key[i];
    return diff == 0;
}

/* First call of a request: route, method, authentication, declared size. 1 =
 * go on (read the body), 0 = answered. */
static int first_call(serve_server *s, struct MHD_Connection *c, const char *url, const char *method,
                      conn_state *cs, enum MHD_Result *ret) {
    size_t i = 0, n = sizeof k_routes / sizeof k_routes[0];
    while (i < n && strcmp(url, k_routes[i].path)) i++;
    if (i == n) {
        serve_error e;
        serve_error_set(&e, 404, "not_found_error", NULL, "not_found", "no such endpoint: %.200s", url);
        *ret = respond_error(s, c, &e, NULL, NULL);
        return 0;
    }
    bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (k_routes[i].post ? strcmp(method, "POST") != 0 : !is_get) {
        serve_error e;
        serve_error_set(&e, 405, "invalid_request_error", NULL, "method_not_allowed",
                        "%.20s is not allowed on %s (use %s)", method, url, k_routes[i].post ? "POST" : "GET");
        *ret = respond_error(s, c, &e, MHD_HTTP_HEADER_ALLOW, k_routes[i].post ? "POST" : "GET, HEAD");
        return 0;
    }
    cs->r = k_routes[i].r;
    if (cs->r != ROUTE_HEALTH && !authorized(s, c)) {
        serve_error e;
        serve_error_set(&e, 401, "invalid_request_error", NULL, "invalid_api_key",
                        "Incorrect API key provided: send it as 'Authorization: Bearer KEY'");
        *ret = respond_error(s, c, &e, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        return 0;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end == cl || v > s->p.max_body_bytes) {
            serve_error e;
            serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                            "the request body is larger than %zu bytes", s->p.max_body_bytes);
            *ret = respond_error(s, c, &e, MHD_HTTP_HEADER_CONNECTION, "close");
            return 0;
        }
    }
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    serve_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        enum MHD_Result ret = MHD_YES;
        if (!first_call(s, c, url, method, cs, &ret)) cs->r = ROUTE_NONE;
        else return MHD_YES;
        cs->too_large = true; /* answered: discard any body */
        return ret;
    }
    if (*upload_size) {
        if (!cs->too_large && cs->body.len + *upload_size > s->p.max_body_bytes) {
            cs->too_large = true;
            serve_buf_free(&cs->body);
        }
        if (cs->too_large) {
            cs->discarded += *upload_size;
            if (cs->discarded > 4 * s->p.max_body_bytes) return MHD_NO; /* a flood: close */
        } else if (serve_buf_add(&cs->body, upload_data, *upload_size)) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->req) return handle_resumed(s, c, cs->req);
    if (cs->r == ROUTE_NONE) return MHD_YES; /* already answered */
    if (cs->too_large) {
        serve_error e;
        serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                        "the request body is larger than %zu bytes", s->p.max_body_bytes);
        return respond_error(s, c, &e, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    bool ready = atomic_load(&s->ready), stopping = atomic_load(&s->stopping);
    switch (cs->r) {
    case ROUTE_HEALTH:
        if (ready && !stopping) {
            serve_buf b = {0};
            serve_buf_str(&b, "{\"status\":\"ok\"}");
            return respond_json(s, c, 200, &b);
        }
        return fail(s, c, 503, "unavailable_error", NULL, stopping ? "the server is shutting down" : "loading the model");
    case ROUTE_METRICS: return handle_metrics(s, c);
    default: break;
    }
    if (stopping) return fail(s, c, 503, "server_error", NULL, "the server is shutting down");
    if (!ready) return fail(s, c, 503, "unavailable_error", NULL, "loading the model");
    switch (cs->r) {
    case ROUTE_MODELS: return handle_models(s, c);
    case ROUTE_CHAT: return handle_gen(s, c, cs, SERVE_CHAT);
    case ROUTE_COMPLETIONS: return handle_gen(s, c, cs, SERVE_COMPLETION);
    case ROUTE_TOKENIZE: return handle_tokenize(s, c, cs);
    case ROUTE_DETOKENIZE: return handle_detokenize(s, c, cs);
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    (void)toe;
    serve_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    gen_req *r = cs->req;
    if (r) {
        pthread_mutex_lock(&r->mu);
        r->conn = NULL;
        bool cancel = r->submitted && !r->log.done;
        uint64_t id = r->engine_id;
        pthread_mutex_unlock(&r->mu);
        /* the client went away (or the daemon stops) before the end: free the sequence */
        if (cancel) fitlm_engine_cancel(r->engine, id);
        req_unref(r);
        atomic_fetch_sub(&s->live, 1);
    }
    serve_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ lifecycle */

serve_server *serve_server_new(const serve_params *p, fitlm_error *err) {
    serve_server *s = calloc(1, sizeof *s);
    if (!s) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    s->p = *p;
    s->host = strdup(p->host ? p->host : "127.0.0.1");
    s->api_key = p->api_key ? strdup(p->api_key) : NULL;
    if (!s->host || (p->api_key && !s->api_key)) {
        serve_server_free(s);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    if (!s->p.max_body_bytes) s->p.max_body_bytes = 8u << 20;
    if (!s->p.n_threads) s->p.n_threads = 2;
    if (!s->p.timeout_s) s->p.timeout_s = 600;
    serve_metrics_init(&s->metrics);
    atomic_init(&s->ready, false);
    atomic_init(&s->stopping, false);
    atomic_init(&s->live, 0);
    atomic_init(&s->counter, 0);
    atomic_init(&s->rotate, 0);
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) seed = (uint64_t)time(NULL);
    s->nonce = splitmix64(seed ^ (uint64_t)(uintptr_t)s);
    s->started = (long long)time(NULL);
    return s;
}

int serve_server_start(serve_server *s, fitlm_error *err) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, s->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(s->p.port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(s->p.port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return fitlm_fail(err, "--host: '%s' is not a numeric IPv4 or IPv6 address", s->host);
    }
    s->daemon = MHD_start_daemon(flags, s->p.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, sa,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_THREAD_POOL_SIZE,
                                 (unsigned int)s->p.n_threads, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned int)s->p.timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1000,
                                 MHD_OPTION_END);
    if (!s->daemon) return fitlm_fail(err, "cannot listen on %s port %u (in use, or not an address of this host?)",
                                      s->host, (unsigned)s->p.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->p.port;
    return 0;
}

uint16_t serve_server_port(const serve_server *s) { return s->port; }

void serve_server_itl(serve_server *s, double *sum_s, uint64_t *count) {
    uint64_t n = 0;
    for (int i = 0; i <= SERVE_HIST_BUCKETS; i++) n += atomic_load(&s->metrics.itl.counts[i]);
    *count = n;
    *sum_s = (double)atomic_load(&s->metrics.itl.sum_us) * 1e-6;
}

int serve_server_set_model(serve_server *s, fitlm_engine *const *e, unsigned n, const serve_model_info *mi,
                           fitlm_error *err) {
    s->engines = calloc(n, sizeof *s->engines);
    s->routed = calloc(n, sizeof *s->routed);
    if (!s->engines || !s->routed) {
        free(s->engines);
        free(s->routed);
        s->engines = NULL;
        s->routed = NULL;
        return fitlm_fail(err, "out of memory");
    }
    for (unsigned i = 0; i < n; i++) {
        s->engines[i] = e[i];
        atomic_init(&s->routed[i], 0);
    }
    s->n_engines = n;
    s->engine = e[0];
    s->mi = *mi;
    atomic_store(&s->ready, true);
    return 0;
}

void serve_server_stop(serve_server *s) {
    if (s->stopped) return;
    s->stopped = true;
    atomic_store(&s->stopping, true);
    /* every waiting and running request gets its done event: suspended
     * connections resume and finish their answers */
    for (unsigned i = 0; i < s->n_engines; i++) fitlm_engine_shutdown(s->engines[i]);
    for (int i = 0; i < 500 && atomic_load(&s->live) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}

void serve_server_free(serve_server *s) {
    if (!s) return;
    serve_server_stop(s);
    free(s->host);
    free(s->api_key);
    free(s->engines);
    free(s->routed);
    free(s);
}
