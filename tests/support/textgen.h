/* Deterministic generator of varied test text for the tokenizer tests: words in
 * many scripts, code, whitespace runs, digits, emoji (with ZWJ sequences and
 * modifiers), combining marks, punctuation, contractions, random code points
 * and (optionally) invalid UTF-8. */
#ifndef FITLM_TESTS_TEXTGEN_H
#define FITLM_TESTS_TEXTGEN_H

#include <stddef.h>
#include <stdint.h>

enum {
    TEXTGEN_INVALID_UTF8 = 1, /* may insert bytes that are not valid UTF-8 */
    TEXTGEN_SPECIALS = 2,     /* may insert Llama 3 special tokens (<|eot_id|> ...) */
    TEXTGEN_NO_WS_EXOTIC = 4, /* leave out U+0085 and U+FEFF (regex engines disagree on them) */
};

/* xorshift64* state; seed it with any non-zero value. */
uint64_t textgen_next(uint64_t *state);

/* Writes one random string of up to cap-1 bytes (NUL-terminated) into buf and
 * returns its length (it may contain NUL bytes; use the length). Roughly
 * max_segments pieces are joined. */
size_t textgen_string(uint64_t *state, char *buf, size_t cap, int max_segments, int flags);

/* 1 if buf[0..n) is valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF). */
int textgen_valid_utf8(const char *buf, size_t n);

#endif
