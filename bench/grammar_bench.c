/* The cost of grammar-constrained token masks (src/grammar/token_mask.h):
 *
 *     build/bench/grammar_bench VOCAB [VOCAB...]
 *
 * VOCAB: anything fitlm_tokenizer_load reads (a vocab-only GGUF such as
 * ../shared/data/vocab/ggml-vocab-llama-spm.gguf, a tokenizer.json). For each
 * vocabulary and each of a few grammars, random walks generate up to 256
 * tokens, each picked uniformly among the allowed ones (an adversarial load:
 * a real model revisits the same positions far more, e.g. inside a string),
 * and the time of every mask (the allowed-token bitmap plus setting the
 * logits of the others to -inf) and every accept is measured: mean, median,
 * p99 and max per token, and the first mask of a fresh matcher. Figures are in docs/structured-output.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/json_schema.h"
#include "grammar/token_mask.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}

static const char *const SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
    "\"email\":{\"type\":\"string\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"zip\":{\"type\":\"string\"}},"
    "\"required\":[\"city\"]},\"score\":{\"type\":\"number\"},\"kind\":{\"enum\":[\"a\",\"b\",\"c\"]}},"
    "\"required\":[\"name\",\"age\",\"tags\"]}";

static void bench(const fitlm_tokenizer *tok, const fitlm_token_trie *trie, const char *label, const char *gbnf,
                  const char *schema) {
    enum { WALKS = 8, STEPS = 256 };
    int32_t vocab = fitlm_tokenizer_vocab_size(tok);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    double *mt = malloc(WALKS * STEPS * sizeof *mt), *at = malloc(WALKS * STEPS * sizeof *at);
    size_t n = 0;
    double first = 0;
    for (int w = 0; w < WALKS; w++) {
        fitlm_error e = {{0}};
        fitlm_grammar *g = schema ? fitlm_json_schema_grammar(schema, strlen(schema), &e)
                                  : fitlm_grammar_parse(gbnf, strlen(gbnf), &e);
        fitlm_token_matcher *m = g ? fitlm_token_matcher_new(g, trie, &e) : NULL;
        if (!m) {
            fprintf(stderr, "%s: %s\n", label, e.msg);
            exit(1);
        }
        for (int s = 0; s < STEPS; s++) {
            for (int32_t i = 0; i < vocab; i++) logits[i] = 0.0f;
            double t0 = now();
            uint32_t count = fitlm_token_matcher_mask(m, logits, (uint32_t)vocab);
            double t1 = now();
            if (s == 0) first += t1 - t0;
            if (!count) break;
            uint32_t pick = rnd() % count, seen = 0;
            int32_t id = -1;
            for (int32_t i = 0; i < vocab && id < 0; i++)
                if (isfinite(logits[i]) && seen++ == pick) id = i;
            if (fitlm_tokenizer_is_eog(tok, id)) break;
            double t3 = now();
            int r = fitlm_token_matcher_accept(m, id);
            double t4 = now();
            mt[n] = t1 - t0;
            at[n] = t4 - t3;
            n++;
            if (r != 0) break;
        }
        fitlm_token_matcher_free(m);
    }
    double sum = 0, asum = 0;
    for (size_t i = 0; i < n; i++) sum += mt[i], asum += at[i];
    qsort(mt, n, sizeof *mt, cmp_d);
    printf("%-12s %-22s tokens %5zu  mask mean %7.3f ms  p50 %7.3f  p99 %7.3f  max %7.3f  first %7.3f  accept mean "
           "%6.3f ms\n",
           fitlm_tokenizer_model_name(tok), label, n, 1e3 * sum / (double)n, 1e3 * mt[n / 2], 1e3 * mt[n * 99 / 100],
           1e3 * mt[n - 1], 1e3 * first / WALKS, 1e3 * asum / (double)n);
    free(logits);
    free(mt);
    free(at);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: grammar_bench VOCAB [VOCAB...]\n");
        return 1;
    }
    for (int a = 1; a < argc; a++) {
        fitlm_error e = {{0}};
        fitlm_tokenizer *tok = fitlm_tokenizer_load(argv[a], &e);
        if (!tok) {
            fprintf(stderr, "fitlm: error: %s\n", e.msg);
            return 1;
        }
        double t0 = now();
        fitlm_token_trie *trie = fitlm_token_trie_new(tok, &e);
        printf("%s: %d tokens, trie of %u nodes built in %.1f ms\n", argv[a], fitlm_tokenizer_vocab_size(tok),
               fitlm_token_trie_nodes(trie), 1e3 * (now() - t0));
        bench(tok, trie, "json_object", fitlm_json_object_gbnf(), NULL);
        bench(tok, trie, "json_schema (person)", NULL, SCHEMA);
        bench(tok, trie, "gbnf arithmetic", "root ::= e\ne ::= t ((\"+\"|\"-\") t)*\nt ::= [0-9]+ | \"(\" e \")\"\n",
              NULL);
        fitlm_token_trie_free(trie);
        fitlm_tokenizer_free(tok);
    }
    return 0;
}
