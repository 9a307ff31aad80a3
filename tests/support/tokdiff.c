#include "support/tokdiff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/refio.h"
#include "support/textgen.h"

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static int corpus_write(const tokdiff_corpus *c, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    for (int i = 0; i <= c->n; i++) refio_write_record(f, c->strs[i], c->lens[i]);
    return fclose(f) == 0 ? 0 : -1;
}

int tokdiff_corpus_make(tokdiff_corpus *c, uint64_t seed, int n, int (*flags)(int i), const char *path) {
    const size_t cap = 600;
    c->n = n;
    c->total = 0;
    c->strs = calloc((size_t)n + 1, sizeof *c->strs);
    c->lens = calloc((size_t)n + 1, sizeof *c->lens);
    if (!c->strs || !c->lens) abort();
    uint64_t rng = seed;
    for (int i = 0; i < n; i++) {
        c->strs[i] = xmalloc(cap);
        c->lens[i] = textgen_string(&rng, c->strs[i], cap, 1 + i % 24, flags(i));
        c->total += c->lens[i];
    }
    c->strs[n] = xmalloc(c->total + 1);
    for (int i = 0; i < n; i++) {
        memcpy(c->strs[n] + c->lens[n], c->strs[i], c->lens[i]);
        c->lens[n] += c->lens[i];
    }
    return corpus_write(c, path);
}

void tokdiff_corpus_free(tokdiff_corpus *c) {
    if (c->strs)
        for (int i = 0; i <= c->n; i++) free(c->strs[i]);
    free(c->strs);
    free(c->lens);
    c->strs = NULL;
    c->lens = NULL;
}

bool tokdiff_same(const int32_t *ids, size_t n, const int32_t *ref, size_t nref) {
    return n == nref && (n == 0 || memcmp(ids, ref, n * sizeof *ids) == 0);
}

void tokdiff_print(const char *what, int i, const char *s, size_t len, const char *ref_label, const int32_t *ref,
                   size_t nref, const char *our_label, const int32_t *ids, size_t n) {
    int w = (int)(strlen(ref_label) > strlen(our_label) ? strlen(ref_label) : strlen(our_label)) + 1;
    fprintf(stderr, "%sstring %d differs (len %zu): '%.*s'\n", what, i, len, (int)(len < 300 ? len : 300), s);
    fprintf(stderr, "  %-*s", w, ref_label);
    for (size_t k = 0; k < nref && k < 60; k++) fprintf(stderr, " %d", ref[k]);
    fprintf(stderr, "\n  %-*s", w, our_label);
    for (size_t k = 0; k < n && k < 60; k++) fprintf(stderr, " %d", ids[k]);
    fprintf(stderr, "\n");
}

bool tokdiff_round_trips(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool special, const char *s,
                         size_t len) {
    fitlm_error err = {{0}};
    size_t dl = 0;
    char *dec = fitlm_tokenizer_decode(t, ids, n, special, &dl, &err);
    bool ok = dec && dl == len && memcmp(dec, s, dl) == 0;
    free(dec);
    return ok;
}

void tokdiff_need_node_package(const char *src, const char *pkg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/node_modules/%s/package.json", src, pkg);
    struct stat st;
    if (stat(path, &st) == 0 && refio_run("node --version >/dev/null 2>&1") == 0) return;
    printf("SKIP: node or the npm package %s is missing (scripts/setup.sh installs it)\n", pkg);
    exit(77);
}
