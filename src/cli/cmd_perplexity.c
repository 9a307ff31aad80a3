/* fitlm perplexity: llama.cpp-style perplexity over non-overlapping chunks,
 * scoring the second half of each chunk (docs/runtime.md has the method). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/mem_budget.h"
#include "cli/runtime_opts.h"
#include "format/gguf.h"
#include "runtime/memory_report.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

#define PPL_DEFAULT_CTX 512
#define PPL_MAX_FILE (1024u * 1024u * 1024u)

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm perplexity -m MODEL (-f TEXT | --ids-file F) [-c N] [-t N] [--kv-type T] [--batch N]\n"
            "  Splits the tokens into non-overlapping chunks of -c tokens (default 512), evaluates\n"
            "  each chunk from an empty cache and scores the second half of it (each token given\n"
            "  all tokens before it in the chunk). Prints the running perplexity per chunk and\n"
            "  the final estimate with its standard error.\n"
            "  -f FILE         text file (tokenized with the model's tokenizer, BOS first)\n"
            "  --ids-file F    token ids (whitespace separated) instead, e.g. for llama2.c models\n"
            "  --chunks N      use at most N chunks\n"
            "  --device D      cpu, vulkan or vulkan:N (default: the first discrete GPU, else cpu)\n"
            "  -ngl N, --fit   layers on the GPU (the last N; default all), or as many as fit\n");
}

/* -log p(target) from a logit row, in double. */
static double nll_of(const float *lg, uint32_t vocab, int32_t target) {
    double mx = lg[0];
    for (uint32_t i = 1; i < vocab; i++)
        if (lg[i] > mx) mx = lg[i];
    double sum = 0.0;
    for (uint32_t i = 0; i < vocab; i++) sum += exp((double)lg[i] - mx);
    return -((double)lg[target] - mx - log(sum));
}

int cmd_perplexity(int argc, char **argv) {
    runtime_opts o;
    runtime_opts_init(&o);
    const char *text_path = NULL, *ids_path = NULL;
    long max_chunks = 0;
    bool ctx_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ctx_given = true;
        int r = runtime_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(text_path = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ids-file")) {
            if (!(ids_path = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--chunks")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, INT32_MAX, &max_chunks)) return 1;
        } else {
            usage(stderr);
            return fitlm_die("perplexity: unknown option '%s'", a);
        }
    }
    if (!o.model_path) return fitlm_die("perplexity: no model given (use -m MODEL)");
    if (!text_path == !ids_path) return fitlm_die("perplexity: give exactly one of -f TEXT or --ids-file F");
    if (!ctx_given) o.n_ctx = PPL_DEFAULT_CTX;

    fitlm_error err = {{0}};
    runtime_session s;
    int rc = 1;
    char *text = NULL;
    int32_t *toks = NULL;
    size_t n_tok = 0;
    float *logits = NULL;
    fitlm_tokenizer *tok = NULL;
    bool replace_bos = false;
    int32_t bos = -1;

    o.ctx_clamp = !ctx_given; /* the default 512 shrinks to a smaller model context */
    if (runtime_session_open(&s, &o)) return 1;
    const fitlm_model *m = s.model;
    if (ids_path) {
        size_t len = 0;
        text = fitlm_file_read_all(ids_path, PPL_MAX_FILE, &len, &err);
        if (!text) goto fail_err;
        uint32_t n = 0;
        toks = opt_parse_ids(text, &n, &err);
        if (!toks) {
            fitlm_error_prefix(&err, ids_path);
            goto fail_err;
        }
        n_tok = n;
    } else {
        tok = runtime_model_tokenizer(m, "give token ids with --ids-file", &err);
        if (!tok) {
            fitlm_error_prefix(&err, o.model_path);
            goto fail_err;
        }
        size_t len = 0;
        text = fitlm_file_read_all(text_path, PPL_MAX_FILE, &len, &err);
        if (!text) goto fail_err;
        if (mem_budget_tokenize(text_path, len, o.mem_limit)) goto done;
        if (fitlm_tokenizer_encode(tok, text, len, true, false, &toks, &n_tok, &err)) {
            fitlm_error_prefix(&err, text_path);
            goto fail_err;
        }
        bos = fitlm_tokenizer_bos(tok);
        replace_bos = fitlm_tokenizer_add_bos(tok) && bos >= 0;
    }
    uint32_t vocab = fitlm_runtime_vocab(s.rt), n_ctx = fitlm_runtime_n_ctx(s.rt);
    for (size_t i = 0; i < n_tok; i++)
        if (toks[i] < 0 || (uint32_t)toks[i] >= vocab) {
            fitlm_fail(&err, "token id %d is outside the vocabulary (0..%u)", toks[i], vocab - 1);
            goto fail_err;
        }
    if (n_ctx < 4) {
        fitlm_fail(&err, "-c must be at least 4 for perplexity");
        goto fail_err;
    }
    size_t n_chunks = n_tok / n_ctx;
    if (max_chunks > 0 && n_chunks > (size_t)max_chunks) n_chunks = (size_t)max_chunks;
    if (n_chunks == 0) {
        fitlm_fail(&err, "%zu tokens are fewer than one chunk of %u (lower -c)", n_tok, n_ctx);
        goto fail_err;
    }
    uint32_t first = n_ctx / 2;
    logits = malloc((size_t)(n_ctx - first) * vocab * sizeof(float));
    if (!logits) {
        fitlm_fail(&err, "out of memory for %u x %u logits", n_ctx - first, vocab);
        goto fail_err;
    }
    fprintf(stderr, "fitlm: %zu tokens, %zu chunks of %u, scoring positions %u..%u of each\n", n_tok, n_chunks, n_ctx,
            first + 1, n_ctx - 1);
    double sum = 0.0, sum2 = 0.0;
    uint64_t count = 0;
    for (size_t c = 0; c < n_chunks; c++) {
        int32_t *chunk = toks + c * n_ctx;
        int32_t saved = chunk[0];
        if (replace_bos) chunk[0] = bos;
        fitlm_runtime_reset(s.rt);
        /* the first half only fills the cache; logits are kept for the second */
        int e = fitlm_runtime_eval(s.rt, chunk, first, NULL, false, &err) ||
                fitlm_runtime_eval(s.rt, chunk + first, n_ctx - first, logits, true, &err);
        chunk[0] = saved;
        if (e) goto fail_err;
        for (uint32_t j = first; j + 1 < n_ctx; j++) {
            double nll = nll_of(logits + (size_t)(j - first) * vocab, vocab, chunk[j + 1]);
            sum += nll;
            sum2 += nll * nll;
            count++;
        }
        printf("[%zu] %.4f\n", c + 1, exp(sum / (double)count));
        fflush(stdout);
    }
    double mean = sum / (double)count;
    double var = count > 1 ? (sum2 / (double)count - mean * mean) * (double)count / (double)(count - 1) : 0.0;
    if (var < 0) var = 0;
    double se = sqrt(var / (double)count);
    double ppl = exp(mean);
    printf("Final estimate: PPL = %.4f +/- %.5f (%llu tokens scored, mean NLL %.6f)\n", ppl, ppl * se,
           (unsigned long long)count, mean);
    if (o.memory_report) runtime_session_print_memory(&s, stderr);
    rc = 0;
    goto done;
fail_err:
    fitlm_error_print(&err);
done:
    free(logits);
    free(toks);
    free(text);
    fitlm_tokenizer_free(tok);
    runtime_session_close(&s);
    return rc;
}
