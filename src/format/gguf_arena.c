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

void *fitlm_arena_alloc(fitlm_arena *a, size_t n) {
    if (n > SIZE_MAX - 32) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (need == 0) need = 16;
    arena_block *b = a->head;
    if (!b || b->cap - b->used < need) {
        /* big requests get their own block, linked behind the current one so
         * the current block keeps serving small requests */
        size_t cap = need > ARENA_CHUNK / 4 ? need : ARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof(arena_block)) return NULL;
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
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->total += need;
    memset(p, 0, n);
    return p;
}

size_t fitlm_arena_used(const fitlm_arena *a) {
    return a ? a->total : 0;
}
