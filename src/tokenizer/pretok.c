/* Pre-tokenizers for byte-level BPE: text -> pieces, with PCRE2 regexes.
 *
 * A pre-tokenizer is a sequence of regexes. Each one is applied to every piece
 * produced so far: matches become pieces of their own and the text between
 * matches is kept as pieces too (Hugging Face's Split with behavior
 * "Isolated"). Patterns are written in Hugging Face / Oniguruma syntax; before
 * compiling, \s and \S are rewritten to the Unicode White_Space set so that
 * they mean exactly what they mean there. Compiled with UTF + UCP (so \p{L},
 * \p{N} and case-insensitive groups are Unicode-aware), MATCH_INVALID_UTF (so
 * invalid bytes never match and end up in the between-matches pieces, keeping
 * every byte) and DOLLAR_ENDONLY; JIT-compiled when PCRE2 has a JIT. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Unicode White_Space, as the body of a character class. */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* GPT-2 */
static const char *const k_gpt2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", NULL};

/* Llama 3 (tiktoken cl100k-style): numbers in groups of up to three digits */
static const char *const k_llama3[] = {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                                       NULL};

/* Qwen2: like Llama 3 but every digit on its own */
static const char *const k_qwen2[] = {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                                      NULL};

/* DeepSeek LLM: newlines, cased-script letters (with an optional leading
 * space), ASCII/fullwidth punctuation, trailing whitespace, CJK/Hangul runs,
 * digit runs. */
static const char *const k_deepseek_llm[] = {
    "[\\r\\n]",
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-"
    "\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-"
    "\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-"
    "\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
    "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"
    "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
    "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-"
    "\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}"
    "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-"
    "\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
    "\\x{1E900}-\\x{1E943}]+",
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}+",
    NULL};

/* DeepSeek Coder */
static const char *const k_deepseek_coder[] = {
    "[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}",
    NULL};

typedef struct pre_entry {
    const char *name;
    const char *const *regexes;
    bool ignore_merges;
} pre_entry;

static const pre_entry k_pre[] = {
    {"default", k_gpt2, false},        {"gpt-2", k_gpt2, false},         {"gpt2", k_gpt2, false},
    {"llama-bpe", k_llama3, true},     {"llama3", k_llama3, true},       {"llama-v3", k_llama3, true},
    {"smaug-bpe", k_llama3, false},    {"dbrx", k_llama3, false},        {"qwen2", k_qwen2, false},
    {"deepseek-r1-qwen", k_qwen2, false}, {"deepseek-llm", k_deepseek_llm, false},
    {"deepseek-coder", k_deepseek_coder, false},
};

int tok_set_pre(fitlm_tokenizer *t, const char *pre, fitlm_error *err) {
    if (!pre) pre = "default";
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++) {
        if (strcmp(pre, k_pre[i].name) != 0) continue;
        for (const char *const *r = k_pre[i].regexes; *r; r++)
            if (tok_add_regex(t, *r, err)) return -1;
        t->ignore_merges = k_pre[i].ignore_merges;
        free(t->pre_name);
        t->pre_name = strdup(pre);
        if (!t->pre_name) return fitlm_fail(err, "out of memory");
        return 0;
    }
    return fitlm_fail(err,
                      "unsupported tokenizer.ggml.pre '%.64s' (supported: default, gpt-2, llama-bpe, llama3, "
                      "smaug-bpe, dbrx, qwen2, deepseek-r1-qwen, deepseek-llm, deepseek-coder)",
                      pre);
}

/* Rewrites \s / \S into explicit White_Space classes. Returns a malloc'd
 * pattern (caller frees) or NULL on allocation failure. */
static char *rewrite_pattern(const char *p) {
    size_t n = strlen(p);
    char *out = malloc(n * (sizeof WS + 8) + 1);
    if (!out) return NULL;
    size_t o = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || (d == 'S' && !in_class)) {
                const char *rep = d == 's' ? (in_class ? WS : "[" WS "]") : "[^" WS "]";
                size_t l = strlen(rep);
                memcpy(out + o, rep, l);
                o += l;
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out[o++] = c;
            if (i + 1 < n && p[i + 1] == '^') out[o++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') out[o++] = p[++i]; /* a leading ']' is literal */
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

int tok_add_regex(fitlm_tokenizer *t, const char *pattern, fitlm_error *err) {
    if (t->n_re >= TOK_MAX_REGEXES) return fitlm_fail(err, "too many pre-tokenizer regexes");
    char *p = rewrite_pattern(pattern);
    if (!p) return fitlm_fail(err, "out of memory");
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &ecode,
                                   &eoff, NULL);
    free(p);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return fitlm_fail(err, "bad pre-tokenizer regex '%.80s': %s", pattern, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    t->re[t->n_re++] = re;
    return 0;
}

/* Splits text[0..len) with the tokenizer's regex sequence. On success *pieces
 * is a malloc'd array (caller frees) of *np (offset, length) pairs. */
int tok_pretokenize(const fitlm_tokenizer *t, const char *text, size_t len, size_t **pieces, size_t *np,
                    fitlm_error *err) {
    size_t cap = 2 * (len + 1);
    size_t *cur = malloc(cap * sizeof *cur), *next = malloc(cap * sizeof *next);
    pcre2_match_data *md = NULL;
    pcre2_match_context *mc = NULL;
    pcre2_jit_stack *js = NULL;
    size_t n = 0;
    if (!cur || !next) goto oom;
    cur[0] = 0;
    cur[1] = len;
    n = len ? 1 : 0;
    for (int r = 0; r < t->n_re; r++) {
        const pcre2_code *re = t->re[r];
        if (!md) md = pcre2_match_data_create(4, NULL);
        if (!md) goto oom;
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            const char *s = text + cur[2 * k];
            size_t sl = cur[2 * k + 1], pos = 0, gap = 0;
            while (pos < sl) {
                int rc = pcre2_match(re, (PCRE2_SPTR)s, sl, pos, 0, md, mc);
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !js) {
                    /* the default 32 KiB JIT stack is too small here: retry with up to 4 MiB */
                    mc = pcre2_match_context_create(NULL);
                    js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
                    if (!mc || !js) goto oom;
                    pcre2_jit_stack_assign(mc, NULL, js);
                    rc = pcre2_match(re, (PCRE2_SPTR)s, sl, pos, 0, md, mc);
                }
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* still too deep: the interpreter uses the heap */
                    rc = pcre2_match(re, (PCRE2_SPTR)s, sl, pos, PCRE2_NO_JIT, md, mc);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    PCRE2_UCHAR msg[256];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    fitlm_fail(err, "pre-tokenizer regex failed: %s", (const char *)msg);
                    goto fail;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me == ms) { /* empty match: step over one character */
                    size_t l = tok_utf8_valid_len((const unsigned char *)s + ms, sl - ms);
                    pos = ms + (l ? l : 1);
                    continue;
                }
                if (ms > gap) {
                    next[2 * m] = cur[2 * k] + gap;
                    next[2 * m + 1] = ms - gap;
                    m++;
                }
                next[2 * m] = cur[2 * k] + ms;
                next[2 * m + 1] = me - ms;
                m++;
                gap = pos = me;
            }
            if (sl > gap) {
                next[2 * m] = cur[2 * k] + gap;
                next[2 * m + 1] = sl - gap;
                m++;
            }
        }
        size_t *tmp = cur;
        cur = next;
        next = tmp;
        n = m;
    }
    free(next);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    *pieces = cur;
    *np = n;
    return 0;
oom:
    fitlm_fail(err, "out of memory");
fail:
    free(cur);
    free(next);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    return -1;
}
