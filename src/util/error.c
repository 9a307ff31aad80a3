#include "util/error.h"

#include <stdio.h>
#include <string.h>

int fitlm_vfail(fitlm_error *err, const char *fmt, va_list ap) {
    if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return -1;
}

int fitlm_fail(fitlm_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fitlm_vfail(err, fmt, ap);
    va_end(ap);
    return -1;
}

void fitlm_error_prefix(fitlm_error *err, const char *prefix) {
    if (!err || !prefix) return;
    char tmp[sizeof err->msg];
    size_t p = strlen(prefix);
    if (p > sizeof tmp - 3) p = sizeof tmp - 3;
    memcpy(tmp, prefix, p);
    tmp[p] = ':';
    tmp[p + 1] = ' ';
    size_t room = sizeof tmp - p - 3, m = strnlen(err->msg, sizeof err->msg);
    if (m > room) m = room;
    memcpy(tmp + p + 2, err->msg, m);
    tmp[p + 2 + m] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
}

void fitlm_error_print(const fitlm_error *err) {
    fprintf(stderr, "fitlm: error: %s\n", err && err->msg[0] ? err->msg : "unknown error");
}

int fitlm_die(const char *fmt, ...) {
    /* one write for the whole line: the ranks of an MPI run share stderr, and
     * pieces written apart interleaved ("fitlm: error: fitlm: error: ...") */
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fitlm: error: %s\n", msg);
    return 1;
}
