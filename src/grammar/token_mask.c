/* The token trie and grammar-constrained token masks (token_mask.h). */
#include "grammar/token_mask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fitlm_token_trie {
    int32_t vocab;
    uint32_t n_nodes;      /* node 0 is the root (the empty prefix) */
    uint8_t *byte;         /* the byte leading into node i */
    uint16_t *depth;       /* bytes from the root */
    uint32_t *skip;        /* the first node after i's subtree (depth-first order) */
    uint32_t *tok_off;     /* tokens spelled exactly by node i: toks[tok_off[i] .. tok_off[i+1]) */
    int32_t *toks;
    uint32_t max_depth;
    int32_t *eog;          /* end-of-generation ids */
    uint32_t n_eog;
    const char **text;     /* per id: its bytes (NULL: never text), pointing into text_buf */
    uint32_t *text_len;
    char *text_buf;
};

typedef struct tok_ref {
    const char *s;
    uint32_t len;
    int32_t id;
} tok_ref;

static int cmp_tok(const void *a, const void *b) {
    const tok_ref *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

#define MAX_TOKEN_BYTES 65535u

void fitlm_token_trie_free(fitlm_token_trie *t) {
    if (!t) return;
    free(t->byte);
    free(t->depth);
    free(t->skip);
    free(t->tok_off);
    free(t->toks);
    free(t->eog);
    free(t->text);
    free(t->text_len);
    free(t->text_buf);
    free(t);
}

fitlm_token_trie *fitlm_token_trie_new(const fitlm_tokenizer *tok, fitlm_error *err) {
    int32_t vocab = fitlm_tokenizer_vocab_size(tok);
    fitlm_token_trie *t = calloc(1, sizeof *t);
    tok_ref *refs = vocab > 0 ? malloc((size_t)vocab * sizeof *refs) : NULL;
    uint32_t *path = NULL;
    if (!t || (vocab > 0 && !refs)) goto oom;
    t->vocab = vocab;
    t->text = calloc((size_t)vocab + 1, sizeof *t->text);
    t->text_len = calloc((size_t)vocab + 1, sizeof *t->text_len);
    t->eog = malloc(((size_t)vocab + 1) * sizeof *t->eog);
    if (!t->text || !t->text_len || !t->eog) goto oom;
    size_t total = 0;
    uint32_t n = 0;
    for (int32_t id = 0; id < vocab; id++) {
        if (fitlm_tokenizer_is_eog(tok, id)) t->eog[t->n_eog++] = id;
        if (fitlm_tokenizer_token_type(tok, id) == FITLM_TOKEN_CONTROL) continue;
        size_t len = 0;
        const char *p = fitlm_tokenizer_piece(tok, id, false, &len);
        if (!p || !len || len > MAX_TOKEN_BYTES) continue;
        refs[n++] = (tok_ref){p, (uint32_t)len, id};
        total += len;
    }
    /* own copies of the texts */
    t->text_buf = malloc(total + 1);
    if (!t->text_buf) goto oom;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(t->text_buf + off, refs[i].s, refs[i].len);
        refs[i].s = t->text_buf + off;
        t->text[refs[i].id] = refs[i].s;
        t->text_len[refs[i].id] = refs[i].len;
        off += refs[i].len;
    }
    qsort(refs, n, sizeof *refs, cmp_tok);
    /* nodes: at most one per byte of every token, plus the root */
    size_t cap = total + 1;
    t->byte = malloc(cap);
    t->depth = malloc(cap * sizeof *t->depth);
    t->skip = malloc(cap * sizeof *t->skip);
    t->tok_off = malloc((cap + 1) * sizeof *t->tok_off);
    t->toks = malloc(((size_t)n + 1) * sizeof *t->toks);
    path = malloc((MAX_TOKEN_BYTES + 2) * sizeof *path); /* path[d]: the node at depth d */
    if (!t->byte || !t->depth || !t->skip || !t->tok_off || !t->toks || !path) goto oom;
    uint32_t nn = 1, nt = 0, plen = 0; /* plen: depth of the current path */
    t->byte[0] = 0;
    t->depth[0] = 0;
    t->tok_off[0] = 0;
    path[0] = 0;
    const tok_ref *prev = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const tok_ref *r = &refs[i];
        uint32_t common = 0;
        if (prev) {
            uint32_t lim = prev->len < r->len ? prev->len : r->len;
            while (common < lim && prev->s[common] == r->s[common]) common++;
        }
        if (common > plen) common = plen;
        while (plen > common) t->skip[path[plen--]] = nn; /* close the nodes left behind */
        for (uint32_t d = common; d < r->len; d++) {
            t->byte[nn] = (uint8_t)r->s[d];
            t->depth[nn] = (uint16_t)(d + 1);
            t->tok_off[nn] = nt;
            path[++plen] = nn++;
        }
        t->toks[nt++] = r->id;
        if (r->len > t->max_depth) t->max_depth = r->len;
        prev = r;
    }
    while (plen > 0) t->skip[path[plen--]] = nn;
    t->skip[0] = nn;
    t->tok_off[nn] = nt;
    t->n_nodes = nn;
    free(refs);
    free(path);
    return t;
oom:
    fitlm_fail(err, "out of memory building the token trie");
    free(refs);
    free(path);
    fitlm_token_trie_free(t);
    return NULL;
}

int32_t fitlm_token_trie_vocab(const fitlm_token_trie *t) { return t->vocab; }
uint32_t fitlm_token_trie_nodes(const fitlm_token_trie *t) { return t->n_nodes; }

/* ---- the matcher over tokens ---- */

#define MASK_CACHE 8

struct fitlm_token_matcher {
    fitlm_grammar *g;
    const fitlm_token_trie *trie;
    fitlm_grammar_matcher *gm;
    fitlm_grammar_state state;
    size_t words;               /* uint64 words per mask */
    uint64_t *cache_bits;       /* MASK_CACHE masks */
    fitlm_grammar_state cache_state[MASK_CACHE];
    uint32_t cache_count[MASK_CACHE];
    uint32_t cache_next;
    fitlm_grammar_state *walk;  /* per trie depth: the position after that prefix */
};

void fitlm_token_matcher_free(fitlm_token_matcher *m) {
    if (!m) return;
    fitlm_grammar_matcher_free(m->gm);
    fitlm_grammar_free(m->g);
    free(m->cache_bits);
    free(m->walk);
    free(m);
}

static void cache_clear(fitlm_token_matcher *m) {
    for (int i = 0; i < MASK_CACHE; i++) m->cache_state[i] = FITLM_GRAMMAR_DEAD;
}

fitlm_token_matcher *fitlm_token_matcher_new(fitlm_grammar *g, const fitlm_token_trie *trie, fitlm_error *err) {
    fitlm_token_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        fitlm_grammar_free(g);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    m->g = g;
    m->trie = trie;
    m->words = ((size_t)trie->vocab + 63) / 64;
    m->gm = fitlm_grammar_matcher_new(g);
    m->cache_bits = calloc(MASK_CACHE * (m->words ? m->words : 1), sizeof *m->cache_bits);
    m->walk = malloc(((size_t)trie->max_depth + 1) * sizeof *m->walk);
    if (!m->gm || !m->cache_bits || !m->walk) {
        fitlm_token_matcher_free(m);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    cache_clear(m);
    m->state = fitlm_grammar_start(m->gm);
    if (m->state == FITLM_GRAMMAR_DEAD) {
        fitlm_token_matcher_free(m);
        fitlm_fail(err, "grammar: matches no text");
        return NULL;
    }
    return m;
}

uint32_t fitlm_token_matcher_allowed(fitlm_token_matcher *m, const uint64_t **allowed) {
    for (int i = 0; i < MASK_CACHE; i++)
        if (m->cache_state[i] == m->state) {
            *allowed = m->cache_bits + (size_t)i * m->words;
            return m->cache_count[i];
        }
    uint32_t slot = m->cache_next;
    m->cache_next = (m->cache_next + 1) % MASK_CACHE;
    uint64_t *bits = m->cache_bits + (size_t)slot * m->words;
    memset(bits, 0, m->words * sizeof *bits);
    const fitlm_token_trie *t = m->trie;
    fitlm_grammar_matcher *gm = m->gm;
    uint32_t count = 0;
    m->walk[0] = m->state;
    for (uint32_t i = 1; i < t->n_nodes;) {
        fitlm_grammar_state s = fitlm_grammar_step(gm, m->walk[t->depth[i] - 1], t->byte[i]);
        if (s == FITLM_GRAMMAR_DEAD) {
            i = t->skip[i];
            continue;
        }
        m->walk[t->depth[i]] = s;
        for (uint32_t k = t->tok_off[i]; k < t->tok_off[i + 1]; k++) {
            int32_t id = t->toks[k];
            bits[id >> 6] |= 1ull << (id & 63);
            count++;
        }
        i++;
    }
    if (fitlm_grammar_can_end(gm, m->state))
        for (uint32_t k = 0; k < t->n_eog; k++) {
            int32_t id = t->eog[k];
            if (!((bits[id >> 6] >> (id & 63)) & 1)) count++;
            bits[id >> 6] |= 1ull << (id & 63);
        }
    m->cache_state[slot] = m->state;
    m->cache_count[slot] = count;
    *allowed = bits;
    return count;
}

uint32_t fitlm_token_matcher_mask(fitlm_token_matcher *m, float *logits, uint32_t vocab) {
    const uint64_t *bits;
    uint32_t count = fitlm_token_matcher_allowed(m, &bits);
    uint32_t nv = (uint32_t)m->trie->vocab;
    uint32_t lim = vocab < nv ? vocab : nv;
    for (uint32_t w = 0; w * 64 < lim; w++) {
        uint64_t b = bits[w];
        if (b == UINT64_MAX && (w + 1) * 64 <= lim) continue;
        uint32_t end = (w + 1) * 64 < lim ? (w + 1) * 64 : lim;
        for (uint32_t id = w * 64; id < end; id++)
            if (!((b >> (id & 63)) & 1)) logits[id] = -INFINITY;
    }
    for (uint32_t id = lim; id < vocab; id++) logits[id] = -INFINITY;
    return count;
}

int fitlm_token_matcher_accept(fitlm_token_matcher *m, int32_t id) {
    const fitlm_token_trie *t = m->trie;
    if (id < 0 || id >= t->vocab) return -1;
    if (!t->text[id]) {
        for (uint32_t k = 0; k < t->n_eog; k++)
            if (t->eog[k] == id) return fitlm_grammar_can_end(m->gm, m->state) ? 1 : -1;
        return -1;
    }
    fitlm_grammar_state s = fitlm_grammar_step_bytes(m->gm, m->state, t->text[id], t->text_len[id]);
    if (s == FITLM_GRAMMAR_DEAD) return -1;
    fitlm_grammar_state g = fitlm_grammar_gc(m->gm, s);
    if (g != s) cache_clear(m); /* the tables were rebuilt: old state values mean nothing */
    m->state = g;
    if (g == FITLM_GRAMMAR_DEAD) return 1;
    return fitlm_grammar_must_end(m->gm, g) ? 1 : 0;
}

bool fitlm_token_matcher_can_end(const fitlm_token_matcher *m) { return fitlm_grammar_can_end(m->gm, m->state); }

static int c_mask(void *state, float *logits, uint32_t vocab) {
    return fitlm_token_matcher_mask(state, logits, vocab) ? 0 : -1;
}

static bool c_accept(void *state, int32_t id) { return fitlm_token_matcher_accept(state, id) != 0; }

static void c_free(void *state) { fitlm_token_matcher_free(state); }

fitlm_token_constraint fitlm_token_matcher_constraint(fitlm_token_matcher *m) {
    return (fitlm_token_constraint){.state = m, .mask = c_mask, .accept = c_accept, .free_state = c_free};
}
