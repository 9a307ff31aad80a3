/* Kernel benchmark: memory read bandwidth, then matrix-vector (decode) and
 * matrix-matrix (prompt) throughput of fitlm_cpu_matmul per weight type at
 * TinyLlama-like shapes.
 *
 *   kernels_bench [--threads N] [--types q4_0,q8_0,...] [--bw-mib 1024] [--quick] [--batched]
 *
 * --batched: only the batched-decode table (1 to 64 token rows through one
 * matrix read from DRAM).
 *
 * Types the CPU backend repacks (fitlm_cpu_repackable: Q4_0, Q8_0, Q4_K,
 * Q5_K, Q6_K, Q3_K, Q2_K with AVX2 or AVX-512) get a second line per shape, kernel
 * "repack": the same matrix as the backend holds it (huge pages, x16 layout)
 * through fitlm_cpu_matmul_repacked.
 *
 * Before them: the arithmetic peaks prompt processing is compared with (fp32
 * FMA with AVX2, int8 dot products with AVX-512 VNNI; 1 and N threads).
 *
 * Matvec figures cycle through enough copies of the matrix (>= 512 MiB) that
 * the weights come from DRAM, not from the caches: GB/s = weight bytes read /
 * second, to compare with the read bandwidth. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/kernels.h"
#include "sys/membw.h"
#include "sys/threadpool.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* random weights: quantize random floats where a quantizer exists, else random
 * bytes with the fp16 scale fields reset to sane values */
static void fill_weights(int type, uint8_t *w, int64_t rows, int64_t cols, size_t rb) {
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = ((float)(rnd() % 20001) - 10000.0f) * 1e-5f;
        if (fitlm_quantize_row(type, row, w + (size_t)r * rb, cols, NULL) < 0) {
            for (size_t i = 0; i < rb; i++) w[(size_t)r * rb + i] = (uint8_t)rnd();
        }
    }
    free(row);
}

/* ---- arithmetic peaks: what prompt processing is measured against ----
 * Eight independent accumulators per thread (enough to hide the latency of
 * each instruction), no memory traffic; GOP/s counts a multiply-add as 2. */
#if defined(__x86_64__)
#include <immintrin.h>
#define PEAK_ITERS 4000000L
typedef struct {
    int vnni;
    float sink[64];
} peak_job;

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static float peak_vnni_loop(void) {
    __m512i a[8], x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
    for (int k = 0; k < 8; k++) a[k] = _mm512_set1_epi32(k);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < 8; k++) a[k] = _mm512_dpbusd_epi32(a[k], x, y);
    __m512i s = a[0];
    for (int k = 1; k < 8; k++) s = _mm512_add_epi32(s, a[k]);
    return (float)_mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2,fma"))) static float peak_fma_loop(void) {
    __m256 a[8], x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
    for (int k = 0; k < 8; k++) a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < 8; k++) a[k] = _mm256_fmadd_ps(a[k], x, y);
    __m256 s = a[0];
    for (int k = 1; k < 8; k++) s = _mm256_add_ps(s, a[k]);
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
}

static void peak_worker(void *arg, int ith, int nth) {
    (void)nth;
    peak_job *j = arg;
    j->sink[ith % 64] = j->vnni ? peak_vnni_loop() : peak_fma_loop();
}

/* GOP/s of nt threads: int8 VNNI (64 multiply-adds per vpdpbusd) or fp32 FMA (8). */
static double peak_gops(int nt, int vnni) {
    fitlm_threadpool *p = fitlm_threadpool_new(nt);
    peak_job j;
    memset(&j, 0, sizeof j);
    j.vnni = vnni;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        fitlm_threadpool_run(p, peak_worker, &j);
        double dt = now_s() - t0;
        double ops = (double)nt * PEAK_ITERS * 8.0 * (vnni ? 64.0 : 8.0) * 2.0;
        if (dt > 0 && ops / dt > best) best = ops / dt;
    }
    fitlm_threadpool_free(p);
    return best / 1e9;
}
#endif

/* Batched decode: n token rows through one matrix whose weights come from
 * DRAM (the engine's decode step of n sequences). Per n: best and median
 * time per call and the ratio to one row (the weights are read once, so n rows
 * should cost far less than n single rows). */
static void bench_batched(const char *types, int nthreads, int quick) {
    static const int ns[] = {1, 2, 4, 8, 16, 32, 64};
    static const int64_t shapes[][2] = {{5632, 2048}, {2048, 5632}};
    char tl[512];
    snprintf(tl, sizeof tl, "%s", types);
    printf("\nbatched decode (%d thread(s)): us per call, best (median); x1 = best time / best time of 1 row\n",
           nthreads);
    printf("%-6s %-10s %-7s", "type", "shape", "layout");
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) printf(" %13d", ns[i]);
    printf("\n");
    fitlm_threadpool *p = fitlm_threadpool_new(nthreads);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        int type = fitlm_type_from_name(tok);
        if (type < 0 || !fitlm_cpu_type_supported(type)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            bool ok;
            size_t rb = (size_t)fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
            size_t mbytes = rb * (size_t)rows;
            int copies = (int)((512u << 20) / mbytes) + 1;
            if (quick && copies > 8) copies = 8;
            int rep = fitlm_cpu_repackable(type, rows, cols);
            uint8_t *plain = malloc(mbytes);
            uint8_t *w = rep ? fitlm_cpu_alloc_weights(mbytes * (size_t)copies) : malloc(mbytes * (size_t)copies);
            float *x = malloc(sizeof(float) * (size_t)cols * 64);
            float *y = malloc(sizeof(float) * (size_t)rows * 64);
            if (!plain || !w || !x || !y) {
                printf("out of memory\n");
                exit(1);
            }
            fill_weights(type, plain, rows, cols, rb);
            if (rep) fitlm_cpu_repack(NULL, type, plain, rows, cols, w);
            else memcpy(w, plain, mbytes);
            for (int c = 1; c < copies; c++) memcpy(w + mbytes * (size_t)c, w, mbytes);
            for (int64_t i = 0; i < cols * 64; i++) x[i] = ((float)(rnd() % 2001) - 1000.0f) * 1e-3f;
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)cols);
            printf("%-6s %-10s %-7s", fitlm_type_name(type), shape, rep ? "repack" : "file");
            double t1 = 0;
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
                int sweeps = quick ? 1 : 3, ncalls = 0;
                double *times = malloc(sizeof(double) * (size_t)(sweeps * copies));
                for (int sw = 0; sw < sweeps; sw++)
                    for (int c = 0; c < copies; c++) {
                        double t0 = now_s();
                        if (rep) fitlm_cpu_matmul_repacked(p, type, w + mbytes * (size_t)c, rows, cols, x, ns[i], y);
                        else fitlm_cpu_matmul(p, type, w + mbytes * (size_t)c, rows, cols, x, ns[i], y);
                        times[ncalls++] = now_s() - t0;
                    }
                qsort(times, (size_t)ncalls, sizeof(double), cmp_double);
                if (i == 0) t1 = times[0];
                printf(" %5.0f(%4.0f)x%-4.1f", times[0] * 1e6, times[ncalls / 2] * 1e6, times[0] / t1);
                fflush(stdout);
                free(times);
            }
            printf("\n");
            free(plain);
            free(w);
            free(x);
            free(y);
        }
    }
    fitlm_threadpool_free(p);
}

int main(int argc, char **argv) {
    int max_threads = fitlm_physical_cores();
    const char *types = "f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k,q2_k,q3_k";
    size_t bw_mib = 1024;
    int quick = 0, batched = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--bw-mib") && i + 1 < argc) bw_mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--batched")) batched = 1;
        else {
            fprintf(stderr, "usage: kernels_bench [--threads N] [--types a,b] [--bw-mib N] [--quick] [--batched]\n");
            return 1;
        }
    }
    if (max_threads < 1) max_threads = 1;
    if (batched) {
        bench_batched(types, max_threads, quick);
        return 0;
    }
    printf("kernels: %s (FITLM_CPU_KERNELS overrides), physical cores %d\n", fitlm_cpu_isa_name(fitlm_cpu_isa_active()),
           fitlm_physical_cores());
    double bw[65] = {0};
    for (int nt = 1; nt <= max_threads && nt <= 64; nt++) {
        if (nt != 1 && nt != max_threads) continue;
        fitlm_threadpool *p = fitlm_threadpool_new(nt);
        bw[nt] = fitlm_measure_read_bandwidth(p, bw_mib << 20);
        printf("memory read bandwidth, %d thread(s): %.1f GB/s\n", nt, bw[nt]);
        fitlm_threadpool_free(p);
    }
#if defined(__x86_64__)
    for (int nt = 1; nt <= max_threads && nt <= 64; nt++) {
        if (nt != 1 && nt != max_threads) continue;
        if (fitlm_cpu_isa_active() >= FITLM_ISA_AVX2)
            printf("fp32 FMA peak (AVX2), %d thread(s): %.1f GFLOP/s\n", nt, peak_gops(nt, 0));
        if (fitlm_cpu_isa_active() >= FITLM_ISA_AVX512)
            printf("int8 dot-product peak (AVX-512 VNNI), %d thread(s): %.1f GOP/s\n", nt, peak_gops(nt, 1));
    }
#endif
    static const int64_t shapes[][2] = {{2048, 5632}, {5632, 2048}, {32000, 2048}};
    char tl[512];
    snprintf(tl, sizeof tl, "%s", types);
    printf("\nmatvec: best (median) of every call; %%bw = best GB/s / read bandwidth with as many threads\n");
    printf("%-6s %-12s %-7s %4s %10s %9s %9s %6s %12s\n", "type", "shape", "kernel", "thr", "us/matvec", "GB/s",
           "(median)", "%bw", "pp64 GFLOP/s");
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        int type = fitlm_type_from_name(tok);
        if (type < 0 || !fitlm_cpu_type_supported(type)) {
            printf("%s: unsupported\n", tok);
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            bool ok;
            size_t rb = (size_t)fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
            size_t mbytes = rb * (size_t)rows;
            int copies = (int)((512u << 20) / mbytes) + 1;
            if (quick && copies > 8) copies = 8;
            uint8_t *w = malloc(mbytes * (size_t)copies);
            float *x = malloc(sizeof(float) * (size_t)cols * 64);
            float *y = malloc(sizeof(float) * (size_t)rows * 64);
            if (!w || !x || !y) {
                printf("out of memory\n");
                return 1;
            }
            fill_weights(type, w, rows, cols, rb);
            for (int c = 1; c < copies; c++) memcpy(w + mbytes * (size_t)c, w, mbytes);
            for (int64_t i = 0; i < cols * 64; i++) x[i] = ((float)(rnd() % 2001) - 1000.0f) * 1e-3f;
            /* layout 0: the file's; layout 1: repacked (kernels.h), where it
             * applies: the copies are overwritten with the repacked form */
            for (int layout = 0; layout < 2; layout++)
            for (int nt = 1; nt <= max_threads; nt++) {
                if (nt != 1 && nt != max_threads) continue;
                if (layout == 1 && nt == 1) {
                    if (!fitlm_cpu_repackable(type, rows, cols)) break;
                    /* in memory as the CPU backend allocates it (huge pages) */
                    uint8_t *rw = fitlm_cpu_alloc_weights(mbytes * (size_t)copies);
                    if (!rw || fitlm_cpu_repack(NULL, type, w, rows, cols, rw) != 0) {
                        free(rw);
                        break;
                    }
                    for (int c = 1; c < copies; c++) memcpy(rw + mbytes * (size_t)c, rw, mbytes);
                    free(w);
                    w = rw;
                }
                fitlm_threadpool *p = fitlm_threadpool_new(nt);
                /* matvec: every call timed on its own, cycling through the
                 * copies so each reads its weights from DRAM; best and median
                 * (on a shared machine the best is the uncontended figure) */
                int sweeps = quick ? 2 : 4, ncalls = 0;
                double *times = malloc(sizeof(double) * (size_t)(sweeps * copies));
                for (int sw = 0; sw < sweeps; sw++) {
                    for (int c = 0; c < copies; c++) {
                        double t0 = now_s();
                        if (layout) fitlm_cpu_matmul_repacked(p, type, w + mbytes * (size_t)c, rows, cols, x, 1, y);
                        else fitlm_cpu_matmul(p, type, w + mbytes * (size_t)c, rows, cols, x, 1, y);
                        times[ncalls++] = now_s() - t0;
                    }
                }
                qsort(times, (size_t)ncalls, sizeof(double), cmp_double);
                double best = times[0], median = times[ncalls / 2];
                free(times);
                double gbs = (double)mbytes / best / 1e9, gbs_med = (double)mbytes / median / 1e9;
                /* prompt processing: 64 tokens, weights of one copy */
                double pbest = 1e30;
                for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
                    double t0 = now_s();
                    if (layout) fitlm_cpu_matmul_repacked(p, type, w, rows, cols, x, 64, y);
                    else fitlm_cpu_matmul(p, type, w, rows, cols, x, 64, y);
                    double dt = now_s() - t0;
                    if (dt < pbest) pbest = dt;
                }
                double gflops = 2.0 * (double)rows * (double)cols * 64 / pbest / 1e9;
                char shape[32];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)cols);
                printf("%-6s %-12s %-7s %4d %10.1f %9.2f %9.2f %5.0f%% %12.1f\n", fitlm_type_name(type), shape,
                       layout ? (fitlm_cpu_amx_active(type) ? "rep+amx" : "repack") : fitlm_cpu_kernel_isa_name(type), nt,
                       best * 1e6, gbs, gbs_med,
                       bw[nt] > 0 ? 100.0 * gbs / bw[nt] : 0.0, gflops);
                fflush(stdout);
                fitlm_threadpool_free(p);
            }
            free(w);
            free(x);
            free(y);
        }
    }
    return 0;
}
