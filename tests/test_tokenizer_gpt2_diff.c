/* Differential test of byte-level BPE with the GPT-2 pre-tokenizer against the
 * npm package gpt-tokenizer@2.9.0 (encoding r50k_base: GPT-2's vocabulary,
 * merges and OpenAI's regex; installed by scripts/setup.sh into
 * tests/node_modules): thousands of generated strings and their concatenation
 * must encode with ggml-vocab-gpt-2.gguf to exactly the package's ids. Special
 * tokens are plain text on both sides (parse_special off / no allowed specials). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support/refio.h"
#include "support/textgen.h"
#include "support/tokdiff.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

/* specials are plain text on both sides; every fourth string has some */
static int corpus_flags(int i) { return TEXTGEN_NO_WS_EXOTIC | (i % 4 == 3 ? TEXTGEN_SPECIALS : 0); }

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    const char *src = check_env_or_skip("FITLM_SRC");
    const char *tmp = check_env_or_skip("FITLM_TMP");
    const int n_strings = getenv("FITLM_SANITIZED") ? 1500 : 5000;
    char gguf[4096], inp[4096], outp[4096], cmd[16384];
    tokdiff_need_node_package(src, "gpt-tokenizer");
    snprintf(gguf, sizeof gguf, "%s/data/vocab/ggml-vocab-gpt-2.gguf", shared);
    snprintf(inp, sizeof inp, "%s/gpt2_diff.inp", tmp);
    snprintf(outp, sizeof outp, "%s/gpt2_diff.out", tmp);
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(gguf, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return check_report();

    tokdiff_corpus corpus;
    int wrote = tokdiff_corpus_make(&corpus, 0x6e72ull, n_strings, corpus_flags, inp);
    char **strs = corpus.strs;
    size_t *lens = corpus.lens;
    CHECK(wrote == 0, "cannot write %s", inp);
    if (wrote) return check_report();
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
        if (tokdiff_same(ids, n, ref, nref))
            same++;
        else if (++differ <= 5)
            tokdiff_print("", i, strs[i], lens[i], "npm:", ref, nref, "fitlm:", ids, n);
        if (flag == 1) {
            rt_checked++;
            if (tokdiff_round_trips(t, ids, n, false, strs[i], lens[i])) rt_ok++;
            else CHECK(0, "string %d: decode(encode(x)) != x", i);
        }
        free(ids);
        free(ref);
    }
    CHECK(differ == 0, "%d of %d strings differ from gpt-tokenizer (r50k_base)", differ, same + differ);
    printf("gpt-tokenizer r50k_base differential: %d/%d strings identical (%zu bytes in the long one); round trip "
           "%d/%d\n",
           same, same + differ, lens[n_strings], rt_ok, rt_checked);
    tokdiff_corpus_free(&corpus);
    free(out);
    fitlm_tokenizer_free(t);
    return check_report();
}
