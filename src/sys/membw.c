/* Memory read bandwidth: a STREAM-like read-only pass over a large buffer. */
#include "sys/membw.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* The AVX2 read loop where the CPU has AVX2 (the probe measures memory, not
 * the kernels: FITLM_CPU_KERNELS does not apply here). */
static int membw_simd(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

typedef struct {
    uint8_t *buf;   /* the slice read (or filled) by this dispatch */
    size_t bytes;
    int fill; /* 1: write the slice (first touch), 0: read it */
    int simd;
    atomic_ullong sink; /* xor of the slices' checksums, so the loads stay */
} bw_job;

static unsigned long long read_portable(const void *p, size_t bytes) {
    const uint64_t *v = p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
        a ^= v[i];
        b ^= v[i + 1];
        c ^= v[i + 2];
        d ^= v[i + 3];
    }
    return a ^ b ^ c ^ d;
}

static void bw_worker(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t per = (j->bytes / (size_t)nth) & ~(size_t)4095;
    size_t off = per * (size_t)ith;
    size_t len = ith == nth - 1 ? j->bytes - off : per;
    if (j->fill) {
        memset(j->buf + off, (int)(ith + 1), len);
        return;
    }
    unsigned long long s = j->simd ? fitlm_membw_read_avx2(j->buf + off, len) : read_portable(j->buf + off, len);
    atomic_fetch_xor(&j->sink, s);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double fitlm_measure_read_bandwidth(fitlm_threadpool *pool, size_t bytes) {
    bytes = (bytes + 4095) & ~(size_t)4095;
    if (bytes < (1u << 20)) bytes = 1u << 20;
    void *mem = NULL;
    if (posix_memalign(&mem, 2u << 20, bytes) != 0) return -1.0;
#ifdef MADV_HUGEPAGE
    madvise(mem, bytes, MADV_HUGEPAGE);
#endif
    bw_job j;
    memset(&j, 0, sizeof j);
    j.buf = mem;
    j.bytes = bytes;
    j.simd = membw_simd();
    j.fill = 1;
    fitlm_threadpool_run(pool, bw_worker, &j);
    j.fill = 0;
    fitlm_threadpool_run(pool, bw_worker, &j); /* warm-up (TLB, page tables) */
    /* Timed in segments of 64 MiB (each read by all threads), cycling
     * through the whole buffer so every segment comes from DRAM: the best
     * segment is the bandwidth of an undisturbed moment, comparable with
     * per-call kernel timings. */
    size_t seg = (size_t)64 << 20;
    if (seg > bytes) seg = bytes;
    size_t nseg = bytes / seg;
    double best = 0.0;
    for (int pass = 0; pass < 3; pass++) {
        for (size_t k = 0; k < nseg; k++) {
            j.buf = (uint8_t *)mem + k * seg;
            j.bytes = seg;
            double t0 = now_s();
            fitlm_threadpool_run(pool, bw_worker, &j);
            double dt = now_s() - t0;
            if (dt > 0 && (double)seg / dt > best) best = (double)seg / dt;
        }
    }
    free(mem);
    return best / 1e9;
}

/* ---- reading memory the caller holds ---- */

typedef struct {
    const void *const *addr;
    const uint64_t *bytes;
    size_t n;
    uint64_t total;
    int simd;
    atomic_ullong sink;
} regions_job;

/* Any address and length: bytes up to a 128-byte boundary, the aligned middle
 * with the read loop, then the tail. */
static unsigned long long read_any(const uint8_t *p, uint64_t len, int simd) {
    unsigned long long s = 0;
    while (len > 0 && ((uintptr_t)p & 127)) {
        s += *p++;
        len--;
    }
    uint64_t mid = len & ~(uint64_t)127;
    if (mid) s ^= simd ? fitlm_membw_read_avx2(p, (size_t)mid) : read_portable(p, (size_t)mid);
    for (uint64_t i = mid; i < len; i++) s += p[i];
    return s;
}

static void regions_worker(void *arg, int ith, int nth) {
    regions_job *j = arg;
    uint64_t lo = j->total / (uint64_t)nth * (uint64_t)ith;
    uint64_t hi = ith == nth - 1 ? j->total : j->total / (uint64_t)nth * (uint64_t)(ith + 1);
    unsigned long long s = 0;
    uint64_t at = 0; /* start of region i in the concatenation */
    for (size_t i = 0; i < j->n && at < hi; at += j->bytes[i], i++) {
        uint64_t a = lo > at ? lo : at, b = hi < at + j->bytes[i] ? hi : at + j->bytes[i];
        if (a < b) s ^= read_any((const uint8_t *)j->addr[i] + (a - at), b - a, j->simd);
    }
    atomic_fetch_xor(&j->sink, s);
}

double fitlm_measure_read_bandwidth_of(fitlm_threadpool *pool, const void *const *addr, const uint64_t *bytes, size_t n,
                                       int passes) {
    regions_job j;
    memset(&j, 0, sizeof j);
    j.addr = addr;
    j.bytes = bytes;
    j.n = n;
    for (size_t i = 0; i < n; i++) j.total += bytes[i];
    j.simd = membw_simd();
    if (j.total == 0) return -1.0;
    double best = 0.0;
    for (int k = 0; k < (passes > 0 ? passes : 1); k++) {
        double t0 = now_s();
        fitlm_threadpool_run(pool, regions_worker, &j);
        double dt = now_s() - t0;
        if (dt > 0 && (double)j.total / dt > best) best = (double)j.total / dt;
    }
    return best / 1e9;
}
