/* Every case of the llama.cpp tokenizer test vectors in $FITLM_SHARED/data/vocab
 * (expected ids produced by the models' Hugging Face tokenizers): tokenize each
 * .inp string without BOS/EOS and compare with the .out line exactly; decode
 * must give the input back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

static const char *const k_vocabs[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm"};

static void run_vocab(const char *shared, const char *name) {
    char path[4096], inp_path[4200], out_path[4200];
    snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-%s.gguf", shared, name);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(path, &err);
    CHECK(t != NULL, "%s: %s", name, err.msg);
    if (!t) return;
    size_t inp_len, out_len;
    char *inp = fitlm_file_read_all(inp_path, 1 << 24, &inp_len, &err);
    char *out = fitlm_file_read_all(out_path, 1 << 24, &out_len, &err);
    CHECK(inp && out, "%s: %s", name, err.msg);
    if (!inp || !out) {
        free(inp);
        free(out);
        fitlm_tokenizer_free(t);
        return;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    char *p = inp, *q = out;
    int cases = 0, passed = 0;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break; /* the file ends with a separator: what follows is the empty tail */
        size_t len = (size_t)(e - p);
        char *nl = strchr(q, '\n');
        CHECK(nl != NULL, "%s: .out has fewer lines than .inp cases", name);
        if (!nl) break;
        *nl = 0;
        /* expected ids */
        int32_t exp[4096];
        size_t ne = 0;
        for (char *s = q; *s;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s) break;
            if (ne < 4096) exp[ne++] = (int32_t)v;
            s = end;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = fitlm_tokenizer_encode(t, p, len, false, false, &ids, &n, &err);
        bool ok = rc == 0 && n == ne && (n == 0 || memcmp(ids, exp, n * sizeof *ids) == 0);
        cases++;
        if (ok) {
            passed++;
        } else {
            fprintf(stderr, "%s case %d: input '%.*s'\n  expected:", name, cases, (int)len, p);
            for (size_t i = 0; i < ne; i++) fprintf(stderr, " %d", exp[i]);
            fprintf(stderr, "\n  got:     ");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        CHECK(ok, "%s case %d mismatch", name, cases);
        /* round trip */
        size_t dl;
        char *dec = fitlm_tokenizer_decode(t, ids, n, false, &dl, &err);
        CHECK(dec && dl == len && memcmp(dec, p, len) == 0, "%s case %d: decode gives '%s'", name, cases,
              dec ? dec : err.msg);
        free(dec);
        free(ids);
        p = e + sep_len;
        q = nl + 1;
    }
    printf("%s: %d/%d cases match\n", name, passed, cases);
    CHECK(cases > 30, "%s: only %d cases found", name, cases);
    free(inp);
    free(out);
    fitlm_tokenizer_free(t);
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    for (size_t i = 0; i < sizeof k_vocabs / sizeof k_vocabs[0]; i++) run_vocab(shared, k_vocabs[i]);
    return check_report();
}
