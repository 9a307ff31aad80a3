/* The CPU implementation of the backend interface (backend/backend.h):
 * matmul through the kernels (kernels.h), activation ops from ops.c, work split
 * over a fitlm_threadpool. Weight matrices are used in place in the mapped file,
 * except, with the AVX2 or AVX-512 kernels, Q4_0, Q8_0 and the K types (Q2_K to Q6_K)
 * matrices, which prepare_weight copies into their x16 repacked layouts in
 * huge-page memory owned by the tensor (btensor.repacked; FITLM_CPU_REPACK=0
 * turns this off). */
#ifndef FITLM_BACKEND_CPU_BACKEND_CPU_H
#define FITLM_BACKEND_CPU_BACKEND_CPU_H

#include "backend/backend.h"
#include "sys/threadpool.h"

/* n_threads <= 0: physical cores. Caller frees with be->free(be). */
fitlm_backend *fitlm_backend_cpu_new(int n_threads, fitlm_error *err);

/* Threads the backend runs on. */
int fitlm_backend_cpu_threads(const fitlm_backend *be);

/* The backend's thread pool (NULL when it runs on one thread), e.g. to measure
 * memory bandwidth with the same threads. Owned by the backend. */
fitlm_threadpool *fitlm_backend_cpu_pool(const fitlm_backend *be);

#endif
