/* Measures the machine's memory read bandwidth (what decode is bound by). */
#ifndef FITLM_SYS_MEMBW_H
#define FITLM_SYS_MEMBW_H

#include <stddef.h>

#include "sys/threadpool.h"

/* Reads a buffer of `bytes` (rounded to 4 KiB; at least 64 MiB is needed to
 * get past the caches, 1 GiB recommended) with every thread of the pool
 * (NULL = the calling thread only), 64 MiB at a time split in contiguous
 * slices over the threads, three passes over the buffer, and returns the best
 * 64 MiB segment in GB/s (1e9 bytes per second): on a shared machine, the
 * bandwidth of an undisturbed moment. The
 * buffer is allocated and freed inside. Returns -1 if it cannot be allocated. */
double fitlm_measure_read_bandwidth(fitlm_threadpool *pool, size_t bytes);

/* Reads the n regions addr[i] .. addr[i] + bytes[i] — memory the caller
 * holds, such as a model's weights — with every thread of the pool (the
 * regions' total split into equal contiguous slices, one per thread, in region
 * order), `passes` times, and returns the best pass in GB/s: how fast this
 * machine reads exactly those bytes right now. -1 if there is nothing to read. */
double fitlm_measure_read_bandwidth_of(fitlm_threadpool *pool, const void *const *addr, const uint64_t *bytes, size_t n,
                                       int passes);

/* Internal: the read loop of one slice (AVX2 or portable); returns a checksum
 * so the loads cannot be optimized away. */
unsigned long long fitlm_membw_read_avx2(const void *p, size_t bytes);

#endif
