/* Every case of the llama.cpp tokenizer test vectors in $FITLM_SHARED/data/vocab
 * (expected ids produced by the models' Hugging Face tokenizers): tokenize each
 * .inp string without BOS/EOS and compare with the .out line exactly; decode
 * must give the input back. The byte-level vocabularies are also rewritten as
 * Hugging Face tokenizer.json files, in the form those models publish (GPT-2:
 * a ByteLevel pre-tokenizer with its built-in regex; DeepSeek LLM: a Sequence
 * of six Split regexes with the characters written out, then ByteLevel), and
 * must pass the same cases through the tokenizer.json loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

static const char *const k_vocabs[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm"};

/* DeepSeek LLM's pre-tokenizer as its tokenizer.json writes it (JSON text). */
static const char *const k_deepseek_splits[] = {
    "\"[\\\\r\\\\n]\"",
    "\"\\\\s?[A-Za-z\\u00b5\\u00c0-\\u00d6\\u00d8-\\u00f6\\u00f8-\\u01ba\\u01bc-\\u01bf\\u01c4-\\u0293\\u0295-\\u02af\\u0370-\\u0373\\u0376\\u0377\\u037b-\\u037d\\u037f\\u0386\\u0388-\\u038a\\u038c\\u038e-\\u03a1\\u03a3-\\u03f5\\u03f7-\\u0481\\u048a-\\u052f\\u0531-\\u0556\\u10a0-\\u10c5\\u13a0-\\u13f5\\u13f8-\\u13fd\\u1c90-\\u1cba\\u1cbd-\\u1cbf\\u1d00-\\u1d2b\\u1d6b-\\u1d77\\u1d79-\\u1d9a\\u1e00-\\u1f15\\u1f18-\\u1f1d\\u1f20-\\u1f45\\u1f48-\\u1f4d\\u1f50-\\u1f57\\u1f59\\u1f5b\\u1f5d\\u1f5f-\\u1f7d\\u1f80-\\u1fb4\\u1fb6-\\u1fbc\\u1fbe\\u1fc2-\\u1fc4\\u1fc6-\\u1fcc\\u1fd0-\\u1fd3\\u1fd6-\\u1fdb\\u1fe0-\\u1fec\\u1ff2-\\u1ff4\\u1ff6-\\u1ffc\\u2102\\u2107\\u210a-\\u2113\\u2115\\u2119-\\u211d\\u2124\\u2126\\u2128\\u212a-\\u212d\\u212f-\\u2134\\u2139\\u213c-\\u213f\\u2145-\\u2149\\u214e\\u2183\\u2184\\u2c00-\\u2c7b\\u2c7e-\\u2ce4\\u2ceb-\\u2cee\\u2cf2\\u2cf3\\ua640-\\ua66d\\ua680-\\ua69b\\ua722-\\ua76f\\ua771-\\ua787\\ua78b-\\ua78e\\uab70-\\uabbf\\ufb00-\\ufb06\\ufb13-\\ufb17\\uff21-\\uff3a\\uff41-\\uff5a\\ud801\\udc00-\\ud801\\udc4f\\ud801\\udcb0-\\ud801\\udcd3\\ud801\\udcd8-\\ud801\\udcfb\\ud803\\udc80-\\ud803\\udcb2\\ud803\\udcc0-\\ud803\\udcf2\\ud806\\udca0-\\ud806\\udcdf\\ud83a\\udd00-\\ud83a\\udd43]+\"",
    "\"\\\\s?[!-/:-~\\uff01-\\uff0f\\uff1a-\\uff5e\\u2018-\\u201f\\u3000-\\u3002]+\"",
    "\"\\\\s+$\"",
    "\"[\\u4e00-\\u9fa5\\u0800-\\u4e00\\uac00-\\ud7ff]+\"",
    "\"\\\\p{N}+\"",
};

/* tokenizer.json text for a byte-level GGUF vocabulary (malloc'd; caller frees). */
static char *hf_json_from_gguf(const char *gguf_path, const char *name) {
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open(gguf_path, &err);
    if (!g) return NULL;
    const fitlm_gguf_value *toks, *types, *merges;
    if (fitlm_gguf_get_arr(g, "tokenizer.ggml.tokens", FITLM_GGUF_STRING, &toks, &err) != 1 ||
        fitlm_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types, &err) != 1 ||
        fitlm_gguf_get_arr(g, "tokenizer.ggml.merges", FITLM_GGUF_STRING, &merges, &err) != 1) {
        fitlm_gguf_close(g);
        return NULL;
    }
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON *vocab = cJSON_CreateObject(), *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    for (uint64_t i = 0; i < toks->v.arr.n; i++) {
        int32_t ty;
        memcpy(&ty, (const char *)types->v.arr.raw + 4 * i, 4);
        if (ty == 3 || ty == 4) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", toks->v.arr.strs[i].s);
            cJSON_AddBoolToObject(a, "special", ty == 3);
            cJSON_AddItemToArray(added, a);
        } else {
            cJSON_AddNumberToObject(vocab, toks->v.arr.strs[i].s, (double)i);
        }
    }
    cJSON *m = cJSON_AddArrayToObject(model, "merges");
    for (uint64_t i = 0; i < merges->v.arr.n; i++) cJSON_AddItemToArray(m, cJSON_CreateString(merges->v.arr.strs[i].s));
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (!strcmp(name, "gpt-2")) {
        cJSON_AddStringToObject(pre, "type", "ByteLevel");
        cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
        cJSON_AddBoolToObject(pre, "use_regex", 1);
    } else {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers");
        for (size_t k = 0; k < sizeof k_deepseek_splits / sizeof k_deepseek_splits[0]; k++) {
            cJSON *pat = cJSON_Parse(k_deepseek_splits[k]); /* a JSON string: decodes the \\u escapes */
            cJSON *sp = cJSON_CreateObject(), *po = cJSON_CreateObject();
            cJSON_AddStringToObject(sp, "type", "Split");
            cJSON_AddStringToObject(po, "Regex", cJSON_GetStringValue(pat));
            cJSON_AddItemToObject(sp, "pattern", po);
            cJSON_AddStringToObject(sp, "behavior", "Isolated");
            cJSON_AddBoolToObject(sp, "invert", 0);
            cJSON_AddItemToArray(list, sp);
            cJSON_Delete(pat);
        }
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(list, bl);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    fitlm_gguf_close(g);
    return text;
}

static void run_cases(fitlm_tokenizer *t, const char *shared, const char *name, const char *form);

static void run_vocab(const char *shared, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-%s.gguf", shared, name);
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(path, &err);
    CHECK(t != NULL, "%s: %s", name, err.msg);
    if (!t) return;
    run_cases(t, shared, name, "GGUF");
    if (fitlm_tokenizer_get_type(t) == FITLM_TOK_BPE) {
        char *json = hf_json_from_gguf(path, name);
        CHECK(json != NULL, "%s: cannot build tokenizer.json", name);
        fitlm_tokenizer *tj = json ? fitlm_tokenizer_from_hf_json(json, strlen(json), NULL, &err) : NULL;
        CHECK(tj != NULL, "%s tokenizer.json: %s", name, err.msg);
        if (tj) run_cases(tj, shared, name, "tokenizer.json");
        fitlm_tokenizer_free(tj);
        free(json);
    }
    fitlm_tokenizer_free(t);
}

static void run_cases(fitlm_tokenizer *t, const char *shared, const char *name, const char *form) {
    char inp_path[4200], out_path[4200];
    snprintf(inp_path, sizeof inp_path, "%s/data/vocab/ggml-vocab-%s.gguf.inp", shared, name);
    snprintf(out_path, sizeof out_path, "%s/data/vocab/ggml-vocab-%s.gguf.out", shared, name);
    fitlm_error err = {{0}};
    size_t inp_len, out_len;
    char *inp = fitlm_file_read_all(inp_path, 1 << 24, &inp_len, &err);
    char *out = fitlm_file_read_all(out_path, 1 << 24, &out_len, &err);
    CHECK(inp && out, "%s: %s", name, err.msg);
    if (!inp || !out) {
        free(inp);
        free(out);
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
            fprintf(stderr, "%s (%s) case %d: input '%.*s'\n  expected:", name, form, cases, (int)len, p);
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
    printf("%s (%s): %d/%d cases match\n", name, form, passed, cases);
    CHECK(cases > 30, "%s: only %d cases found", name, cases);
    free(inp);
    free(out);
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    for (size_t i = 0; i < sizeof k_vocabs / sizeof k_vocabs[0]; i++) run_vocab(shared, k_vocabs[i]);
    return check_report();
}
