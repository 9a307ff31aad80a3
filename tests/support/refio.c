#include "support/refio.h"

#include <stdlib.h>
#include <sys/wait.h>

void refio_write_record(FILE *f, const char *s, size_t n) {
    unsigned char len[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 24)};
    fwrite(len, 1, 4, f);
    fwrite(s, 1, n, f);
}

int refio_read_line(char **p, int32_t **ids, size_t *n) {
    char *s = *p;
    *ids = NULL;
    *n = 0;
    if (!s || !*s) return -1;
    char *end;
    long flag = strtol(s, &end, 10);
    if (end == s) return -1;
    s = end;
    size_t cap = 0;
    while (*s == ' ') {
        while (*s == ' ') s++;
        if (*s < '0' || *s > '9') break; /* ids are non-negative; stay on this line */
        long v = strtol(s, &end, 10);
        if (end == s) break;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            int32_t *ni = realloc(*ids, cap * sizeof *ni);
            if (!ni) abort();
            *ids = ni;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    while (*s && *s != '\n') s++;
    if (*s == '\n') s++;
    *p = s;
    return (int)flag;
}

int refio_run(const char *cmd) {
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}
