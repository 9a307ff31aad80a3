/* The paged KV cache: one pool of blocks shared by every sequence.
 *
 * Per layer one K and one V tensor of n_blocks * block_size rows ("slots") of
 * kv_dim values (n_kv_heads * head_dim) in the cache type (F16, F32 or Q8_0),
 * allocated once on the backend (untouched pages of a CPU pool cost no
 * resident memory). A sequence owns a block table: position p lives in slot
 * table[p / block_size] * block_size + p % block_size.
 *
 * Blocks are reference-counted, with the pin/release contract of a page cache:
 * fitlm_kv_pool_alloc and fitlm_kv_pool_retain each pin a block once, and
 * every pin is given back by exactly one fitlm_kv_pool_release. A block is
 * written only by a sequence that holds the only pin on it.
 *
 * Prefix caching: a full block may be published under the hash of its tokens
 * and of every token before it (fitlm_kv_block_hash chains them). A published
 * block whose last pin is released keeps its contents and stays findable
 * (fitlm_kv_pool_lookup) until the allocator needs it: free blocks that never
 * held a published prefix are handed out first, then published ones, least
 * recently released first. Lookups compare the block's tokens, so a hash
 * collision is a miss, never a wrong reuse. Hashes are keyed with a random
 * per-process seed so that collisions cannot be chosen from outside.
 */
#ifndef FITLM_RUNTIME_KV_POOL_H
#define FITLM_RUNTIME_KV_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "util/error.h"

typedef struct fitlm_kv_pool {
    int type;           /* FITLM_TYPE_F16, F32 or Q8_0 */
    uint32_t n_layers;
    int64_t kv_dim;
    uint32_t block_size; /* slots per block, a power of two */
    int block_shift;     /* log2(block_size) */
    uint32_t n_blocks;
    fitlm_btensor *k, *v; /* [n_layers], each n_blocks*block_size rows; owned */
    uint64_t nbytes;     /* all K and V tensors */

    /* block bookkeeping (private to kv_pool.c) */
    uint32_t *ref;       /* [n_blocks] pins */
    uint64_t *hash;      /* [n_blocks] published hash (valid when published[b]) */
    uint8_t *published;  /* [n_blocks] */
    int32_t *tokens;     /* [n_blocks * block_size] tokens of published blocks */
    int32_t *free_stack; /* unpublished free blocks */
    uint32_t n_free;
    int32_t *lru_prev, *lru_next; /* published blocks with no pin, oldest at lru_head */
    int32_t lru_head, lru_tail;
    uint32_t n_cached;   /* blocks on the LRU list */
    int32_t *table;      /* open addressing hash -> block, -1 empty */
    uint32_t table_mask;
    uint64_t seed;
} fitlm_kv_pool;

/* Bytes of one block in every layer's K and V. */
uint64_t fitlm_kv_pool_block_bytes(int type, uint32_t n_layers, int64_t kv_dim, uint32_t block_size);

/* Creates the pool on the backend (block_size a power of two in 1..1024,
 * n_blocks >= 1). The caller frees it with fitlm_kv_pool_free (the backend
 * must still be alive). NULL with err. */
fitlm_kv_pool *fitlm_kv_pool_new(fitlm_backend *be, int type, uint32_t n_layers, int64_t kv_dim, uint32_t block_size,
                                 uint32_t n_blocks, fitlm_error *err);
void fitlm_kv_pool_free(fitlm_backend *be, fitlm_kv_pool *p);

/* Pins a free block (an unpublished one first, else the least recently
 * released published one, which is then unpublished: its contents become
 * garbage). Returns its id, or -1 when every block is pinned. */
int32_t fitlm_kv_pool_alloc(fitlm_kv_pool *p);

/* Pins block b once more (a prefix-cache hit). */
void fitlm_kv_pool_retain(fitlm_kv_pool *p, int32_t b);

/* Gives back one pin of block b. */
void fitlm_kv_pool_release(fitlm_kv_pool *p, int32_t b);

/* Blocks fitlm_kv_pool_alloc can still hand out (free + cached). */
uint32_t fitlm_kv_pool_available(const fitlm_kv_pool *p);
/* Blocks with at least one pin. */
uint32_t fitlm_kv_pool_used(const fitlm_kv_pool *p);
/* Published blocks with no pin (reusable prefixes). */
uint32_t fitlm_kv_pool_cached(const fitlm_kv_pool *p);

/* The chained hash of a full block: parent is the previous block's hash (0
 * for the first block), tokens its block_size tokens. */
uint64_t fitlm_kv_block_hash(const fitlm_kv_pool *p, uint64_t parent, const int32_t *tokens);

/* The published block holding exactly these tokens after this parent chain,
 * or -1. Does not pin it: call fitlm_kv_pool_retain to use it. */
int32_t fitlm_kv_pool_lookup(const fitlm_kv_pool *p, uint64_t hash, const int32_t *tokens);

/* Publishes full block b (pinned by the caller, contents computed) under
 * hash for tokens. A no-op when an equal block is already published or b is. */
void fitlm_kv_pool_publish(fitlm_kv_pool *p, int32_t b, uint64_t hash, const int32_t *tokens);

#endif
