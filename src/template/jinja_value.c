/* Values of the Jinja interpreter with Python's semantics: memory (arena),
 * str()/repr(), ==/<, truthiness, json.dumps and json.loads. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_internal.h"

/* ---------------- arena ---------------- */
struct jarena_chunk {
    jarena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define JARENA_CHUNK 65536

void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JARENA_CHUNK / 2 ? n : JARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof *c) return NULL;
        if (a->limit && (a->used + cap + sizeof *c > a->limit)) return NULL;
        jarena_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->used = 0;
        nc->cap = cap;
        a->used += cap + sizeof *nc;
        if (c && cap != JARENA_CHUNK) {
            /* a big block: keep the current chunk in front for the small ones */
            nc->next = c->next;
            c->next = nc;
            nc->used = n;
            return nc->data;
        }
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void jarena_free_all(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}

int jr_fail(jr *r, const char *fmt, ...) {
    if (r->failed) return -1;
    r->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->line > 0) fitlm_fail(&r->err, "line %d: %s", r->line, msg);
    else fitlm_fail(&r->err, "%s", msg);
    return -1;
}

static void *jr_alloc(jr *r, size_t n) {
    void *p = jarena_alloc(&r->arena, n);
    if (!p) jr_fail(r, "the template needs more than %zu bytes of memory", r->lim.max_memory);
    return p;
}

/* ---------------- strings, lists, dicts ---------------- */
jstr *jstr_new(jr *r, const char *s, size_t len) {
    if (len > r->lim.max_output) {
        jr_fail(r, "a string of %zu bytes is over the limit of %zu", len, r->lim.max_output);
        return NULL;
    }
    jstr *j = jr_alloc(r, sizeof *j + len + 1);
    if (!j) return NULL;
    j->len = len;
    if (len && s) memcpy(j->s, s, len);
    j->s[len] = 0;
    return j;
}

jstr *jstr_cat(jr *r, const char *a, size_t alen, const char *b, size_t blen) {
    if (alen > r->lim.max_output || blen > r->lim.max_output - alen) {
        jr_fail(r, "a string of more than %zu bytes is over the limit", r->lim.max_output);
        return NULL;
    }
    jstr *j = jr_alloc(r, sizeof *j + alen + blen + 1);
    if (!j) return NULL;
    j->len = alen + blen;
    if (alen) memcpy(j->s, a, alen);
    if (blen) memcpy(j->s + alen, b, blen);
    j->s[j->len] = 0;
    return j;
}

int jv_str(jr *r, const char *s, size_t len, jval *out) {
    jstr *j = jstr_new(r, s, len);
    if (!j) return -1;
    *out = jv_strv(j);
    return 0;
}

jlist *jlist_new(jr *r, size_t cap) {
    if (cap > r->lim.max_memory / sizeof(jval)) {
        jr_fail(r, "a list of %zu items is over the memory limit", cap);
        return NULL;
    }
    jlist *l = jr_alloc(r, sizeof *l);
    if (!l) return NULL;
    l->n = 0;
    l->cap = cap;
    l->tuple = false;
    l->v = NULL;
    if (cap && !(l->v = jr_alloc(r, cap * sizeof(jval)))) return NULL;
    return l;
}

int jlist_push(jr *r, jlist *l, jval v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if (cap > r->lim.max_memory / sizeof(jval)) return jr_fail(r, "a list is over the memory limit");
        jval *nv = jr_alloc(r, cap * sizeof(jval));
        if (!nv) return -1;
        if (l->n) memcpy(nv, l->v, l->n * sizeof(jval));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

jdict *jdict_new(jr *r, size_t cap) {
    if (cap > r->lim.max_memory / (2 * sizeof(jval))) {
        jr_fail(r, "a dict of %zu items is over the memory limit", cap);
        return NULL;
    }
    jdict *d = jr_alloc(r, sizeof *d);
    if (!d) return NULL;
    d->n = 0;
    d->cap = cap;
    d->k = d->v = NULL;
    if (cap && (!(d->k = jr_alloc(r, cap * sizeof(jval))) || !(d->v = jr_alloc(r, cap * sizeof(jval))))) return NULL;
    return d;
}

/* Dict keys compare as Python's hash + ==: 1 == 1.0 == True. */
static bool key_eq(jval a, jval b) {
    if (a.t == JV_STR && b.t == JV_STR) return a.s->len == b.s->len && !memcmp(a.s->s, b.s->s, a.s->len);
    return jv_eq(a, b);
}

jval *jdict_get(const jdict *d, jval k) {
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(d->k[i], k)) return &d->v[i];
    return NULL;
}

jval *jdict_get_str(const jdict *d, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].s->len == kl && !memcmp(d->k[i].s->s, key, kl)) return &d->v[i];
    return NULL;
}

int jdict_set(jr *r, jdict *d, jval k, jval v) {
    jval *old = jdict_get(d, k);
    if (old) {
        *old = v;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        if (cap > r->lim.max_memory / (2 * sizeof(jval))) return jr_fail(r, "a dict is over the memory limit");
        jval *nk = jr_alloc(r, cap * sizeof(jval)), *nv = nk ? jr_alloc(r, cap * sizeof(jval)) : NULL;
        if (!nv) return -1;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jval));
            memcpy(nv, d->v, d->n * sizeof(jval));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    return 0;
}

/* ---------------- buffers ---------------- */
int jbuf_put(jr *r, jbuf *b, const char *s, size_t n) {
    if (n > r->lim.max_output || b->n > r->lim.max_output - n)
        return jr_fail(r, "the output is over the limit of %zu bytes", r->lim.max_output);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = jr_alloc(r, cap);
        if (!np) return -1;
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int jbuf_putc(jr *r, jbuf *b, char c) { return jbuf_put(r, b, &c, 1); }

jstr *jbuf_to_str(jr *r, const jbuf *b) { return jstr_new(r, b->p, b->n); }

/* ---------------- UTF-8 ---------------- */
uint32_t ju_decode(const char *s, size_t n, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *adv = 1;
        return u[0];
    }
    if ((u[0] & 0xE0) == 0xC0) {
        *adv = 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *adv = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    if (n >= 4) {
        *adv = 4;
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
               (u[3] & 0x3F);
    }
    *adv = 1;
    return u[0];
}

size_t ju_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool ju_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t k;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) k = 1, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 3, min = 0x10000;
        else return false;
        if (n - i < k + 1) return false;
        uint32_t cp = c & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((u[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}

size_t ju_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
    return c;
}

size_t ju_offset(const char *s, size_t n, size_t cp_index) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp_index) return i;
            c++;
        }
    }
    return n;
}

/* Python's str.isspace(). */
bool ju_isspace(uint32_t cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---------------- truthiness, equality, order ---------------- */
bool jv_truthy(jval v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s->len != 0;
    case JV_LIST: return v.l->n != 0;
    case JV_DICT: return v.d->n != 0;
    default: return true;
    }
}

static bool is_num(jval v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num_f(jval v) { return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : (double)v.b; }
static int64_t num_i(jval v) { return v.t == JV_INT ? v.i : (int64_t)v.b; }

bool jv_eq(jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.s->len == b.s->len && !memcmp(a.s->s, b.s->s, a.s->len);
    case JV_LIST:
        if (a.l->n != b.l->n || a.l->tuple != b.l->tuple) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jv_eq(a.l->v[i], b.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            jval *o = jdict_get(b.d, a.d->k[i]);
            if (!o || !jv_eq(a.d->v[i], *o)) return false;
        }
        return true;
    case JV_NS: return a.d == b.d;
    case JV_MACRO: return a.m == b.m;
    case JV_LOOP: return a.loop == b.loop;
    case JV_FUNC: return a.fn == b.fn && a.self == b.self;
    default: return false;
    }
}

const char *jv_type_name(jval v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_LOOP: return "LoopContext";
    default: return "builtin_function_or_method";
    }
}

int jv_order(jr *r, jval a, jval b, int *cmp) {
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
            double x = num_f(a), y = num_f(b);
            *cmp = x < y ? -1 : x > y ? 1 : 0;
        } else {
            int64_t x = num_i(a), y = num_i(b);
            *cmp = x < y ? -1 : x > y ? 1 : 0;
        }
        return 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.s->len < b.s->len ? a.s->len : b.s->len;
        int c = memcmp(a.s->s, b.s->s, n); /* UTF-8 byte order = code point order */
        *cmp = c ? (c < 0 ? -1 : 1) : a.s->len < b.s->len ? -1 : a.s->len > b.s->len ? 1 : 0;
        return 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) {
        size_t n = a.l->n < b.l->n ? a.l->n : b.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_eq(a.l->v[i], b.l->v[i])) continue;
            return jv_order(r, a.l->v[i], b.l->v[i], cmp);
        }
        *cmp = a.l->n < b.l->n ? -1 : a.l->n > b.l->n ? 1 : 0;
        return 0;
    }
    return jr_fail(r, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

/* ---------------- str() and repr() ---------------- */
void jv_format_float(double f, char out[40]) {
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        strcpy(out, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* the shortest digits that read back as f */
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]D[.DDD]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') neg = true, p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *o = out;
    if (neg) *o++ = '-';
    if (exp < -4 || exp >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -exp - 1; i++) *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else {
        for (int i = 0; i <= exp; i++) *o++ = (size_t)i < nd ? digits[i] : '0';
        *o++ = '.';
        if ((size_t)exp + 1 < nd) {
            memcpy(o, digits + exp + 1, nd - exp - 1);
            o += nd - exp - 1;
        } else {
            *o++ = '0';
        }
    }
    *o = 0;
}

/* Python's str.isprintable() for one code point (approximately: control
 * characters, separators other than space, and a few format characters). */
static bool printable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) return false;
    if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F))
        return false;
    if (cp == 0x3000 || cp == 0xFEFF || cp == 0x1680 || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (cp >= 0xE000 && cp <= 0xF8FF) return false; /* private use */
    return true;
}

static int write_str_repr(jr *r, jbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    if (jbuf_putc(r, b, q)) return -1;
    size_t i = 0;
    while (i < n) {
        size_t adv;
        uint32_t cp = ju_decode(s + i, n - i, &adv);
        char esc[16];
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            if (jbuf_put(r, b, esc, 2)) return -1;
        } else if (cp == '\n') {
            if (jbuf_put(r, b, "\\n", 2)) return -1;
        } else if (cp == '\r') {
            if (jbuf_put(r, b, "\\r", 2)) return -1;
        } else if (cp == '\t') {
            if (jbuf_put(r, b, "\\t", 2)) return -1;
        } else if (!printable(cp)) {
            int k = cp < 0x100 ? snprintf(esc, sizeof esc, "\\x%02x", cp)
                    : cp < 0x10000 ? snprintf(esc, sizeof esc, "\\u%04x", cp)
                                   : snprintf(esc, sizeof esc, "\\U%08x", cp);
            if (jbuf_put(r, b, esc, (size_t)k)) return -1;
        } else if (jbuf_put(r, b, s + i, adv)) {
            return -1;
        }
        i += adv;
    }
    return jbuf_putc(r, b, q);
}

static int write_scalar(jr *r, jbuf *b, jval v, bool repr) {
    char tmp[48];
    switch (v.t) {
    case JV_UNDEF: return repr ? jbuf_put(r, b, "Undefined", 9) : 0;
    case JV_NONE: return jbuf_put(r, b, "None", 4);
    case JV_BOOL: return v.b ? jbuf_put(r, b, "True", 4) : jbuf_put(r, b, "False", 5);
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.i); return jbuf_put(r, b, tmp, strlen(tmp));
    case JV_FLOAT: jv_format_float(v.f, tmp); return jbuf_put(r, b, tmp, strlen(tmp));
    case JV_STR: return repr ? write_str_repr(r, b, v.s->s, v.s->len) : jbuf_put(r, b, v.s->s, v.s->len);
    case JV_NS: return jbuf_put(r, b, "<Namespace>", 11);
    case JV_MACRO: return jbuf_put(r, b, "<Macro>", 7);
    case JV_LOOP: return jbuf_put(r, b, "<LoopContext>", 13);
    case JV_FUNC: return jbuf_put(r, b, "<built-in function>", 20);
    default: return 0;
    }
}

static int write_repr_depth(jr *r, jbuf *b, jval v, int depth) {
    if (depth > 200) return jr_fail(r, "a value nests too deeply to print");
    if (v.t == JV_LIST) {
        if (jbuf_putc(r, b, v.l->tuple ? '(' : '[')) return -1;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && jbuf_put(r, b, ", ", 2)) return -1;
            if (write_repr_depth(r, b, v.l->v[i], depth + 1)) return -1;
        }
        if (v.l->tuple && v.l->n == 1 && jbuf_putc(r, b, ',')) return -1;
        return jbuf_putc(r, b, v.l->tuple ? ')' : ']');
    }
    if (v.t == JV_DICT) {
        if (jbuf_putc(r, b, '{')) return -1;
        for (size_t i = 0; i < v.d->n; i++) {
            if (i && jbuf_put(r, b, ", ", 2)) return -1;
            if (write_repr_depth(r, b, v.d->k[i], depth + 1) || jbuf_put(r, b, ": ", 2) ||
                write_repr_depth(r, b, v.d->v[i], depth + 1))
                return -1;
        }
        return jbuf_putc(r, b, '}');
    }
    return write_scalar(r, b, v, true);
}

int jv_write_repr(jr *r, jbuf *b, jval v) { return write_repr_depth(r, b, v, 0); }

int jv_write_str(jr *r, jbuf *b, jval v) {
    if (v.t == JV_LIST || v.t == JV_DICT) return write_repr_depth(r, b, v, 0);
    return write_scalar(r, b, v, false);
}

int jv_to_str(jr *r, jval v, jstr **out) {
    if (v.t == JV_STR) {
        *out = v.s;
        return 0;
    }
    jbuf b = {0};
    if (jv_write_str(r, &b, v)) return -1;
    return (*out = jbuf_to_str(r, &b)) ? 0 : -1;
}

/* ---------------- json.dumps ---------------- */
static int json_string(jr *r, jbuf *b, const char *s, size_t n) {
    if (jbuf_putc(r, b, '"')) return -1;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (jbuf_put(r, b, s + start, i - start)) return -1;
        char esc[8];
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); e = esc;
        }
        if (jbuf_put(r, b, e, strlen(e))) return -1;
        start = i + 1;
    }
    if (jbuf_put(r, b, s + start, n - start)) return -1;
    return jbuf_putc(r, b, '"');
}

static int json_newline(jr *r, jbuf *b, const char *indent, int level) {
    if (jbuf_putc(r, b, '\n')) return -1;
    for (int i = 0; i < level; i++)
        if (jbuf_put(r, b, indent, strlen(indent))) return -1;
    return 0;
}

/* A dict key as json.dumps converts it. */
static int json_key(jr *r, jval k, jstr **out) {
    char tmp[48];
    switch (k.t) {
    case JV_STR: *out = k.s; return 0;
    case JV_NONE: *out = jstr_new(r, "null", 4); break;
    case JV_BOOL: *out = k.b ? jstr_new(r, "true", 4) : jstr_new(r, "false", 5); break;
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)k.i); *out = jstr_new(r, tmp, strlen(tmp)); break;
    case JV_FLOAT: jv_format_float(k.f, tmp); *out = jstr_new(r, tmp, strlen(tmp)); break;
    default: return jr_fail(r, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
    return *out ? 0 : -1;
}

int jv_write_json(jr *r, jbuf *b, jval v, const char *indent, const char *item_sep, const char *key_sep,
                  bool sort_keys, int level) {
    if (level > 200) return jr_fail(r, "a value nests too deeply for tojson");
    if (!item_sep) item_sep = indent ? "," : ", ";
    if (!key_sep) key_sep = ": ";
    char tmp[48];
    switch (v.t) {
    case JV_NONE: return jbuf_put(r, b, "null", 4);
    case JV_BOOL: return v.b ? jbuf_put(r, b, "true", 4) : jbuf_put(r, b, "false", 5);
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.i); return jbuf_put(r, b, tmp, strlen(tmp));
    case JV_FLOAT:
        if (isnan(v.f)) return jbuf_put(r, b, "NaN", 3);
        if (isinf(v.f)) return v.f > 0 ? jbuf_put(r, b, "Infinity", 8) : jbuf_put(r, b, "-Infinity", 9);
        jv_format_float(v.f, tmp);
        return jbuf_put(r, b, tmp, strlen(tmp));
    case JV_STR: return json_string(r, b, v.s->s, v.s->len);
    case JV_LIST:
        if (v.l->n == 0) return jbuf_put(r, b, "[]", 2);
        if (jbuf_putc(r, b, '[')) return -1;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && jbuf_put(r, b, item_sep, strlen(item_sep))) return -1;
            if (indent && json_newline(r, b, indent, level + 1)) return -1;
            if (jv_write_json(r, b, v.l->v[i], indent, item_sep, key_sep, sort_keys, level + 1)) return -1;
        }
        if (indent && json_newline(r, b, indent, level)) return -1;
        return jbuf_putc(r, b, ']');
    case JV_DICT:
    case JV_NS: {
        jdict *d = v.d;
        if (d->n == 0) return jbuf_put(r, b, "{}", 2);
        size_t *order = jarena_alloc(&r->arena, d->n * sizeof *order);
        jstr **keys = order ? jarena_alloc(&r->arena, d->n * sizeof *keys) : NULL;
        if (!keys) return jr_fail(r, "out of template memory");
        for (size_t i = 0; i < d->n; i++) {
            order[i] = i;
            if (json_key(r, d->k[i], &keys[i])) return -1;
        }
        if (sort_keys) { /* insertion sort by key (stable) */
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0) {
                    jstr *a = keys[order[j - 1]], *c = keys[x];
                    size_t m = a->len < c->len ? a->len : c->len;
                    int cmp = memcmp(a->s, c->s, m);
                    if (cmp < 0 || (cmp == 0 && a->len <= c->len)) break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        if (jbuf_putc(r, b, '{')) return -1;
        for (size_t i = 0; i < d->n; i++) {
            if (i && jbuf_put(r, b, item_sep, strlen(item_sep))) return -1;
            if (indent && json_newline(r, b, indent, level + 1)) return -1;
            if (json_string(r, b, keys[order[i]]->s, keys[order[i]]->len) ||
                jbuf_put(r, b, key_sep, strlen(key_sep)) ||
                jv_write_json(r, b, d->v[order[i]], indent, item_sep, key_sep, sort_keys, level + 1))
                return -1;
        }
        if (indent && json_newline(r, b, indent, level)) return -1;
        return jbuf_putc(r, b, '}');
    }
    default: return jr_fail(r, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

/* ---------------- json.loads ---------------- */
typedef struct jp {
    jr *r;
    const char *s;
    size_t n, i;
    int depth;
} jp;

static int jp_fail(jp *p, const char *what) {
    p->r->line = 0;
    return jr_fail(p->r, "invalid JSON at offset %zu: %s", p->i, what);
}

static void jp_ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jp_hex4(jp *p, uint32_t *out) {
    if (p->n - p->i < 4) return jp_fail(p, "short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return jp_fail(p, "bad \\u escape");
    }
    *out = v;
    return 0;
}

static int jp_string(jp *p, jstr **out) {
    p->i++; /* opening quote */
    jbuf b = {0};
    size_t start = p->i;
    for (;;) {
        if (p->i >= p->n) return jp_fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') break;
        if (c < 0x20) return jp_fail(p, "control character in a string");
        if (c != '\\') {
            p->i++;
            continue;
        }
        if (jbuf_put(p->r, &b, p->s + start, p->i - start)) return -1;
        p->i++;
        if (p->i >= p->n) return jp_fail(p, "unterminated string");
        char e = p->s[p->i++], ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (jp_hex4(p, &cp)) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return jp_fail(p, "lone surrogate in \\u escape");
                p->i += 2;
                if (jp_hex4(p, &lo)) return -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return jp_fail(p, "lone surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return jp_fail(p, "lone surrogate in \\u escape");
            }
            char u8[4];
            size_t k = ju_encode(cp, u8);
            if (jbuf_put(p->r, &b, u8, k)) return -1;
            start = p->i;
            continue;
        }
        default: return jp_fail(p, "bad escape");
        }
        if (jbuf_putc(p->r, &b, ch)) return -1;
        start = p->i;
    }
    if (jbuf_put(p->r, &b, p->s + start, p->i - start)) return -1;
    p->i++;
    if (!ju_valid(b.p ? b.p : "", b.n)) return jp_fail(p, "a string is not valid UTF-8");
    *out = jbuf_to_str(p->r, &b);
    return *out ? 0 : -1;
}

static bool jp_lit(jp *p, const char *w) {
    size_t l = strlen(w);
    if (p->n - p->i >= l && !memcmp(p->s + p->i, w, l)) {
        p->i += l;
        return true;
    }
    return false;
}

static int jp_value(jp *p, jval *out) {
    jp_ws(p);
    if (p->i >= p->n) return jp_fail(p, "unexpected end");
    if (++p->depth > 256) return jp_fail(p, "nested too deeply");
    char c = p->s[p->i];
    int rc = 0;
    if (c == '{') {
        p->i++;
        jdict *d = jdict_new(p->r, 0);
        if (!d) return -1;
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
        } else {
            for (;;) {
                jp_ws(p);
                if (p->i >= p->n || p->s[p->i] != '"') return jp_fail(p, "expected a string key");
                jstr *k;
                if (jp_string(p, &k)) return -1;
                jp_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') return jp_fail(p, "expected ':'");
                p->i++;
                jval v;
                if (jp_value(p, &v) || jdict_set(p->r, d, jv_strv(k), v)) return -1;
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == '}') {
                    p->i++;
                    break;
                }
                return jp_fail(p, "expected ',' or '}'");
            }
        }
        *out = jv_dictv(d);
    } else if (c == '[') {
        p->i++;
        jlist *l = jlist_new(p->r, 0);
        if (!l) return -1;
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') {
            p->i++;
        } else {
            for (;;) {
                jval v;
                if (jp_value(p, &v) || jlist_push(p->r, l, v)) return -1;
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == ']') {
                    p->i++;
                    break;
                }
                return jp_fail(p, "expected ',' or ']'");
            }
        }
        *out = jv_listv(l);
    } else if (c == '"') {
        jstr *s;
        if (jp_string(p, &s)) return -1;
        *out = jv_strv(s);
    } else if (jp_lit(p, "true")) {
        *out = jv_bool(true);
    } else if (jp_lit(p, "false")) {
        *out = jv_bool(false);
    } else if (jp_lit(p, "null")) {
        *out = jv_none();
    } else if (jp_lit(p, "NaN")) {
        *out = jv_float(NAN);
    } else if (jp_lit(p, "Infinity")) {
        *out = jv_float(INFINITY);
    } else if (jp_lit(p, "-Infinity")) {
        *out = jv_float(-INFINITY);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        size_t st = p->i;
        bool is_float = false;
        if (p->s[p->i] == '-') p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return jp_fail(p, "bad number");
        if (p->s[p->i] == '0') p->i++;
        else
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        if (p->i < p->n && p->s[p->i] == '.') {
            is_float = true;
            p->i++;
            if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return jp_fail(p, "bad number");
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
        if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
            is_float = true;
            p->i++;
            if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
            if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return jp_fail(p, "bad number");
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
        char tmp[64];
        size_t l = p->i - st;
        if (l >= sizeof tmp) {
            if (!is_float) return jp_fail(p, "integer too large");
            *out = jv_float(strtod(p->s + st, NULL)); /* long float text: strtod stops at the number's end */
        } else {
            memcpy(tmp, p->s + st, l);
            tmp[l] = 0;
            if (is_float) {
                *out = jv_float(strtod(tmp, NULL));
            } else {
                errno = 0;
                long long v = strtoll(tmp, NULL, 10);
                if (errno == ERANGE) return jp_fail(p, "integer too large");
                *out = jv_int(v);
            }
        }
    } else {
        rc = jp_fail(p, "unexpected character");
    }
    p->depth--;
    return rc;
}

int jv_from_json(jr *r, const char *s, size_t len, jval *out) {
    jp p = {r, s, len, 0, 0};
    if (jp_value(&p, out)) return -1;
    jp_ws(&p);
    if (p.i != p.n) return jp_fail(&p, "extra data after the value");
    return 0;
}
