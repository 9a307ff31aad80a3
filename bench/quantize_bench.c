/* Quantizer throughput and error: quantizes ROWS x COLS N(0, 0.02) values
 * (a TinyLlama FFN-shaped matrix, with 0.5% outliers at 6 sigma) into each K
 * type and the 32-block types, single-threaded, and prints rows/s, MB/s of
 * float input and relative RMS error of dequantize(quantize(x)).
 *   build/bench/quantize_bench [rows [cols]]   (defaults 2048 5632) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cpu/kernels.h"
#include "format/ggml_type.h"

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int64_t rows = argc > 1 ? atoll(argv[1]) : 2048, cols = argc > 2 ? atoll(argv[2]) : 5632;
    if (rows <= 0 || cols <= 0 || cols % 256) {
        fprintf(stderr, "quantize_bench: rows > 0, cols a multiple of 256\n");
        return 1;
    }
    int64_t n = rows * cols;
    /* all three freed at the end */
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    uint8_t *q = malloc((size_t)n * 2);
    if (!x || !y || !q) return 1;
    for (int64_t i = 0; i < n; i++) {
        double g = sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
        if (urand() < 0.005) g *= 6.0;
        x[i] = (float)(0.02 * g);
    }
    const int types[] = {FITLM_TYPE_Q8_0, FITLM_TYPE_Q4_0, FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K,
                         FITLM_TYPE_Q6_K, FITLM_TYPE_Q3_K, FITLM_TYPE_Q2_K};
    const char *only = getenv("QB_TYPE");
    printf("%ld x %ld, one thread (CPU time)\n", (long)rows, (long)cols);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int type = types[t];
        if (only && fitlm_type_from_name(only) != type) continue;
        double t0 = now();
        for (int64_t r = 0; r < rows; r++) {
            bool ok;
            size_t rb = (size_t)fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
            fitlm_quantize_row(type, x + r * cols, q + (size_t)r * rb, cols, NULL);
        }
        double dt = now() - t0;
        fitlm_dequantize_row(type, q, y, n);
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; i++) {
            e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            s += (double)x[i] * x[i];
        }
        printf("%-5s %9.0f rows/s %8.1f MB/s  rel RMSE %.5f\n", fitlm_type_name(type), (double)rows / dt,
               4e-6 * (double)n / dt, sqrt(e / s));
    }
    free(x);
    free(y);
    free(q);
    return 0;
}
