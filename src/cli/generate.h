/* The generation of `fitlm run` (one prompt) and its interactive chat mode,
 * through the serving engine on the calling thread (engine/engine.h: the same
 * scheduler, sampling, stop rules and UTF-8-safe text as `fitlm serve`, so
 * `run --temp 0` and the server give the same tokens). This file only prints:
 * text (or ids) as the engine's events arrive, and the timings. */
#ifndef FITLM_CLI_GENERATE_H
#define FITLM_CLI_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

typedef struct gen_result {
    int32_t *ids;       /* every generated id, the end-of-generation one included (malloc'd; caller frees) */
    long n_ids;
    long n;             /* generated tokens printed (the end-of-generation token is not) */
    int32_t stop_id;    /* the end-of-generation token that stopped it, or -1 */
    const char *reason; /* "end of generation token", "token limit", "context full" */
    long n_eval;        /* decode steps: generated ids after the first */
    double t_first;     /* seconds from submission to the first token (prompt processing) */
    double seconds;     /* from the first token to the end */
} gen_result;

/* Generates up to n_predict tokens after the prompt (capped to what the
 * context leaves; then the reason is "context full"), printing them to stdout
 * as they come: ids separated by spaces with print_ids, else text. With a
 * constraint (NULL: none; --json-schema, --grammar), only tokens it allows
 * are sampled and the reason is "output complete" when it ends the output;
 * generate_tokens takes ownership of it (freed whatever happens). 0, or -1
 * with err (a refused request or a backend error). */
int generate_tokens(fitlm_engine *e, const int32_t *prompt, uint32_t n_prompt, long n_predict,
                    const fitlm_sampler_params *sp, bool print_ids, fitlm_token_constraint *constraint,
                    gen_result *r, fitlm_error *err);

double gen_now_s(void);

#endif
