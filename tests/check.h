/* Minimal assertion helpers for fitlm's C tests.
 * CHECK(cond, fmt, ...) records a failure and keeps going; the test's main ends
 * with `return check_report();`, which prints "N passed, N failed" and returns
 * non-zero if anything failed. */
#ifndef FITLM_TESTS_CHECK_H
#define FITLM_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_passed_count, check_failed_count;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            check_passed_count++;                                                                                      \
        } else {                                                                                                       \
            check_failed_count++;                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

/* Returns the environment variable or exits 77 (skip) with a message. */
static inline const char *check_env_or_skip(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) {
        printf("SKIP: %s is not set\n", name);
        exit(77);
    }
    return v;
}

static inline int check_report(void) {
    printf("%d passed, %d failed\n", check_passed_count, check_failed_count);
    return check_failed_count ? 1 : 0;
}

#endif
