/* For every shared vocabulary: decode(encode(x)) == x on generated text (valid
 * UTF-8 everywhere; for byte-level BPE also with invalid bytes, which it keeps),
 * the streaming decoder gives the same bytes as the whole decode and never ends
 * a chunk inside a UTF-8 character, special-token / BOS rules and accessors, and
 * the speed on 1 MB texts (varied, one endless word, one whitespace run). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "model/model.h"
#include "support/textgen.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static fitlm_tokenizer *load(const char *shared, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-%s.gguf", shared, name);
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(path, &err);
    CHECK(t != NULL, "%s", err.msg);
    return t;
}

/* Streams ids through the detokenizer; checks chunks against the whole decode. */
static void check_stream(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool valid_input, const char *name,
                         int idx) {
    fitlm_error err = {{0}};
    size_t whole_len;
    char *whole = fitlm_tokenizer_decode(t, ids, n, false, &whole_len, &err);
    fitlm_detok_stream *s = fitlm_detok_stream_new(t, false);
    CHECK(whole && s, "%s: %s", name, err.msg);
    if (!whole || !s) {
        free(whole);
        fitlm_detok_stream_free(s);
        return;
    }
    char *acc = malloc(whole_len + 16);
    size_t al = 0;
    bool chunks_ok = true, fits = true;
    for (size_t i = 0; i < n; i++) {
        const char *c;
        size_t cl;
        CHECK(fitlm_detok_stream_push(s, ids[i], &c, &cl, &err) == 0, "%s", err.msg);
        if (valid_input && !textgen_valid_utf8(c, cl)) chunks_ok = false;
        if (al + cl > whole_len) {
            fits = false;
            break;
        }
        memcpy(acc + al, c, cl);
        al += cl;
    }
    const char *c;
    size_t cl;
    fitlm_detok_stream_flush(s, &c, &cl);
    if (fits && al + cl <= whole_len) {
        memcpy(acc + al, c, cl);
        al += cl;
    } else {
        fits = false;
    }
    CHECK(fits && al == whole_len && memcmp(acc, whole, al) == 0, "%s string %d: stream != decode", name, idx);
    CHECK(chunks_ok, "%s string %d: a streamed chunk ends inside a UTF-8 character", name, idx);
    free(acc);
    free(whole);
    fitlm_detok_stream_free(s);
}

/* Inputs that cannot round-trip by design (counted, reported, not failed):
 * - SentencePiece: a literal "▁" (U+2581) in the text is the same piece as an
 *   escaped space and decodes to ' ' (python3-sentencepiece does the same);
 * - DeepSeek: bytes C0, C1, F5..FF never occur in valid UTF-8 and its
 *   vocabulary has only user-defined tokens for them ("ø", "ÿ", ...), which
 *   decode to those characters (as in llama.cpp). */
static bool cannot_roundtrip(const char *name, bool byte_level, const char *s, size_t n) {
    if (!byte_level) {
        for (size_t i = 0; i + 3 <= n; i++)
            if (!memcmp(s + i, "\xE2\x96\x81", 3)) return true;
        return false;
    }
    if (strcmp(name, "deepseek-llm") != 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xC0 || c == 0xC1 || c >= 0xF5) return true;
    }
    return false;
}

static void roundtrip(const char *shared, const char *name, bool byte_level) {
    fitlm_tokenizer *t = load(shared, name);
    if (!t) return;
    const int n_strings = getenv("FITLM_SANITIZED") ? 400 : 2000;
    uint64_t rng = 0xfeedull + (uint64_t)strlen(name);
    char buf[800];
    int ok = 0, skipped = 0;
    for (int i = 0; i < n_strings; i++) {
        int flags = byte_level && i % 5 == 4 ? TEXTGEN_INVALID_UTF8 : 0;
        size_t len = textgen_string(&rng, buf, sizeof buf, 1 + i % 20, flags);
        bool valid = textgen_valid_utf8(buf, len);
        fitlm_error err = {{0}};
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(fitlm_tokenizer_encode(t, buf, len, false, false, &ids, &n, &err) == 0, "%s", err.msg);
        size_t dl;
        char *dec = fitlm_tokenizer_decode(t, ids, n, false, &dl, &err);
        bool same = dec && dl == len && memcmp(dec, buf, len) == 0;
        if (!same && cannot_roundtrip(name, byte_level, buf, len)) {
            skipped++;
            same = true;
        }
        CHECK(same, "%s string %d: decode(encode(x)) != x: '%.*s' -> '%s'", name, i, (int)len, buf, dec ? dec : "");
        ok += same;
        check_stream(t, ids, n, valid, name, i);
        free(dec);
        free(ids);
    }
    printf("%s: round trip %d/%d (%d more cannot by design)\n", name, ok - skipped, n_strings - skipped, skipped);

    /* speed on 1 MB: varied text, one endless word, one whitespace run */
    size_t big = getenv("FITLM_SANITIZED") ? (256u << 10) : (1u << 20);
    char *text = malloc(big + 1024);
    size_t tl = 0;
    while (tl < big) {
        size_t l = textgen_string(&rng, text + tl, 1000, 20, 0);
        if (!cannot_roundtrip(name, byte_level, text + tl, l)) tl += l;
    }
    /* "near specials": prefixes of special tokens everywhere ("[PAD1000" for
     * DeepSeek's 2385 [PAD...] tokens, "<|" for chat tokens) */
    const char *kinds[] = {"varied", "one word", "spaces", "near specials"};
    for (int k = 0; k < 4; k++) {
        if (k == 1) memset(text, 'a', tl = big);
        if (k == 2) memset(text, ' ', tl = big);
        if (k == 3)
            for (tl = 0; tl + 10 <= big; tl += 10) memcpy(text + tl, "[PAD1000<|", 10);
        int32_t *ids = NULL;
        size_t n = 0;
        fitlm_error err = {{0}};
        double t0 = now();
        clock_t c0 = clock();
        CHECK(fitlm_tokenizer_encode(t, text, tl, false, false, &ids, &n, &err) == 0, "%s", err.msg);
        double dt = now() - t0, cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
        printf("%s: %s %.2f MB -> %zu tokens in %.3f s CPU, %.3f s wall (%.1f MB/s CPU)\n", name, kinds[k],
               (double)tl / 1e6, n, cpu, dt, (double)tl / 1e6 / (cpu > 0 ? cpu : 1e-9));
        /* CPU time: wall time is noisy on a shared machine */
        if (!getenv("FITLM_SANITIZED")) CHECK(cpu < 5.0, "%s: %s 1 MB took %.1f s of CPU", name, kinds[k], cpu);
        size_t dl;
        char *dec = fitlm_tokenizer_decode(t, ids, n, false, &dl, &err);
        CHECK(dec && dl == tl && memcmp(dec, text, tl) == 0, "%s: %s text does not round-trip", name, kinds[k]);
        free(dec);
        free(ids);
    }
    free(text);
    fitlm_tokenizer_free(t);
}

static void expect_ids(const fitlm_tokenizer *t, const char *text, bool add, bool parse, const int32_t *exp, size_t ne,
                       const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    fitlm_error err = {{0}};
    int rc = fitlm_tokenizer_encode(t, text, strlen(text), add, parse, &ids, &n, &err);
    bool ok = rc == 0 && n == ne && memcmp(ids, exp, n * sizeof *ids) == 0;
    if (!ok) {
        fprintf(stderr, "%s: got", what);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    CHECK(ok, "%s", what);
    free(ids);
}

static void rules(const char *shared) {
    fitlm_tokenizer *spm = load(shared, "llama-spm"), *phi = load(shared, "phi-3"), *gpt = load(shared, "gpt-2"),
                    *ds = load(shared, "deepseek-llm");
    if (!spm || !phi || !gpt || !ds) goto done;
    /* BOS/EOS per metadata: Llama 2 adds <s>, GPT-2 adds nothing, DeepSeek adds its BOS */
    expect_ids(spm, "Hello world", true, false, (const int32_t[]){1, 15043, 3186}, 3, "llama-spm add_special");
    expect_ids(spm, "Hello world", false, false, (const int32_t[]){15043, 3186}, 2, "llama-spm no special");
    expect_ids(gpt, "Hello world", true, false, (const int32_t[]){15496, 995}, 2, "gpt-2 add_special");
    expect_ids(ds, "Hello world", true, false, (const int32_t[]){100000, 17464, 1843}, 3, "deepseek add_special");
    /* control tokens only with parse_special; the text after one gets the dummy prefix (as llama.cpp) */
    expect_ids(spm, "<s>Hello", false, true, (const int32_t[]){1, 15043}, 2, "llama-spm parse <s>");
    expect_ids(phi, "<|user|>\nHi<|end|>", false, true, (const int32_t[]){32010, 29871, 13, 18567, 32007}, 5,
               "phi-3 chat tokens");
    expect_ids(gpt, "a<|endoftext|>", false, true, (const int32_t[]){64, 50256}, 2, "gpt-2 parse <|endoftext|>");
    {
        int32_t *ids = NULL;
        size_t n = 0;
        fitlm_error err = {{0}};
        CHECK(fitlm_tokenizer_encode(gpt, "a<|endoftext|>", 14, false, false, &ids, &n, &err) == 0, "%s", err.msg);
        CHECK(n > 2, "gpt-2: <|endoftext|> must be plain text without parse_special (n=%zu)", n);
        free(ids);
    }
    /* accessors */
    CHECK(fitlm_tokenizer_get_type(spm) == FITLM_TOK_SPM && fitlm_tokenizer_get_type(gpt) == FITLM_TOK_BPE, "types");
    CHECK(!strcmp(fitlm_tokenizer_model_name(spm), "llama") && !strcmp(fitlm_tokenizer_model_name(ds), "gpt2"),
          "model names");
    CHECK(!strcmp(fitlm_tokenizer_pre_name(ds), "deepseek-llm"), "pre %s", fitlm_tokenizer_pre_name(ds));
    CHECK(fitlm_tokenizer_vocab_size(phi) == 32064 && fitlm_tokenizer_vocab_size(ds) == 102400, "vocab sizes");
    CHECK(fitlm_tokenizer_bos(spm) == 1 && fitlm_tokenizer_eos(spm) == 2 && fitlm_tokenizer_unk(spm) == 0, "spm ids");
    CHECK(fitlm_tokenizer_eos(phi) == 32000 && fitlm_tokenizer_pad(phi) == 32000, "phi-3 eos/pad");
    CHECK(fitlm_tokenizer_is_eog(phi, 32007) && fitlm_tokenizer_is_eog(phi, 32000) && !fitlm_tokenizer_is_eog(phi, 32010),
          "phi-3 end of generation");
    CHECK(fitlm_tokenizer_eot(phi) == 32007, "phi-3 eot %d", fitlm_tokenizer_eot(phi));
    CHECK(fitlm_tokenizer_bos(gpt) == 50256 && fitlm_tokenizer_pad(gpt) == -1 && fitlm_tokenizer_unk(gpt) == -1,
          "gpt-2 ids");
    CHECK(fitlm_tokenizer_is_control(gpt, 50256) && !fitlm_tokenizer_is_control(gpt, 0), "is_control");
    CHECK(fitlm_tokenizer_token_type(spm, 3) == FITLM_TOKEN_BYTE && fitlm_tokenizer_token_type(spm, 32000) == -1,
          "token types");
    CHECK(fitlm_tokenizer_chat_template(phi) && strstr(fitlm_tokenizer_chat_template(phi), "<|user|>"), "template");
    CHECK(fitlm_tokenizer_chat_template(spm) == NULL, "llama-spm has no template");
    CHECK(!strcmp(fitlm_tokenizer_token_text(gpt, 15496), "Hello"), "token text");
    CHECK(fitlm_tokenizer_find(spm, "\xE2\x96\x81Hello", 8) == 15043, "find");
    /* decoding: pieces, BOS + leading space rule, specials rendered on request */
    {
        size_t l;
        const char *p = fitlm_tokenizer_piece(spm, 13, false, &l); /* <0x0A> */
        CHECK(p && l == 1 && p[0] == '\n', "byte piece");
        p = fitlm_tokenizer_piece(spm, 1, false, &l);
        CHECK(p && l == 0, "control piece hidden");
        p = fitlm_tokenizer_piece(spm, 1, true, &l);
        CHECK(p && l == 3 && !memcmp(p, "<s>", 3), "control piece rendered");
        p = fitlm_tokenizer_piece(gpt, 995, false, &l); /* "Ġworld" */
        CHECK(p && l == 6 && !memcmp(p, " world", 6), "byte-level piece");
        CHECK(fitlm_tokenizer_piece(gpt, 50257, false, &l) == NULL, "piece out of range");
        fitlm_error err = {{0}};
        char *d = fitlm_tokenizer_decode(spm, (const int32_t[]){1, 15043, 3186, 2}, 4, false, &l, &err);
        CHECK(d && !strcmp(d, "Hello world"), "decode with BOS: '%s'", d ? d : err.msg);
        free(d);
        d = fitlm_tokenizer_decode(spm, (const int32_t[]){1, 15043, 3186, 2}, 4, true, &l, &err);
        CHECK(d && !strcmp(d, "<s>Hello world</s>"), "decode rendering specials: '%s'", d ? d : err.msg);
        free(d);
        d = fitlm_tokenizer_decode(spm, (const int32_t[]){15043, 32000}, 2, false, &l, &err);
        CHECK(d == NULL && strstr(err.msg, "32000"), "decode out of range: %s", err.msg);
        free(d);
        /* stream: a 4-byte emoji split over byte tokens comes out only when complete */
        fitlm_detok_stream *s = fitlm_detok_stream_new(spm, false);
        const char *c;
        size_t cl;
        const int32_t emoji[] = {243, 162, 169, 156}; /* <0xF0> <0x9F> <0xA6> <0x99> = 🦙 */
        size_t got = 0;
        for (int i = 0; i < 4; i++) {
            CHECK(fitlm_detok_stream_push(s, emoji[i], &c, &cl, &err) == 0, "%s", err.msg);
            CHECK(i < 3 ? cl == 0 : (cl == 4 && !memcmp(c, "\xF0\x9F\xA6\x99", 4)), "stream step %d gave %zu", i, cl);
            got += cl;
        }
        CHECK(got == 4, "emoji streamed");
        CHECK(fitlm_detok_stream_push(s, -5, &c, &cl, &err) == -1, "stream rejects bad ids");
        fitlm_detok_stream_free(s);
    }
done:
    fitlm_tokenizer_free(spm);
    fitlm_tokenizer_free(phi);
    fitlm_tokenizer_free(gpt);
    fitlm_tokenizer_free(ds);
}

/* fitlm_tokenizer_for_model: GGUF metadata of an opened model, and a clear
 * error for a llama2.c checkpoint. */
static void for_model(const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-gpt-2.gguf", shared);
    fitlm_error err = {{0}};
    fitlm_model m;
    memset(&m, 0, sizeof m);
    m.format = FITLM_FORMAT_GGUF;
    m.path = path;
    m.gguf = fitlm_gguf_open(path, &err);
    CHECK(m.gguf != NULL, "%s", err.msg);
    fitlm_tokenizer *t = fitlm_tokenizer_for_model(&m, &err);
    CHECK(t && fitlm_tokenizer_vocab_size(t) == 50257, "for_model(GGUF): %s", err.msg);
    fitlm_tokenizer_free(t);
    fitlm_gguf_close(m.gguf);
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", shared);
    fitlm_model *l2c = fitlm_model_load(path, &err);
    CHECK(l2c != NULL, "%s", err.msg);
    if (l2c) {
        t = fitlm_tokenizer_for_model(l2c, &err);
        CHECK(t == NULL && strstr(err.msg, "carries no tokenizer"), "llama2.c: %s", err.msg);
        fitlm_tokenizer_free(t);
        fitlm_model_free(l2c);
    }
}

/* Several threads encode and decode with one shared tokenizer: every result
 * must equal the single-threaded one. */
typedef struct thread_job {
    const fitlm_tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    int n;
    int32_t **expect;
    const size_t *n_expect;
    int mismatches;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < j->n; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            fitlm_error err = {{0}};
            if (fitlm_tokenizer_encode(j->t, j->texts[i], j->lens[i], true, true, &ids, &n, &err) != 0 ||
                n != j->n_expect[i] || (n && memcmp(ids, j->expect[i], n * sizeof *ids) != 0))
                j->mismatches++;
            char *d = fitlm_tokenizer_decode(j->t, ids, n, true, NULL, &err);
            if (!d) j->mismatches++;
            free(d);
            free(ids);
        }
    return NULL;
}

static void threads(const char *shared) {
    fitlm_tokenizer *t = load(shared, "deepseek-llm"); /* regexes, merges and specials all in use */
    if (!t) return;
    enum { N = 200, T = 4 };
    char *texts[N];
    size_t lens[N], n_expect[N];
    int32_t *expect[N];
    uint64_t rng = 77;
    for (int i = 0; i < N; i++) {
        texts[i] = malloc(600);
        lens[i] = textgen_string(&rng, texts[i], 600, 12, TEXTGEN_INVALID_UTF8 | TEXTGEN_SPECIALS);
        fitlm_error err = {{0}};
        CHECK(fitlm_tokenizer_encode(t, texts[i], lens[i], true, true, &expect[i], &n_expect[i], &err) == 0, "%s",
              err.msg);
    }
    pthread_t th[T];
    thread_job jobs[T];
    for (int k = 0; k < T; k++) {
        jobs[k] = (thread_job){t, (const char *const *)texts, lens, N, expect, n_expect, 0};
        CHECK(pthread_create(&th[k], NULL, thread_main, &jobs[k]) == 0, "pthread_create");
    }
    int bad = 0;
    for (int k = 0; k < T; k++) {
        pthread_join(th[k], NULL);
        bad += jobs[k].mismatches;
    }
    CHECK(bad == 0, "%d results differ when %d threads share a tokenizer", bad, T);
    printf("threads: %d threads x %d strings x 3 rounds on one tokenizer, %d mismatches\n", T, N, bad);
    for (int i = 0; i < N; i++) {
        free(texts[i]);
        free(expect[i]);
    }
    fitlm_tokenizer_free(t);
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    threads(shared);
    rules(shared);
    for_model(shared);
    roundtrip(shared, "llama-spm", false);
    roundtrip(shared, "phi-3", false);
    roundtrip(shared, "gpt-2", true);
    roundtrip(shared, "deepseek-llm", true);
    return check_report();
}
