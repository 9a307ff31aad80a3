/* Growable byte buffer and UTF-8 checks for the server. */
#include "serve/buf.h"

#include "util/utf8.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(serve_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *g = realloc(b->data, cap);
    if (!g) {
        b->oom = true;
        return -1;
    }
    b->data = g;
    b->cap = cap;
    return 0;
}

int serve_buf_add(serve_buf *b, const void *p, size_t n) {
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int serve_buf_str(serve_buf *b, const char *s) { return serve_buf_add(b, s, strlen(s)); }

int serve_buf_printf(serve_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n)) {
        b->oom = true;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void serve_buf_consume(serve_buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        if (b->data) b->data[0] = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

char *serve_buf_take(serve_buf *b, size_t *len) {
    char *d = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void serve_buf_free(serve_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

bool serve_utf8_valid(const char *s, size_t n) {
    return fitlm_utf8_valid(s, n);
}

int serve_buf_add_utf8_lossy(serve_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = fitlm_utf8_char_len(p + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        if (serve_buf_add(b, s + run, i - run)) return -1;
        if (serve_buf_add(b, "\xEF\xBF\xBD", 3)) return -1;
        run = ++i;
    }
    return serve_buf_add(b, s + run, n - run);
}
