/* Persistent worker pool with a generation-counter dispatch.
 *
 * fitlm_threadpool_run() publishes (fn, arg), bumps `generation` and runs share
 * 0 itself. Workers spin for a short while on `generation` (decode dispatches
 * every few microseconds, so a sleeping worker would cost a futex wake-up each
 * time), then fall back to a condition variable. The caller waits for
 * `pending` to reach zero the same way: spin briefly, then sleep. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_SET */
#include "backend/cpu/threadpool.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Polling budget before sleeping: SPIN_ITERS pause-loops (a few microseconds),
 * then SPIN_YIELDS rounds that also yield the core (so an oversubscribed
 * machine still makes progress), then the condition variable. */
#ifndef SPIN_ITERS
#define SPIN_ITERS 1000
#endif
#ifndef SPIN_YIELDS
#define SPIN_YIELDS 20
#endif

/* Waits while *v == old (spin, yield, then report "still equal"). */
static int spin_while_equal_uint(atomic_uint *v, unsigned old, int spins) {
    for (int i = 0; i < spins; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old) return 0;
        CPU_RELAX();
    }
    for (int i = 0; i < SPIN_YIELDS; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old) return 0;
        sched_yield();
    }
    return atomic_load_explicit(v, memory_order_acquire) == old;
}
static int spin_while_nonzero(atomic_int *v, int spins) {
    for (int i = 0; i < spins; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) == 0) return 0;
        CPU_RELAX();
    }
    for (int i = 0; i < SPIN_YIELDS; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) == 0) return 0;
        sched_yield();
    }
    return atomic_load_explicit(v, memory_order_acquire) != 0;
}

struct fitlm_threadpool {
    int n_threads; /* including the caller */
    int spins;     /* pause-loop budget; 0 when there are more threads than CPUs */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    atomic_uint generation;
    atomic_int pending;
    atomic_int stop;
    fitlm_parallel_fn fn;
    void *arg;
    void *scratch;
    size_t scratch_size;
};

typedef struct {
    fitlm_threadpool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    fitlm_threadpool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = seen;
        if (!spin_while_equal_uint(&pool->generation, seen, pool->spins)) {
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        } else {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) break;
        seen = g;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

fitlm_threadpool *fitlm_threadpool_new(int n_threads) {
    if (n_threads <= 0) n_threads = fitlm_physical_cores();
    if (n_threads > 1024) n_threads = 1024;
    fitlm_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    p->spins = online > 0 && n_threads > online ? 0 : SPIN_ITERS;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads) goto fail;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->pool = p;
                wa->ith = i;
            }
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* run with the threads that did start */
                break;
            }
        }
    }
    return p;
fail:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p);
    return NULL;
}

void fitlm_threadpool_free(fitlm_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    free(p->scratch);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

int fitlm_threadpool_size(const fitlm_threadpool *p) {
    return p ? p->n_threads : 1;
}

void fitlm_threadpool_run(fitlm_threadpool *p, fitlm_parallel_fn fn, void *arg) {
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n_threads);

    if (spin_while_nonzero(&p->pending, p->spins)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void *fitlm_threadpool_scratch(fitlm_threadpool *p, size_t bytes) {
    if (!p) return NULL;
    if (bytes <= p->scratch_size) return p->scratch;
    size_t want = bytes + bytes / 4 + 64;
    void *n = NULL;
    if (posix_memalign(&n, 64, want) != 0) return NULL;
    free(p->scratch);
    p->scratch = n;
    p->scratch_size = want;
    return n;
}

/* ---- physical core count ---- */

static int read_int_file(const char *path, int *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%d", out) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

/* Counts distinct (package, core) pairs among the CPUs we may run on, from
 * /sys/devices/system/cpu/cpuN/topology. Returns 0 if unavailable. */
static int cores_from_sysfs(const cpu_set_t *allowed) {
    enum { MAXC = 4096 };
    static long long keys[MAXC]; /* only used under the call below; callers are rare */
    int nkeys = 0;
    DIR *dir = opendir("/sys/devices/system/cpu");
    if (!dir) return 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        int cpu;
        char tail;
        if (strncmp(de->d_name, "cpu", 3) != 0 || sscanf(de->d_name + 3, "%d%c", &cpu, &tail) != 1) continue;
        if (cpu < 0 || cpu >= CPU_SETSIZE || (allowed && !CPU_ISSET(cpu, allowed))) continue;
        char path[320];
        int core, pkg;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/core_id", de->d_name);
        if (read_int_file(path, &core) != 0) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/physical_package_id", de->d_name);
        if (read_int_file(path, &pkg) != 0) pkg = 0;
        long long key = (long long)pkg << 32 | (unsigned)core;
        int dup = 0;
        for (int i = 0; i < nkeys; i++)
            if (keys[i] == key) dup = 1;
        if (!dup && nkeys < MAXC) keys[nkeys++] = key;
    }
    closedir(dir);
    return nkeys;
}

/* Same from /proc/cpuinfo ("physical id" / "core id" per processor). */
static int cores_from_cpuinfo(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    enum { MAXC = 4096 };
    static long long keys[MAXC];
    int nkeys = 0, pkg = 0, core = -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int v;
        if (sscanf(line, "physical id : %d", &v) == 1) pkg = v;
        else if (sscanf(line, "core id : %d", &v) == 1) core = v;
        else if (line[0] == '\n' && core >= 0) {
            long long key = (long long)pkg << 32 | (unsigned)core;
            int dup = 0;
            for (int i = 0; i < nkeys; i++)
                if (keys[i] == key) dup = 1;
            if (!dup && nkeys < MAXC) keys[nkeys++] = key;
            core = -1;
        }
    }
    fclose(f);
    return nkeys;
}

int fitlm_physical_cores(void) {
    static atomic_int cached;
    int c = atomic_load(&cached);
    if (c > 0) return c;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    cpu_set_t set;
    int have_set = sched_getaffinity(0, sizeof set, &set) == 0;
    int n = cores_from_sysfs(have_set ? &set : NULL);
    if (n <= 0) n = cores_from_cpuinfo();
    long logical = sysconf(_SC_NPROCESSORS_ONLN);
    int allowed = have_set ? CPU_COUNT(&set) : (int)logical;
    if (n <= 0) n = logical > 0 ? (int)logical : 1;
    if (allowed > 0 && n > allowed) n = allowed;
    if (n < 1) n = 1;
    pthread_mutex_unlock(&mu);
    atomic_store(&cached, n);
    return n;
}
