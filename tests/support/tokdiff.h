/* Shared harness of the tokenizer differential tests (test_tokenizer_*_diff.c):
 * the generated corpus they send to an outside reference, comparing and
 * reporting id sequences, and the decode(encode(x)) == x check. */
#ifndef FITLM_TESTS_TOKDIFF_H
#define FITLM_TESTS_TOKDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* strs[0..n) are generated strings; strs[n] is their concatenation. */
typedef struct tokdiff_corpus {
    int n;
    char **strs;  /* n + 1 malloc'd strings */
    size_t *lens; /* n + 1 lengths */
    size_t total; /* bytes in strs[0..n) (= lens[n]) */
} tokdiff_corpus;

/* Generates n strings of up to 599 bytes with textgen_string from `seed`
 * (string i joins about 1 + i % 24 segments, with textgen flags flags(i)) and
 * their concatenation, and writes the n + 1 strings as refio records to path.
 * Returns -1 if the file cannot be written (c is filled all the same). Aborts
 * when out of memory. Free with tokdiff_corpus_free. */
int tokdiff_corpus_make(tokdiff_corpus *c, uint64_t seed, int n, int (*flags)(int i), const char *path);
void tokdiff_corpus_free(tokdiff_corpus *c);

/* Whether ids[0..n) and ref[0..nref) are the same sequence. */
bool tokdiff_same(const int32_t *ids, size_t n, const int32_t *ref, size_t nref);

/* Prints to stderr which string differs (its first 300 bytes) and the first 60
 * ids of both sides, labelled. `what` prefixes the line ("" or "tokenizer.json: "). */
void tokdiff_print(const char *what, int i, const char *s, size_t len, const char *ref_label, const int32_t *ref,
                   size_t nref, const char *our_label, const int32_t *ids, size_t n);

/* Whether decoding ids[0..n) with t gives back exactly s[0..len). */
bool tokdiff_round_trips(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool special, const char *s,
                         size_t len);

/* Unless node runs and the npm package `pkg` is installed in
 * SRC/tests/node_modules (scripts/setup.sh installs them), prints a SKIP line
 * and exits 77. */
void tokdiff_need_node_package(const char *src, const char *pkg);

#endif
