/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), shared by every reader of untrusted text (safetensors headers,
 * stop strings, HTTP request strings). */
#ifndef FITLM_UTIL_UTF8_H
#define FITLM_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the valid character starting at s (n bytes available): 1..4, or 0
 * when s does not start a valid, complete character (n must be >= 1). */
size_t fitlm_utf8_char_len(const unsigned char *s, size_t n);

/* True when the n bytes at s are valid UTF-8. */
bool fitlm_utf8_valid(const void *s, size_t n);

#endif
