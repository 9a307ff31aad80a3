/* The paged KV cache's block pool: allocation, pins, the prefix index. */
#include "runtime/kv_pool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/kv_cache.h"

uint64_t fitlm_kv_pool_block_bytes(int type, uint32_t n_layers, int64_t kv_dim, uint32_t block_size) {
    return 2ull * n_layers * block_size * fitlm_kv_row_bytes(type, kv_dim);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return mix64(s ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&s);
}

uint64_t fitlm_kv_block_hash(const fitlm_kv_pool *p, uint64_t parent, const int32_t *tokens) {
    uint64_t h = mix64(p->seed ^ mix64(parent + 0x9e3779b97f4a7c15ull));
    for (uint32_t i = 0; i < p->block_size; i++) h = mix64(h ^ ((uint64_t)(uint32_t)tokens[i] + p->seed * (i + 1)));
    return h;
}

fitlm_kv_pool *fitlm_kv_pool_new(fitlm_backend *be, int type, uint32_t n_layers, int64_t kv_dim, uint32_t block_size,
                                 uint32_t n_blocks, fitlm_error *err) {
    if (fitlm_kv_type_check(type, kv_dim, err)) return NULL;
    if (block_size == 0 || block_size > 1024 || (block_size & (block_size - 1)))
        return fitlm_fail(err, "KV block size %u must be a power of two from 1 to 1024", block_size), NULL;
    if (n_blocks == 0 || n_blocks > (1u << 30) / block_size)
        return fitlm_fail(err, "KV pool of %u blocks of %u tokens is out of range", n_blocks, block_size), NULL;
    fitlm_kv_pool *p = calloc(1, sizeof *p);
    if (!p) return fitlm_fail(err, "out of memory"), NULL;
    p->type = type;
    p->n_layers = n_layers;
    p->kv_dim = kv_dim;
    p->block_size = block_size;
    while ((1u << p->block_shift) < block_size) p->block_shift++;
    p->n_blocks = n_blocks;
    p->seed = random_seed();
    uint32_t cap = 16;
    while (cap < 2 * n_blocks) cap *= 2;
    p->table_mask = cap - 1;
    p->k = calloc(n_layers, sizeof *p->k);
    p->v = calloc(n_layers, sizeof *p->v);
    p->ref = calloc(n_blocks, sizeof *p->ref);
    p->hash = calloc(n_blocks, sizeof *p->hash);
    p->published = calloc(n_blocks, 1);
    p->tokens = calloc((size_t)n_blocks * block_size, sizeof *p->tokens);
    p->free_stack = malloc(n_blocks * sizeof *p->free_stack);
    p->lru_prev = malloc(n_blocks * sizeof *p->lru_prev);
    p->lru_next = malloc(n_blocks * sizeof *p->lru_next);
    p->table = malloc((size_t)cap * sizeof *p->table);
    if (!p->k || !p->v || !p->ref || !p->hash || !p->published || !p->tokens || !p->free_stack || !p->lru_prev ||
        !p->lru_next || !p->table) {
        fitlm_fail(err, "out of memory for the KV pool's block tables (%u blocks)", n_blocks);
        fitlm_kv_pool_free(be, p);
        return NULL;
    }
    memset(p->table, 0xff, (size_t)cap * sizeof *p->table);
    /* the stack pops the lowest ids first */
    for (uint32_t i = 0; i < n_blocks; i++) p->free_stack[i] = (int32_t)(n_blocks - 1 - i);
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = -1;
    int64_t rows = (int64_t)n_blocks * block_size;
    for (uint32_t l = 0; l < n_layers; l++) {
        if (be->alloc(be, type, kv_dim, rows, &p->k[l], err) || be->alloc(be, type, kv_dim, rows, &p->v[l], err)) {
            fitlm_error_prefix(err, "KV cache");
            fitlm_kv_pool_free(be, p);
            return NULL;
        }
        p->nbytes += p->k[l].nbytes + p->v[l].nbytes;
    }
    return p;
}

void fitlm_kv_pool_free(fitlm_backend *be, fitlm_kv_pool *p) {
    if (!p) return;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        if (p->k) be->release(be, &p->k[l]);
        if (p->v) be->release(be, &p->v[l]);
    }
    free(p->k);
    free(p->v);
    free(p->ref);
    free(p->hash);
    free(p->published);
    free(p->tokens);
    free(p->free_stack);
    free(p->lru_prev);
    free(p->lru_next);
    free(p->table);
    free(p);
}

/* ---- the prefix index: linear probing, backward-shift deletion ---- */

static void index_remove(fitlm_kv_pool *p, int32_t b) {
    uint32_t m = p->table_mask, i = (uint32_t)p->hash[b] & m;
    while (p->table[i] != b) {
        if (p->table[i] < 0) return; /* not indexed */
        i = (i + 1) & m;
    }
    p->table[i] = -1;
    /* pull later entries of the run back into the hole where their home allows */
    for (uint32_t j = (i + 1) & m; p->table[j] >= 0; j = (j + 1) & m) {
        uint32_t home = (uint32_t)p->hash[p->table[j]] & m;
        /* the entry at j may move to i if home is not cyclically in (i, j] */
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            p->table[i] = p->table[j];
            p->table[j] = -1;
            i = j;
        }
    }
}

int32_t fitlm_kv_pool_lookup(const fitlm_kv_pool *p, uint64_t hash, const int32_t *tokens) {
    uint32_t m = p->table_mask;
    for (uint32_t i = (uint32_t)hash & m;; i = (i + 1) & m) {
        int32_t b = p->table[i];
        if (b < 0) return -1;
        if (p->hash[b] == hash &&
            !memcmp(p->tokens + (size_t)b * p->block_size, tokens, p->block_size * sizeof *tokens))
            return b;
    }
}

void fitlm_kv_pool_publish(fitlm_kv_pool *p, int32_t b, uint64_t hash, const int32_t *tokens) {
    if (p->published[b] || fitlm_kv_pool_lookup(p, hash, tokens) >= 0) return;
    uint32_t m = p->table_mask, i = (uint32_t)hash & m;
    while (p->table[i] >= 0) i = (i + 1) & m; /* at most n_blocks of 2*n_blocks slots are used */
    p->table[i] = b;
    p->hash[b] = hash;
    p->published[b] = 1;
    memcpy(p->tokens + (size_t)b * p->block_size, tokens, p->block_size * sizeof *tokens);
}

/* ---- the LRU list of cached (published, unpinned) blocks ---- */

static void lru_unlink(fitlm_kv_pool *p, int32_t b) {
    int32_t pr = p->lru_prev[b], nx = p->lru_next[b];
    if (pr >= 0) p->lru_next[pr] = nx;
    else p->lru_head = nx;
    if (nx >= 0) p->lru_prev[nx] = pr;
    else p->lru_tail = pr;
    p->n_cached--;
}

static void lru_push(fitlm_kv_pool *p, int32_t b) {
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_cached++;
}

int32_t fitlm_kv_pool_alloc(fitlm_kv_pool *p) {
    int32_t b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else if (p->lru_head >= 0) {
        b = p->lru_head;
        lru_unlink(p, b);
        index_remove(p, b);
        p->published[b] = 0;
    } else {
        return -1;
    }
    p->ref[b] = 1;
    return b;
}

void fitlm_kv_pool_retain(fitlm_kv_pool *p, int32_t b) {
    if (p->ref[b]++ == 0 && p->published[b]) lru_unlink(p, b);
}

void fitlm_kv_pool_release(fitlm_kv_pool *p, int32_t b) {
    if (p->ref[b] == 0) return; /* not pinned: a caller bug, ignored rather than corrupting the lists */
    if (--p->ref[b] > 0) return;
    if (p->published[b]) lru_push(p, b);
    else p->free_stack[p->n_free++] = b;
}

uint32_t fitlm_kv_pool_available(const fitlm_kv_pool *p) {
    return p->n_free + p->n_cached;
}

uint32_t fitlm_kv_pool_used(const fitlm_kv_pool *p) {
    return p->n_blocks - p->n_free - p->n_cached;
}

uint32_t fitlm_kv_pool_cached(const fitlm_kv_pool *p) {
    return p->n_cached;
}
