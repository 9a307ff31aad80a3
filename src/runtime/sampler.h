/* Token sampling from a logit vector.
 *
 * The chain (the order llama.cpp's default sampler uses):
 *   1. repetition penalty over the last repeat_last_n tokens seen (prompt and
 *      generated; each distinct token once): a positive logit is divided by the
 *      penalty, a negative one multiplied by it;
 *   2. temp <= 0: greedy (highest logit, lowest id on ties) — stop here;
 *   3. top-k: keep the k highest logits;
 *   4. top-p: softmax of what is left, keep the smallest highest-first prefix
 *      whose probabilities sum to >= top_p;
 *   5. min-p: keep tokens whose probability is >= min_p x the highest one;
 *   6. temperature: divide the logits by temp, softmax, draw one token with the
 *      sampler's own PCG32 generator (same seed -> same draws).
 * At least one token always survives each filter.
 */
#ifndef FITLM_RUNTIME_SAMPLER_H
#define FITLM_RUNTIME_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct fitlm_sampler_params {
    float temp;             /* <= 0: greedy (default 0.8) */
    int32_t top_k;          /* <= 0: off (default 40) */
    float top_p;            /* >= 1: off (default 0.95) */
    float min_p;            /* <= 0: off (default 0.05) */
    float repeat_penalty;   /* 1: off (default 1.0) */
    int32_t repeat_last_n;  /* tokens the penalty looks back over (default 64; 0 = off) */
    uint64_t seed;
} fitlm_sampler_params;

fitlm_sampler_params fitlm_sampler_params_default(void);

/* Checks the ranges (temp >= 0, top_p in (0, 1], min_p in [0, 1], penalty > 0,
 * last_n >= 0). 0 or -1 with err. */
int fitlm_sampler_params_check(const fitlm_sampler_params *p, fitlm_error *err);

/* ---- building blocks (exposed for tests) ---- */

typedef struct fitlm_token_prob {
    int32_t id;
    float logit;
    float p;
} fitlm_token_prob;

typedef struct fitlm_candidates {
    fitlm_token_prob *data; /* caller-provided storage for at least `vocab` entries */
    size_t n;
    bool sorted; /* descending by logit */
    /* optional caller-owned scratch of 2 x n keys for a full sort (the
     * sampler's, allocated once); NULL: the sort allocates its own */
    uint64_t *sort_scratch;
} fitlm_candidates;

/* PCG32 (O'Neill): a seeded, reproducible generator. */
typedef struct fitlm_rng {
    uint64_t state, inc;
} fitlm_rng;
void fitlm_rng_seed(fitlm_rng *r, uint64_t seed);
/* PCG32's own seeding (initial state, stream), as in the reference pcg32_srandom_r. */
void fitlm_rng_seed_stream(fitlm_rng *r, uint64_t initstate, uint64_t stream);
uint32_t fitlm_rng_u32(fitlm_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float fitlm_rng_uniform(fitlm_rng *r);

/* Fills c with every token (id order, unsorted). */
void fitlm_cand_from_logits(fitlm_candidates *c, const float *logits, size_t vocab);
/* c must still be in id order (straight from fitlm_cand_from_logits). `seen`
 * is scratch of vocab bytes, all zero on entry and on return. */
void fitlm_cand_penalize(fitlm_candidates *c, const int32_t *recent, size_t n_recent, float penalty, uint8_t *seen);
int32_t fitlm_cand_argmax(const fitlm_candidates *c);
void fitlm_cand_top_k(fitlm_candidates *c, int32_t k);  /* leaves c sorted */
void fitlm_cand_softmax(fitlm_candidates *c);           /* sorts, fills p */
void fitlm_cand_top_p(fitlm_candidates *c, float top_p);
void fitlm_cand_min_p(fitlm_candidates *c, float min_p);
/* Draws from the softmax of logit/temp (temp > 0). */
int32_t fitlm_cand_sample(fitlm_candidates *c, float temp, fitlm_rng *rng);

/* ---- the sampler ---- */

typedef struct fitlm_sampler fitlm_sampler;

/* Caller frees with fitlm_sampler_free(). NULL with err (bad params, OOM). */
fitlm_sampler *fitlm_sampler_new(const fitlm_sampler_params *p, size_t vocab, fitlm_error *err);
void fitlm_sampler_free(fitlm_sampler *s);

/* Records a token as seen (prompt tokens and every sampled token) for the
 * repetition penalty. */
void fitlm_sampler_accept(fitlm_sampler *s, int32_t id);

/* Picks the next token from vocab logits (not modified). Allocation-free. */
int32_t fitlm_sampler_sample(fitlm_sampler *s, const float *logits);

/* log(sum_i e^x[i]) over n > 0 values (the normalizer of log-softmax): the
 * maximum, then the sum of e^(x - max) in double. Vectorized (8 lanes, about
 * 1 ulp per exp) where the CPU has AVX2 and FMA; the result depends only on
 * the values, not on what else the caller computes. */
double fitlm_logsumexp(const float *x, size_t n);
double fitlm_logsumexp_avx2(const float *x, size_t n); /* the AVX2 path; call only where the CPU has it */

#endif
