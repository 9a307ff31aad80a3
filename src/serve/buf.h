/* A growable byte buffer for building HTTP bodies and SSE chunks. */
#ifndef FITLM_SERVE_BUF_H
#define FITLM_SERVE_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef struct serve_buf {
    char *data; /* NUL-terminated when len > 0 or after any append; owned, freed by serve_buf_free */
    size_t len, cap;
    bool oom;   /* an append failed: the content is incomplete */
} serve_buf;

/* Appends; on allocation failure sets b->oom and returns -1 (later appends are no-ops). */
int serve_buf_add(serve_buf *b, const void *p, size_t n);
int serve_buf_str(serve_buf *b, const char *s);
int serve_buf_printf(serve_buf *b, const char *fmt, ...) FITLM_PRINTF(2, 3);
/* Drops the first n bytes (n <= len). */
void serve_buf_consume(serve_buf *b, size_t n);
/* Hands the data to the caller (who frees it; NULL if nothing was appended)
 * and leaves b empty. */
char *serve_buf_take(serve_buf *b, size_t *len);
void serve_buf_free(serve_buf *b);

/* True if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF). */
bool serve_utf8_valid(const char *s, size_t n);
/* Appends s[0..n) with every ill-formed byte replaced by U+FFFD. */
int serve_buf_add_utf8_lossy(serve_buf *b, const char *s, size_t n);

#endif
