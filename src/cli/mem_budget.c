#include "cli/mem_budget.h"

#include <stdio.h>
#include <unistd.h>

#include "runtime/kv_cache.h"
#include "runtime/runtime.h"
#include "util/error.h"
#include "util/meminfo.h"

/* Scratch the runtime and the CPU backend allocate for n_ctx positions: the
 * per-micro-batch activations and logits (runtime.c) and, per thread, the
 * attention scores of a KV head's query group over the context (or the
 * AVX-512 path's 16 lanes per position) — an estimate a little above the real
 * figure. *per_position gets the part that grows with the context. */
static uint64_t scratch_estimate(const fitlm_hparams *hp, uint32_t n_ctx, uint32_t ub, int n_threads,
                                 uint64_t *per_position) {
    uint64_t q_dim = (uint64_t)hp->n_heads * hp->head_dim, kv_dim = (uint64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t act = (uint64_t)ub * (3ull * hp->dim + 2 * q_dim + 2 * kv_dim + 2ull * hp->ffn_dim) * 4 +
                   (uint64_t)ub * hp->vocab_size * 4;
    uint64_t group = hp->n_kv_heads ? hp->n_heads / hp->n_kv_heads : 1;
    if (group < 16) group = 16;
    *per_position = group * 4 * (uint64_t)n_threads;
    return act + (uint64_t)n_ctx * *per_position + (uint64_t)hp->head_dim * 32 * (uint64_t)n_threads;
}

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
    int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t kv_per_pos = fitlm_kv_cache_bytes(kv_type, 1, hp->n_layers, kv_dim);
    uint64_t scratch_per_pos = 0;
    fitlm_mem_need need = {
        .weights = fitlm_model_tensor_bytes(m),
        .kv = fitlm_kv_cache_bytes(kv_type, ctx, hp->n_layers, kv_dim),
        .scratch = scratch_estimate(hp, ctx, ub, n_threads, &scratch_per_pos),
        .n_ctx = ctx,
        .ctx_flag = "-c",
    };
    need.per_position = kv_per_pos + scratch_per_pos;
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
