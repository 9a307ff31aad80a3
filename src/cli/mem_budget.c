#include "cli/mem_budget.h"

#include <stdio.h>
#include <unistd.h>

#include "runtime/mem_model.h"
#include "runtime/runtime.h"
#include "util/error.h"
#include "util/meminfo.h"

int mem_budget_fit_context(const fitlm_model *m, int kv_type, uint32_t *n_ctx, uint32_t n_ubatch, int n_threads,
                           uint64_t mem_limit, bool ctx_from_user) {
    const fitlm_hparams *hp = &m->hp;
    uint32_t ctx = *n_ctx;
    if (ctx == 0) ctx = hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX;
    if (ctx == 0 || ctx > hp->ctx_len) return 0; /* the runtime refuses these with its own message */
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    uint32_t ub = n_ubatch ? n_ubatch : FITLM_DEFAULT_UBATCH;
    if (ub > ctx) ub = ctx;
    /* the runtime's own sizes (runtime/mem_model.h, shared with the planner) */
    fitlm_mem_model mm;
    fitlm_mem_model_cpu(hp, fitlm_model_tensor_bytes(m), kv_type, ctx, ub, n_threads, &mm);
    fitlm_mem_need need = {
        .weights = mm.weights,
        .kv = mm.kv,
        .scratch = mm.scratch,
        .n_ctx = ctx,
        .ctx_flag = "-c",
    };
    need.per_position = mm.kv_per_position + mm.scratch_per_position;
    fitlm_mem_avail avail;
    fitlm_mem_available(mem_limit, &avail);
    fitlm_error err = {{0}};
    uint32_t fits = 0;
    if (fitlm_mem_budget_check(&need, &avail, &fits, &err) == 0) return 0;
    if (ctx_from_user || fits == 0) {
        fitlm_error_print(&err);
        return -1;
    }
    fprintf(stderr, "fitlm: warning: %s; using -c %u\n", err.msg, fits);
    *n_ctx = fits;
    return 0;
}

int mem_budget_tokenize(const char *what, size_t n, uint64_t mem_limit) {
    fitlm_mem_avail av;
    fitlm_mem_available(mem_limit, &av);
    if (av.bytes == FITLM_MEM_UNKNOWN || (uint64_t)n <= av.bytes / FITLM_TOKENIZE_PEAK_FACTOR) return 0;
    char a[32], b[32], c[32], d[32];
    fprintf(stderr,
            "fitlm: error: %s: tokenizing %s of text takes about %dx that (%s) but %s is free (%s); at most %s of "
            "text fits: split the input\n",
            what, fitlm_format_size(n, a, sizeof a), FITLM_TOKENIZE_PEAK_FACTOR,
            fitlm_format_size((uint64_t)n * FITLM_TOKENIZE_PEAK_FACTOR, b, sizeof b),
            fitlm_format_size(av.bytes, c, sizeof c), av.source,
            fitlm_format_size(av.bytes / FITLM_TOKENIZE_PEAK_FACTOR, d, sizeof d));
    return -1;
}
