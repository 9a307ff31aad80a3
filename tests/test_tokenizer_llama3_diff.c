/* Differential test of byte-level BPE with the Llama 3 pre-tokenizer against
 * the npm package llama3-tokenizer-js@1.2.0 (installed by scripts/setup.sh into
 * tests/node_modules), which carries the real Llama 3 vocabulary, merges and a
 * reference encoder. Its vocabulary is exported to a tokenizer.json (merges in
 * the [a, b] array form), loaded by fitlm, and thousands of generated strings
 * (with special tokens in them) must encode to exactly the package's ids.
 * The same vocabulary is then written as a GGUF file (fitlm's GGUF writer;
 * tokenizer.ggml.pre = "llama-bpe", merges as "a b" strings) and must give the
 * same ids through the GGUF path; with pre = "qwen2" digits split one by one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "support/refio.h"
#include "support/textgen.h"
#include "support/tokdiff.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

/* Writes the tokenizer as a GGUF vocabulary (no tensors) with the merges from
 * the tokenizer.json file. Returns 0 on success. */
static int write_gguf(const fitlm_tokenizer *t, const char *json_path, const char *pre, const char *out) {
    fitlm_error err = {{0}};
    size_t jl;
    char *text = fitlm_file_read_all(json_path, (size_t)1 << 30, &jl, &err);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, jl);
    free(text);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges");
    int nm = cJSON_GetArraySize(merges), nv = fitlm_tokenizer_vocab_size(t);
    char **mstr = calloc((size_t)nm, sizeof *mstr);
    const char **toks = calloc((size_t)nv, sizeof *toks);
    int32_t *types = calloc((size_t)nv, sizeof *types);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a = cJSON_GetArrayItem(e, 0)->valuestring, *b = cJSON_GetArrayItem(e, 1)->valuestring;
        mstr[i] = malloc(strlen(a) + strlen(b) + 2);
        sprintf(mstr[i++], "%s %s", a, b);
    }
    for (int k = 0; k < nv; k++) {
        toks[k] = fitlm_tokenizer_token_text(t, k);
        types[k] = fitlm_tokenizer_token_type(t, k);
    }
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(3, &err);
    int rc = !w || fitlm_gguf_writer_add_str(w, "general.architecture", "llama", &err) ||
             fitlm_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", &err) ||
             fitlm_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, &err) ||
             fitlm_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, (uint64_t)nv, &err) ||
             fitlm_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", FITLM_GGUF_INT32, types, (uint64_t)nv, &err) ||
             fitlm_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", (const char *const *)mstr, (uint64_t)nm, &err) ||
             fitlm_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 128000, &err) ||
             fitlm_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 128009, &err) ||
             fitlm_gguf_writer_write(w, out, NULL, NULL, &err);
    if (rc) fprintf(stderr, "write_gguf: %s\n", err.msg);
    fitlm_gguf_writer_free(w);
    for (int k = 0; k < nm; k++) free(mstr[k]);
    free(mstr);
    free(toks);
    free(types);
    cJSON_Delete(root);
    return rc ? -1 : 0;
}

/* every fourth string has special tokens in it */
static int corpus_flags(int i) { return TEXTGEN_NO_WS_EXOTIC | (i % 4 == 3 ? TEXTGEN_SPECIALS : 0); }

int main(void) {
    const char *src = check_env_or_skip("FITLM_SRC");
    const char *tmp = check_env_or_skip("FITLM_TMP");
    const int n_strings = getenv("FITLM_SANITIZED") ? 1500 : 5000;
    char json[4096], inp[4096], outp[4096], cmd[16384];
    tokdiff_need_node_package(src, "llama3-tokenizer-js");
    snprintf(json, sizeof json, "%s/llama3-tokenizer.json", tmp);
    snprintf(inp, sizeof inp, "%s/llama3_diff.inp", tmp);
    snprintf(outp, sizeof outp, "%s/llama3_diff.out", tmp);

    snprintf(cmd, sizeof cmd, "FITLM_SRC='%s' node '%s/tests/tools/llama3_reference.mjs' export '%s'", src, src, json);
    int rc = refio_run(cmd);
    if (rc == 77) return 77;
    CHECK(rc == 0, "export failed (%d)", rc);
    if (rc) return check_report();

    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(json, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return check_report();
    CHECK(fitlm_tokenizer_vocab_size(t) == 128256, "vocab size %d", fitlm_tokenizer_vocab_size(t));
    CHECK(fitlm_tokenizer_bos(t) == 128000, "bos %d", fitlm_tokenizer_bos(t));
    CHECK(fitlm_tokenizer_add_bos(t), "BOS should be added (post_processor template)");
    int32_t eot = fitlm_tokenizer_find(t, "<|eot_id|>", 10);
    CHECK(eot == 128009 && fitlm_tokenizer_is_eog(t, eot) && fitlm_tokenizer_is_control(t, eot), "eot %d", eot);

    tokdiff_corpus corpus;
    int wrote = tokdiff_corpus_make(&corpus, 0x11a3a3ull, n_strings, corpus_flags, inp);
    char **strs = corpus.strs;
    size_t *lens = corpus.lens;
    CHECK(wrote == 0, "cannot write %s", inp);
    if (wrote) return check_report();
    snprintf(cmd, sizeof cmd, "FITLM_SRC='%s' node '%s/tests/tools/llama3_reference.mjs' encode '%s' '%s'", src, src,
             inp, outp);
    rc = refio_run(cmd);
    CHECK(rc == 0, "reference encode failed (%d)", rc);
    if (rc) return check_report();
    size_t olen;
    char *out = fitlm_file_read_all(outp, (size_t)1 << 30, &olen, &err);
    CHECK(out != NULL, "%s", err.msg);
    if (!out) return check_report();

    char gguf_path[4200], qwen_path[4200];
    snprintf(gguf_path, sizeof gguf_path, "%s/llama3-vocab.gguf", tmp);
    snprintf(qwen_path, sizeof qwen_path, "%s/llama3-vocab-qwen2-pre.gguf", tmp);
    CHECK(write_gguf(t, json, "llama-bpe", gguf_path) == 0, "cannot write %s", gguf_path);
    CHECK(write_gguf(t, json, "qwen2", qwen_path) == 0, "cannot write %s", qwen_path);
    fitlm_tokenizer *tg = fitlm_tokenizer_load(gguf_path, &err);
    CHECK(tg != NULL, "%s", err.msg);
    if (tg) CHECK(fitlm_tokenizer_add_bos(tg) && !strcmp(fitlm_tokenizer_pre_name(tg), "llama-bpe"), "llama-bpe defaults");
    int g_same = 0, g_differ = 0;

    char *p = out;
    int same = 0, differ = 0, rt_ok = 0, rt_checked = 0;
    double secs = 0;
    for (int i = 0; i <= n_strings; i++) {
        int32_t *ref, *ids = NULL;
        size_t nref, n = 0;
        int flag = refio_read_line(&p, &ref, &nref);
        CHECK(flag >= 0, "reference output ends early at %d", i);
        if (flag < 0) break;
        clock_t c0 = clock();
        int erc = fitlm_tokenizer_encode(t, strs[i], lens[i], false, true, &ids, &n, &err);
        secs += (double)(clock() - c0) / CLOCKS_PER_SEC;
        CHECK(erc == 0, "encode failed: %s", err.msg);
        if (tokdiff_same(ids, n, ref, nref))
            same++;
        else if (++differ <= 5)
            tokdiff_print("", i, strs[i], lens[i], "npm:", ref, nref, "fitlm:", ids, n);
        if (tg) {
            int32_t *gids = NULL;
            size_t gn = 0;
            CHECK(fitlm_tokenizer_encode(tg, strs[i], lens[i], false, true, &gids, &gn, &err) == 0, "%s", err.msg);
            if (tokdiff_same(gids, gn, ref, nref)) g_same++;
            else g_differ++;
            free(gids);
        }
        if (flag == 1) {
            rt_checked++;
            if (tokdiff_round_trips(t, ids, n, true, strs[i], lens[i])) rt_ok++;
            else CHECK(0, "string %d: decode(encode(x)) != x", i);
        }
        free(ids);
        free(ref);
    }
    CHECK(differ == 0, "%d of %d strings differ from llama3-tokenizer-js", differ, same + differ);
    printf("llama3-tokenizer-js differential: %d/%d strings identical (%zu bytes in the long one); round trip "
           "%d/%d; encode %.1f MB/s\n",
           same, same + differ, lens[n_strings], rt_ok, rt_checked, secs > 0 ? 2.0 * (double)corpus.total / 1e6 / secs : 0.0);

    CHECK(g_differ == 0, "GGUF form: %d of %d strings differ from llama3-tokenizer-js", g_differ, g_same + g_differ);
    printf("GGUF form (tokenizer.ggml.pre = llama-bpe): %d/%d strings identical\n", g_same, g_same + g_differ);
    fitlm_tokenizer_free(tg);

    /* qwen2's pre-tokenizer differs from Llama 3's only in splitting digits one by one */
    fitlm_tokenizer *tq = fitlm_tokenizer_load(qwen_path, &err);
    CHECK(tq != NULL, "%s", err.msg);
    if (tq) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK(fitlm_tokenizer_encode(tq, "x 12345", 7, false, false, &a, &na, &err) == 0, "%s", err.msg);
        CHECK(fitlm_tokenizer_encode(t, "x 12345", 7, false, false, &b, &nb, &err) == 0, "%s", err.msg);
        int32_t d1 = fitlm_tokenizer_find(t, "1", 1), d5 = fitlm_tokenizer_find(t, "5", 1);
        CHECK(na == 7 && a[2] == d1 && a[6] == d5, "qwen2: digits one by one (n=%zu)", na);
        CHECK(nb == 4, "llama3: digits in groups of three (n=%zu)", nb); /* x, ' ', 123, 45 */
        CHECK(!fitlm_tokenizer_add_bos(tq), "qwen2 adds no BOS by default");
        free(a);
        free(b);
        fitlm_tokenizer_free(tq);
    }

    /* BOS from the template, and parse_special off treats specials as text */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(fitlm_tokenizer_encode(t, "<|eot_id|>hi", 12, true, false, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(n > 3 && ids[0] == 128000 && ids[1] != 128009, "specials as text: n=%zu", n);
    free(ids);

    tokdiff_corpus_free(&corpus);
    free(out);
    fitlm_tokenizer_free(t);
    return check_report();
}
