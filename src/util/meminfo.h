/* Memory budgets: how much memory this process may still use, byte sizes as
 * users write them ("512MiB", "12G", "1.5GB"), and the check that compares
 * what a command is about to reserve (weights, KV cache, scratch) with what is
 * available, saying what would fit when it does not.
 *
 * Nothing here allocates; every result is a plain value or a caller buffer. */
#ifndef FITLM_UTIL_MEMINFO_H
#define FITLM_UTIL_MEMINFO_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define FITLM_MEM_UNKNOWN UINT64_MAX

/* Parses a byte size, strictly: digits with an optional fraction, then an
 * optional unit. K/M/G/T alone and KiB/MiB/GiB/TiB are powers of 1024;
 * KB/MB/GB/TB are powers of 1000; B or no unit means bytes (then no fraction).
 * Units are case-insensitive; no spaces, signs or exponents. A fractional size
 * is rounded down to whole bytes. Overflow, an empty string or a stray
 * character is an error ("'12X' is not a size (examples: 4096, 512MiB, 12G,
 * 1.5GB)"). 0 on success, -1 with err. */
int fitlm_parse_size(const char *s, uint64_t *out, fitlm_error *err);

/* Writes a human size ("12.1 GiB", "512.0 MiB", "900 B") into buf (cap >= 16
 * recommended; truncated otherwise). Returns buf. */
char *fitlm_format_size(uint64_t bytes, char *buf, size_t cap);

/* The memory this process may still use: the smallest of the bounds known. */
typedef struct fitlm_mem_avail {
    uint64_t bytes;      /* min of the four below; FITLM_MEM_UNKNOWN when none is known */
    const char *source;  /* static string naming the bound that set `bytes`: "MemAvailable",
                            "cgroup limit", "ulimit -v", "--mem-limit" or "unknown" */
    uint64_t meminfo;    /* MemAvailable of /proc/meminfo, or FITLM_MEM_UNKNOWN */
    uint64_t cgroup;     /* cgroup memory limit minus current usage (v2 memory.max -
                            memory.current along the process's cgroup and its parents,
                            or v1 memory.limit_in_bytes - memory.usage_in_bytes),
                            or FITLM_MEM_UNKNOWN when unlimited/absent */
    uint64_t address_space; /* RLIMIT_AS (ulimit -v) minus the address space in use
                               (mapped weights included), or FITLM_MEM_UNKNOWN */
    uint64_t user;       /* the user's limit (--mem-limit), or FITLM_MEM_UNKNOWN */
} fitlm_mem_avail;

/* Fills *out for this process. user_limit: the --mem-limit value, or
 * FITLM_MEM_UNKNOWN. Never fails: unreadable sources are simply unknown. */
void fitlm_mem_available(uint64_t user_limit, fitlm_mem_avail *out);

/* Same, reading the given files instead of the system's (for tests):
 * meminfo_path replaces /proc/meminfo, proc_cgroup_path /proc/self/cgroup and
 * cgroup_root /sys/fs/cgroup. Any may be NULL (then that source is unknown).
 * The process's own RLIMIT_AS is always read. */
void fitlm_mem_available_from(const char *meminfo_path, const char *proc_cgroup_path, const char *cgroup_root,
                              uint64_t user_limit, fitlm_mem_avail *out);

/* What a command is about to reserve. */
typedef struct fitlm_mem_need {
    uint64_t weights;       /* weight bytes that must be resident (mapped or copied) */
    uint64_t kv;            /* KV cache for n_ctx positions */
    uint64_t scratch;       /* activations, logits, attention scratch */
    uint32_t n_ctx;         /* the context those figures are for */
    uint64_t per_position;  /* bytes (KV + scratch) each context position adds; 0 if unknown */
    const char *ctx_flag;   /* how the user sets the context, for the message ("-c");
                               NULL: "a context of" */
} fitlm_mem_need;

/* 0 if weights + kv + scratch fit in avail->bytes (always when unknown).
 * Otherwise -1 with err saying what is needed, what is free (and by which
 * bound) and what fits: "-c 65536 needs 20.0 GiB (weights 1.0 MiB, KV cache
 * 20.0 GiB, scratch 3.1 MiB) but 12.1 GiB is free (MemAvailable); -c 32768 fits
 * in 12.1 GiB free", or "the weights alone (...) do not fit ...". *fit_ctx (may be NULL)
 * gets the largest context that fits, rounded down to a multiple of 256 (or the
 * exact figure under 256), 0 when none does or per_position is 0. */
int fitlm_mem_budget_check(const fitlm_mem_need *need, const fitlm_mem_avail *avail, uint32_t *fit_ctx,
                           fitlm_error *err);

#endif
