/* fitlm serve: the OpenAI-compatible HTTP server (src/serve/) over the
 * serving engine (src/engine/). Built only when libmicrohttpd was found. */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/backend_cpu.h"
#include "cli/commands.h"
#include "cli/gpu_open.h"
#include "cli/plan_check.h"
#include "cli/runtime_opts.h"
#include "engine/engine.h"
#include "format/ggml_type.h"
#include "util/meminfo.h"
#include "runtime/kv_pool.h"
#include "grammar/token_mask.h"
#include "engine/chat_prompt.h"
#include "runtime/chat_template.h"
#include "parallel/parallel.h"
#include "runtime/memory_report.h"
#include "runtime/runtime.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm serve -m MODEL [options]\n"
            "  --host ADDR             numeric address to listen on (default 127.0.0.1)\n"
            "  --port N                port (default 8080; 0 = any free port, printed)\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' (also $FITLM_API_KEY; /health stays open)\n"
            "  --alias NAME            the model's id in the API (default: the file name)\n"
            "  --chat-template NAME    llama2, llama3, chatml, mistral (default: from the model)\n"
            "  -np, --parallel N       sequences running at once (default 4)\n"
            "  -c, --ctx-size N        context per sequence (default min(4096, model); 0 = the model's)\n"
            "  -t, --threads N         CPU threads (default: physical cores)\n"
            "  --kv-type f16|f32|q8_0  KV cache type (default f16)\n"
            "  --device D, -ngl N      run on a GPU (vulkan, vulkan:N; default cpu), its last N layers\n"
            "  --kv-block N            tokens per KV block (default 16)\n"
            "  --kv-mem SIZE           KV pool budget, e.g. 512M, 2G (default: -np full contexts, lowered\n"
            "                          to what is left of the memory available after the weights)\n"
            "  --mem-limit SIZE        memory this process may use (default: MemAvailable / cgroup limit)\n"
            "  --max-batch-tokens N    tokens per engine step (default 512)\n"
            "  --max-queue N           waiting requests before 503 (default 256)\n"
            "  --no-prefix-cache       never reuse KV blocks across requests\n"
            "  --http-threads N        HTTP threads (default 2)\n"
            "  --max-body SIZE         largest request body (default 8M; larger: 413)\n"
            "  --plan-check            at shutdown, the planner's time per token and throughput at the measured\n"
            "                          concurrency beside the measured ones (--profile FILE: the host profile;\n"
            "                          with layers on a GPU, --plan-gpu NAME: the catalog card to predict for)\n"
            "  --tp T --pp P --dp D    under mpirun -np T*P*D: split the model (tensor, pipeline) and serve\n"
            "                          D replica groups behind this endpoint (docs/parallel.md)\n"
            "  --pp-schedule S         auto (default), overlap or turns: the stages compute at the same time on\n"
            "                          cores of their own, or take turns with all of -t (auto: turns when the\n"
            "                          ranks' threads exceed this host's CPUs)\n"
            "Stops cleanly on SIGINT or SIGTERM (running requests end, streams close).\n");
}

/* A byte size as util/meminfo.h parses them ("512M", "2GiB", "1.5GB"). */
static int parse_size(const char *flag, const char *s, uint64_t *out) {
    fitlm_error err = {{0}};
    if (fitlm_parse_size(s, out, &err)) return fitlm_die("%s: %s", flag, err.msg), -1;
    return 0;
}

static const char *model_alias(const char *path, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0; /* a Hugging Face folder */
    return basename(buf);
}

/* Sizes the KV pool from the memory this process may use (MemAvailable, a
 * cgroup limit, ulimit -v, --mem-limit): what is left after the weights and
 * a scratch allowance. An explicit --kv-mem that does not fit is an error; the
 * default (-np full contexts) is lowered to what fits, with a warning; less
 * than one context is an error. */
static int serve_fit_pool(const fitlm_model *m, const runtime_opts *o, fitlm_engine_params *ep, fitlm_error *err) {
    fitlm_mem_avail av;
    fitlm_mem_available(o->mem_limit ? o->mem_limit : FITLM_MEM_UNKNOWN, &av);
    if (av.bytes == FITLM_MEM_UNKNOWN) return 0;
    const fitlm_hparams *hp = &m->hp;
    uint64_t weights = 0;
    for (size_t i = 0; i < m->n_tensors; i++) weights += m->tensors[i].nbytes;
    uint32_t n_ctx = ep->n_ctx ? ep->n_ctx : (hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX);
    uint32_t block = ep->kv_block ? ep->kv_block : 16, np = ep->n_parallel ? ep->n_parallel : 4;
    uint32_t batch = ep->max_batch_tokens ? ep->max_batch_tokens : 512;
    /* activations of one step (x, norms, q/k/v, attention, two FFN rows), logits, attention scratch */
    uint64_t scratch = (uint64_t)batch * 4 * (3ull * hp->dim + 2ull * hp->n_heads * hp->head_dim +
                                              2ull * hp->n_kv_heads * hp->head_dim + 2ull * hp->ffn_dim) +
                       (uint64_t)(np + 32) * hp->vocab_size * 4 + (uint64_t)n_ctx * 64 * 16;
    uint64_t block_bytes =
        fitlm_kv_pool_block_bytes(ep->kv_type, hp->n_layers, (int64_t)hp->n_kv_heads * hp->head_dim, block);
    uint64_t per_ctx = block_bytes * ((n_ctx + block - 1) / block);
    uint64_t room = av.bytes > weights + scratch ? av.bytes - weights - scratch : 0;
    char a[32], b[32], c[32], d[32];
    if (ep->kv_mem_bytes) {
        if (ep->kv_mem_bytes > room)
            return fitlm_fail(err, "--kv-mem %s does not fit: %s is free (%s) and the weights take %s; at most %s "
                                   "is left for the KV pool",
                              fitlm_format_size(ep->kv_mem_bytes, a, sizeof a), fitlm_format_size(av.bytes, b, sizeof b),
                              av.source, fitlm_format_size(weights, c, sizeof c),
                              fitlm_format_size(room, d, sizeof d));
        return 0;
    }
    if (per_ctx * np <= room) return 0;
    if (room < per_ctx)
        return fitlm_fail(err, "one context of %u tokens needs %s of KV cache but only %s is left after the weights "
                               "(%s free, %s): lower -c or use --kv-type q8_0",
                          n_ctx, fitlm_format_size(per_ctx, a, sizeof a), fitlm_format_size(room, b, sizeof b),
                          fitlm_format_size(av.bytes, c, sizeof c), av.source);
    ep->kv_mem_bytes = room;
    fprintf(stderr, "fitlm: warning: %u full contexts of %u tokens need %s of KV cache; the pool gets the %s "
                    "left after the weights (%s)\n",
            np, n_ctx, fitlm_format_size(per_ctx * np, a, sizeof a), fitlm_format_size(room, b, sizeof b), av.source);
    return 0;
}

int cmd_serve(int argc, char **argv) {
    runtime_opts o;
    runtime_opts_init(&o);
    o.accept_plan_check = true;
    serve_params sp = serve_params_default();
    fitlm_engine_params ep = fitlm_engine_params_default();
    const char *alias = NULL, *template_name = NULL;
    long x;
    uint64_t u;
    sp.api_key = getenv("FITLM_API_KEY");
    if (sp.api_key && !*sp.api_key) sp.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = runtime_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--host")) {
            if (!(sp.host = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--port")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, 65535, &x)) return 1;
            sp.port = (uint16_t)x;
        } else if (!strcmp(a, "--api-key")) {
            if (!(sp.api_key = opt_value(argc, argv, &i))) return 1;
            if (!*sp.api_key) return fitlm_die("--api-key: the key is empty");
        } else if (!strcmp(a, "--alias")) {
            if (!(alias = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(template_name = opt_value(argc, argv, &i))) return 1;
            if (fitlm_chat_template_from_name(template_name) == FITLM_CHAT_NONE)
                return fitlm_die("--chat-template: unknown template '%s' (llama2, llama3, chatml, mistral)",
                                 template_name);
        } else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, 4096, &x)) return 1;
            ep.n_parallel = (uint32_t)x;
        } else if (!strcmp(a, "--kv-block")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, 4096, &x)) return 1;
            ep.kv_block = (uint32_t)x;
        } else if (!strcmp(a, "--kv-mem")) {
            if (!(v = opt_value(argc, argv, &i)) || parse_size(a, v, &u)) return 1;
            if (u == 0) return fitlm_die("--kv-mem: the budget must be above 0");
            ep.kv_mem_bytes = u;
        } else if (!strcmp(a, "--max-batch-tokens")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, 1 << 20, &x)) return 1;
            ep.max_batch_tokens = (uint32_t)x;
        } else if (!strcmp(a, "--max-queue")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, 1 << 20, &x)) return 1;
            ep.max_queue = (uint32_t)x;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            ep.no_prefix_cache = true;
        } else if (!strcmp(a, "--http-threads")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, 64, &x)) return 1;
            sp.n_threads = (unsigned)x;
        } else if (!strcmp(a, "--max-body")) {
            if (!(v = opt_value(argc, argv, &i)) || parse_size(a, v, &u)) return 1;
            if (u < 1024 || u > (1u << 30)) return fitlm_die("--max-body: between 1K and 1G");
            sp.max_body_bytes = (size_t)u;
        } else {
            usage(stderr);
            return fitlm_die("serve: unknown option '%s'", a);
        }
    }
    if (!o.model_path) return fitlm_die("serve: no model given (use -m MODEL)");
    if (o.fit) return fitlm_die("serve: --fit is not supported yet (give -ngl N)");

    /* under mpirun the root (world rank 0) serves HTTP; the other ranks only
     * evaluate its steps (parallel/parallel.h) and keep the default signals */
    bool worker = fitlm_comm_world()->size > 1 && fitlm_comm_world()->rank != 0;
    /* SIGINT/SIGTERM are taken by sigwait below: block them before any thread
     * starts so every thread inherits the mask. Writes to closed sockets must
     * not kill the process. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (!worker) pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    fitlm_error err = {{0}};
    int rc = 1;
    fitlm_model *m = NULL;
    fitlm_backend *be = NULL;
    fitlm_tokenizer *tok = NULL;
    fitlm_engine *e = NULL;
    fitlm_engine **reps = NULL; /* data parallel (root): one engine per replica group, reps[0] = e */
    uint32_t n_reps = 1;
    char *default_system = NULL;
    fitlm_chat_prompt *chat = NULL;
    fitlm_token_trie *trie = NULL;
    fitlm_parallel *par = NULL;
    serve_server *srv = NULL;
    if (!worker) {
        srv = serve_server_new(&sp, &err);
        if (!srv || serve_server_start(srv, &err)) goto fail;
        const char *host = sp.host ? sp.host : "127.0.0.1";
        bool v6 = strchr(host, ':') != NULL;
        fprintf(stderr, "fitlm: listening on http://%s%s%s:%u (loading %s)\n", v6 ? "[" : "", host, v6 ? "]" : "",
                (unsigned)serve_server_port(srv), o.model_path);
    }

    /* the model, its tokenizer and the CPU backend, as fitlm run opens them */
    m = fitlm_model_load(o.model_path, &err);
    if (!m) goto fail;
    /* the CPU unless --device says otherwise (-ngl: layers on that GPU) */
    be = gpu_open_backend(o.device ? o.device : "cpu", o.n_threads, m, o.n_gpu_layers, false, o.kv_type, 0, 0, &err);
    if (!be) goto fail;
    if (fitlm_runtime_check_model(m, be, o.kv_type, &err)) {
        fitlm_error_prefix(&err, o.model_path);
        goto fail;
    }
    tok = runtime_model_tokenizer(m, "requests must send token ids", &err);
    if (!tok) fprintf(stderr, "fitlm: %s: %s\n", o.model_path, err.msg);
    if (tok && (uint32_t)fitlm_tokenizer_vocab_size(tok) > m->hp.vocab_size) {
        fitlm_fail(&err, "%s: the tokenizer has %d tokens but the model only %u", o.model_path,
                   fitlm_tokenizer_vocab_size(tok), m->hp.vocab_size);
        goto fail;
    }
    if (runtime_parallel_open(&o, m, &par, &err)) {
        fitlm_error_prefix(&err, o.model_path);
        goto fail;
    }
    ep.par = par;
    ep.kv_type = o.kv_type;
    ep.n_ctx = o.n_ctx == UINT32_MAX ? m->hp.ctx_len : o.n_ctx;
    if (serve_fit_pool(m, &o, &ep, &err)) goto fail;
    if (par) { /* every rank sizes its pool as the root did (free memory differs between ranks) */
        uint64_t pool[2] = {ep.kv_mem_bytes, ep.n_ctx};
        if (fitlm_comm_bcast(par->world, pool, sizeof pool, 0, &err)) goto fail;
        ep.kv_mem_bytes = pool[0];
        ep.n_ctx = (uint32_t)pool[1];
    }
    e = fitlm_engine_new(m, tok, be, &ep, &err);
    if (!e) goto fail;
    if (worker) { /* evaluate the root's steps until its engine is freed */
        if (o.memory_report) {
            fitlm_runtime_memory mem;
            char where[160];
            fitlm_engine_get_memory(e, &mem);
            fitlm_parallel_describe(par, where, sizeof where);
            fprintf(stderr, "memory of %s:\n", where);
            fitlm_hparams hp = m->hp;
            hp.n_layers = par->layer1 - par->layer0; /* the layers this rank caches */
            fitlm_memory_report_print(stderr, &mem, &hp);
        }
        if (fitlm_engine_serve_steps(e, &err)) goto fail;
        rc = 0;
        goto done;
    }
    /* data parallel: the root schedules every replica group; group d > 0 is
     * driven through a remote view (its ranks compute, the root samples) */
    n_reps = par ? par->dp_size : 1;
    reps = calloc(n_reps, sizeof *reps);
    if (!reps) {
        fitlm_fail(&err, "out of memory");
        goto fail;
    }
    reps[0] = e;
    for (uint32_t d = 1; d < n_reps; d++) {
        fitlm_engine_params rp = ep;
        rp.par = fitlm_parallel_replica(par, d);
        if (!(reps[d] = fitlm_engine_new(m, tok, be, &rp, &err))) goto fail;
    }
    for (uint32_t d = 0; d < n_reps; d++)
        if (fitlm_engine_start(reps[d], &err)) goto fail;

    fitlm_chat_template t = FITLM_CHAT_NONE;
    /* chat requests: the model's own Jinja template, or the named built-in format */
    const char *model_tpl = tok ? fitlm_tokenizer_chat_template(tok) : NULL;
    if (tok && (template_name || (model_tpl && *model_tpl))) {
        chat = fitlm_chat_prompt_new(tok, template_name, &err);
        if (!chat) goto fail;
    }
    if (template_name) t = fitlm_chat_template_from_name(template_name);
    char alias_buf[4096];
    serve_model_info mi = {
        .name = alias ? alias : model_alias(o.model_path, alias_buf, sizeof alias_buf),
        .tok = tok,
        .chat = chat,
        .tmpl = t,
        .default_system = default_system,
        .n_ctx = fitlm_engine_n_ctx(e),
        .vocab = fitlm_engine_vocab(e),
        .max_piece_bytes = serve_max_piece_bytes(tok),
    };
    serve_model_tool_setup(&mi); /* tool calls and reasoning in the template's formats */
    /* structured output (response_format): the vocabulary's token trie, built once */
    if (tok && !(trie = fitlm_token_trie_new(tok, &err))) goto fail;
    mi.trie = trie;
    fitlm_engine_stats st;
    fitlm_engine_get_stats(e, &st);
    uint64_t pool_tokens = (uint64_t)st.kv_blocks_total * st.kv_block_tokens;
    fprintf(stderr,
            "fitlm: model '%s': context %u per sequence, up to %u running, chat template: %s, %d threads\n"
            "fitlm: KV pool: %u blocks of %u tokens = %llu tokens, %.1f MiB (%s); maximum concurrency for %u tokens "
            "per request: %.2fx\n",
            mi.name, mi.n_ctx, ep.n_parallel, chat ? fitlm_chat_prompt_describe(chat) : "none",
            fitlm_backend_cpu_threads(be), st.kv_blocks_total, st.kv_block_tokens, (unsigned long long)pool_tokens,
            (double)st.kv_pool_bytes / (1024.0 * 1024.0), fitlm_type_name(o.kv_type), mi.n_ctx,
            fitlm_engine_max_concurrency(e, mi.n_ctx));
    if (n_reps > 1)
        fprintf(stderr, "fitlm: data parallel: %u replica groups of %u ranks (--tp %u x --pp %u), each with its own "
                        "KV pool; requests go to the least-loaded group\n",
                n_reps, par->tp_size * par->pp_size, par->tp_size, par->pp_size);
    if (par && par->pp_size > 1)
        fprintf(stderr, "fitlm: pipeline: %u stages, %s\n", par->pp_size,
                par->turns ? "in turns (one step in flight; a waiting rank sleeps and leaves the cores to the stage "
                             "that computes)"
                           : "overlapped (a step per stage in flight, each stage on its own cores)");
    if (serve_server_set_model(srv, reps, n_reps, &mi, &err)) goto fail;
    fprintf(stderr, "fitlm: ready%s\n", sp.api_key ? " (API key required)" : "");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "fitlm: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_server_stop(srv);
    for (uint32_t d = 0; d < n_reps; d++) {
        fitlm_engine_stats end;
        fitlm_engine_get_stats(reps[d], &end);
        char who[32] = "";
        if (n_reps > 1) snprintf(who, sizeof who, "replica %u: ", d);
        fprintf(stderr, "fitlm: %sserved %llu generated tokens in %llu steps; %llu preemptions\n", who,
                (unsigned long long)end.generated_tokens, (unsigned long long)end.steps,
                (unsigned long long)end.preemptions);
    }
    rc = 0;
    if (o.plan_check == 1) { /* the first replica's figures (the only one without --dp) */
        fitlm_engine_stats end;
        fitlm_engine_get_stats(reps[0], &end);
        fitlm_runtime_memory mem;
        fitlm_engine_get_memory(reps[0], &mem);
        uint64_t reqs = 0;
        for (size_t k = 0; k < sizeof end.requests_finished / sizeof end.requests_finished[0]; k++)
            reqs += end.requests_finished[k];
        double itl_sum = 0;
        uint64_t itl_n = 0;
        serve_server_itl(srv, &itl_sum, &itl_n);
        plan_check_serve pc = {
            .weight_bytes = mem.weight_bytes,
            .bf16_from_f16_bytes = mem.bf16_from_f16_bytes,
            .f16_matrix_bytes = mem.f16_matrix_bytes,
            .kv_type = o.kv_type,
            .threads = fitlm_backend_cpu_threads(be),
            .concurrency = end.steps ? (double)end.generated_tokens / (double)end.steps : 0,
            .mean_ctx = reqs ? ((double)end.prompt_tokens + (double)end.prefix_hit_tokens +
                                (double)end.generated_tokens / 2.0) / (double)reqs : 1,
            .itl_s = itl_n ? itl_sum / (double)itl_n : 0,
            .itl_count = itl_n,
            .generated = end.generated_tokens,
            .steps = end.steps,
            .steps_overlapped = end.steps_overlapped,
            .requests = reqs,
            .prompt_tokens = end.prompt_tokens,
            .tp = par ? par->tp_size : 1,
            .pp = par ? par->pp_size : 1,
            .turns = par && par->turns,
            .layer0 = par ? par->layer0 : 0,
            .layer1 = par ? par->layer1 : 0,
            .gpu = gpu_device_running(be),
            .model_path = o.model_path,
            .gpu_layers = gpu_layers_running(be),
            .plan_gpu = o.plan_gpu,
        };
        if (plan_check_serve_print(stderr, m, o.profile_path, &pc)) rc = 1;
    }
    goto done;
fail:
    fitlm_error_print(&err);
done:
    serve_server_free(srv); /* stops the engines' requests first */
    if (reps)
        for (uint32_t d = n_reps; d-- > 1;) fitlm_engine_free(reps[d]);
    free(reps);
    fitlm_engine_free(e);
    fitlm_chat_prompt_free(chat);
    free(default_system);
    fitlm_tokenizer_free(tok);
    fitlm_token_trie_free(trie);
    fitlm_parallel_free(par);
    if (be) be->free(be);
    fitlm_model_free(m);
    if (worker) fitlm_parallel_worker_done(rc);
    return rc;
}
