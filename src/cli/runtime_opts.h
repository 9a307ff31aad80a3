/* Shared option handling of the runtime commands (run, logits, perplexity,
 * bench): strict number parsing, token id lists, and opening model + backend +
 * runtime from the common flags (-m, -t, -c, --kv-type, --batch, --mem-limit). */
#ifndef FITLM_CLI_RUNTIME_OPTS_H
#define FITLM_CLI_RUNTIME_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/runtime.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* Strict parsers: the whole string must be a number in [lo, hi]. On failure
 * they print "fitlm: error: FLAG: ..." and return -1. */
int opt_parse_long(const char *flag, const char *s, long lo, long hi, long *out);
int opt_parse_float(const char *flag, const char *s, double lo, double hi, float *out);
int opt_parse_u64(const char *flag, const char *s, uint64_t *out);

/* Parses whitespace/comma separated token ids. Returns a malloc'd array the
 * caller frees (*n set), or NULL with err (empty list, non-numeric, negative). */
int32_t *opt_parse_ids(const char *s, uint32_t *n, fitlm_error *err);
/* opt_parse_ids for the value of a flag: on failure prints
 * "fitlm: error: FLAG: reason" and returns NULL. Caller frees the array. */
int32_t *opt_parse_ids_flag(const char *flag, const char *s, uint32_t *n);

/* Gets the value of flag argv[*i] (advancing *i) or prints an error. */
const char *opt_value(int argc, char **argv, int *i);

/* The flags every runtime command shares. */
typedef struct runtime_opts {
    const char *model_path;
    int n_threads;     /* -t; 0 = physical cores */
    uint32_t n_ctx;    /* -c; 0 = default */
    int kv_type;       /* --kv-type */
    uint32_t n_ubatch; /* --batch / -ub; 0 = default */
    bool memory_report;
    bool ctx_clamp;    /* n_ctx above the model's context: use the model's (else error) */
    bool check_tensors; /* --check-tensors: scan every weight for NaN/Inf before running */
    uint64_t mem_limit; /* --mem-limit bytes; FITLM_MEM_UNKNOWN (UINT64_MAX) = none */
    bool accept_plan_check; /* set by commands that print a plan check (run, bench): else the flags are unknown */
    int plan_check;     /* --plan-check 1, --no-plan-check 0, -1 = the command's default */
    const char *profile_path; /* --profile FILE: the host profile for --plan-check (NULL = default path) */
    const char *plan_gpu;     /* --plan-gpu NAME: the catalog card a GPU run's plan check predicts for (NULL =
                               * the one the device name matches) */
    const char *device; /* --device cpu|vulkan[:N]; NULL = fitlm_backend_default_name() */
    int n_gpu_layers;   /* -ngl / --gpu-layers; -1 = all */
    bool fit;           /* --fit: the most layers the device's memory holds */
    uint32_t tp, pp, dp; /* --tp, --pp, --dp: ranks of a distributed run (mpirun -np tp*pp*dp); 1 = none */
    const char *pp_layers; /* --pp-layers 10,12: layers per pipeline stage; NULL = balanced */
    int pp_schedule;       /* --pp-schedule: 1 turns, 0 overlap, -1 auto (fitlm_parallel_set_turns) */
} runtime_opts;

void runtime_opts_init(runtime_opts *o);

/* If argv[*i] is one of the shared flags, consumes it (and its value) and
 * returns 1; returns 0 if not a shared flag; -1 after printing an error. */
int runtime_opts_parse(runtime_opts *o, int argc, char **argv, int *i);

/* Opens the model, checks it for the forward pass, creates the backend and the
 * runtime after checking that weights + KV cache + scratch fit in the memory
 * available (cli/mem_budget.h: an explicit -c that does not fit is an error,
 * the default or -c 0 is lowered to what fits with a warning). On success all three are set (caller frees in reverse order with
 * runtime_session_close); on failure prints the error and returns -1. */
typedef struct runtime_session {
    fitlm_model *model;
    fitlm_backend *backend;
    fitlm_runtime *rt;          /* the one-sequence runtime (logits, perplexity, bench) */
    struct fitlm_engine *engine; /* or the engine (run) */
    struct fitlm_parallel *par;  /* this rank's place in a distributed run (mpirun); NULL in one process */
} runtime_session;

int runtime_session_open(runtime_session *s, const runtime_opts *o);

/* This rank's place in a distributed run from --tp/--pp/--dp/--pp-layers and
 * the world (parallel/parallel.h): *out NULL in a plain single process.
 * Collective under mpirun. The caller frees *out with fitlm_parallel_free. 0,
 * or -1 with err (e.g. -np not T x P x D, a layout the model does not allow). */
struct fitlm_parallel;
int runtime_parallel_open(const runtime_opts *o, const fitlm_model *m, struct fitlm_parallel **out, fitlm_error *err);
/* Sets *v on every rank to the root's value (no-op when par is NULL). 0 or -1. */
int runtime_parallel_agree_u32(struct fitlm_parallel *par, uint32_t *v, fitlm_error *err);

/* Under mpirun (--tp/--pp/--dp), runtime_session_open and
 * runtime_session_start_engine turn every rank but the root into a worker:
 * it evaluates the root's steps until the root is done, closes the session,
 * records its status (fitlm_parallel_worker_status, which main returns) and
 * the call returns -1 without printing, so the command simply ends. */

/* The first half of runtime_session_open: the model, checked for the forward
 * pass, and the backend; neither runtime nor engine yet. Same contract. */
int runtime_session_open_model(runtime_session *s, const runtime_opts *o);

/* Creates the serving engine over the session's model and backend with the
 * shared flags (-c per sequence, --kv-type, --batch as the tokens per step)
 * for n_parallel sequences; tok (may be NULL) must outlive the session's
 * engine. On failure prints the error and returns -1 (the session stays
 * open; close it as usual). */
int runtime_session_start_engine(runtime_session *s, const runtime_opts *o, const fitlm_tokenizer *tok,
                                 uint32_t n_parallel);
void runtime_session_close(runtime_session *s);

/* Prints the runtime's (or engine's) memory report (weights, KV cache, scratch) to out. */
void runtime_session_print_memory(const runtime_session *s, FILE *out);

/* The model's tokenizer: from the GGUF metadata or the HF folder. For a model
 * without a vocabulary (llama2.c checkpoints) NULL with err set to "this FORMAT
 * model has no vocabulary: HINT" (hint: what the command takes instead).
 * Caller frees with fitlm_tokenizer_free(). */
fitlm_tokenizer *runtime_model_tokenizer(const fitlm_model *m, const char *hint, fitlm_error *err);

#endif
