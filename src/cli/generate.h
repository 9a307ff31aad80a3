/* The token generation loop shared by `fitlm run` (one prompt) and its
 * interactive chat mode: sample, print (text through a streaming detokenizer,
 * or ids), feed back, until an end-of-generation token, the token limit or a
 * full context. */
#ifndef FITLM_CLI_GENERATE_H
#define FITLM_CLI_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/runtime.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

typedef struct gen_ctx {
    fitlm_runtime *rt;
    fitlm_sampler *smp;
    const fitlm_tokenizer *tok; /* NULL: llama2.c model, ids 1 and 2 end generation */
    fitlm_detok_stream *ds;     /* NULL: print ids */
    float *logits;              /* vocab floats: the logits after the last evaluated token */
    int32_t *out;               /* room for out_cap generated ids */
    long out_cap;
} gen_ctx;

typedef struct gen_result {
    long n;             /* tokens generated (in out[0..n)) */
    int32_t stop_id;    /* the end-of-generation token that stopped it, or -1 */
    const char *reason; /* "end of generation token", "token limit", "context full" */
    long n_eval;        /* decode steps run (the last sampled token is evaluated only with feed_last) */
    double seconds;
} gen_result;

/* Generates up to n_predict (<= out_cap) tokens. With feed_last, the final
 * token (the last generated one, or the end-of-generation token) is also
 * evaluated, so the KV cache holds the whole reply (chat turns continue from
 * there). 0, or -1 with err. */
int generate_tokens(gen_ctx *g, long n_predict, bool feed_last, gen_result *r, fitlm_error *err);

double gen_now_s(void);

#endif
