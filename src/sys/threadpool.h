/* A fixed pool of worker threads for data-parallel loops. */
#ifndef FITLM_SYS_THREADPOOL_H
#define FITLM_SYS_THREADPOOL_H

#include <stdint.h>
#include <stddef.h>

typedef struct fitlm_threadpool fitlm_threadpool;

/* Creates a pool that runs work on n_threads threads in total (the caller's
 * thread counts as one). n_threads <= 0 means the number of physical cores.
 * Caller frees with fitlm_threadpool_free(). */
fitlm_threadpool *fitlm_threadpool_new(int n_threads);
void fitlm_threadpool_free(fitlm_threadpool *p);
int fitlm_threadpool_size(const fitlm_threadpool *p);

/* Calls fn(arg, i, n) once for every share i in [0, n) and waits for all.
 * The caller runs share 0 and then any share no worker has started yet, so a
 * share index is not tied to a particular thread (per-share scratch indexed
 * by i is fine; thread-local state is not). One caller at a time per pool (fn
 * must not call run on the same pool). With p == NULL runs fn(arg, 0, 1) on
 * the calling thread. */
typedef void (*fitlm_parallel_fn)(void *arg, int ith, int nth);
void fitlm_threadpool_run(fitlm_threadpool *p, fitlm_parallel_fn fn, void *arg);

/* A 64-byte aligned buffer of at least `bytes` owned by the pool (freed by
 * fitlm_threadpool_free), valid until the next call; for kernels that need
 * temporary space per call (fitlm_cpu_matmul keeps its quantized activations
 * there: nothing stored in it survives a matmul on the same pool). Returns
 * NULL if p is NULL or allocation fails. */
void *fitlm_threadpool_scratch(fitlm_threadpool *p, size_t bytes);

/* Number of physical cores among the CPUs this process may run on (distinct
 * package/core ids in /sys/devices/system/cpu/cpuN/topology, else
 * /proc/cpuinfo; falls back to the number of logical CPUs). Cached. */
int fitlm_physical_cores(void);

/* The CPUs a thread may run on, saved to be put back. */
typedef struct fitlm_cpu_mask {
    unsigned char bits[128];
} fitlm_cpu_mask;
/* Lets the calling thread, and the threads it starts from then on, run on
 * every online CPU of the host (mpirun binds each rank to its own cores; a
 * probe of what all the ranks shared needs all of them). *saved receives the
 * mask the thread had, for fitlm_cpus_restore. 0, or -1 when the mask cannot
 * be read or changed (then nothing changed). */
int fitlm_cpus_widen(fitlm_cpu_mask *saved);
/* Puts back a mask saved by fitlm_cpus_widen (threads started meanwhile keep
 * theirs). */
void fitlm_cpus_restore(const fitlm_cpu_mask *saved);

#endif
