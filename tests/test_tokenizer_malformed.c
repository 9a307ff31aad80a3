/* Malformed tokenizers are refused with a clear message: GGUF metadata (array
 * lengths that disagree, ids out of range, bad token types, bad or dangling
 * merges, unknown models / pre-tokenizers, wrong value types) and
 * tokenizer.json files (bad JSON, id gaps, bad merges, unsupported parts).
 * The GGUF files are written byte by byte here, following the GGUF spec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer/tokenizer.h"

/* ---- a tiny GGUF v3 writer (metadata only, no tensors) ---- */
typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void put(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_head(gbuf *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
    b->n_kv++;
}
static void kv_str(gbuf *b, const char *key, const char *v) {
    kv_head(b, key, 8);
    put_str(b, v);
}
static void kv_u32(gbuf *b, const char *key, uint32_t v) {
    kv_head(b, key, 4);
    put_u32(b, v);
}
static void kv_bool(gbuf *b, const char *key, int v) {
    kv_head(b, key, 7);
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}
static void kv_strs(gbuf *b, const char *key, const char *const *v, size_t n) {
    kv_head(b, key, 9);
    put_u32(b, 8);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++) put_str(b, v[i]);
}
static void kv_f32s(gbuf *b, const char *key, size_t n) {
    kv_head(b, key, 9);
    put_u32(b, 6);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++) {
        float f = -(float)i;
        put(b, &f, 4);
    }
}
static void kv_i32s(gbuf *b, const char *key, const int32_t *v, size_t n) {
    kv_head(b, key, 9);
    put_u32(b, 5);
    put_u64(b, n);
    put(b, v, 4 * n);
}

static const char *g_tmp;

/* Writes header + kv section to a file; returns the path (static buffer). */
static const char *write_gguf(gbuf *kv, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/malformed-%s.gguf", g_tmp, name);
    gbuf f = {0};
    put(&f, "GGUF", 4);
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, kv->n_kv);
    put(&f, kv->p, kv->n);
    while (f.n % 32) put(&f, "", 1); /* data section alignment (no tensors follow) */
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(f.p, 1, f.n, fp);
        fclose(fp);
    }
    free(f.p);
    free(kv->p);
    return path;
}

/* A small SentencePiece vocabulary: specials, 256 byte tokens, a few pieces. */
#define SPM_EXTRA 6
static const char *spm_tokens[3 + 256 + SPM_EXTRA];
static char byte_names[256][8];
static int32_t spm_types[3 + 256 + SPM_EXTRA];
static const size_t spm_n = 3 + 256 + SPM_EXTRA;

static void init_spm(void) {
    spm_tokens[0] = "<unk>";
    spm_tokens[1] = "<s>";
    spm_tokens[2] = "</s>";
    spm_types[0] = 2;
    spm_types[1] = spm_types[2] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(byte_names[i], sizeof byte_names[i], "<0x%02X>", i);
        spm_tokens[3 + i] = byte_names[i];
        spm_types[3 + i] = 6;
    }
    const char *extra[SPM_EXTRA] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab"};
    for (int i = 0; i < SPM_EXTRA; i++) {
        spm_tokens[259 + i] = extra[i];
        spm_types[259 + i] = 1;
    }
}

enum { M_NONE, M_SCORES_SHORT, M_TYPES_SHORT, M_BOS_RANGE, M_TYPE_VALUE, M_MODEL, M_NO_TOKENS, M_TOKENS_INT,
       M_SCORES_INT, M_EOS_NEG };

static const char *spm_file(int mutation) {
    gbuf b = {0};
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "tokenizer.ggml.model", mutation == M_MODEL ? "bert" : "llama");
    if (mutation == M_TOKENS_INT) {
        kv_i32s(&b, "tokenizer.ggml.tokens", spm_types, spm_n);
    } else if (mutation != M_NO_TOKENS) {
        kv_strs(&b, "tokenizer.ggml.tokens", spm_tokens, spm_n);
    }
    if (mutation == M_SCORES_INT) kv_i32s(&b, "tokenizer.ggml.scores", spm_types, spm_n);
    else kv_f32s(&b, "tokenizer.ggml.scores", mutation == M_SCORES_SHORT ? spm_n - 1 : spm_n);
    int32_t types[3 + 256 + SPM_EXTRA];
    memcpy(types, spm_types, sizeof types);
    if (mutation == M_TYPE_VALUE) types[100] = 9;
    kv_i32s(&b, "tokenizer.ggml.token_type", types, mutation == M_TYPES_SHORT ? spm_n - 2 : spm_n);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", mutation == M_BOS_RANGE ? (uint32_t)spm_n : 1);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    if (mutation == M_EOS_NEG) {
        kv_head(&b, "tokenizer.ggml.unknown_token_id", 5);
        int32_t v = -7;
        put(&b, &v, 4);
    }
    kv_bool(&b, "tokenizer.ggml.add_bos_token", 1);
    char name[32];
    snprintf(name, sizeof name, "spm%d", mutation);
    return write_gguf(&b, name);
}

enum { B_NONE, B_NO_MERGES, B_MERGE_NOSPACE, B_MERGE_MISSING_PART, B_MERGE_MISSING_RESULT, B_PRE, B_MERGE_EMPTY_SIDE };

static const char *bpe_file(int mutation) {
    static char bytes[256][8];
    static const char *toks[256 + 3];
    size_t n = 0;
    for (int c = 0; c < 256; c++) { /* the byte-level alphabet, in byte order */
        unsigned cp = c;
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) {
            unsigned k = 0;
            for (int i = 0; i < c; i++)
                if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) k++;
            cp = 0x100 + k;
        }
        if (cp < 0x80) {
            bytes[c][0] = (char)cp;
            bytes[c][1] = 0;
        } else {
            bytes[c][0] = (char)(0xC0 | (cp >> 6));
            bytes[c][1] = (char)(0x80 | (cp & 0x3F));
            bytes[c][2] = 0;
        }
        toks[n++] = bytes[c];
    }
    toks[n++] = mutation == B_MERGE_MISSING_RESULT ? "zz" : "ab";
    toks[n++] = "\xC4\xA0" "ab"; /* "Ġab" */
    toks[n++] = "<|endoftext|>";
    gbuf b = {0};
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", mutation == B_PRE ? "no-such-pre" : "gpt-2");
    kv_strs(&b, "tokenizer.ggml.tokens", toks, n);
    const char *merges[2] = {"a b", "\xC4\xA0 ab"};
    if (mutation == B_MERGE_NOSPACE) merges[1] = "\xC4\xA0" "ab";
    if (mutation == B_MERGE_MISSING_PART) merges[1] = "\xC4\xA0 abc";
    if (mutation == B_MERGE_EMPTY_SIDE) merges[1] = "a ";
    if (mutation != B_NO_MERGES) kv_strs(&b, "tokenizer.ggml.merges", merges, 2);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", (uint32_t)n - 1);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", (uint32_t)n - 1);
    char name[32];
    snprintf(name, sizeof name, "bpe%d", mutation);
    return write_gguf(&b, name);
}

static void expect_fail(const char *path, const char *needle, const char *what) {
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(path, &err);
    CHECK(t == NULL, "%s: accepted", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    CHECK(strstr(err.msg, path) == err.msg, "%s: message '%s' does not start with the path", what, err.msg);
    fitlm_tokenizer_free(t);
}

static void expect_json_fail(const char *json, const char *config, const char *needle, const char *what) {
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_from_hf_json(json, strlen(json), config, &err);
    CHECK(t == NULL, "%s: accepted", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    fitlm_tokenizer_free(t);
}

static void encode_expect(const fitlm_tokenizer *t, const char *text, const int32_t *exp, size_t ne, const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    fitlm_error err = {{0}};
    int rc = fitlm_tokenizer_encode(t, text, strlen(text), false, false, &ids, &n, &err);
    CHECK(rc == 0 && n == ne && (n == 0 || !memcmp(ids, exp, n * sizeof *ids)), "%s (n=%zu first=%d)", what, n,
          n ? ids[0] : -1);
    free(ids);
}

#define JSON_HEAD "{\"model\": {\"type\": \"BPE\", "

int main(void) {
    g_tmp = check_env_or_skip("FITLM_TMP");
    init_spm();
    fitlm_error err = {{0}};

    /* the unmutated files load and work */
    fitlm_tokenizer *t = fitlm_tokenizer_load(spm_file(M_NONE), &err);
    CHECK(t != NULL, "valid SPM file: %s", err.msg);
    if (t) {
        encode_expect(t, "ab a", (const int32_t[]){264, 262}, 2, "mini SPM encode");
        encode_expect(t, "c", (const int32_t[]){259, 3 + 'c'}, 2, "mini SPM byte fallback");
    }
    fitlm_tokenizer_free(t);
    t = fitlm_tokenizer_load(bpe_file(B_NONE), &err);
    CHECK(t != NULL, "valid BPE file: %s", err.msg);
    if (t) encode_expect(t, "ab ab", (const int32_t[]){256, 257}, 2, "mini BPE encode");
    fitlm_tokenizer_free(t);
    t = fitlm_tokenizer_load(spm_file(M_EOS_NEG), &err);
    CHECK(t == NULL && strstr(err.msg, "not a valid token id"), "negative id: %s", err.msg);
    fitlm_tokenizer_free(t);

    expect_fail(spm_file(M_SCORES_SHORT), "tokenizer.ggml.scores has 264 entries but there are 265 tokens", "scores");
    expect_fail(spm_file(M_TYPES_SHORT), "token_type has 263 entries", "token_type length");
    expect_fail(spm_file(M_BOS_RANGE), "bos token id 265 is out of range", "bos range");
    expect_fail(spm_file(M_TYPE_VALUE), "token_type[100] = 9", "token type value");
    expect_fail(spm_file(M_MODEL), "unsupported tokenizer.ggml.model 'bert'", "model");
    expect_fail(spm_file(M_NO_TOKENS), "tokenizer.ggml.tokens is missing", "no tokens");
    expect_fail(spm_file(M_TOKENS_INT), "tokenizer.ggml.tokens", "tokens of the wrong type");
    expect_fail(spm_file(M_SCORES_INT), "tokenizer.ggml.scores", "scores of the wrong type");
    expect_fail(bpe_file(B_NO_MERGES), "merges is missing", "no merges");
    expect_fail(bpe_file(B_MERGE_NOSPACE), "merges[1]", "merge without space");
    expect_fail(bpe_file(B_MERGE_EMPTY_SIDE), "merges[1]", "merge with an empty side");
    expect_fail(bpe_file(B_MERGE_MISSING_PART), "'abc' is not in the vocabulary", "merge part missing");
    expect_fail(bpe_file(B_MERGE_MISSING_RESULT), "gives a token not in the vocabulary", "merge result missing");
    expect_fail(bpe_file(B_PRE), "unsupported tokenizer.ggml.pre 'no-such-pre'", "pre");
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/no-such-file.gguf", g_tmp);
        expect_fail(path, "cannot open", "missing file");
        snprintf(path, sizeof path, "%s/truncated.gguf", g_tmp);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite("GGUF\3\0\0\0\0\0", 1, 10, f);
            fclose(f);
        }
        t = fitlm_tokenizer_load(path, &err);
        CHECK(t == NULL && strstr(err.msg, path) == err.msg, "truncated GGUF refused: %s", err.msg);
        fitlm_tokenizer_free(t);
    }

    /* tokenizer.json: a valid mini byte-level file, merges in both forms */
    const char *ok_str = JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4},"
                                   "\"merges\": [\"a b\", \"\\u0120 ab\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
                                   "\"added_tokens\": [{\"id\": 5, \"content\": \"<|end|>\", \"special\": true}]}";
    const char *ok_arr = JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4},"
                                   "\"merges\": [[\"a\", \"b\"], [\"\\u0120\", \"ab\"]]}, \"decoder\": {\"type\": "
                                   "\"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                                   "\" ?\\\\p{L}+|\\\\s+\"}, \"behavior\": \"Isolated\"}}";
    const char *cfg = "{\"eos_token\": {\"content\": \"<|end|>\"}, \"add_bos_token\": false, \"chat_template\": \"{{x}}\"}";
    t = fitlm_tokenizer_from_hf_json(ok_str, strlen(ok_str), cfg, &err);
    CHECK(t != NULL, "valid tokenizer.json (string merges): %s", err.msg);
    if (t) {
        encode_expect(t, "ab ab", (const int32_t[]){2, 4}, 2, "json string merges");
        CHECK(fitlm_tokenizer_eos(t) == 5 && fitlm_tokenizer_is_eog(t, 5), "eos from tokenizer_config.json");
        CHECK(fitlm_tokenizer_chat_template(t) && !strcmp(fitlm_tokenizer_chat_template(t), "{{x}}"), "template");
    }
    fitlm_tokenizer_free(t);
    t = fitlm_tokenizer_from_hf_json(ok_arr, strlen(ok_arr), NULL, &err);
    CHECK(t != NULL, "valid tokenizer.json (array merges): %s", err.msg);
    if (t) encode_expect(t, "ab ab", (const int32_t[]){2, 4}, 2, "json array merges");
    fitlm_tokenizer_free(t);

    /* Llama 3.1 style: TemplateProcessing inside a Sequence post-processor gives BOS */
    {
        const char *js = JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}, "
                                   "\"added_tokens\": [{\"id\": 3, \"content\": \"<|begin|>\", \"special\": true}], "
                                   "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": false}, "
                                   "\"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": "
                                   "\"ByteLevel\"}, {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
                                   "{\"id\": \"<|begin|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\"}}]}]}}";
        t = fitlm_tokenizer_from_hf_json(js, strlen(js), NULL, &err);
        CHECK(t != NULL, "Sequence post_processor: %s", err.msg);
        if (t) {
            CHECK(fitlm_tokenizer_bos(t) == 3 && fitlm_tokenizer_add_bos(t) && !fitlm_tokenizer_add_eos(t),
                  "BOS from a Sequence post-processor");
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK(fitlm_tokenizer_encode(t, "ab", 2, true, false, &ids, &n, &err) == 0 && n == 2 && ids[0] == 3 &&
                      ids[1] == 2,
                  "BOS added");
            free(ids);
        }
        fitlm_tokenizer_free(t);
    }

    /* Metaspace (prepend_scheme first / always, split) and its decoding */
    for (int always = 0; always < 2; always++) {
        char js[1024];
        snprintf(js, sizeof js,
                 JSON_HEAD "\"vocab\": {\"\u2581\": 0, \"a\": 1, \"b\": 2, \"\u2581a\": 3, \"ab\": 4, "
                           "\"\u2581ab\": 5}, \"merges\": [\"a b\", \"\u2581 ab\"]}, \"added_tokens\": [{\"id\": 6, "
                           "\"content\": \"<x>\", \"special\": true}], \"pre_tokenizer\": {\"type\": \"Metaspace\", "
                           "\"replacement\": \"\u2581\", \"prepend_scheme\": \"%s\", \"split\": true}}",
                 always ? "always" : "first");
        t = fitlm_tokenizer_from_hf_json(js, strlen(js), NULL, &err);
        CHECK(t != NULL, "Metaspace json: %s", err.msg);
        if (!t) continue;
        encode_expect(t, "ab ab", (const int32_t[]){5, 5}, 2, "Metaspace split words");
        encode_expect(t, " ab", (const int32_t[]){5}, 1, "Metaspace: no second prefix");
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(fitlm_tokenizer_encode(t, "<x>ab", 5, false, true, &ids, &n, &err) == 0, "%s", err.msg);
        CHECK(n == 2 && ids[0] == 6 && ids[1] == (always ? 5 : 4), "Metaspace %s after a special: %d",
              always ? "always" : "first", n == 2 ? ids[1] : -1);
        free(ids);
        size_t dl;
        char *d = fitlm_tokenizer_decode(t, (const int32_t[]){5, 5}, 2, false, &dl, &err);
        CHECK(d && !strcmp(d, "ab ab"), "Metaspace decode '%s'", d ? d : err.msg);
        free(d);
        fitlm_tokenizer_free(t);
    }

    expect_json_fail("{not json", NULL, "not valid JSON", "bad JSON");
    expect_json_fail("{}", NULL, "no 'model'", "no model");
    expect_json_fail("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL, "only BPE", "WordPiece");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}", NULL, "no token has id 1", "gap");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": -1}, \"merges\": []}}", NULL, "invalid id", "negative id");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1.5}, \"merges\": []}}", NULL, "invalid id", "fractional");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", NULL, "used twice", "dup id");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"ab\"]}}", NULL,
                     "not two tokens", "merge without space");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[1, 2]]}}", NULL, "neither",
                     "numeric merge");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", NULL,
                     "gives a token not in the vocabulary", "merge result missing");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a c\"]}}", NULL,
                     "'c' is not in the vocabulary", "merge part missing");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 0, \"content\": "
                               "\"<s>\"}]}",
                     NULL, "conflicts", "added token conflict");
    expect_json_fail(JSON_HEAD "\"unk_token\": \"<unk>\", \"vocab\": {\"a\": 0}, \"merges\": []}}", NULL, "unk_token",
                     "unk missing");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
                     NULL, "unsupported pre_tokenizer type 'Whitespace'", "pre_tokenizer");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", "
                               "\"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
                     NULL, "bad pre-tokenizer regex", "bad regex");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Lowercase\"}}",
                     NULL, "unsupported normalizer", "normalizer");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}}", "{\"bos_token\": \"<s>\"}",
                     "'<s>' is not in the vocabulary", "config bos");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}}", "[1,", "tokenizer_config.json is not valid",
                     "bad config");
    expect_json_fail(JSON_HEAD "\"vocab\": {\"a\": 0}, \"merges\": []}}", "{\"add_bos_token\": 3}", "true or false",
                     "config bool");

    /* a folder without tokenizer.json */
    expect_fail(g_tmp, "no tokenizer.json", "folder");
    return check_report();
}
