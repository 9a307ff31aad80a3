/* The memory report printed by run and bench (and by logits / perplexity with
 * --memory-report): what the runtime holds, by component, and what the process
 * actually peaked at. */
#ifndef FITLM_RUNTIME_MEMORY_REPORT_H
#define FITLM_RUNTIME_MEMORY_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/runtime.h"

/* Peak resident set size of this process in bytes: VmHWM from
 * /proc/self/status, else getrusage's ru_maxrss. 0 if neither is available. */
uint64_t fitlm_peak_rss_bytes(void);

/* Prints the table:
 *   weights, KV cache (type, positions), scratch, sum, peak RSS. */
void fitlm_memory_report_print(FILE *out, const fitlm_runtime_memory *mem, const fitlm_hparams *hp);

#endif
