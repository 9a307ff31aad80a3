/* libFuzzer target for the tokenizers.
 *
 * Vocabularies: FITLM_FUZZ_VOCAB (one GGUF file or HF folder, or several
 * separated by ':'), else the four shared ones found through FITLM_SHARED or
 * the ../shared folder next to this source tree. They are loaded once.
 *
 * Input: byte 0 picks the mode; the rest is the payload.
 *   modes 0..223: encode the payload as text with vocabulary (mode % n), flags
 *     from the mode bits; every id must be in range, the streaming decoder must
 *     give exactly the whole decode, and decode(encode(x)) == x must hold
 *     wherever it is promised (docs/tokenizers.md: byte-level BPE always except
 *     DeepSeek's C0/C1/F5..FF bytes; SentencePiece for valid UTF-8 without "▁"
 *     and without special tokens in the output).
 *   modes 224..239: payload = little-endian uint16 ids (mod vocab size): decode
 *     and stream them.
 *   modes 240..247: payload = a tokenizer.json text: load it (errors are fine),
 *     and if it loads, encode and decode a fixed text with it.
 *   modes 248..255: payload = a GGUF file: open it from memory, build a
 *     tokenizer from its metadata (errors are fine), and use it likewise.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

#define MAX_VOCABS 8

static fitlm_tokenizer *g_tok[MAX_VOCABS];
static char g_name[MAX_VOCABS][64];
static int g_n;

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    abort();
}

static void load_one(const char *path) {
    if (g_n >= MAX_VOCABS) return;
    fitlm_error err = {{0}};
    fitlm_tokenizer *t = fitlm_tokenizer_load(path, &err);
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(1);
    }
    const char *base = strrchr(path, '/');
    snprintf(g_name[g_n], sizeof g_name[g_n], "%s", base ? base + 1 : path);
    g_tok[g_n++] = t;
}

static void init(void) {
    const char *list = getenv("FITLM_FUZZ_VOCAB");
    if (list && *list) {
        char *copy = strdup(list);
        for (char *s = strtok(copy, ":"); s; s = strtok(NULL, ":")) load_one(s);
        free(copy);
        return;
    }
    char dir[4096];
    const char *shared = getenv("FITLM_SHARED");
    if (shared && *shared) {
        snprintf(dir, sizeof dir, "%s/data/vocab", shared);
    } else { /* <repo>/tests/fuzz/fuzz_tokenizer.c -> <repo>/../shared */
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *p = strstr(dir, "/tests/fuzz/");
        if (!p) die("set FITLM_FUZZ_VOCAB or FITLM_SHARED");
        snprintf(p, sizeof dir - (size_t)(p - dir), "/../shared/data/vocab");
    }
    const char *names[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm"};
    for (int i = 0; i < 4; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, names[i]);
        load_one(path);
    }
}

static bool has(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return true;
    return false;
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!l || i + l > n) return false;
        uint32_t cp = l == 1 ? c : c & (0xFF >> (l + 1));
        for (size_t k = 1; k < l; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[l] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += l;
    }
    return true;
}

/* Whole decode vs streaming; returns the whole decode (caller frees). */
static char *decode_both(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool special, size_t *len) {
    fitlm_error err = {{0}};
    char *whole = fitlm_tokenizer_decode(t, ids, n, special, len, &err);
    if (!whole) die(err.msg);
    fitlm_detok_stream *s = fitlm_detok_stream_new(t, special);
    if (!s) die("stream");
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c;
        size_t cl;
        if (fitlm_detok_stream_push(s, ids[i], &c, &cl, &err)) die(err.msg);
        if (pos + cl > *len || memcmp(whole + pos, c, cl)) die("stream differs from decode");
        pos += cl;
    }
    const char *c;
    size_t cl;
    fitlm_detok_stream_flush(s, &c, &cl);
    if (pos + cl != *len || memcmp(whole + pos, c, cl)) die("stream end differs from decode");
    fitlm_detok_stream_free(s);
    return whole;
}

static void fuzz_text(const fitlm_tokenizer *t, const char *name, const char *text, size_t len, bool add, bool parse,
                      bool check_roundtrip) {
    fitlm_error err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    if (fitlm_tokenizer_encode(t, text, len, add, parse, &ids, &n, &err)) die(err.msg);
    int32_t nv = fitlm_tokenizer_vocab_size(t);
    bool specials = false;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nv) die("id out of range");
        int ty = fitlm_tokenizer_token_type(t, ids[i]);
        if (ty == FITLM_TOKEN_CONTROL || ty == FITLM_TOKEN_USER_DEFINED) specials = true;
    }
    size_t dl;
    char *dec = decode_both(t, ids, n, true, &dl);
    bool promised;
    if (fitlm_tokenizer_get_type(t) == FITLM_TOK_SPM) {
        promised = !add && !specials && valid_utf8((const unsigned char *)text, len) && !has(text, len, "\xE2\x96\x81");
    } else {
        promised = !add;
        if (strstr(name, "deepseek"))
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)text[i];
                if (c == 0xC0 || c == 0xC1 || c >= 0xF5) promised = false;
            }
    }
    if (check_roundtrip && promised && (dl != len || memcmp(dec, text, len))) {
        fprintf(stderr, "vocab %s: round trip failed for %zu bytes\n", name, len);
        die("decode(encode(x)) != x");
    }
    free(dec);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_n) init();
    if (size < 1) return 0;
    unsigned mode = data[0];
    const char *payload = (const char *)data + 1;
    size_t plen = size - 1;
    if (mode < 224) {
        int v = (int)(mode % (unsigned)g_n);
        unsigned bits = mode / (unsigned)g_n;
        fuzz_text(g_tok[v], g_name[v], payload, plen, bits & 1, (bits >> 1) & 1, true);
    } else if (mode < 240) {
        const fitlm_tokenizer *t = g_tok[mode % (unsigned)g_n];
        size_t n = plen / 2;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int32_t)(((uint32_t)(uint8_t)payload[2 * i] | ((uint32_t)(uint8_t)payload[2 * i + 1] << 8)) %
                               (uint32_t)fitlm_tokenizer_vocab_size(t));
        size_t dl;
        free(decode_both(t, ids, n, mode & 1, &dl));
        free(ids);
    } else {
        fitlm_error err = {{0}};
        fitlm_tokenizer *t = NULL;
        if (mode < 248) {
            t = fitlm_tokenizer_from_hf_json(payload, plen, NULL, &err);
        } else {
            fitlm_gguf *g = fitlm_gguf_open_memory(payload, plen, &err);
            if (g) t = fitlm_tokenizer_from_gguf(g, &err);
            fitlm_gguf_close(g); /* the tokenizer keeps no reference to g */
        }
        if (t) {
            static const char sample[] = "Hello world! 123 \xC3\xA4\xE2\x96\x81 <s>";
            fuzz_text(t, "json", sample, sizeof sample - 1, false, true, false);
            fitlm_tokenizer_free(t);
        }
    }
    return 0;
}
