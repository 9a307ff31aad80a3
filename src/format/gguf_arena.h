/* A bump allocator used by the GGUF reader and writer for strings and nested
 * values: many small allocations, all freed at once. */
#ifndef FITLM_FORMAT_GGUF_ARENA_H
#define FITLM_FORMAT_GGUF_ARENA_H

#include <stddef.h>

typedef struct fitlm_arena fitlm_arena;

/* Returns a new empty arena the caller frees with fitlm_arena_free(), or NULL
 * when out of memory. */
fitlm_arena *fitlm_arena_new(void);
/* Frees every block handed out by the arena and the arena itself. */
void fitlm_arena_free(fitlm_arena *a);
/* Returns `n` bytes aligned to 16 (zeroed), owned by the arena (freed by
 * fitlm_arena_free), or NULL when out of memory. n may be 0. */
void *fitlm_arena_alloc(fitlm_arena *a, size_t n);
/* Returns `n` bytes with no alignment and not zeroed (for string copies),
 * owned by the arena, or NULL when out of memory. */
void *fitlm_arena_alloc_bytes(fitlm_arena *a, size_t n);
/* Total bytes handed out so far (for tests of bounded memory use). */
size_t fitlm_arena_used(const fitlm_arena *a);

#endif
