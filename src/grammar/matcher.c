/* The grammar matcher: a nondeterministic pushdown automaton over UTF-8
 * bytes.
 *
 * A parse position is a stack of grammar positions (the element to match
 * next, then where to continue when its rule ends). Stacks are persistent
 * linked lists whose nodes are interned, so equal stacks are equal node ids.
 * A matcher position is the set of stacks whose top is a character class
 * (plus "the text may end here"), also interned; with an incomplete UTF-8
 * character it carries the bytes seen so far. Every (position, byte)
 * transition is memoized, so walking a token trie costs one hash lookup per
 * trie node once the positions have been seen.
 *
 * Rules ending in a rule reference continue without pushing (a tail call), so
 * right-recursive repetitions (x* is R ::= x R | "") keep stacks short.
 */
#include "grammar/grammar_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LEAVES 4096       /* stacks in one position (more: an ambiguous grammar; extra ones are dropped) */
#define MAX_EXPAND_DEPTH 4096 /* recursion while expanding one position */

typedef struct snode {
    uint32_t pos;
    int32_t next; /* node id, -1: the empty stack */
} snode;

typedef struct mset {
    uint32_t off, n;
    bool accept;
} mset;

typedef struct tr_ent {
    uint64_t key; /* (state << 8) | byte; UINT64_MAX: empty */
    uint64_t val;
} tr_ent;

struct fitlm_grammar_matcher {
    const fitlm_grammar *g;
    snode *nodes;
    uint32_t *stamp; /* per node: the expansion that last visited it */
    uint32_t n_nodes, cap_nodes, cap_stamp;
    uint32_t *node_ht; /* id + 1 */
    uint32_t node_ht_cap;
    uint32_t *pool;
    uint32_t n_pool, cap_pool;
    mset *sets;
    uint32_t n_sets, cap_sets;
    uint32_t *set_ht; /* id + 1 */
    uint32_t set_ht_cap;
    tr_ent *tr;
    uint32_t n_tr, tr_cap;
    uint32_t *out; /* leaves being collected */
    uint32_t n_out, cap_out;
    bool acc, oom;
    uint32_t gen;
    int depth;
};

/* state = set id | partial << 30; partial = 0 or
 * 1 << 25 | total << 23 | remaining << 21 | value (the bits seen) */
#define SET_OF(s) ((uint32_t)((s) & ((1u << 30) - 1)))
#define PART_OF(s) ((uint32_t)((s) >> 30))

static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static bool grow(void **ptr, uint32_t *cap, uint32_t need, size_t size) {
    if (need <= *cap) return true;
    uint32_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*ptr, (size_t)nc * size);
    if (!q) return false;
    *ptr = q;
    *cap = nc;
    return true;
}

/* ---- interning ---- */

static bool rehash_u32(uint32_t **ht, uint32_t *cap, uint32_t n, uint64_t (*hash)(fitlm_grammar_matcher *, uint32_t),
                       fitlm_grammar_matcher *m) {
    if (2 * (n + 1) <= *cap) return true;
    uint32_t nc = *cap ? *cap * 2 : 1024;
    uint32_t *t = calloc(nc, sizeof *t);
    if (!t) return false;
    for (uint32_t id = 0; id < n; id++) {
        uint32_t h = (uint32_t)hash(m, id) & (nc - 1);
        while (t[h]) h = (h + 1) & (nc - 1);
        t[h] = id + 1;
    }
    free(*ht);
    *ht = t;
    *cap = nc;
    return true;
}

static uint64_t node_hash_of(uint32_t pos, int32_t next) { return mix((uint64_t)pos << 32 | (uint32_t)next); }
static uint64_t node_hash(fitlm_grammar_matcher *m, uint32_t id) {
    return node_hash_of(m->nodes[id].pos, m->nodes[id].next);
}

/* The id of node (pos, next); -1 when out of memory. */
static int32_t node(fitlm_grammar_matcher *m, uint32_t pos, int32_t next) {
    if (!rehash_u32(&m->node_ht, &m->node_ht_cap, m->n_nodes, node_hash, m)) goto oom;
    uint32_t h = (uint32_t)node_hash_of(pos, next) & (m->node_ht_cap - 1);
    for (; m->node_ht[h]; h = (h + 1) & (m->node_ht_cap - 1)) {
        const snode *q = &m->nodes[m->node_ht[h] - 1];
        if (q->pos == pos && q->next == next) return (int32_t)(m->node_ht[h] - 1);
    }
    if (m->n_nodes >= (1u << 30)) goto oom;
    if (!grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof *m->nodes)) goto oom;
    if (!grow((void **)&m->stamp, &m->cap_stamp, m->cap_nodes, sizeof *m->stamp)) goto oom;
    m->nodes[m->n_nodes] = (snode){pos, next};
    m->stamp[m->n_nodes] = 0;
    m->node_ht[h] = m->n_nodes + 1;
    return (int32_t)m->n_nodes++;
oom:
    m->oom = true;
    return -1;
}

static uint64_t set_hash_of(const uint32_t *v, uint32_t n, bool acc) {
    uint64_t h = acc ? 0x9e3779b97f4a7c15ull : 0x51ed270b27384f1bull;
    for (uint32_t i = 0; i < n; i++) h = mix(h ^ v[i]) + i;
    return h;
}
static uint64_t set_hash(fitlm_grammar_matcher *m, uint32_t id) {
    return set_hash_of(m->pool + m->sets[id].off, m->sets[id].n, m->sets[id].accept);
}

/* The id of the set of leaves v[0..n) (sorted, unique). */
static int64_t set_intern(fitlm_grammar_matcher *m, const uint32_t *v, uint32_t n, bool acc) {
    if (!rehash_u32(&m->set_ht, &m->set_ht_cap, m->n_sets, set_hash, m)) goto oom;
    uint32_t h = (uint32_t)set_hash_of(v, n, acc) & (m->set_ht_cap - 1);
    for (; m->set_ht[h]; h = (h + 1) & (m->set_ht_cap - 1)) {
        const mset *q = &m->sets[m->set_ht[h] - 1];
        if (q->n == n && q->accept == acc && !memcmp(m->pool + q->off, v, (size_t)n * sizeof *v))
            return m->set_ht[h] - 1;
    }
    if (m->n_sets >= (1u << 29) || (uint64_t)m->n_pool + n >= (1ull << 31)) goto oom;
    if (!grow((void **)&m->sets, &m->cap_sets, m->n_sets + 1, sizeof *m->sets) ||
        !grow((void **)&m->pool, &m->cap_pool, m->n_pool + n, sizeof *m->pool))
        goto oom;
    if (n) memcpy(m->pool + m->n_pool, v, (size_t)n * sizeof *v); /* v may point into out, never into pool */
    m->sets[m->n_sets] = (mset){m->n_pool, n, acc};
    m->n_pool += n;
    m->set_ht[h] = m->n_sets + 1;
    return m->n_sets++;
oom:
    m->oom = true;
    return -1;
}

/* ---- expansion ---- */

static void out_add(fitlm_grammar_matcher *m, uint32_t id) {
    if (m->n_out >= MAX_LEAVES) return;
    if (!grow((void **)&m->out, &m->cap_out, m->n_out + 1, sizeof *m->out)) {
        m->oom = true;
        return;
    }
    m->out[m->n_out++] = id;
}

/* Adds the leaves reachable from stack `id` without consuming a character. */
static void expand(fitlm_grammar_matcher *m, int32_t id) {
    if (id < 0 || m->oom) return;
    if (m->stamp[id] == m->gen) return;
    m->stamp[id] = m->gen;
    if (++m->depth > MAX_EXPAND_DEPTH) {
        m->depth--;
        return;
    }
    const fitlm_grammar *g = m->g;
    uint32_t pos = m->nodes[id].pos;
    int32_t next = m->nodes[id].next;
    gelem e = g->el[pos];
    if (e.type == GE_CHAR) {
        out_add(m, (uint32_t)id);
    } else if (e.type == GE_END) {
        if (next < 0) m->acc = true;
        else expand(m, next);
    } else {
        int32_t cont = next;
        if (g->el[pos + 1].type != GE_END) cont = node(m, pos + 1, next);
        if (!m->oom)
            for (uint32_t a = g->alt_off[e.v]; a < g->alt_off[e.v + 1]; a++) expand(m, node(m, g->alts[a], cont));
    }
    m->depth--;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void begin(fitlm_grammar_matcher *m) {
    m->n_out = 0;
    m->acc = false;
    m->depth = 0;
    if (++m->gen == 0) { /* wrapped: clear the stamps */
        memset(m->stamp, 0, (size_t)m->n_nodes * sizeof *m->stamp);
        m->gen = 1;
    }
}

/* The collected leaves as a set id, or DEAD. */
static fitlm_grammar_state finish(fitlm_grammar_matcher *m) {
    if (m->oom || (!m->n_out && !m->acc)) return FITLM_GRAMMAR_DEAD;
    qsort(m->out, m->n_out, sizeof *m->out, cmp_u32);
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->n_out; i++)
        if (!k || m->out[k - 1] != m->out[i]) m->out[k++] = m->out[i];
    int64_t s = set_intern(m, m->out, k, m->acc);
    return s < 0 ? FITLM_GRAMMAR_DEAD : (fitlm_grammar_state)s;
}

static fitlm_grammar_state advance(fitlm_grammar_matcher *m, uint32_t set, uint32_t cp) {
    begin(m);
    const fitlm_grammar *g = m->g;
    mset st = m->sets[set];
    for (uint32_t i = 0; i < st.n; i++) {
        uint32_t id = m->pool[st.off + i];
        uint32_t pos = m->nodes[id].pos;
        if (gclass_has(g, &g->cls[g->el[pos].v], cp)) expand(m, node(m, pos + 1, m->nodes[id].next));
    }
    return finish(m);
}

static bool viable(fitlm_grammar_matcher *m, uint32_t set, uint32_t lo, uint32_t hi) {
    const fitlm_grammar *g = m->g;
    mset st = m->sets[set];
    for (uint32_t i = 0; i < st.n; i++) {
        uint32_t pos = m->nodes[m->pool[st.off + i]].pos;
        if (gclass_meets(g, &g->cls[g->el[pos].v], lo, hi)) return true;
    }
    return false;
}

/* ---- the interface ---- */

fitlm_grammar_matcher *fitlm_grammar_matcher_new(const fitlm_grammar *g) {
    fitlm_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->g = g;
    return m;
}

static void tables_free(fitlm_grammar_matcher *m) {
    free(m->nodes);
    free(m->stamp);
    free(m->node_ht);
    free(m->pool);
    free(m->sets);
    free(m->set_ht);
    free(m->tr);
    m->nodes = NULL;
    m->stamp = NULL;
    m->node_ht = NULL;
    m->pool = NULL;
    m->sets = NULL;
    m->set_ht = NULL;
    m->tr = NULL;
    m->n_nodes = m->cap_nodes = m->cap_stamp = m->node_ht_cap = m->n_pool = m->cap_pool = 0;
    m->n_sets = m->cap_sets = m->set_ht_cap = m->n_tr = m->tr_cap = 0;
    m->gen = 0;
}

void fitlm_grammar_matcher_free(fitlm_grammar_matcher *m) {
    if (!m) return;
    tables_free(m);
    free(m->out);
    free(m);
}

fitlm_grammar_state fitlm_grammar_start(fitlm_grammar_matcher *m) {
    begin(m);
    const fitlm_grammar *g = m->g;
    for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++) expand(m, node(m, g->alts[a], -1));
    return finish(m);
}

static fitlm_grammar_state step_uncached(fitlm_grammar_matcher *m, fitlm_grammar_state s, uint8_t b) {
    uint32_t set = SET_OF(s), part = PART_OF(s);
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t total, rem, val;
    if (!part) {
        if (b < 0x80) return advance(m, set, b);
        if (b >= 0xC2 && b <= 0xDF) total = 2, val = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF) total = 3, val = b & 0x0F;
        else if (b >= 0xF0 && b <= 0xF4) total = 4, val = b & 0x07;
        else return FITLM_GRAMMAR_DEAD;
        rem = total - 1;
    } else {
        if ((b & 0xC0) != 0x80) return FITLM_GRAMMAR_DEAD;
        total = (part >> 23) & 3;
        total = total ? total : 4;
        rem = (part >> 21) & 3;
        val = (part & ((1u << 21) - 1)) << 6 | (b & 0x3F);
        rem--;
        if (!rem) {
            if (val < min_cp[total] || val > 0x10FFFF || (val >= 0xD800 && val <= 0xDFFF)) return FITLM_GRAMMAR_DEAD;
            return advance(m, set, val);
        }
    }
    uint32_t lo = val << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
    if (lo < min_cp[total]) lo = min_cp[total];
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi || !viable(m, set, lo, hi)) return FITLM_GRAMMAR_DEAD;
    uint32_t np = 1u << 25 | (total & 3) << 23 | rem << 21 | val;
    return (fitlm_grammar_state)set | (fitlm_grammar_state)np << 30;
}

fitlm_grammar_state fitlm_grammar_step(fitlm_grammar_matcher *m, fitlm_grammar_state s, uint8_t b) {
    if (s == FITLM_GRAMMAR_DEAD) return s;
    uint64_t key = s << 8 | b;
    if (m->tr_cap) {
        uint32_t h = (uint32_t)mix(key) & (m->tr_cap - 1);
        for (; m->tr[h].key != UINT64_MAX; h = (h + 1) & (m->tr_cap - 1))
            if (m->tr[h].key == key) return m->tr[h].val;
    }
    fitlm_grammar_state r = step_uncached(m, s, b);
    if (m->oom) return r;
    if (2 * (m->n_tr + 1) > m->tr_cap) {
        uint32_t nc = m->tr_cap ? 2 * m->tr_cap : 4096;
        tr_ent *t = malloc((size_t)nc * sizeof *t);
        if (!t) return r; /* not memoized: still correct */
        for (uint32_t i = 0; i < nc; i++) t[i].key = UINT64_MAX;
        for (uint32_t i = 0; i < m->tr_cap; i++) {
            if (m->tr[i].key == UINT64_MAX) continue;
            uint32_t h = (uint32_t)mix(m->tr[i].key) & (nc - 1);
            while (t[h].key != UINT64_MAX) h = (h + 1) & (nc - 1);
            t[h] = m->tr[i];
        }
        free(m->tr);
        m->tr = t;
        m->tr_cap = nc;
    }
    uint32_t h = (uint32_t)mix(key) & (m->tr_cap - 1);
    while (m->tr[h].key != UINT64_MAX) h = (h + 1) & (m->tr_cap - 1);
    m->tr[h] = (tr_ent){key, r};
    m->n_tr++;
    return r;
}

fitlm_grammar_state fitlm_grammar_step_bytes(fitlm_grammar_matcher *m, fitlm_grammar_state s, const char *p,
                                             size_t n) {
    for (size_t i = 0; i < n && s != FITLM_GRAMMAR_DEAD; i++) s = fitlm_grammar_step(m, s, (uint8_t)p[i]);
    return s;
}

bool fitlm_grammar_can_end(fitlm_grammar_matcher *m, fitlm_grammar_state s) {
    return s != FITLM_GRAMMAR_DEAD && !PART_OF(s) && m->sets[SET_OF(s)].accept;
}

bool fitlm_grammar_must_end(fitlm_grammar_matcher *m, fitlm_grammar_state s) {
    return fitlm_grammar_can_end(m, s) && m->sets[SET_OF(s)].n == 0;
}

uint64_t fitlm_grammar_memo_size(const fitlm_grammar_matcher *m) {
    return (uint64_t)m->n_nodes + m->n_tr + m->n_pool + m->n_sets;
}

fitlm_grammar_state fitlm_grammar_gc(fitlm_grammar_matcher *m, fitlm_grammar_state s) {
    if (s == FITLM_GRAMMAR_DEAD || fitlm_grammar_memo_size(m) < FITLM_GRAMMAR_MEMO_LIMIT) return s;
    /* the live stacks as position lists, top first */
    mset st = m->sets[SET_OF(s)];
    size_t total = 0;
    for (uint32_t i = 0; i < st.n; i++)
        for (int32_t id = (int32_t)m->pool[st.off + i]; id >= 0; id = m->nodes[id].next) total++;
    uint32_t *pos = malloc((total + 1) * sizeof *pos), *len = malloc(((size_t)st.n + 1) * sizeof *len);
    if (!pos || !len) {
        free(pos);
        free(len);
        return s; /* keep the old tables */
    }
    size_t k = 0;
    for (uint32_t i = 0; i < st.n; i++) {
        len[i] = 0;
        for (int32_t id = (int32_t)m->pool[st.off + i]; id >= 0; id = m->nodes[id].next, len[i]++) pos[k++] = m->nodes[id].pos;
    }
    bool acc = st.accept;
    uint32_t n = st.n, part = PART_OF(s);
    tables_free(m);
    m->oom = false;
    begin(m);
    k = 0;
    for (uint32_t i = 0; i < n; i++) {
        int32_t id = -1;
        for (uint32_t j = len[i]; j-- > 0;) id = node(m, pos[k + j], id);
        k += len[i];
        if (id >= 0) out_add(m, (uint32_t)id);
    }
    m->acc = acc;
    free(pos);
    free(len);
    fitlm_grammar_state r = finish(m);
    return r == FITLM_GRAMMAR_DEAD ? r : r | (fitlm_grammar_state)part << 30;
}

bool fitlm_grammar_matches(const fitlm_grammar *g, const char *s, size_t n) {
    fitlm_grammar_matcher *m = fitlm_grammar_matcher_new(g);
    if (!m) return false;
    fitlm_grammar_state st = fitlm_grammar_step_bytes(m, fitlm_grammar_start(m), s, n);
    bool ok = fitlm_grammar_can_end(m, st);
    fitlm_grammar_matcher_free(m);
    return ok;
}
