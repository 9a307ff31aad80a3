/* Shared option handling of the runtime commands. */
#include "cli/runtime_opts.h"

#include "cli/plan_check.h"
#include "engine/engine.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/gpu_open.h"
#include "cli/mem_budget.h"
#include "parallel/parallel.h"
#include "format/ggml_type.h"
#include "runtime/kv_cache.h"
#include "runtime/memory_report.h"
#include "sys/threadpool.h"
#include "util/meminfo.h"

int opt_parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno) {
        fprintf(stderr, "fitlm: error: %s: '%s' is not an integer\n", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "fitlm: error: %s: %ld is out of range [%ld, %ld]\n", flag, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int opt_parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (!*s || *s == '-') {
        fprintf(stderr, "fitlm: error: %s: '%s' is not a non-negative integer\n", flag, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) {
        fprintf(stderr, "fitlm: error: %s: '%s' is not a non-negative integer\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int opt_parse_float(const char *flag, const char *s, double lo, double hi, float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) {
        fprintf(stderr, "fitlm: error: %s: '%s' is not a number\n", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "fitlm: error: %s: %g is out of range [%g, %g]\n", flag, v, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int32_t *opt_parse_ids(const char *s, uint32_t *n, fitlm_error *err) {
    size_t cap = 16, cnt = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    const char *p = s;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
        if (!*p) break;
        if (!isdigit((unsigned char)*p)) {
            fitlm_fail(err, "token ids must be non-negative integers (at '%.20s')", p);
            free(ids);
            return NULL;
        }
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || v > INT32_MAX || (*end && !isspace((unsigned char)*end) && *end != ',')) {
            fitlm_fail(err, "bad token id at '%.20s'", p);
            free(ids);
            return NULL;
        }
        if (cnt == cap) {
            if (cap > (SIZE_MAX / sizeof *ids) / 2) {
                free(ids);
                fitlm_fail(err, "too many ids");
                return NULL;
            }
            cap *= 2;
            int32_t *g = realloc(ids, cap * sizeof *ids);
            if (!g) {
                free(ids);
                fitlm_fail(err, "out of memory");
                return NULL;
            }
            ids = g;
        }
        ids[cnt++] = (int32_t)v;
        p = end;
    }
    if (cnt == 0 || cnt > UINT32_MAX) {
        free(ids);
        fitlm_fail(err, cnt ? "too many ids" : "the list of token ids is empty");
        return NULL;
    }
    *n = (uint32_t)cnt;
    return ids;
}

int32_t *opt_parse_ids_flag(const char *flag, const char *s, uint32_t *n) {
    fitlm_error err = {{0}};
    int32_t *ids = opt_parse_ids(s, n, &err);
    if (!ids) {
        fitlm_error_prefix(&err, flag);
        fitlm_error_print(&err);
    }
    return ids;
}

const char *opt_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "fitlm: error: %s needs a value\n", argv[*i]);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

void runtime_opts_init(runtime_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_type = FITLM_TYPE_F16;
    o->mem_limit = FITLM_MEM_UNKNOWN;
    o->plan_check = -1;
    o->n_gpu_layers = -1;
    o->tp = o->pp = o->dp = 1;
    o->pp_schedule = -1;
}

int runtime_opts_parse(runtime_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    long x;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->model_path = v;
        return 1;
    }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = opt_value(argc, argv, i)) || opt_parse_long(a, v, 1, 1024, &x)) return -1;
        o->n_threads = (int)x;
        return 1;
    }
    if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
        if (!(v = opt_value(argc, argv, i)) || opt_parse_long(a, v, 0, INT32_MAX, &x)) return -1;
        o->n_ctx = x == 0 ? UINT32_MAX : (uint32_t)x; /* 0 = the model's full context */
        return 1;
    }
    if (!strcmp(a, "--kv-type") || !strcmp(a, "-ctk")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->kv_type = fitlm_kv_type_from_name(v);
        if (o->kv_type < 0) {
            fprintf(stderr, "fitlm: error: %s: '%s' is not a KV cache type (f16, f32, q8_0)\n", a, v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--batch") || !strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) {
        if (!(v = opt_value(argc, argv, i)) || opt_parse_long(a, v, 1, 65536, &x)) return -1;
        o->n_ubatch = (uint32_t)x;
        return 1;
    }
    if (!strcmp(a, "--mem-limit")) {
        fitlm_error err = {{0}};
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (fitlm_parse_size(v, &o->mem_limit, &err) || o->mem_limit == 0) {
            fprintf(stderr, "fitlm: error: %s: %s\n", a, err.msg[0] ? err.msg : "must be more than 0 bytes");
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--device")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->device = v;
        return 1;
    }
    if (!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers") || !strcmp(a, "--n-gpu-layers")) {
        if (!(v = opt_value(argc, argv, i)) || opt_parse_long(a, v, 0, 100000, &x)) return -1;
        o->n_gpu_layers = (int)x;
        return 1;
    }
    if (!strcmp(a, "--fit")) {
        o->fit = true;
        return 1;
    }
    if (!strcmp(a, "--tp") || !strcmp(a, "--pp") || !strcmp(a, "--dp")) {
        if (!(v = opt_value(argc, argv, i)) || opt_parse_long(a, v, 1, 256, &x)) return -1;
        *(a[2] == 't' ? &o->tp : a[2] == 'p' ? &o->pp : &o->dp) = (uint32_t)x;
        return 1;
    }
    if (!strcmp(a, "--pp-layers")) {
        if (!(o->pp_layers = opt_value(argc, argv, i))) return -1;
        return 1;
    }
    if (!strcmp(a, "--pp-schedule")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!strcmp(v, "auto")) o->pp_schedule = -1;
        else if (!strcmp(v, "overlap")) o->pp_schedule = 0;
        else if (!strcmp(v, "turns")) o->pp_schedule = 1;
        else return fitlm_die("%s: expected auto, overlap or turns, got '%s'", a, v), -1;
        return 1;
    }
    if (!strcmp(a, "--check-tensors")) {
        o->check_tensors = true;
        return 1;
    }
    if (!strcmp(a, "--memory-report")) {
        o->memory_report = true;
        return 1;
    }
    if (!o->accept_plan_check) return 0;
    if (!strcmp(a, "--plan-check") || !strcmp(a, "--no-plan-check")) {
        o->plan_check = a[2] == 'p';
        return 1;
    }
    if (!strcmp(a, "--profile")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->profile_path = v;
        return 1;
    }
    if (!strcmp(a, "--plan-gpu")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        fitlm_error perr = {{0}};
        if (plan_check_gpu_valid(v, &perr)) return fitlm_error_print(&perr), -1;
        o->plan_gpu = v;
        return 1;
    }
    return 0;
}

int runtime_parallel_open(const runtime_opts *o, const fitlm_model *m, struct fitlm_parallel **out, fitlm_error *err) {
    *out = NULL;
    if (o->tp * o->pp * o->dp == 1 && !o->pp_layers && fitlm_comm_world()->size == 1) return 0;
    *out = fitlm_parallel_new(fitlm_comm_world(), m, o->tp, o->pp, o->dp, o->pp_layers, err);
    if (!*out) return -1;
    int threads = o->n_threads > 0 ? o->n_threads : fitlm_physical_cores();
    if (fitlm_parallel_set_turns(*out, o->pp_schedule, threads, err)) {
        fitlm_parallel_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int runtime_parallel_agree_u32(struct fitlm_parallel *par, uint32_t *v, fitlm_error *err) {
    if (!par) return 0;
    return fitlm_comm_bcast(par->world, v, sizeof *v, 0, err);
}

int runtime_session_open_model(runtime_session *s, const runtime_opts *o) {
    memset(s, 0, sizeof *s);
    fitlm_error err = {{0}};
    if (!o->model_path) return fitlm_die("no model given (use -m MODEL)"), -1;
    if (o->dp > 1)
        return fitlm_die("--dp %u: data-parallel replicas are for `fitlm serve` (one endpoint over %u groups); run, "
                         "logits, perplexity and bench split one model with --tp and --pp",
                         o->dp, o->dp),
               -1;
    s->model = fitlm_model_load(o->model_path, &err);
    if (!s->model) {
        fitlm_error_print(&err);
        return -1;
    }
    if (o->check_tensors && fitlm_model_check_values(s->model, true, &err)) goto fail_prefixed;
    uint32_t n_ctx = o->n_ctx == UINT32_MAX ? s->model->hp.ctx_len : o->n_ctx;
    if (n_ctx == 0) n_ctx = s->model->hp.ctx_len < FITLM_DEFAULT_CTX ? s->model->hp.ctx_len : FITLM_DEFAULT_CTX;
    s->backend = gpu_open_backend(o->device ? o->device : fitlm_backend_default_name(), o->n_threads, s->model,
                                  o->n_gpu_layers, o->fit, o->kv_type, n_ctx,
                                  o->n_ubatch ? o->n_ubatch : FITLM_DEFAULT_UBATCH, &err);
    if (!s->backend) goto fail;
    if (fitlm_runtime_check_model(s->model, s->backend, o->kv_type, &err)) goto fail_prefixed;
    if (runtime_parallel_open(o, s->model, &s->par, &err)) goto fail_prefixed;
    return 0;
fail_prefixed:
    fitlm_error_prefix(&err, o->model_path);
fail:
    fitlm_error_print(&err);
    runtime_session_close(s);
    return -1;
}

/* The context the flags ask for (0: the default). */
static uint32_t session_ctx(const runtime_session *s, const runtime_opts *o) {
    uint32_t n_ctx = o->n_ctx == UINT32_MAX ? s->model->hp.ctx_len : o->n_ctx;
    if (o->ctx_clamp && n_ctx > s->model->hp.ctx_len) n_ctx = s->model->hp.ctx_len;
    return n_ctx;
}

/* A non-root rank: serves the root's steps, then closes the session. Always
 * -1 (the command ends; main returns the recorded status). */
static int session_work(runtime_session *s, const runtime_opts *o) {
    fitlm_error err = {{0}};
    if (o->memory_report) runtime_session_print_memory(s, stderr);
    int rc = s->engine ? fitlm_engine_serve_steps(s->engine, &err) : fitlm_runtime_serve_steps(s->rt, &err);
    if (rc) fitlm_error_print(&err);
    if (rc == 0 && o->memory_report) {
        fitlm_comm_stats cs;
        fitlm_parallel_stats(s->par, &cs);
        fprintf(stderr, "rank %d: communication: %llu calls, %.1f MiB sent, %.3f s\n", s->par->world->rank,
                (unsigned long long)cs.calls, (double)cs.bytes / (1 << 20), cs.seconds);
    }
    runtime_session_close(s);
    fitlm_parallel_worker_done(rc ? 1 : 0);
    return -1;
}

int runtime_session_open(runtime_session *s, const runtime_opts *o) {
    if (runtime_session_open_model(s, o)) return -1;
    fitlm_error err = {{0}};
    fitlm_runtime_params p = fitlm_runtime_params_default();
    p.kv_type = o->kv_type;
    p.n_ctx = session_ctx(s, o);
    if (o->n_ubatch) p.n_ubatch = o->n_ubatch;
    p.par = s->par;
    if (mem_budget_fit_context(s->model, p.kv_type, &p.n_ctx, p.n_ubatch, o->n_threads, o->mem_limit,
                               o->n_ctx != 0 && o->n_ctx != UINT32_MAX)) {
        runtime_session_close(s);
        return -1;
    }
    /* every rank sizes its cache as the root did (free memory differs between ranks) */
    if (runtime_parallel_agree_u32(s->par, &p.n_ctx, &err)) {
        fitlm_error_print(&err);
        runtime_session_close(s);
        return -1;
    }
    s->rt = fitlm_runtime_new(s->model, s->backend, &p, &err);
    if (!s->rt) {
        fitlm_error_prefix(&err, o->model_path);
        fitlm_error_print(&err);
        runtime_session_close(s);
        return -1;
    }
    if (s->par && !fitlm_parallel_is_root(s->par)) return session_work(s, o);
    return 0;
}

int runtime_session_start_engine(runtime_session *s, const runtime_opts *o, const fitlm_tokenizer *tok,
                                 uint32_t n_parallel) {
    fitlm_error err = {{0}};
    fitlm_engine_params ep = fitlm_engine_params_default();
    ep.kv_type = o->kv_type;
    ep.n_ctx = session_ctx(s, o);
    ep.n_parallel = n_parallel;
    ep.max_batch_tokens = o->n_ubatch ? o->n_ubatch : FITLM_DEFAULT_UBATCH;
    ep.par = s->par;
    /* the pool holds n_parallel contexts: the budget check sees their total */
    uint32_t total_ctx = ep.n_ctx ? ep.n_ctx : (s->model->hp.ctx_len < FITLM_DEFAULT_CTX ? s->model->hp.ctx_len
                                                                                           : FITLM_DEFAULT_CTX);
    uint32_t want = total_ctx;
    if (n_parallel == 1 && mem_budget_fit_context(s->model, ep.kv_type, &want, ep.max_batch_tokens, o->n_threads,
                                                  o->mem_limit, o->n_ctx != 0 && o->n_ctx != UINT32_MAX))
        return -1;
    if (n_parallel == 1) ep.n_ctx = want;
    if (runtime_parallel_agree_u32(s->par, &ep.n_ctx, &err)) {
        fitlm_error_print(&err);
        return -1;
    }
    s->engine = fitlm_engine_new(s->model, tok, s->backend, &ep, &err);
    if (!s->engine) {
        fitlm_error_prefix(&err, o->model_path);
        fitlm_error_print(&err);
        return -1;
    }
    if (s->par && !fitlm_parallel_is_root(s->par)) return session_work(s, o);
    return 0;
}

void runtime_session_close(runtime_session *s) {
    fitlm_engine_free(s->engine);
    fitlm_runtime_free(s->rt);
    fitlm_parallel_free(s->par);
    if (s->backend) s->backend->free(s->backend);
    fitlm_model_free(s->model);
    memset(s, 0, sizeof *s);
}

void runtime_session_print_memory(const runtime_session *s, FILE *out) {
    fitlm_runtime_memory mem;
    if (s->par) {
        char where[160];
        fitlm_parallel_describe(s->par, where, sizeof where);
        fprintf(out, "memory of %s:\n", where);
    }
    if (s->engine) fitlm_engine_get_memory(s->engine, &mem);
    else fitlm_runtime_get_memory(s->rt, &mem);
    fitlm_hparams hp = s->model->hp;
    if (s->par) hp.n_layers = s->par->layer1 - s->par->layer0; /* the layers this rank caches */
    fitlm_memory_report_print(out, &mem, &hp);
    gpu_print_memory(out, s->backend, s->model->hp.n_layers);
}

fitlm_tokenizer *runtime_model_tokenizer(const fitlm_model *m, const char *hint, fitlm_error *err) {
    if (m->format == FITLM_FORMAT_GGUF && m->gguf) return fitlm_tokenizer_from_gguf((const fitlm_gguf *)m->gguf, err);
    if (m->format == FITLM_FORMAT_SAFETENSORS && m->hf_dir) return fitlm_tokenizer_load(m->hf_dir, err);
    fitlm_fail(err, "this %s model has no vocabulary: %s", fitlm_format_name(m->format), hint);
    return NULL;
}
