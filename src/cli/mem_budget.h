/* The memory budget of the one-sequence runtime commands (run, logits,
 * perplexity, bench): before the runtime allocates, compare weights + KV cache
 * for the context + scratch with the memory available (util/meminfo.h). */
#ifndef FITLM_CLI_MEM_BUDGET_H
#define FITLM_CLI_MEM_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

/* Checks that a runtime for model m with *n_ctx positions of KV type kv_type,
 * n_ubatch tokens per micro-batch (0 = default) and n_threads threads (0 = all
 * cores) fits in the memory available (mem_limit: --mem-limit, or
 * FITLM_MEM_UNKNOWN). When it does not: if ctx_from_user (the user asked for
 * this context with -c N), prints "fitlm: error: -c N needs ... -c M fits in X
 * free" and returns -1; otherwise lowers *n_ctx to what fits with a
 * "fitlm: warning:" on stderr and returns 0 (or -1 with an error when nothing
 * fits). Allocates nothing. */
int mem_budget_fit_context(const fitlm_model *m, int kv_type, uint32_t *n_ctx, uint32_t n_ubatch, int n_threads,
                           uint64_t mem_limit, bool ctx_from_user);

/* Tokenizing text of n bytes peaks at about FITLM_TOKENIZE_PEAK_FACTOR x n
 * (pre-token splits, merge queues, the id array). Checks that this fits the
 * memory available (mem_limit: --mem-limit or FITLM_MEM_UNKNOWN); otherwise
 * prints "fitlm: error: WHAT: ..." saying how much input would fit and returns
 * -1. Allocates nothing. */
#define FITLM_TOKENIZE_PEAK_FACTOR 24
int mem_budget_tokenize(const char *what, size_t n, uint64_t mem_limit);

#endif
