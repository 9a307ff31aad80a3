/* Monotonic time and the comparison qsort needs to take medians of timings
 * (calibration, benchmarks). */
#ifndef FITLM_UTIL_CLOCK_H
#define FITLM_UTIL_CLOCK_H

#include <time.h>

/* Seconds on the monotonic clock (only differences mean anything). */
static inline double fitlm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort comparison of two doubles, ascending. */
static inline int fitlm_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
