/* Reads the real vocab-only GGUF files in $FITLM_SHARED/data/vocab (written by
 * llama.cpp's gguf-py, an independent writer) and checks header fields, known
 * metadata and the tokenizer arrays against the README's table. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "format/gguf.h"

typedef struct vocab_case {
    const char *file;
    uint64_t n_kv;
    const char *arch;
    const char *tok_model;
    const char *tok_pre;
    uint64_t n_vocab;
    bool has_scores;
    uint64_t n_merges; /* 0: no merges array */
    uint32_t bos, eos;
    const char *bos_text;
} vocab_case;

static const vocab_case k_cases[] = {
    {"ggml-vocab-llama-spm.gguf", 22, "llama", "llama", "default", 32000, true, 0, 1, 2, "<s>"},
    {"ggml-vocab-phi-3.gguf", 26, "phi3", "llama", "default", 32064, true, 0, 1, 32000, "<s>"},
    {"ggml-vocab-gpt-2.gguf", 16, "gpt2", "gpt2", "gpt-2", 50257, false, 50000, 50256, 50256, "<|endoftext|>"},
    {"ggml-vocab-deepseek-llm.gguf", 23, "llama", "gpt2", "deepseek-llm", 102400, false, 99757, 100000, 100001,
     "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"},
};

static void check_vocab(const char *dir, const vocab_case *c) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, c->file);
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open(path, &err);
    CHECK(g != NULL, "%s: %s", c->file, err.msg);
    if (!g) return;
    CHECK(g->version == 3, "%s: version %u", c->file, g->version);
    CHECK(g->n_tensors == 0, "%s: %llu tensors", c->file, (unsigned long long)g->n_tensors);
    CHECK(g->n_kv == c->n_kv, "%s: n_kv %llu, expected %llu", c->file, (unsigned long long)g->n_kv,
          (unsigned long long)c->n_kv);
    CHECK(g->alignment == 32, "%s: alignment %llu", c->file, (unsigned long long)g->alignment);

    const char *s = NULL;
    CHECK(fitlm_gguf_get_str(g, "general.architecture", &s, &err) == 1 && strcmp(s, c->arch) == 0,
          "%s: architecture %s", c->file, s ? s : "(none)");
    s = NULL;
    CHECK(fitlm_gguf_get_str(g, "tokenizer.ggml.model", &s, &err) == 1 && strcmp(s, c->tok_model) == 0,
          "%s: tokenizer model %s", c->file, s ? s : "(none)");
    s = NULL;
    CHECK(fitlm_gguf_get_str(g, "tokenizer.ggml.pre", &s, &err) == 1 && strcmp(s, c->tok_pre) == 0,
          "%s: tokenizer pre %s", c->file, s ? s : "(none)");

    const fitlm_gguf_value *tokens = NULL;
    CHECK(fitlm_gguf_get_arr(g, "tokenizer.ggml.tokens", FITLM_GGUF_STRING, &tokens, &err) == 1, "%s: tokens: %s",
          c->file, err.msg);
    if (tokens) {
        CHECK(tokens->v.arr.n == c->n_vocab, "%s: %llu tokens, expected %llu", c->file,
              (unsigned long long)tokens->v.arr.n, (unsigned long long)c->n_vocab);
        uint64_t bad = 0;
        for (uint64_t i = 0; i < tokens->v.arr.n; i++) {
            const fitlm_gguf_str *t = &tokens->v.arr.strs[i];
            if (!t->s || t->len == 0 || strlen(t->s) != t->len) bad++;
        }
        CHECK(bad == 0, "%s: %llu token strings missing or empty", c->file, (unsigned long long)bad);
        if (c->bos < tokens->v.arr.n)
            CHECK(strcmp(tokens->v.arr.strs[c->bos].s, c->bos_text) == 0, "%s: token %u is '%s'", c->file, c->bos,
                  tokens->v.arr.strs[c->bos].s);
    }
    const fitlm_gguf_value *types = NULL;
    CHECK(fitlm_gguf_get_arr(g, "tokenizer.ggml.token_type", FITLM_GGUF_INT32, &types, &err) == 1 &&
              types->v.arr.n == c->n_vocab,
          "%s: token_type array", c->file);
    const fitlm_gguf_value *scores = NULL;
    int rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.scores", FITLM_GGUF_FLOAT32, &scores, &err);
    CHECK(rc == (c->has_scores ? 1 : 0), "%s: scores rc %d", c->file, rc);
    if (rc == 1) CHECK(scores->v.arr.n == c->n_vocab, "%s: %llu scores", c->file, (unsigned long long)scores->v.arr.n);
    const fitlm_gguf_value *merges = NULL;
    rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.merges", FITLM_GGUF_STRING, &merges, &err);
    CHECK(rc == (c->n_merges ? 1 : 0), "%s: merges rc %d", c->file, rc);
    if (rc == 1) {
        CHECK(merges->v.arr.n == c->n_merges, "%s: %llu merges", c->file, (unsigned long long)merges->v.arr.n);
        uint64_t bad = 0; /* a merge is "left right" */
        for (uint64_t i = 0; i < merges->v.arr.n; i++)
            if (!strchr(merges->v.arr.strs[i].s, ' ')) bad++;
        CHECK(bad == 0, "%s: %llu merges without a space", c->file, (unsigned long long)bad);
    }
    uint32_t bos = 0, eos = 0;
    CHECK(fitlm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos, &err) == 1 && bos == c->bos, "%s: bos %u",
          c->file, bos);
    CHECK(fitlm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos, &err) == 1 && eos == c->eos, "%s: eos %u",
          c->file, eos);

    /* typed getters: conversions, absence and type errors */
    uint64_t u64 = 0;
    int64_t i64 = 0;
    CHECK(fitlm_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &u64, &err) == 1 && u64 == c->eos, "u64 getter");
    CHECK(fitlm_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &i64, &err) == 1 && i64 == (int64_t)c->eos,
          "i64 getter");
    uint32_t u32 = 7;
    CHECK(fitlm_gguf_get_u32(g, "no.such.key", &u32, &err) == 0 && u32 == 7, "absent key");
    CHECK(fitlm_gguf_get(g, "no.such.key") == NULL, "absent key get");
    err.msg[0] = 0;
    CHECK(fitlm_gguf_get_u32(g, "general.architecture", &u32, &err) == -1 && strstr(err.msg, "string"),
          "u32 of a string: %s", err.msg);
    err.msg[0] = 0;
    CHECK(fitlm_gguf_get_str(g, "tokenizer.ggml.tokens", &s, &err) == -1 && err.msg[0], "str of an array");
    err.msg[0] = 0;
    CHECK(fitlm_gguf_get_arr(g, "tokenizer.ggml.tokens", FITLM_GGUF_INT32, &tokens, &err) == -1 && err.msg[0],
          "array of the wrong element type");
    fitlm_gguf_close(g);
}

static void check_llama_hparams(const char *dir) {
    char path[8192];
    snprintf(path, sizeof path, "%s/ggml-vocab-llama-spm.gguf", dir);
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open(path, &err);
    if (!g) return;
    uint32_t n = 0;
    CHECK(fitlm_gguf_get_u32(g, "llama.block_count", &n, &err) == 1 && n == 32, "block_count %u", n);
    CHECK(fitlm_gguf_get_u32(g, "llama.embedding_length", &n, &err) == 1 && n == 4096, "embedding %u", n);
    CHECK(fitlm_gguf_get_u32(g, "llama.feed_forward_length", &n, &err) == 1 && n == 11008, "ffn %u", n);
    float eps = 0;
    CHECK(fitlm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == 1 && eps > 0.99e-5f &&
              eps < 1.01e-5f,
          "eps %g", (double)eps);
    bool b = false;
    CHECK(fitlm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err) == 1 && b, "add_bos");
    CHECK(fitlm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &err) == 1 && !b, "add_eos");
    const fitlm_gguf_value *tt = NULL;
    if (fitlm_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &tt, &err) == 1) {
        int32_t t0, t1, t259;
        memcpy(&t0, (const char *)tt->v.arr.raw + 0, 4);
        memcpy(&t1, (const char *)tt->v.arr.raw + 4, 4);
        memcpy(&t259, (const char *)tt->v.arr.raw + 4 * 259, 4);
        /* <unk> is UNKNOWN (2), <s> CONTROL (3), <0xFF> (id 258) BYTE (6), id 259 NORMAL (1) */
        CHECK(t0 == 2 && t1 == 3 && t259 == 1, "token types %d %d %d", t0, t1, t259);
    }
    CHECK(fitlm_gguf_find_tensor(g, "token_embd.weight") == NULL, "vocab file has no tensors");
    fitlm_gguf_close(g);
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data/vocab", shared);
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) check_vocab(dir, &k_cases[i]);
    check_llama_hparams(dir);

    fitlm_error err = {{0}};
    CHECK(fitlm_gguf_open("/nonexistent/x.gguf", &err) == NULL && strstr(err.msg, "No such file"), "missing: %s",
          err.msg);
    return check_report();
}
