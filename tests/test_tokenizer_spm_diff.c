/* Differential test of the SentencePiece tokenizer against Debian's
 * python3-sentencepiece: ggml-vocab-llama-spm.gguf (ours) and
 * llama2-tokenizer.model (theirs) hold the same Llama 2 vocabulary. Thousands
 * of generated strings (many scripts, code, whitespace runs, emoji, combining
 * marks, digits, random code points, invalid UTF-8) must give exactly the same
 * ids; decode(encode(x)) must give x back wherever SentencePiece's own decode
 * does. Finally the whole corpus as one long text must match too.
 * The same comparison runs for the Hugging Face form of that vocabulary (a
 * Llama-2 style tokenizer.json with rank-ordered merges, Prepend/Replace
 * normalizer and byte fallback, written by tests/tools/spm_to_hf_json.py) on
 * every valid UTF-8 string. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "support/refio.h"
#include "support/textgen.h"
#include "support/tokdiff.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

/* every tenth string may hold bytes that are not valid UTF-8 */
static int corpus_flags(int i) { return (i % 10 == 9) ? TEXTGEN_INVALID_UTF8 : 0; }

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    const char *src = check_env_or_skip("FITLM_SRC");
    const char *tmp = check_env_or_skip("FITLM_TMP");
    const int n_strings = getenv("FITLM_SANITIZED") ? 1500 : 5000;

    char gguf[4096], model[4096], inp[4096], outp[4096], cmd[16384];
    snprintf(gguf, sizeof gguf, "%s/data/vocab/ggml-vocab-llama-spm.gguf", shared);
    snprintf(model, sizeof model, "%s/data/tokenizer/llama2-tokenizer.model", shared);
    snprintf(inp, sizeof inp, "%s/spm_diff.inp", tmp);
    snprintf(outp, sizeof outp, "%s/spm_diff.out", tmp);

    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(gguf, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return check_report();

    /* the corpus: n_strings records, then the concatenation of all of them */
    tokdiff_corpus corpus;
    int wrote = tokdiff_corpus_make(&corpus, 0x5eed5eed12345ull, n_strings, corpus_flags, inp);
    char **strs = corpus.strs;
    size_t *lens = corpus.lens;
    CHECK(wrote == 0, "cannot write %s", inp);
    if (wrote) return check_report();

    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/tools/spm_reference.py' '%s' '%s' '%s'", src, model, inp, outp);
    int rc = refio_run(cmd);
    if (rc == 77) {
        printf("SKIP: python3-sentencepiece is not available\n");
        return 77;
    }
    CHECK(rc == 0, "reference script failed (%d)", rc);
    if (rc != 0) return check_report();
    size_t olen;
    char *out = fitlm_file_read_all(outp, (size_t)1 << 30, &olen, &err);
    CHECK(out != NULL, "%s", err.msg);
    if (!out) return check_report();

    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/tools/spm_to_hf_json.py' '%s' '%s/llama2-tokenizer.json'", src,
             model, tmp);
    CHECK(refio_run(cmd) == 0, "spm_to_hf_json.py failed");
    char hf_path[4200];
    snprintf(hf_path, sizeof hf_path, "%s/llama2-tokenizer.json", tmp);
    fitlm_tokenizer *hf = fitlm_tokenizer_load(hf_path, &err);
    CHECK(hf != NULL, "%s", err.msg);
    int hf_same = 0, hf_differ = 0;
    if (hf) { /* special tokens: the Prepend normalizer runs on each run of text, as the GGUF dummy prefix */
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK(fitlm_tokenizer_encode(hf, "<s>Hello</s> x", 14, true, true, &a, &na, &err) == 0, "%s", err.msg);
        CHECK(fitlm_tokenizer_encode(t, "<s>Hello</s> x", 14, true, true, &b, &nb, &err) == 0, "%s", err.msg);
        CHECK(na == 6 && nb == 6 && !memcmp(a, b, 6 * sizeof *a) && a[0] == 1 && a[1] == 1 && a[3] == 2,
              "tokenizer.json and GGUF disagree around special tokens");
        free(a);
        free(b);
    }

    char *p = out;
    int same = 0, differ = 0, rt_checked = 0, rt_ok = 0, ref_no_rt = 0;
    double enc_seconds = 0;
    for (int i = 0; i <= n_strings; i++) {
        int32_t *ref;
        size_t nref;
        int flag = refio_read_line(&p, &ref, &nref);
        CHECK(flag >= 0, "reference output ends early at %d", i);
        if (flag < 0) break;
        int32_t *ids = NULL;
        size_t n = 0;
        clock_t c0 = clock();
        int erc = fitlm_tokenizer_encode(t, strs[i], lens[i], false, false, &ids, &n, &err);
        enc_seconds += (double)(clock() - c0) / CLOCKS_PER_SEC;
        CHECK(erc == 0, "encode failed: %s", err.msg);
        if (tokdiff_same(ids, n, ref, nref))
            same++;
        else if (++differ <= 5)
            tokdiff_print("", i, strs[i], lens[i], "sentencepiece:", ref, nref, "fitlm:", ids, n);
        if (hf && textgen_valid_utf8(strs[i], lens[i])) {
            int32_t *hids = NULL;
            size_t hn = 0;
            CHECK(fitlm_tokenizer_encode(hf, strs[i], lens[i], false, false, &hids, &hn, &err) == 0, "%s", err.msg);
            if (tokdiff_same(hids, hn, ref, nref))
                hf_same++;
            else if (++hf_differ <= 5)
                tokdiff_print("tokenizer.json: ", i, strs[i], lens[i], "sentencepiece:", ref, nref, "fitlm (json):",
                              hids, hn);
            if (flag == 1 && hids)
                CHECK(tokdiff_round_trips(hf, hids, hn, false, strs[i], lens[i]), "tokenizer.json: string %d round trip",
                      i);
            free(hids);
        }
        if (flag == 1) {
            rt_checked++;
            if (tokdiff_round_trips(t, ids, n, false, strs[i], lens[i])) rt_ok++;
            else CHECK(0, "string %d: decode(encode(x)) != x", i);
        } else {
            ref_no_rt++;
        }
        free(ids);
        free(ref);
    }
    CHECK(differ == 0, "%d of %d strings differ from sentencepiece", differ, same + differ);
    printf("sentencepiece differential: %d/%d strings identical (%zu bytes in the long one); round trip %d/%d "
           "(%d strings sentencepiece itself does not round-trip: invalid UTF-8); encode %.1f MB/s\n",
           same, same + differ, lens[n_strings], rt_ok, rt_checked, ref_no_rt,
           enc_seconds > 0 ? 2.0 * (double)corpus.total / 1e6 / enc_seconds : 0.0);
    CHECK(hf_differ == 0, "tokenizer.json form: %d of %d strings differ from sentencepiece", hf_differ,
          hf_same + hf_differ);
    printf("tokenizer.json (Llama-2 style) vs sentencepiece: %d/%d valid UTF-8 strings identical\n", hf_same,
           hf_same + hf_differ);
    fitlm_tokenizer_free(hf);
    tokdiff_corpus_free(&corpus);
    free(out);
    fitlm_tokenizer_free(t);
    return check_report();
}
