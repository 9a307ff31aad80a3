/* Persistent worker pool with a generation-counter dispatch.
 *
 * One 64-bit atomic word describes the current job: its generation (high 32
 * bits) and the next unclaimed share index (low 32 bits). fitlm_threadpool_run
 * publishes (fn, arg) and a new generation with share 0 already taken by the
 * caller, then runs share 0. Workers wait for a new generation (polling for
 * some microseconds, since decode dispatches every few microseconds and a
 * futex wake-up each time would cost more than the work, then sleeping on a
 * condition variable) and claim shares with a compare-and-swap.
 * Shares are not tied to threads: when the caller is done with share 0 it
 * claims and runs whatever shares no worker has started, so a worker that the
 * OS has descheduled (other processes on the cores) delays nothing; the caller
 * then waits only for shares that are running. Each share index still runs
 * exactly once. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_SET */
#include "sys/threadpool.h"

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

/* Polling budget before sleeping: SPIN_ITERS pause-loops (a pause is ~25 ns
 * on Zen 4: ~12 us), then SPIN_YIELDS sched_yield rounds, then the condition
 * variable. Measured on a 2-core machine shared with other processes: with 20
 * yields a worker did 4-9 % of the shares of back-to-back jobs (a yield hands
 * the core to another process for a whole time slice), with none 45 %; a
 * much longer pause-spin also lost (the scheduler then prefers the other
 * processes over the spinner). */
#ifndef SPIN_ITERS
#define SPIN_ITERS 500
#endif
#ifndef SPIN_YIELDS
#define SPIN_YIELDS 0
#endif


struct fitlm_threadpool {
    int n_threads; /* including the caller */
    int spins;     /* pause-loop budget; 0 when there are more threads than CPUs */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    _Atomic unsigned long long job; /* generation << 32 | next unclaimed share */
    atomic_int finished;            /* shares 1.. of the current job done */
    atomic_int caller_sleeping;
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

static unsigned job_gen(unsigned long long j) {
    return (unsigned)(j >> 32);
}

/* Waits for a generation other than `seen`; returns the job word. */
static unsigned long long wait_new_job(fitlm_threadpool *pool, unsigned seen) {
    unsigned long long j;
    for (int i = 0; i < pool->spins; i++) {
        j = atomic_load_explicit(&pool->job, memory_order_acquire);
        if (job_gen(j) != seen) return j;
        CPU_RELAX();
    }
    for (int i = 0; i < SPIN_YIELDS; i++) {
        j = atomic_load_explicit(&pool->job, memory_order_acquire);
        if (job_gen(j) != seen) return j;
        sched_yield();
    }
    pthread_mutex_lock(&pool->mu);
    while (job_gen(j = atomic_load_explicit(&pool->job, memory_order_acquire)) == seen && !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->cv_work, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
    return j;
}

/* Claims the next share of job generation `gen`; returns its index, or -1
 * when all shares are taken or the job is no longer current. */
static int claim_share(fitlm_threadpool *pool, unsigned gen) {
    unsigned long long j = atomic_load_explicit(&pool->job, memory_order_acquire);
    while (job_gen(j) == gen && (int)(j & 0xffffffffu) < pool->n_threads) {
        if (atomic_compare_exchange_weak_explicit(&pool->job, &j, j + 1, memory_order_acq_rel, memory_order_acquire))
            return (int)(j & 0xffffffffu);
    }
    return -1;
}

static void share_done(fitlm_threadpool *pool) {
    atomic_fetch_add(&pool->finished, 1);
    if (atomic_load(&pool->caller_sleeping)) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_signal(&pool->cv_done);
        pthread_mutex_unlock(&pool->mu);
    }
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    fitlm_threadpool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned long long j = wait_new_job(pool, seen);
        if (atomic_load(&pool->stop)) break;
        seen = job_gen(j);
        int share;
        while ((share = claim_share(pool, seen)) >= 0) {
            pool->fn(pool->arg, share, pool->n_threads);
            share_done(pool);
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
    atomic_init(&p->job, 0);
    atomic_init(&p->finished, 0);
    atomic_init(&p->caller_sleeping, 0);
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
    atomic_fetch_add(&p->job, 1ull << 32);
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

static void wait_finished(fitlm_threadpool *p, int target) {
    for (int i = 0; i < p->spins; i++) {
        if (atomic_load(&p->finished) == target) return;
        CPU_RELAX();
    }
    for (int i = 0; i < SPIN_YIELDS; i++) {
        if (atomic_load(&p->finished) == target) return;
        sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->finished) != target) pthread_cond_wait(&p->cv_done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

void fitlm_threadpool_run(fitlm_threadpool *p, fitlm_parallel_fn fn, void *arg) {
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->finished, 0);
    pthread_mutex_lock(&p->mu);
    unsigned gen = job_gen(atomic_load(&p->job)) + 1;
    atomic_store_explicit(&p->job, (unsigned long long)gen << 32 | 1u, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n_threads);
    int share;
    while ((share = claim_share(p, gen)) >= 0) { /* shares no worker has started */
        fn(arg, share, p->n_threads);
        atomic_fetch_add(&p->finished, 1);
    }
    wait_finished(p, p->n_threads - 1);
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

_Static_assert(sizeof(cpu_set_t) <= sizeof(((fitlm_cpu_mask *)0)->bits), "a cpu_set_t fits a fitlm_cpu_mask");

int fitlm_cpus_widen(fitlm_cpu_mask *saved) {
    cpu_set_t old, all;
    if (sched_getaffinity(0, sizeof old, &old) != 0) return -1;
    memset(saved->bits, 0, sizeof saved->bits);
    memcpy(saved->bits, &old, sizeof old);
    long n = sysconf(_SC_NPROCESSORS_CONF); /* offline ones in the set are ignored */
    if (n < 1) return -1;
    CPU_ZERO(&all);
    for (long c = 0; c < n && c < CPU_SETSIZE; c++) CPU_SET((int)c, &all);
    return sched_setaffinity(0, sizeof all, &all) == 0 ? 0 : -1;
}

void fitlm_cpus_restore(const fitlm_cpu_mask *saved) {
    cpu_set_t old;
    memcpy(&old, saved->bits, sizeof old);
    (void)sched_setaffinity(0, sizeof old, &old);
}
