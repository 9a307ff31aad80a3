/* The compiled form of a grammar, shared by grammar.c (parser) and
 * matcher.c. Not part of the interface of src/grammar/. */
#ifndef FITLM_GRAMMAR_INTERNAL_H
#define FITLM_GRAMMAR_INTERNAL_H

#include "grammar/grammar.h"

enum { GE_END = 0, GE_CHAR = 1, GE_RULE = 2 };

/* One element of a flattened alternative: a character class, a rule
 * reference, or the end of the alternative. */
typedef struct gelem {
    uint32_t type : 2;
    uint32_t v : 30; /* GE_CHAR: class index; GE_RULE: rule index */
} gelem;

typedef struct gclass {
    uint64_t ascii[2];  /* code points 0..127 */
    uint32_t off, n;    /* ranges [lo, hi] (inclusive, sorted, disjoint) at ranges[2*off..] */
} gclass;

struct fitlm_grammar {
    gelem *el;          /* every alternative's elements, each followed by GE_END */
    uint32_t n_el;
    gclass *cls;
    uint32_t n_cls;
    uint32_t *ranges;   /* pairs */
    uint32_t n_ranges;
    uint32_t *alt_off;  /* rule r's alternatives: alts[alt_off[r] .. alt_off[r+1]) */
    uint32_t *alts;     /* element index where each alternative starts */
    uint32_t n_rules;
    uint32_t root;
};

static inline bool gclass_has(const fitlm_grammar *g, const gclass *c, uint32_t cp) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid]) hi = mid;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}

/* Some code point in [lo, hi] is in the class. */
static inline bool gclass_meets(const fitlm_grammar *g, const gclass *c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    for (uint32_t i = 0; i < c->n; i++)
        if (r[2 * i] <= hi && r[2 * i + 1] >= lo) return true;
    return false;
}

#endif
