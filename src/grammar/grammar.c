/* GBNF text -> the compiled grammar (grammar_internal.h): a recursive-descent
 * parser into rules of alternatives, repetitions lowered to right-recursive
 * helper rules, then checks (undefined rules, rules that never finish, left
 * recursion) and flattening. */
#include "grammar/grammar_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pel {
    uint8_t type; /* GE_CHAR or GE_RULE */
    uint32_t v;
} pel;

typedef struct pseq {
    pel *e;
    uint32_t n, cap;
} pseq;

typedef struct prule {
    char *name;      /* NULL for helper rules */
    pseq *alts;
    uint32_t n, cap;
    bool defined;
    uint32_t line;   /* first reference (for "undefined rule" errors) */
} prule;

typedef struct parser {
    const char *s, *end;
    const char *line_start;
    uint32_t line;
    prule *rules;
    uint32_t n_rules, cap_rules;
    gclass *cls;
    uint32_t n_cls, cap_cls;
    uint32_t *ranges;
    uint32_t n_ranges, cap_ranges;
    uint64_t n_elems; /* elements in all sequences (the size bound) */
    uint32_t *names;  /* open-addressing table of named rules (index + 1; 0 empty) */
    uint32_t names_cap, n_named;
    int depth;
    fitlm_error *err;
    bool failed;
} parser;

static int perr(parser *p, const char *fmt, const char *arg) {
    if (!p->failed) {
        char m[256];
        snprintf(m, sizeof m, fmt, arg ? arg : "");
        fitlm_fail(p->err, "grammar: line %u: %s", p->line, m);
    }
    p->failed = true;
    return -1;
}

static bool grow(void **ptr, uint32_t *cap, uint32_t need, size_t size) {
    if (need <= *cap) return true;
    uint32_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    void *q = realloc(*ptr, (size_t)nc * size);
    if (!q) return false;
    *ptr = q;
    *cap = nc;
    return true;
}

static int seq_add(parser *p, pseq *q, uint8_t type, uint32_t v) {
    if (++p->n_elems > FITLM_GRAMMAR_MAX_ELEMS) return perr(p, "the grammar is too large (more than %s elements)", "2^20");
    if (!grow((void **)&q->e, &q->cap, q->n + 1, sizeof *q->e)) return perr(p, "out of memory", NULL);
    q->e[q->n++] = (pel){type, v};
    return 0;
}

/* A new rule (helper when name is NULL); its index or -1. */
static int64_t new_rule(parser *p, const char *name, size_t nlen) {
    if (p->n_rules >= FITLM_GRAMMAR_MAX_RULES) return perr(p, "too many rules (more than %s)", "65536");
    if (!grow((void **)&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules)) return perr(p, "out of memory", NULL);
    prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    r->line = p->line;
    if (name) {
        r->name = malloc(nlen + 1);
        if (!r->name) return perr(p, "out of memory", NULL);
        memcpy(r->name, name, nlen);
        r->name[nlen] = 0;
    } else {
        r->defined = true;
    }
    return p->n_rules++;
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int names_put(parser *p, uint32_t r) {
    if (2 * (p->n_named + 1) > p->names_cap) {
        uint32_t nc = p->names_cap ? 2 * p->names_cap : 64;
        uint32_t *t = calloc(nc, sizeof *t);
        if (!t) return perr(p, "out of memory", NULL);
        for (uint32_t i = 0; i < p->names_cap; i++) {
            if (!p->names[i]) continue;
            const char *nm = p->rules[p->names[i] - 1].name;
            uint32_t h = name_hash(nm, strlen(nm)) & (nc - 1);
            while (t[h]) h = (h + 1) & (nc - 1);
            t[h] = p->names[i];
        }
        free(p->names);
        p->names = t;
        p->names_cap = nc;
    }
    const char *nm = p->rules[r].name;
    uint32_t h = name_hash(nm, strlen(nm)) & (p->names_cap - 1);
    while (p->names[h]) h = (h + 1) & (p->names_cap - 1);
    p->names[h] = r + 1;
    p->n_named++;
    return 0;
}

static int64_t rule_by_name(parser *p, const char *name, size_t nlen) {
    if (p->names_cap) {
        uint32_t h = name_hash(name, nlen) & (p->names_cap - 1);
        for (; p->names[h]; h = (h + 1) & (p->names_cap - 1)) {
            const char *nm = p->rules[p->names[h] - 1].name;
            if (strlen(nm) == nlen && !memcmp(nm, name, nlen)) return p->names[h] - 1;
        }
    }
    int64_t r = new_rule(p, name, nlen);
    if (r >= 0 && names_put(p, (uint32_t)r)) return -1;
    return r;
}

static pseq *rule_new_alt(parser *p, uint32_t r) {
    prule *ru = &p->rules[r];
    if (!grow((void **)&ru->alts, &ru->cap, ru->n + 1, sizeof *ru->alts)) {
        perr(p, "out of memory", NULL);
        return NULL;
    }
    memset(&ru->alts[ru->n], 0, sizeof ru->alts[ru->n]);
    return &ru->alts[ru->n++];
}

/* ---- lexing ---- */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Skips spaces, newlines and comments. */
static void skip_ws(parser *p) {
    while (p->s < p->end) {
        char c = *p->s;
        if (c == '#') {
            while (p->s < p->end && *p->s != '\n') p->s++;
        } else if (c == '\n') {
            p->line++;
            p->s++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            p->s++;
        } else {
            break;
        }
    }
}

/* At `name ::=` (a new rule begins). */
static bool at_rule_start(parser *p) {
    const char *q = p->s;
    if (q >= p->end || !is_name_char(*q)) return false;
    while (q < p->end && is_name_char(*q)) q++;
    while (q < p->end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
    return p->end - q >= 3 && !memcmp(q, "::=", 3);
}

/* One UTF-8 character of the grammar text; -1 if malformed. */
static int64_t utf8_next(parser *p) {
    const unsigned char *u = (const unsigned char *)p->s;
    size_t left = (size_t)(p->end - p->s);
    if (!left) return -1;
    uint32_t c = u[0];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || (size_t)n > left) return -1;
    if (n > 1) {
        c &= 0x3F >> (n - 1);
        for (int i = 1; i < n; i++) {
            if ((u[i] & 0xC0) != 0x80) return -1;
            c = c << 6 | (u[i] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    }
    p->s += n;
    return c;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A character inside a literal or class, escapes decoded; -1 on error. */
static int64_t read_char(parser *p) {
    if (p->s >= p->end) return perr(p, "unexpected end of the grammar%s", NULL);
    if (*p->s == '\n') return perr(p, "a literal or class does not end on its line%s", NULL);
    if (*p->s != '\\') {
        int64_t c = utf8_next(p);
        if (c < 0) return perr(p, "invalid UTF-8%s", NULL);
        return c;
    }
    p->s++;
    if (p->s >= p->end) return perr(p, "unexpected end after '\\'%s", NULL);
    char e = *p->s++;
    int digits = 0;
    switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': return (unsigned char)e;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: {
        char b[2] = {e, 0};
        return perr(p, "unknown escape '\\%s'", b);
    }
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        if (p->s >= p->end || hexval(*p->s) < 0) return perr(p, "bad hexadecimal escape%s", NULL);
        v = v << 4 | (uint32_t)hexval(*p->s++);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return perr(p, "escape outside Unicode scalar values%s", NULL);
    return v;
}

/* ---- character classes ---- */

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

/* A class from n pairs in tmp (may be unsorted/overlapping), negated if neg.
 * Returns its index or -1. */
static int64_t add_class(parser *p, uint32_t *tmp, uint32_t n, bool neg) {
    qsort(tmp, n, 2 * sizeof *tmp, cmp_range);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m && tmp[2 * i] <= tmp[2 * (m - 1) + 1] + 1) {
            if (tmp[2 * i + 1] > tmp[2 * (m - 1) + 1]) tmp[2 * (m - 1) + 1] = tmp[2 * i + 1];
        } else {
            tmp[2 * m] = tmp[2 * i];
            tmp[2 * m + 1] = tmp[2 * i + 1];
            m++;
        }
    }
    uint32_t need = p->n_ranges + m + 1;
    if (!grow((void **)&p->ranges, &p->cap_ranges, 2 * need, sizeof *p->ranges) ||
        !grow((void **)&p->cls, &p->cap_cls, p->n_cls + 1, sizeof *p->cls))
        return perr(p, "out of memory", NULL);
    gclass *c = &p->cls[p->n_cls];
    memset(c, 0, sizeof *c);
    c->off = p->n_ranges;
    uint32_t *out = p->ranges + 2 * (size_t)p->n_ranges;
    uint32_t k = 0;
    if (!neg) {
        memcpy(out, tmp, 2 * (size_t)m * sizeof *tmp);
        k = m;
    } else {
        uint32_t next = 0;
        for (uint32_t i = 0; i < m; i++) {
            if (tmp[2 * i] > next) {
                out[2 * k] = next;
                out[2 * k + 1] = tmp[2 * i] - 1;
                k++;
            }
            next = tmp[2 * i + 1] + 1;
        }
        if (next <= 0x10FFFF) {
            out[2 * k] = next;
            out[2 * k + 1] = 0x10FFFF;
            k++;
        }
    }
    c->n = k;
    p->n_ranges += k;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t cp = out[2 * i]; cp <= out[2 * i + 1] && cp < 128; cp++) c->ascii[cp >> 6] |= 1ull << (cp & 63);
    if (!k) return perr(p, "a character class matches nothing%s", NULL);
    return p->n_cls++;
}

static int64_t single_class(parser *p, uint32_t cp) {
    uint32_t t[2] = {cp, cp};
    return add_class(p, t, 1, false);
}

/* [...] after the '['. */
static int64_t parse_class(parser *p) {
    bool neg = false;
    if (p->s < p->end && *p->s == '^') {
        neg = true;
        p->s++;
    }
    uint32_t *tmp = NULL, n = 0, cap = 0;
    int64_t r = -1;
    for (;;) {
        if (p->s >= p->end) {
            perr(p, "unterminated character class%s", NULL);
            goto out;
        }
        if (*p->s == ']') {
            p->s++;
            break;
        }
        int64_t lo = read_char(p), hi;
        if (lo < 0) goto out;
        hi = lo;
        if (p->end - p->s >= 2 && p->s[0] == '-' && p->s[1] != ']') {
            p->s++;
            hi = read_char(p);
            if (hi < 0) goto out;
            if (hi < lo) {
                perr(p, "a character range goes backwards%s", NULL);
                goto out;
            }
        }
        if (!grow((void **)&tmp, &cap, 2 * (n + 1), sizeof *tmp)) {
            perr(p, "out of memory", NULL);
            goto out;
        }
        tmp[2 * n] = (uint32_t)lo;
        tmp[2 * n + 1] = (uint32_t)hi;
        n++;
    }
    if (!n && !neg) {
        perr(p, "an empty character class%s", NULL);
        goto out;
    }
    r = add_class(p, tmp, n, neg);
out:
    free(tmp);
    return r;
}

/* ---- rules ---- */

static int parse_alternatives(parser *p, uint32_t rule, bool nested);

/* A helper rule whose single alternative is q[from..to). */
static int64_t wrap(parser *p, const pseq *q, uint32_t from, uint32_t to) {
    if (to - from == 1 && q->e[from].type == GE_RULE) return q->e[from].v;
    int64_t r = new_rule(p, NULL, 0);
    if (r < 0) return -1;
    pseq *a = rule_new_alt(p, (uint32_t)r);
    if (!a) return -1;
    for (uint32_t i = from; i < to; i++)
        if (seq_add(p, a, q->e[i].type, q->e[i].v)) return -1;
    return r;
}

/* x* as a rule: R ::= x R | "" */
static int64_t star_rule(parser *p, uint32_t x) {
    int64_t r = new_rule(p, NULL, 0);
    if (r < 0) return -1;
    pseq *a = rule_new_alt(p, (uint32_t)r);
    if (!a || seq_add(p, a, GE_RULE, x) || seq_add(p, a, GE_RULE, (uint32_t)r)) return -1;
    if (!rule_new_alt(p, (uint32_t)r)) return -1;
    return r;
}

/* Up to k more x: R ::= x R' | "" (nested, right-recursive chain). */
static int64_t upto_rule(parser *p, uint32_t x, uint32_t k) {
    int64_t inner = -1;
    for (uint32_t i = 0; i < k; i++) {
        int64_t r = new_rule(p, NULL, 0);
        if (r < 0) return -1;
        pseq *a = rule_new_alt(p, (uint32_t)r);
        if (!a || seq_add(p, a, GE_RULE, x)) return -1;
        if (inner >= 0 && seq_add(p, &p->rules[r].alts[0], GE_RULE, (uint32_t)inner)) return -1;
        if (!rule_new_alt(p, (uint32_t)r)) return -1;
        inner = r;
    }
    return inner;
}

static int parse_uint(parser *p, uint32_t *out) {
    if (p->s >= p->end || *p->s < '0' || *p->s > '9') return perr(p, "expected a number in {m,n}%s", NULL);
    uint64_t v = 0;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        v = v * 10 + (uint64_t)(*p->s++ - '0');
        if (v > FITLM_GRAMMAR_MAX_REPEAT) return perr(p, "a repetition count is above %s", "1000");
    }
    *out = (uint32_t)v;
    return 0;
}

/* Applies a postfix operator to the atom q[from..q->n). */
static int postfix(parser *p, uint32_t rule, uint32_t alt, uint32_t from) {
    char op = *p->s++;
    uint32_t lo = 0, hi = UINT32_MAX; /* UINT32_MAX: unbounded */
    if (op == '*') lo = 0;
    else if (op == '+') lo = 1;
    else if (op == '?') hi = 1;
    else { /* '{' */
        skip_ws(p);
        if (parse_uint(p, &lo)) return -1;
        skip_ws(p);
        if (p->s < p->end && *p->s == '}') {
            hi = lo;
        } else if (p->s < p->end && *p->s == ',') {
            p->s++;
            skip_ws(p);
            if (p->s < p->end && *p->s != '}') {
                if (parse_uint(p, &hi)) return -1;
                if (hi < lo) return perr(p, "{m,n} with n < m%s", NULL);
            }
            skip_ws(p);
        }
        if (p->s >= p->end || *p->s != '}') return perr(p, "expected '}' after {m,n}%s", NULL);
        p->s++;
    }
    pseq *q = &p->rules[rule].alts[alt];
    int64_t x = wrap(p, q, from, q->n);
    if (x < 0) return -1;
    q = &p->rules[rule].alts[alt]; /* the rule array may have moved */
    q->n = from;
    for (uint32_t i = 0; i < lo; i++) {
        if (seq_add(p, q, GE_RULE, (uint32_t)x)) return -1;
        q = &p->rules[rule].alts[alt];
    }
    int64_t tail = -1;
    if (hi == UINT32_MAX) tail = star_rule(p, (uint32_t)x);
    else if (hi > lo) tail = upto_rule(p, (uint32_t)x, hi - lo);
    else return 0;
    if (tail < 0) return -1;
    return seq_add(p, &p->rules[rule].alts[alt], GE_RULE, (uint32_t)tail);
}

/* One alternative of `rule`, up to '|', ')' (nested) or the next rule. */
static int parse_sequence(parser *p, uint32_t rule, bool nested) {
    if (!rule_new_alt(p, rule)) return -1;
    uint32_t alt = p->rules[rule].n - 1;
    for (;;) {
        skip_ws(p);
        if (p->s >= p->end || *p->s == '|' || *p->s == ')') return 0;
        if (!nested && at_rule_start(p)) return 0;
        uint32_t from = p->rules[rule].alts[alt].n;
        char c = *p->s;
        if (c == '"') {
            p->s++;
            for (;;) {
                if (p->s >= p->end) return perr(p, "unterminated literal%s", NULL);
                if (*p->s == '"') {
                    p->s++;
                    break;
                }
                int64_t cp = read_char(p);
                if (cp < 0) return -1;
                int64_t k = single_class(p, (uint32_t)cp);
                if (k < 0 || seq_add(p, &p->rules[rule].alts[alt], GE_CHAR, (uint32_t)k)) return -1;
            }
            if (p->rules[rule].alts[alt].n == from) continue; /* "" matches the empty text */
        } else if (c == '[') {
            p->s++;
            int64_t k = parse_class(p);
            if (k < 0 || seq_add(p, &p->rules[rule].alts[alt], GE_CHAR, (uint32_t)k)) return -1;
        } else if (c == '.') {
            p->s++;
            uint32_t t[2] = {0, 0x10FFFF};
            int64_t k = add_class(p, t, 1, false);
            if (k < 0 || seq_add(p, &p->rules[rule].alts[alt], GE_CHAR, (uint32_t)k)) return -1;
        } else if (c == '(') {
            p->s++;
            if (++p->depth > FITLM_GRAMMAR_MAX_NEST) return perr(p, "groups nest deeper than %s", "64");
            int64_t r = new_rule(p, NULL, 0);
            if (r < 0 || parse_alternatives(p, (uint32_t)r, true)) return -1;
            if (p->s >= p->end || *p->s != ')') return perr(p, "expected ')'%s", NULL);
            p->s++;
            p->depth--;
            if (seq_add(p, &p->rules[rule].alts[alt], GE_RULE, (uint32_t)r)) return -1;
        } else if (is_name_char(c)) {
            const char *n0 = p->s;
            while (p->s < p->end && is_name_char(*p->s)) p->s++;
            int64_t r = rule_by_name(p, n0, (size_t)(p->s - n0));
            if (r < 0 || seq_add(p, &p->rules[rule].alts[alt], GE_RULE, (uint32_t)r)) return -1;
        } else {
            char b[8] = {c, 0};
            return perr(p, "unexpected '%s'", b);
        }
        while (p->s < p->end && (*p->s == '*' || *p->s == '+' || *p->s == '?' || *p->s == '{'))
            if (postfix(p, rule, alt, from)) return -1;
    }
}

static int parse_alternatives(parser *p, uint32_t rule, bool nested) {
    for (;;) {
        if (parse_sequence(p, rule, nested)) return -1;
        if (p->s < p->end && *p->s == '|') {
            p->s++;
            continue;
        }
        return 0;
    }
}

/* ---- checks ---- */

static const char *rule_label(const parser *p, uint32_t r) { return p->rules[r].name ? p->rules[r].name : "(group)"; }

/* Left recursion: DFS over "r can start with s" edges. color: 0 new, 1 open, 2 done. */
static int left_rec(parser *p, const bool *nullable, uint8_t *color, uint32_t r, uint32_t depth) {
    if (depth > FITLM_GRAMMAR_MAX_RULES) return perr(p, "the grammar nests too deeply%s", NULL);
    color[r] = 1;
    for (uint32_t a = 0; a < p->rules[r].n; a++) {
        const pseq *q = &p->rules[r].alts[a];
        for (uint32_t i = 0; i < q->n; i++) {
            if (q->e[i].type == GE_CHAR) break;
            uint32_t s = q->e[i].v;
            if (color[s] == 1) return perr(p, "left recursion through rule '%s'", rule_label(p, s));
            if (color[s] == 0 && left_rec(p, nullable, color, s, depth + 1)) return -1;
            if (!nullable[s]) break;
        }
    }
    color[r] = 2;
    return 0;
}

static int check(parser *p) {
    uint32_t n = p->n_rules;
    for (uint32_t r = 0; r < n; r++)
        if (!p->rules[r].defined) {
            p->line = p->rules[r].line;
            return perr(p, "undefined rule '%s'", p->rules[r].name);
        }
    bool *nullable = calloc(n, 1), *productive = calloc(n, 1);
    uint8_t *color = calloc(n, 1);
    int rc = -1;
    if (!nullable || !productive || !color) {
        perr(p, "out of memory", NULL);
        goto out;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            for (uint32_t a = 0; a < p->rules[r].n; a++) {
                const pseq *q = &p->rules[r].alts[a];
                bool nul = true, prod = true;
                for (uint32_t i = 0; i < q->n; i++) {
                    if (q->e[i].type == GE_CHAR) {
                        nul = false;
                    } else {
                        nul = nul && nullable[q->e[i].v];
                        prod = prod && productive[q->e[i].v];
                    }
                }
                if (nul && !nullable[r]) nullable[r] = changed = true;
                if (prod && !productive[r]) productive[r] = changed = true;
            }
        }
    }
    for (uint32_t r = 0; r < n; r++)
        if (!productive[r]) {
            p->line = p->rules[r].line;
            perr(p, "rule '%s' can never finish", rule_label(p, r));
            goto out;
        }
    for (uint32_t r = 0; r < n; r++)
        if (!color[r] && left_rec(p, nullable, color, r, 0)) goto out;
    rc = 0;
out:
    free(nullable);
    free(productive);
    free(color);
    return rc;
}

static void parser_free(parser *p) {
    for (uint32_t r = 0; r < p->n_rules; r++) {
        for (uint32_t a = 0; a < p->rules[r].n; a++) free(p->rules[r].alts[a].e);
        free(p->rules[r].alts);
        free(p->rules[r].name);
    }
    free(p->rules);
    free(p->names);
    free(p->cls);
    free(p->ranges);
}

fitlm_grammar *fitlm_grammar_parse(const char *text, size_t len, fitlm_error *err) {
    if (len > FITLM_GRAMMAR_MAX_TEXT) {
        fitlm_fail(err, "grammar: the text is larger than %u bytes", FITLM_GRAMMAR_MAX_TEXT);
        return NULL;
    }
    parser p = {.s = text, .end = text + len, .line = 1, .err = err};
    fitlm_grammar *g = NULL;
    for (;;) {
        skip_ws(&p);
        if (p.s >= p.end) break;
        if (!at_rule_start(&p)) {
            perr(&p, "expected 'name ::=' at the start of a rule%s", NULL);
            goto fail;
        }
        const char *n0 = p.s;
        while (is_name_char(*p.s)) p.s++;
        int64_t r = rule_by_name(&p, n0, (size_t)(p.s - n0));
        if (r < 0) goto fail;
        if (p.rules[r].defined) {
            perr(&p, "rule '%s' is defined twice", p.rules[r].name);
            goto fail;
        }
        p.rules[r].defined = true;
        skip_ws(&p);
        p.s += 3; /* ::= */
        if (parse_alternatives(&p, (uint32_t)r, false)) goto fail;
        if (p.s < p.end && *p.s == ')') {
            perr(&p, "unexpected ')'%s", NULL);
            goto fail;
        }
    }
    int64_t root = -1;
    for (uint32_t r = 0; r < p.n_rules; r++)
        if (p.rules[r].name && !strcmp(p.rules[r].name, "root")) root = r;
    if (root < 0 || !p.rules[root].defined) {
        fitlm_fail(err, "grammar: no rule 'root'");
        goto fail_quiet;
    }
    if (check(&p)) goto fail;

    g = calloc(1, sizeof *g);
    if (!g) goto oom;
    uint64_t n_alts = 0;
    for (uint32_t r = 0; r < p.n_rules; r++) n_alts += p.rules[r].n;
    g->n_el = (uint32_t)(p.n_elems + n_alts);
    g->el = malloc(((size_t)g->n_el + 1) * sizeof *g->el);
    g->alt_off = malloc(((size_t)p.n_rules + 1) * sizeof *g->alt_off);
    g->alts = malloc(((size_t)n_alts + 1) * sizeof *g->alts);
    if (!g->el || !g->alt_off || !g->alts) goto oom;
    uint32_t k = 0, na = 0;
    for (uint32_t r = 0; r < p.n_rules; r++) {
        g->alt_off[r] = na;
        for (uint32_t a = 0; a < p.rules[r].n; a++) {
            g->alts[na++] = k;
            const pseq *q = &p.rules[r].alts[a];
            for (uint32_t i = 0; i < q->n; i++) g->el[k++] = (gelem){.type = q->e[i].type, .v = q->e[i].v};
            g->el[k++] = (gelem){.type = GE_END, .v = 0};
        }
    }
    g->alt_off[p.n_rules] = na;
    g->n_el = k;
    g->n_rules = p.n_rules;
    g->root = (uint32_t)root;
    g->cls = p.cls;
    g->n_cls = p.n_cls;
    g->ranges = p.ranges;
    g->n_ranges = p.n_ranges;
    p.cls = NULL;
    p.ranges = NULL;
    parser_free(&p);
    return g;
oom:
    fitlm_fail(err, "grammar: out of memory");
    fitlm_grammar_free(g);
    g = NULL;
    goto fail_quiet;
fail:
fail_quiet:
    parser_free(&p);
    return NULL;
}

void fitlm_grammar_free(fitlm_grammar *g) {
    if (!g) return;
    free(g->el);
    free(g->cls);
    free(g->ranges);
    free(g->alt_off);
    free(g->alts);
    free(g);
}

uint32_t fitlm_grammar_n_rules(const fitlm_grammar *g) { return g->n_rules; }
uint32_t fitlm_grammar_n_elems(const fitlm_grammar *g) { return g->n_el; }
