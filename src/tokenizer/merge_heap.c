/* Priority queue of candidate merges, shared by the rank-based BPE (bpe.c) and
 * SentencePiece BPE (spm.c) merge loops: a binary min-heap on (order, left). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>

static bool pair_before(const tok_pair *a, const tok_pair *b) {
    if (a->order != b->order) return a->order < b->order;
    return a->left < b->left;
}

int tok_pair_heap_push(tok_pair_heap *h, tok_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_pair *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = p;
    return 0;
}

tok_pair tok_pair_heap_pop(tok_pair_heap *h) {
    tok_pair top = h->v[0];
    tok_pair last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const tok_pair *bp = &last;
        if (l < h->n && pair_before(&h->v[l], bp)) {
            best = l;
            bp = &h->v[l];
        }
        if (r < h->n && pair_before(&h->v[r], bp)) best = r;
        if (best == i) break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

int tok_push_bytes(const fitlm_tokenizer *t, const char *s, size_t n, tok_ids *out, fitlm_error *err) {
    for (size_t i = 0; i < n; i++)
        if (t->byte_id[(unsigned char)s[i]] < 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (tok_ids_push(out, t->byte_id[(unsigned char)s[i]], err)) return -1;
    return 1;
}
