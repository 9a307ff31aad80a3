#include "format/gguf_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64 * 1024)

typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char mem[];
} arena_block;

struct fitlm_arena {
    arena_block *head;
    size_t total;
};

fitlm_arena *fitlm_arena_new(void) {
    return calloc(1, sizeof(fitlm_arena));
}

void fitlm_arena_free(fitlm_arena *a) {
    if (!a) return;
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

/* n bytes at a multiple of `align` (a power of two <= 16) inside some block. */
static void *arena_take(fitlm_arena *a, size_t n, size_t align) {
    if (n > SIZE_MAX - 64) return NULL;
    arena_block *b = a->head;
    size_t start = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || start > b->cap || b->cap - start < n) {
        /* big requests get their own block, linked behind the current one so
         * the current block keeps serving small requests */
        size_t cap = n > ARENA_CHUNK / 4 ? (n + 15) & ~(size_t)15 : ARENA_CHUNK;
        if (cap == 0) cap = 16;
        arena_block *nb = malloc(sizeof(arena_block) + cap);
        if (!nb) return NULL;
        nb->cap = cap;
        nb->used = 0;
        if (b && cap != ARENA_CHUNK) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
        start = 0;
    }
    void *p = b->mem + start;
    a->total += start + n - b->used;
    b->used = start + n;
    return p;
}

void *fitlm_arena_alloc(fitlm_arena *a, size_t n) {
    void *p = arena_take(a, n, 16);
    if (p) memset(p, 0, n);
    return p;
}

void *fitlm_arena_alloc_bytes(fitlm_arena *a, size_t n) {
    return arena_take(a, n, 1);
}

size_t fitlm_arena_used(const fitlm_arena *a) {
    return a ? a->total : 0;
}
