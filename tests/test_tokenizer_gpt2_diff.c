/* Differential test of byte-level BPE with the GPT-2 pre-tokenizer against the
 * npm package gpt-tokenizer@2.9.0 (encoding r50k_base: GPT-2's vocabulary,
 * merges and OpenAI's regex; installed by scripts/setup.sh into
 * tests/node_modules): thousands of generated strings and their concatenation
 * must encode with ggml-vocab-gpt-2.gguf to exactly the package's ids. Special
 * tokens are plain text on both sides (parse_special off / no allowed specials). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "support/refio.h"
#include "support/textgen.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    const char *src = check_env_or_skip("FITLM_SRC");
    const char *tmp = check_env_or_skip("FITLM_TMP");
    const int n_strings = getenv("FITLM_SANITIZED") ? 1500 : 5000;
    char gguf[4096], inp[4096], outp[4096], cmd[16384], pkg[4096];
    snprintf(pkg, sizeof pkg, "%s/tests/node_modules/gpt-tokenizer/package.json", src);
    struct stat st;
    if (stat(pkg, &st) != 0 || refio_run("node --version >/dev/null 2>&1") != 0) {
        printf("SKIP: node or the npm package gpt-tokenizer is missing (scripts/setup.sh installs it)\n");
        return 77;
    }
    snprintf(gguf, sizeof gguf, "%s/data/vocab/ggml-vocab-gpt-2.gguf", shared);
    snprintf(inp, sizeof inp, "%s/gpt2_diff.inp", tmp);
    snprintf(outp, sizeof outp, "%s/gpt2_diff.out", tmp);
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(gguf, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return check_report();

    size_t cap = 600, total = 0;
    char **strs = calloc((size_t)n_strings + 1, sizeof *strs);
    size_t *lens = calloc((size_t)n_strings + 1, sizeof *lens);
    uint64_t rng = 0x6e72ull;
    for (int i = 0; i < n_strings; i++) {
        strs[i] = malloc(cap);
        int flags = TEXTGEN_NO_WS_EXOTIC | (i % 4 == 3 ? TEXTGEN_SPECIALS : 0);
        lens[i] = textgen_string(&rng, strs[i], cap, 1 + i % 24, flags);
        total += lens[i];
    }
    strs[n_strings] = malloc(total + 1);
    for (int i = 0; i < n_strings; i++) {
        memcpy(strs[n_strings] + lens[n_strings], strs[i], lens[i]);
        lens[n_strings] += lens[i];
    }
    FILE *f = fopen(inp, "wb");
    CHECK(f != NULL, "cannot write %s", inp);
    if (!f) return check_report();
    for (int i = 0; i <= n_strings; i++) refio_write_record(f, strs[i], lens[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "FITLM_SRC='%s' node '%s/tests/tools/gpt2_reference.mjs' '%s' '%s'", src, src, inp, outp);
    int rc = refio_run(cmd);
    if (rc == 77) return 77;
    CHECK(rc == 0, "reference encode failed (%d)", rc);
    if (rc) return check_report();
    size_t olen;
    char *out = fitlm_file_read_all(outp, (size_t)1 << 30, &olen, &err);
    CHECK(out != NULL, "%s", err.msg);
    if (!out) return check_report();

    char *p = out;
    int same = 0, differ = 0, rt_ok = 0, rt_checked = 0;
    for (int i = 0; i <= n_strings; i++) {
        int32_t *ref, *ids = NULL;
        size_t nref, n = 0;
        int flag = refio_read_line(&p, &ref, &nref);
        CHECK(flag >= 0, "reference output ends early at %d", i);
        if (flag < 0) break;
        CHECK(fitlm_tokenizer_encode(t, strs[i], lens[i], false, false, &ids, &n, &err) == 0, "%s", err.msg);
        if (n == nref && (n == 0 || memcmp(ids, ref, n * sizeof *ids) == 0)) {
            same++;
        } else if (++differ <= 5) {
            fprintf(stderr, "string %d differs: '%.*s'\n  npm:  ", i, (int)(lens[i] < 300 ? lens[i] : 300), strs[i]);
            for (size_t k = 0; k < nref && k < 60; k++) fprintf(stderr, " %d", ref[k]);
            fprintf(stderr, "\n  fitlm:");
            for (size_t k = 0; k < n && k < 60; k++) fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        if (flag == 1) {
            size_t dl;
            char *dec = fitlm_tokenizer_decode(t, ids, n, false, &dl, &err);
            rt_checked++;
            if (dec && dl == lens[i] && memcmp(dec, strs[i], dl) == 0) rt_ok++;
            else CHECK(0, "string %d: decode(encode(x)) != x", i);
            free(dec);
        }
        free(ids);
        free(ref);
    }
    CHECK(differ == 0, "%d of %d strings differ from gpt-tokenizer (r50k_base)", differ, same + differ);
    printf("gpt-tokenizer r50k_base differential: %d/%d strings identical (%zu bytes in the long one); round trip "
           "%d/%d\n",
           same, same + differ, lens[n_strings], rt_ok, rt_checked);
    for (int i = 0; i <= n_strings; i++) free(strs[i]);
    free(strs);
    free(lens);
    free(out);
    fitlm_tokenizer_free(t);
    return check_report();
}
