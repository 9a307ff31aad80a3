#define _GNU_SOURCE /* memmem */
/* Built-ins of the Jinja interpreter: filters, tests, methods of str/dict/list,
 * and the globals (range, namespace, dict, raise_exception, strftime_now). */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wctype.h>

#include "template/jinja_case_table.h"
#include "template/jinja_internal.h"

#define MAX_RANGE 100000 /* Jinja's sandbox limit */

enum {
    F_NONE = 0,
    /* globals */
    G_RANGE,
    G_NAMESPACE,
    G_DICT,
    G_RAISE,
    G_STRFTIME,
    /* str methods */
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_SPLIT,
    M_RSPLIT,
    M_STARTSWITH,
    M_ENDSWITH,
    M_UPPER,
    M_LOWER,
    M_TITLE,
    M_CAPITALIZE,
    M_REPLACE,
    M_FIND,
    M_RFIND,
    M_COUNT,
    M_JOIN,
    M_SPLITLINES,
    M_ISDIGIT,
    M_ISALPHA,
    M_ISSPACE,
    M_ISALNUM,
    M_ISUPPER,
    M_ISLOWER,
    M_FORMAT,
    /* dict methods */
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_GET,
    /* list methods */
    M_INDEX,
    M_LCOUNT,
};

typedef struct named {
    const char *name;
    int id;
} named;

static const named k_str_methods[] = {
    {"strip", M_STRIP},         {"lstrip", M_LSTRIP},     {"rstrip", M_RSTRIP},       {"split", M_SPLIT},
    {"rsplit", M_RSPLIT},       {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"upper", M_UPPER},
    {"lower", M_LOWER},         {"title", M_TITLE},       {"capitalize", M_CAPITALIZE}, {"replace", M_REPLACE},
    {"find", M_FIND},           {"rfind", M_RFIND},       {"count", M_COUNT},         {"join", M_JOIN},
    {"splitlines", M_SPLITLINES}, {"isdigit", M_ISDIGIT}, {"isalpha", M_ISALPHA},     {"isspace", M_ISSPACE},
    {"isalnum", M_ISALNUM},     {"isupper", M_ISUPPER},   {"islower", M_ISLOWER},     {"format", M_FORMAT},
    {NULL, 0}};
static const named k_dict_methods[] = {{"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"get", M_GET}, {NULL, 0}};
static const named k_list_methods[] = {{"index", M_INDEX}, {"count", M_LCOUNT}, {NULL, 0}};
static const named k_globals[] = {{"range", G_RANGE},
                                  {"namespace", G_NAMESPACE},
                                  {"dict", G_DICT},
                                  {"raise_exception", G_RAISE},
                                  {"strftime_now", G_STRFTIME},
                                  {NULL, 0}};

static int find_named(const named *t, const char *name) {
    for (; t->name; t++)
        if (!strcmp(t->name, name)) return t->id;
    return 0;
}

bool jmethod_lookup(jval obj, const char *name, jval *out, jr *r) {
    int id = obj.t == JV_STR ? find_named(k_str_methods, name)
             : obj.t == JV_DICT ? find_named(k_dict_methods, name)
             : obj.t == JV_LIST ? find_named(k_list_methods, name)
                                : 0;
    if (!id) return false;
    jval *self = jarena_alloc(&r->arena, sizeof *self);
    if (!self) {
        jr_fail(r, "out of template memory");
        return true;
    }
    *self = obj;
    *out = jv_undef();
    out->t = JV_FUNC;
    out->fn = (uint16_t)id;
    out->self = self;
    return true;
}

bool jglobal_lookup(const char *name, jval *out) {
    int id = find_named(k_globals, name);
    if (!id) return false;
    *out = jv_undef();
    out->t = JV_FUNC;
    out->fn = (uint16_t)id;
    out->self = NULL;
    return true;
}

/* ---------------- argument helpers ---------------- */
typedef struct callargs {
    const jval *pos;
    size_t npos;
    const char *const *kwn;
    const jval *kwv;
    size_t nkw;
} callargs;

/* The argument at position idx or named name; `def` when absent. */
static jval arg(const callargs *a, size_t idx, const char *name, jval def) {
    if (idx < a->npos) return a->pos[idx];
    for (size_t i = 0; i < a->nkw; i++)
        if (name && !strcmp(a->kwn[i], name)) return a->kwv[i];
    return def;
}

static int need_str(jr *r, jval v, const char *what, jstr **out) {
    if (v.t != JV_STR) return jr_fail(r, "%s must be a string, not %s", what, jv_type_name(v));
    *out = v.s;
    return 0;
}

static int mkstr(jr *r, const char *s, size_t n, jval *out) { return jv_str(r, s, n, out); }

int jv_iterate(jr *r, jval v, jlist **out) {
    switch (v.t) {
    case JV_LIST: *out = v.l; return 0;
    case JV_UNDEF: return (*out = jlist_new(r, 0)) ? 0 : -1;
    case JV_DICT:
    case JV_NS: {
        jlist *l = jlist_new(r, v.d->n);
        if (!l) return -1;
        for (size_t i = 0; i < v.d->n; i++) l->v[l->n++] = v.d->k[i];
        *out = l;
        return 0;
    }
    case JV_STR: {
        jlist *l = jlist_new(r, ju_len(v.s->s, v.s->len));
        if (!l) return -1;
        size_t i = 0;
        while (i < v.s->len) {
            size_t adv;
            ju_decode(v.s->s + i, v.s->len - i, &adv);
            if (jv_str(r, v.s->s + i, adv, &l->v[l->n++])) return -1;
            i += adv;
        }
        *out = l;
        return 0;
    }
    default: return jr_fail(r, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---------------- string helpers ---------------- */
static bool in_chars(uint32_t cp, const jstr *chars) {
    size_t i = 0;
    while (i < chars->len) {
        size_t adv;
        if (ju_decode(chars->s + i, chars->len - i, &adv) == cp) return true;
        i += adv;
    }
    return false;
}

/* Python str.strip/lstrip/rstrip(chars=None). */
static int str_strip(jr *r, jstr *s, jval chars, bool left, bool right, jval *out) {
    jstr *cs = NULL;
    if (chars.t == JV_STR) cs = chars.s;
    else if (chars.t != JV_NONE && chars.t != JV_UNDEF) return jr_fail(r, "strip arg must be None or str");
    size_t a = 0, b = s->len;
    while (left && a < b) {
        size_t adv;
        uint32_t cp = ju_decode(s->s + a, b - a, &adv);
        if (cs ? !in_chars(cp, cs) : !ju_isspace(cp)) break;
        a += adv;
    }
    while (right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s->s[st] & 0xC0) == 0x80) st--;
        size_t adv;
        uint32_t cp = ju_decode(s->s + st, b - st, &adv);
        if (cs ? !in_chars(cp, cs) : !ju_isspace(cp)) break;
        b = st;
    }
    return mkstr(r, s->s + a, b - a, out);
}

/* The C.UTF-8 character classes for case mapping beyond ASCII, created once
 * (never freed: one per process); (locale_t)0 when the system has none. */
static locale_t g_utf8_locale = (locale_t)0;
static pthread_once_t g_utf8_once = PTHREAD_ONCE_INIT;
static void utf8_locale_init(void) { g_utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }
static locale_t utf8_locale(void) {
    pthread_once(&g_utf8_once, utf8_locale_init);
    return g_utf8_locale;
}

static uint32_t cp_case(uint32_t cp, bool upper) {
    if (cp < 0x80) {
        if (upper && cp >= 'a' && cp <= 'z') return cp - 32;
        if (!upper && cp >= 'A' && cp <= 'Z') return cp + 32;
        return cp;
    }
    locale_t loc = utf8_locale();
    if (!loc) return cp;
    wint_t w = upper ? towupper_l((wint_t)cp, loc) : towlower_l((wint_t)cp, loc);
    return (uint32_t)w;
}

static bool cp_isalpha(uint32_t cp) {
    if (cp < 0x80) return (cp | 32) >= 'a' && (cp | 32) <= 'z';
    locale_t loc = utf8_locale();
    return loc && iswalpha_l((wint_t)cp, loc);
}

/* The full case mapping of cp (kind 'U' upper, 'L' lower, 'T' title) as Python's str methods
 * give it: up to 3 code points into out; returns how many. */
static size_t case_full(uint32_t cp, char kind, uint32_t out[3]) {
    if (cp >= 0xDF) {
        size_t lo = 0, hi = sizeof jcase_specials / sizeof jcase_specials[0];
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (jcase_specials[mid].cp < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof jcase_specials / sizeof jcase_specials[0] && jcase_specials[lo].cp == cp) {
            const uint32_t *m = kind == 'U' ? jcase_specials[lo].upper
                              : kind == 'T' ? jcase_specials[lo].title
                                            : jcase_specials[lo].lower;
            size_t n = 0;
            while (n < 3 && m[n]) {
                out[n] = m[n];
                n++;
            }
            return n;
        }
    }
    out[0] = cp_case(cp, kind != 'L');
    return 1;
}

/* mode: 'u' upper, 'l' lower, 't' str.title() (title case after an uncased character, lower case
 * after a cased one), 'T' Jinja's title filter (the first character of each word upper-cased, words
 * start after whitespace or one of -({[<, the rest lower-cased), 'c' str.capitalize() (title case,
 * then lower case). Full mappings: 'ß' upper is "SS". */
static int str_case(jr *r, jstr *s, char mode, jval *out) {
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    size_t i = 0;
    bool prev_alpha = false, prev_sep = false, first = true;
    while (i < s->len) {
        size_t adv;
        uint32_t cp = ju_decode(s->s + i, s->len - i, &adv);
        char kind;
        if (mode == 'u') kind = 'U';
        else if (mode == 'l') kind = 'L';
        else if (mode == 't') kind = prev_alpha ? 'L' : 'T';
        else if (mode == 'T') kind = first || prev_sep ? 'U' : 'L';
        else kind = first ? 'T' : 'L';
        uint32_t m[3];
        size_t nm = case_full(cp, kind, m);
        if (cp == 0x3A3 && kind == 'L' && prev_alpha) { /* Python's Final_Sigma: a word's last sigma is ς */
            size_t nadv;
            bool next_alpha = i + adv < s->len && cp_isalpha(ju_decode(s->s + i + adv, s->len - i - adv, &nadv));
            if (!next_alpha) m[0] = 0x3C2;
        }
        prev_alpha = cp_isalpha(cp);
        prev_sep = ju_isspace(cp) || (cp < 0x80 && strchr("-({[<", (int)cp) && cp != 0);
        first = false;
        for (size_t k = 0; k < nm; k++) {
            char u8[4];
            if (jbuf_put(r, &b, u8, ju_encode(m[k], u8))) return -1;
        }
        i += adv;
    }
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

static int str_replace(jr *r, jstr *s, jstr *old, jstr *new_, int64_t count, jval *out) {
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    size_t i = 0;
    int64_t done = 0;
    if (old->len == 0) { /* Python inserts `new` between every character */
        while (i <= s->len && (count < 0 || done < count)) {
            if (jbuf_put(r, &b, new_->s, new_->len)) return -1;
            done++;
            if (i == s->len) {
                i++;
                break;
            }
            size_t adv;
            ju_decode(s->s + i, s->len - i, &adv);
            if (jbuf_put(r, &b, s->s + i, adv)) return -1;
            i += adv;
        }
        if (i < s->len && jbuf_put(r, &b, s->s + i, s->len - i)) return -1;
    } else {
        while (i < s->len) {
            const char *f = (count < 0 || done < count) ? memmem(s->s + i, s->len - i, old->s, old->len) : NULL;
            if (!f) {
                if (jbuf_put(r, &b, s->s + i, s->len - i)) return -1;
                break;
            }
            size_t at = (size_t)(f - s->s);
            if (jbuf_put(r, &b, s->s + i, at - i) || jbuf_put(r, &b, new_->s, new_->len)) return -1;
            i = at + old->len;
            done++;
        }
    }
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

/* Python str.split(sep=None, maxsplit=-1) */
static int str_split(jr *r, jstr *s, jval sep, int64_t maxsplit, jval *out) {
    jlist *l = jlist_new(r, 0);
    if (!l) return -1;
    jval piece;
    if (sep.t == JV_STR) {
        if (sep.s->len == 0) return jr_fail(r, "empty separator");
        size_t i = 0;
        int64_t n = 0;
        for (;;) {
            const char *f = (maxsplit < 0 || n < maxsplit) ? memmem(s->s + i, s->len - i, sep.s->s, sep.s->len) : NULL;
            if (!f) break;
            size_t at = (size_t)(f - s->s);
            if (mkstr(r, s->s + i, at - i, &piece) || jlist_push(r, l, piece)) return -1;
            i = at + sep.s->len;
            n++;
        }
        if (mkstr(r, s->s + i, s->len - i, &piece) || jlist_push(r, l, piece)) return -1;
    } else if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        size_t i = 0;
        int64_t n = 0;
        for (;;) {
            size_t adv;
            while (i < s->len && ju_isspace(ju_decode(s->s + i, s->len - i, &adv))) i += adv;
            if (i >= s->len) break;
            if (maxsplit >= 0 && n >= maxsplit) {
                size_t e = s->len;
                while (e > i) { /* Python strips trailing whitespace of the rest */
                    size_t st = e - 1;
                    while (st > i && ((unsigned char)s->s[st] & 0xC0) == 0x80) st--;
                    if (!ju_isspace(ju_decode(s->s + st, e - st, &adv))) break;
                    e = st;
                }
                if (mkstr(r, s->s + i, e - i, &piece) || jlist_push(r, l, piece)) return -1;
                break;
            }
            size_t st = i;
            while (i < s->len && !ju_isspace(ju_decode(s->s + i, s->len - i, &adv))) i += adv;
            if (mkstr(r, s->s + st, i - st, &piece) || jlist_push(r, l, piece)) return -1;
            n++;
        }
    } else {
        return jr_fail(r, "must be str or None, not %s", jv_type_name(sep));
    }
    *out = jv_listv(l);
    return 0;
}

/* The last occurrence of needle in h[0..n), or NULL. */
static const char *mem_rfind(const char *h, size_t n, const char *needle, size_t k) {
    if (k > n) return NULL;
    for (size_t i = n - k + 1; i-- > 0;)
        if (h[i] == needle[0] && !memcmp(h + i, needle, k)) return h + i;
    return NULL;
}

/* The start of the UTF-8 character that ends at s[e] (exclusive), not before lo. */
static size_t char_start_before(const char *s, size_t lo, size_t e) {
    size_t st = e - 1;
    while (st > lo && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
    return st;
}

/* Python's str.rsplit: the splits are made from the right (at most maxsplit of them when >= 0). */
static int str_rsplit(jr *r, jstr *s, jval sep, int64_t maxsplit, jval *out) {
    jlist *l = jlist_new(r, 0);
    if (!l) return -1;
    jval piece;
    if (sep.t == JV_STR) {
        if (sep.s->len == 0) return jr_fail(r, "empty separator");
        size_t e = s->len;
        int64_t n = 0;
        for (;;) {
            const char *f = (maxsplit < 0 || n < maxsplit) ? mem_rfind(s->s, e, sep.s->s, sep.s->len) : NULL;
            if (!f) break;
            size_t at = (size_t)(f - s->s);
            if (mkstr(r, s->s + at + sep.s->len, e - at - sep.s->len, &piece) || jlist_push(r, l, piece)) return -1;
            e = at;
            n++;
        }
        if (mkstr(r, s->s, e, &piece) || jlist_push(r, l, piece)) return -1;
    } else if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        size_t e = s->len, adv;
        int64_t n = 0;
        for (;;) {
            while (e > 0) { /* white space at the end */
                size_t st = char_start_before(s->s, 0, e);
                if (!ju_isspace(ju_decode(s->s + st, e - st, &adv))) break;
                e = st;
            }
            if (e == 0) break;
            if (maxsplit >= 0 && n >= maxsplit) { /* the rest, its leading white space kept (as Python) */
                if (mkstr(r, s->s, e, &piece) || jlist_push(r, l, piece)) return -1;
                break;
            }
            size_t st = e;
            while (st > 0) {
                size_t c = char_start_before(s->s, 0, st);
                if (ju_isspace(ju_decode(s->s + c, st - c, &adv))) break;
                st = c;
            }
            if (mkstr(r, s->s + st, e - st, &piece) || jlist_push(r, l, piece)) return -1;
            e = st;
            n++;
        }
    } else {
        return jr_fail(r, "must be str or None, not %s", jv_type_name(sep));
    }
    for (size_t i = 0, j = l->n; i + 1 < j; i++, j--) { /* collected right to left */
        jval t = l->v[i];
        l->v[i] = l->v[j - 1];
        l->v[j - 1] = t;
    }
    *out = jv_listv(l);
    return 0;
}

static bool str_affix(jstr *s, jstr *x, bool prefix) {
    if (x->len > s->len) return false;
    return !memcmp(prefix ? s->s : s->s + s->len - x->len, x->s, x->len);
}

static int join_values(jr *r, jlist *items, jstr *sep, jval attribute, jval *out) {
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    for (size_t i = 0; i < items->n; i++) {
        jval v = items->v[i];
        if (attribute.t == JV_STR) {
            if (v.t == JV_DICT) {
                jval *x = jdict_get(v.d, attribute);
                v = x ? *x : jv_undef();
            } else {
                v = jv_undef();
            }
        }
        if (i && jbuf_put(r, &b, sep->s, sep->len)) return -1;
        if (jv_write_str(r, &b, v)) return -1;
    }
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

/* '%s' % x (printf-style formatting: %s %r %d %i %f %x %%) */
int jformat_percent(jr *r, jstr *fmt, jval argsv, jval *out) {
    const jval *av = &argsv;
    size_t na = 1, ai = 0;
    if (argsv.t == JV_LIST && argsv.l->tuple) {
        av = argsv.l->v;
        na = argsv.l->n;
    }
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    for (size_t i = 0; i < fmt->len; i++) {
        char c = fmt->s[i];
        if (c != '%') {
            if (jbuf_putc(r, &b, c)) return -1;
            continue;
        }
        if (++i >= fmt->len) return jr_fail(r, "incomplete format");
        char spec = fmt->s[i];
        if (spec == '%') {
            if (jbuf_putc(r, &b, '%')) return -1;
            continue;
        }
        if (ai >= na) return jr_fail(r, "not enough arguments for format string");
        jval v = av[ai++];
        char tmp[64];
        switch (spec) {
        case 's':
            if (jv_write_str(r, &b, v)) return -1;
            break;
        case 'r':
            if (jv_write_repr(r, &b, v)) return -1;
            break;
        case 'd':
        case 'i':
            if (v.t == JV_FLOAT) v = jv_int((int64_t)v.f);
            if (v.t != JV_INT && v.t != JV_BOOL) return jr_fail(r, "%%d format: a real number is required");
            snprintf(tmp, sizeof tmp, "%lld", (long long)(v.t == JV_INT ? v.i : v.b));
            if (jbuf_put(r, &b, tmp, strlen(tmp))) return -1;
            break;
        case 'f':
            snprintf(tmp, sizeof tmp, "%f", v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : (double)v.b);
            if (jbuf_put(r, &b, tmp, strlen(tmp))) return -1;
            break;
        default: return jr_fail(r, "unsupported format character '%c'", spec);
        }
    }
    if (ai < na && !(argsv.t == JV_DICT)) return jr_fail(r, "not all arguments converted during string formatting");
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

/* '{} {0} {name}'.format(...) */
static int str_format(jr *r, jstr *fmt, const callargs *a, jval *out) {
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    size_t auto_i = 0;
    for (size_t i = 0; i < fmt->len; i++) {
        char c = fmt->s[i];
        if (c == '{' && i + 1 < fmt->len && fmt->s[i + 1] == '{') {
            if (jbuf_putc(r, &b, '{')) return -1;
            i++;
            continue;
        }
        if (c == '}' && i + 1 < fmt->len && fmt->s[i + 1] == '}') {
            if (jbuf_putc(r, &b, '}')) return -1;
            i++;
            continue;
        }
        if (c != '{') {
            if (jbuf_putc(r, &b, c)) return -1;
            continue;
        }
        const char *end = memchr(fmt->s + i, '}', fmt->len - i);
        if (!end) return jr_fail(r, "Single '{' encountered in format string");
        size_t fl = (size_t)(end - fmt->s) - i - 1;
        char field[128];
        if (fl >= sizeof field) return jr_fail(r, "format field too long");
        memcpy(field, fmt->s + i + 1, fl);
        field[fl] = 0;
        if (strchr(field, ':') || strchr(field, '!')) return jr_fail(r, "format specs are not supported");
        jval v;
        if (fl == 0) {
            if (auto_i >= a->npos) return jr_fail(r, "Replacement index %zu out of range", auto_i);
            v = a->pos[auto_i++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            size_t k = (size_t)atoi(field);
            if (k >= a->npos) return jr_fail(r, "Replacement index %zu out of range", k);
            v = a->pos[k];
        } else {
            jval u = jv_undef();
            u.fn = 0xFFFF;
            v = arg(a, (size_t)-1, field, u);
            if (v.t == JV_UNDEF && v.fn == 0xFFFF) return jr_fail(r, "format: missing key '%s'", field);
        }
        if (jv_write_str(r, &b, v)) return -1;
        i += fl + 1;
    }
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

static bool str_all(jstr *s, int kind) {
    if (s->len == 0) return false;
    bool cased = false;
    size_t i = 0;
    while (i < s->len) {
        size_t adv;
        uint32_t cp = ju_decode(s->s + i, s->len - i, &adv);
        i += adv;
        switch (kind) {
        case 'd': if (cp < '0' || cp > '9') return false; break;
        case 'a': if (!cp_isalpha(cp)) return false; break;
        case 's': if (!ju_isspace(cp)) return false; break;
        case 'n': if (!cp_isalpha(cp) && (cp < '0' || cp > '9')) return false; break;
        case 'u':
        case 'l':
            if (cp_case(cp, kind == 'u') != cp) return false; /* a character of the other case */
            if (cp_case(cp, kind != 'u') != cp) cased = true;
            break;
        }
    }
    return (kind == 'u' || kind == 'l') ? cased : true;
}

/* ---------------- calls of built-in functions and methods ---------------- */
static int call_range(jr *r, const callargs *a, jval *out) {
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3) return jr_fail(r, "range expected 1 to 3 arguments");
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
            return jr_fail(r, "'%s' object cannot be interpreted as an integer", jv_type_name(a->pos[i]));
        v[i] = a->pos[i].t == JV_INT ? a->pos[i].i : a->pos[i].b;
    }
    int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1], stp = a->npos == 3 ? v[2] : 1;
    if (stp == 0) return jr_fail(r, "range() arg 3 must not be zero");
    double cnt = ceil(((double)stop - (double)start) / (double)stp);
    if (cnt < 0) cnt = 0;
    if (cnt > MAX_RANGE) return jr_fail(r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE);
    jlist *l = jlist_new(r, (size_t)cnt);
    if (!l) return -1;
    for (int64_t x = start; stp > 0 ? x < stop : x > stop; x += stp) l->v[l->n++] = jv_int(x);
    *out = jv_listv(l);
    return 0;
}

static int kwargs_dict(jr *r, const callargs *a, jdict *d) {
    for (size_t i = 0; i < a->nkw; i++) {
        jval k;
        if (jv_str(r, a->kwn[i], strlen(a->kwn[i]), &k) || jdict_set(r, d, k, a->kwv[i])) return -1;
    }
    return 0;
}

static int call_strftime(jr *r, const callargs *a, jval *out) {
    jstr *fmt = NULL;
    if (need_str(r, arg(a, 0, "format", jv_undef()), "strftime_now format", &fmt)) return -1;
    time_t now = time(NULL);
    struct tm tmv;
    const char *fixed = getenv(JINJA_NOW_ENV);
    if (fixed && *fixed) {
        now = (time_t)strtoll(fixed, NULL, 10);
        gmtime_r(&now, &tmv);
    } else {
        localtime_r(&now, &tmv);
    }
    char buf[512];
    if (fmt->len > 200) return jr_fail(r, "strftime_now: format too long");
    size_t n = strftime(buf, sizeof buf, fmt->s, &tmv);
    return mkstr(r, buf, n, out);
}

int jfunc_call(jr *r, jval fn, const jval *pos, size_t npos, const char *const *kwnames, const jval *kwvals,
               size_t nkw, jval *out) {
    callargs a = {pos, npos, kwnames, kwvals, nkw};
    jval self = fn.self ? *fn.self : jv_undef();
    jval x;
    jstr *sx = NULL, *sy = NULL;
    switch (fn.fn) {
    case G_RANGE: return call_range(r, &a, out);
    case G_NAMESPACE:
    case G_DICT: {
        jdict *d = jdict_new(r, 0);
        if (!d) return -1;
        if (npos >= 1 && pos[0].t == JV_DICT)
            for (size_t i = 0; i < pos[0].d->n; i++)
                if (jdict_set(r, d, pos[0].d->k[i], pos[0].d->v[i])) return -1;
        if (kwargs_dict(r, &a, d)) return -1;
        *out = jv_dictv(d);
        if (fn.fn == G_NAMESPACE) out->t = JV_NS;
        return 0;
    }
    case G_RAISE: {
        jstr *msg;
        if (jv_to_str(r, arg(&a, 0, "message", jv_undef()), &msg)) return -1;
        r->failed = true;
        r->raised = true;
        fitlm_fail(&r->err, "%s", msg->s);
        return -1;
    }
    case G_STRFTIME: return call_strftime(r, &a, out);
    case M_STRIP: return str_strip(r, self.s, arg(&a, 0, "chars", jv_none()), true, true, out);
    case M_LSTRIP: return str_strip(r, self.s, arg(&a, 0, "chars", jv_none()), true, false, out);
    case M_RSTRIP: return str_strip(r, self.s, arg(&a, 0, "chars", jv_none()), false, true, out);
    case M_SPLIT:
    case M_RSPLIT: {
        x = arg(&a, 1, "maxsplit", jv_int(-1));
        if (fn.fn == M_RSPLIT) return str_rsplit(r, self.s, arg(&a, 0, "sep", jv_none()), x.t == JV_INT ? x.i : -1, out);
        return str_split(r, self.s, arg(&a, 0, "sep", jv_none()), x.t == JV_INT ? x.i : -1, out);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        x = arg(&a, 0, NULL, jv_undef());
        bool res = false;
        if (x.t == JV_STR) res = str_affix(self.s, x.s, fn.fn == M_STARTSWITH);
        else if (x.t == JV_LIST && x.l->tuple) {
            for (size_t i = 0; i < x.l->n; i++) {
                if (x.l->v[i].t != JV_STR) return jr_fail(r, "tuple for startswith must only contain str");
                if (str_affix(self.s, x.l->v[i].s, fn.fn == M_STARTSWITH)) res = true;
            }
        } else {
            return jr_fail(r, "startswith first arg must be str or a tuple of str, not %s", jv_type_name(x));
        }
        *out = jv_bool(res);
        return 0;
    }
    case M_UPPER: return str_case(r, self.s, 'u', out);
    case M_LOWER: return str_case(r, self.s, 'l', out);
    case M_TITLE: return str_case(r, self.s, 't', out);
    case M_CAPITALIZE: return str_case(r, self.s, 'c', out);
    case M_REPLACE:
        if (need_str(r, arg(&a, 0, "old", jv_undef()), "replace() argument 1", &sx) ||
            need_str(r, arg(&a, 1, "new", jv_undef()), "replace() argument 2", &sy))
            return -1;
        x = arg(&a, 2, "count", jv_int(-1));
        return str_replace(r, self.s, sx, sy, x.t == JV_INT ? x.i : -1, out);
    case M_FIND:
    case M_RFIND: {
        if (need_str(r, arg(&a, 0, "sub", jv_undef()), "find() argument", &sx)) return -1;
        const char *hit = NULL;
        if (fn.fn == M_FIND) {
            hit = memmem(self.s->s, self.s->len, sx->s, sx->len);
        } else {
            for (size_t i = self.s->len + 1; i-- > 0;)
                if (i + sx->len <= self.s->len && !memcmp(self.s->s + i, sx->s, sx->len)) {
                    hit = self.s->s + i;
                    break;
                }
        }
        *out = jv_int(hit ? (int64_t)ju_len(self.s->s, (size_t)(hit - self.s->s)) : -1);
        return 0;
    }
    case M_COUNT: {
        if (need_str(r, arg(&a, 0, "sub", jv_undef()), "count() argument", &sx)) return -1;
        int64_t c = 0;
        if (sx->len == 0) c = (int64_t)ju_len(self.s->s, self.s->len) + 1;
        else
            for (size_t i = 0; i + sx->len <= self.s->len;) {
                const char *f = memmem(self.s->s + i, self.s->len - i, sx->s, sx->len);
                if (!f) break;
                c++;
                i = (size_t)(f - self.s->s) + sx->len;
            }
        *out = jv_int(c);
        return 0;
    }
    case M_JOIN: {
        jlist *items;
        if (jv_iterate(r, arg(&a, 0, NULL, jv_undef()), &items)) return -1;
        for (size_t i = 0; i < items->n; i++)
            if (items->v[i].t != JV_STR)
                return jr_fail(r, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->v[i]));
        return join_values(r, items, self.s, jv_undef(), out);
    }
    case M_SPLITLINES: {
        jlist *l = jlist_new(r, 0);
        if (!l) return -1;
        size_t st = 0;
        for (size_t i = 0; i < self.s->len; i++) {
            char c = self.s->s[i];
            if (c == '\n' || c == '\r') {
                if (mkstr(r, self.s->s + st, i - st, &x) || jlist_push(r, l, x)) return -1;
                if (c == '\r' && i + 1 < self.s->len && self.s->s[i + 1] == '\n') i++;
                st = i + 1;
            }
        }
        if (st < self.s->len && (mkstr(r, self.s->s + st, self.s->len - st, &x) || jlist_push(r, l, x))) return -1;
        *out = jv_listv(l);
        return 0;
    }
    case M_ISDIGIT: *out = jv_bool(str_all(self.s, 'd')); return 0;
    case M_ISALPHA: *out = jv_bool(str_all(self.s, 'a')); return 0;
    case M_ISSPACE: *out = jv_bool(str_all(self.s, 's')); return 0;
    case M_ISALNUM: *out = jv_bool(str_all(self.s, 'n')); return 0;
    case M_ISUPPER: *out = jv_bool(str_all(self.s, 'u')); return 0;
    case M_ISLOWER: *out = jv_bool(str_all(self.s, 'l')); return 0;
    case M_FORMAT: return str_format(r, self.s, &a, out);
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        jlist *l = jlist_new(r, self.d->n);
        if (!l) return -1;
        for (size_t i = 0; i < self.d->n; i++) {
            if (fn.fn == M_KEYS) l->v[l->n++] = self.d->k[i];
            else if (fn.fn == M_VALUES) l->v[l->n++] = self.d->v[i];
            else {
                jlist *pair = jlist_new(r, 2);
                if (!pair) return -1;
                pair->tuple = true;
                pair->v[0] = self.d->k[i];
                pair->v[1] = self.d->v[i];
                pair->n = 2;
                l->v[l->n++] = jv_listv(pair);
            }
        }
        *out = jv_listv(l);
        return 0;
    }
    case M_GET: {
        jval *v = jdict_get(self.d, arg(&a, 0, "key", jv_undef()));
        *out = v ? *v : arg(&a, 1, "default", jv_none());
        return 0;
    }
    case M_INDEX:
        x = arg(&a, 0, NULL, jv_undef());
        for (size_t i = 0; i < self.l->n; i++)
            if (jv_eq(self.l->v[i], x)) {
                *out = jv_int((int64_t)i);
                return 0;
            }
        return jr_fail(r, "value is not in list");
    case M_LCOUNT: {
        x = arg(&a, 0, NULL, jv_undef());
        int64_t c = 0;
        for (size_t i = 0; i < self.l->n; i++) c += jv_eq(self.l->v[i], x);
        *out = jv_int(c);
        return 0;
    }
    default: return jr_fail(r, "internal error: unknown built-in %d", fn.fn);
    }
}

/* ---------------- tests ---------------- */
int jtest_apply(jr *r, const char *name, jval v, const jval *args, size_t nargs, bool *res) {
    jval a0 = nargs > 0 ? args[0] : jv_undef();
    int cmp;
    if (!strcmp(name, "defined")) *res = v.t != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *res = v.t == JV_UNDEF;
    else if (!strcmp(name, "none")) *res = v.t == JV_NONE;
    else if (!strcmp(name, "string")) *res = v.t == JV_STR;
    else if (!strcmp(name, "mapping")) *res = v.t == JV_DICT;
    else if (!strcmp(name, "iterable"))
        *res = v.t == JV_UNDEF || v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT;
    else if (!strcmp(name, "sequence")) *res = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT;
    else if (!strcmp(name, "number")) *res = v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
    else if (!strcmp(name, "integer")) *res = v.t == JV_INT;
    else if (!strcmp(name, "float")) *res = v.t == JV_FLOAT;
    else if (!strcmp(name, "boolean")) *res = v.t == JV_BOOL;
    else if (!strcmp(name, "true")) *res = v.t == JV_BOOL && v.b;
    else if (!strcmp(name, "false")) *res = v.t == JV_BOOL && !v.b;
    else if (!strcmp(name, "callable")) *res = v.t == JV_MACRO || v.t == JV_FUNC;
    else if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "sameas"))
        *res = jv_eq(v, a0);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *res = !jv_eq(v, a0);
    else if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "le") || !strcmp(name, "gt") ||
             !strcmp(name, "greaterthan") || !strcmp(name, "ge")) {
        if (jv_order(r, v, a0, &cmp)) return -1;
        *res = name[0] == 'l' ? (name[1] == 'e' ? cmp <= 0 : cmp < 0) : (name[1] == 'e' ? cmp >= 0 : cmp > 0);
    } else if (!strcmp(name, "in")) {
        if (a0.t == JV_STR && v.t == JV_STR) *res = memmem(a0.s->s, a0.s->len, v.s->s, v.s->len) != NULL || !v.s->len;
        else if (a0.t == JV_LIST) {
            *res = false;
            for (size_t i = 0; i < a0.l->n; i++)
                if (jv_eq(v, a0.l->v[i])) *res = true;
        } else if (a0.t == JV_DICT) *res = jdict_get(a0.d, v) != NULL;
        else return jr_fail(r, "'in' test: unsupported container %s", jv_type_name(a0));
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.t != JV_INT) return jr_fail(r, "test '%s' needs an integer", name);
        if (name[0] == 'd') {
            if (a0.t != JV_INT || a0.i == 0) return jr_fail(r, "divisibleby needs a non-zero integer");
            *res = v.i % a0.i == 0;
        } else {
            *res = (v.i % 2 != 0) == (name[0] == 'o');
        }
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.t != JV_STR) return jr_fail(r, "test '%s' needs a string", name);
        *res = str_all(v.s, name[0] == 'l' ? 'l' : 'u');
    } else return jr_fail(r, "no test named '%s'", name);
    return 0;
}

/* ---------------- filters ---------------- */
static int attr_of(jr *r, jval item, jval attribute, jval *out) {
    /* dotted attribute paths, and integer indexes, as Jinja's make_attrgetter */
    if (attribute.t == JV_INT) {
        if (item.t == JV_LIST && attribute.i >= 0 && (size_t)attribute.i < item.l->n) *out = item.l->v[attribute.i];
        else *out = jv_undef();
        return 0;
    }
    if (attribute.t != JV_STR) return jr_fail(r, "attribute must be a string");
    const char *p = attribute.s->s;
    *out = item;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        jval key;
        if (jv_str(r, p, l, &key)) return -1;
        if (out->t == JV_DICT || out->t == JV_NS) {
            jval *v = jdict_get(out->d, key);
            *out = v ? *v : jv_undef();
        } else {
            *out = jv_undef();
        }
        p += l + (dot ? 1 : 0);
        if (!dot) break;
    }
    return 0;
}

static int select_impl(jr *r, jval seq, const jval *args, size_t nargs, bool by_attr, bool keep, jval *out) {
    jlist *items, *res;
    if (jv_iterate(r, seq, &items) || !(res = jlist_new(r, 0))) return -1;
    size_t k = 0;
    jval attribute = jv_undef();
    if (by_attr) {
        if (nargs < 1) return jr_fail(r, "selectattr needs an attribute");
        attribute = args[k++];
    }
    const char *test = NULL;
    if (k < nargs) {
        if (args[k].t != JV_STR) return jr_fail(r, "the test name must be a string");
        test = args[k++].s->s;
    }
    for (size_t i = 0; i < items->n; i++) {
        jval v = items->v[i];
        if (by_attr && attr_of(r, v, attribute, &v)) return -1;
        bool ok;
        if (test) {
            if (jtest_apply(r, test, v, args + k, nargs - k, &ok)) return -1;
        } else {
            ok = jv_truthy(v);
        }
        if (ok == keep && jlist_push(r, res, items->v[i])) return -1;
    }
    *out = jv_listv(res);
    return 0;
}

static int tojson_filter(jr *r, jval v, const callargs *a, jval *out) {
    jval ind = arg(a, 0, "indent", jv_none());
    char spaces[64];
    const char *indent = NULL;
    if (ind.t == JV_INT) {
        int64_t n = ind.i < 0 ? 0 : ind.i > 32 ? 32 : ind.i;
        memset(spaces, ' ', (size_t)n);
        spaces[n] = 0;
        indent = spaces;
    } else if (ind.t == JV_STR) {
        indent = ind.s->s;
    } else if (ind.t != JV_NONE) {
        return jr_fail(r, "tojson: indent must be an integer or a string");
    }
    const char *item_sep = NULL, *key_sep = NULL;
    jval seps = arg(a, 1, "separators", jv_none());
    if (seps.t == JV_LIST) {
        if (seps.l->n != 2 || seps.l->v[0].t != JV_STR || seps.l->v[1].t != JV_STR)
            return jr_fail(r, "tojson: separators must be two strings");
        item_sep = seps.l->v[0].s->s;
        key_sep = seps.l->v[1].s->s;
    }
    bool sort_keys = jv_truthy(arg(a, 2, "sort_keys", jv_bool(false)));
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0) || jv_write_json(r, &b, v, indent, item_sep, key_sep, sort_keys, 0)) return -1;
    jstr *s = jbuf_to_str(r, &b);
    if (!s) return -1;
    *out = jv_strv(s);
    return 0;
}

static int sort_list(jr *r, jlist *l, bool reverse, jval attribute) {
    /* insertion sort: stable, as Python's sorted() */
    for (size_t i = 1; i < l->n; i++) {
        jval x = l->v[i], kx;
        if (attribute.t != JV_UNDEF ? attr_of(r, x, attribute, &kx) : ((kx = x), 0)) return -1;
        size_t j = i;
        while (j > 0) {
            jval y = l->v[j - 1], ky;
            if (attribute.t != JV_UNDEF ? attr_of(r, y, attribute, &ky) : ((ky = y), 0)) return -1;
            int c;
            if (jv_order(r, ky, kx, &c)) return -1;
            if (reverse ? c >= 0 : c <= 0) break;
            l->v[j] = y;
            j--;
        }
        l->v[j] = x;
        r->steps += i / 8;
    }
    return 0;
}

int jfilter_apply(jr *r, const char *name, jval v, const jval *pos, size_t npos, const char *const *kwn,
                  const jval *kwv, size_t nkw, jval *out) {
    callargs a = {pos, npos, kwn, kwv, nkw};
    jstr *s;
    jlist *items;
    if (!strcmp(name, "tojson")) return tojson_filter(r, v, &a, out);
    if (!strcmp(name, "safe") || !strcmp(name, "string") || !strcmp(name, "trim") || !strcmp(name, "upper") ||
        !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize") || !strcmp(name, "replace") ||
        !strcmp(name, "indent") || !strcmp(name, "escape") || !strcmp(name, "e")) {
        if (!strcmp(name, "safe")) {
            *out = v;
            return 0;
        }
        if (jv_to_str(r, v, &s)) return -1;
        if (!strcmp(name, "string")) {
            *out = jv_strv(s);
            return 0;
        }
        if (!strcmp(name, "trim")) return str_strip(r, s, arg(&a, 0, "chars", jv_none()), true, true, out);
        if (!strcmp(name, "upper")) return str_case(r, s, 'u', out);
        if (!strcmp(name, "lower")) return str_case(r, s, 'l', out);
        if (!strcmp(name, "title")) return str_case(r, s, 'T', out);
        if (!strcmp(name, "capitalize")) return str_case(r, s, 'c', out);
        if (!strcmp(name, "replace")) {
            jstr *o, *n;
            if (jv_to_str(r, arg(&a, 0, "old", jv_undef()), &o) || jv_to_str(r, arg(&a, 1, "new", jv_undef()), &n))
                return -1;
            jval c = arg(&a, 2, "count", jv_none());
            return str_replace(r, s, o, n, c.t == JV_INT ? c.i : -1, out);
        }
        if (!strcmp(name, "indent")) {
            jval w = arg(&a, 0, "width", jv_int(4));
            bool first = jv_truthy(arg(&a, 1, "first", jv_bool(false)));
            bool blank = jv_truthy(arg(&a, 2, "blank", jv_bool(false)));
            jstr *pad;
            if (w.t == JV_INT) {
                char sp[64];
                int64_t n = w.i < 0 ? 0 : w.i > 63 ? 63 : w.i;
                memset(sp, ' ', (size_t)n);
                if (!(pad = jstr_new(r, sp, (size_t)n))) return -1;
            } else if (jv_to_str(r, w, &pad)) {
                return -1;
            }
            jbuf b = {0};
            if (jbuf_put(r, &b, "", 0)) return -1;
            size_t i = 0;
            bool first_line = true;
            while (i <= s->len) {
                const char *nl = memchr(s->s + i, '\n', s->len - i);
                size_t e = nl ? (size_t)(nl - s->s) : s->len;
                bool empty = e == i;
                if ((first_line ? first : true) && (blank || !empty) && jbuf_put(r, &b, pad->s, pad->len)) return -1;
                if (jbuf_put(r, &b, s->s + i, e - i)) return -1;
                if (!nl) break;
                if (jbuf_putc(r, &b, '\n')) return -1;
                i = e + 1;
                first_line = false;
            }
            jstr *js = jbuf_to_str(r, &b);
            if (!js) return -1;
            *out = jv_strv(js);
            return 0;
        }
        /* escape */
        jbuf b = {0};
        if (jbuf_put(r, &b, "", 0)) return -1;
        for (size_t i = 0; i < s->len; i++) {
            const char *e = NULL;
            switch (s->s[i]) {
            case '&': e = "&amp;"; break;
            case '<': e = "&lt;"; break;
            case '>': e = "&gt;"; break;
            case '"': e = "&#34;"; break;
            case '\'': e = "&#39;"; break;
            }
            if (e ? jbuf_put(r, &b, e, strlen(e)) : jbuf_putc(r, &b, s->s[i])) return -1;
        }
        jstr *js = jbuf_to_str(r, &b);
        if (!js) return -1;
        *out = jv_strv(js);
        return 0;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v.t) {
        case JV_UNDEF: *out = jv_int(0); return 0;
        case JV_STR: *out = jv_int((int64_t)ju_len(v.s->s, v.s->len)); return 0;
        case JV_LIST: *out = jv_int((int64_t)v.l->n); return 0;
        case JV_DICT:
        case JV_NS: *out = jv_int((int64_t)v.d->n); return 0;
        default: return jr_fail(r, "object of type '%s' has no len()", jv_type_name(v));
        }
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jval empty;
        if (jv_str(r, "", 0, &empty)) return -1;
        jval def = arg(&a, 0, "default_value", empty);
        bool boolean = jv_truthy(arg(&a, 1, "boolean", jv_bool(false)));
        *out = (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) ? def : v;
        return r->failed ? -1 : 0;
    }
    if (!strcmp(name, "items")) {
        if (v.t == JV_UNDEF) return (*out = jv_listv(jlist_new(r, 0))).l ? 0 : -1;
        if (v.t != JV_DICT) return jr_fail(r, "Can only get item pairs from a mapping.");
        jval fn = {0};
        fn.t = JV_FUNC;
        fn.fn = M_ITEMS;
        fn.self = &v;
        return jfunc_call(r, fn, NULL, 0, NULL, NULL, 0, out);
    }
    if (!strcmp(name, "list")) {
        if (jv_iterate(r, v, &items)) return -1;
        jlist *l = jlist_new(r, items->n);
        if (!l) return -1;
        if (items->n) memcpy(l->v, items->v, items->n * sizeof(jval));
        l->n = items->n;
        *out = jv_listv(l);
        return 0;
    }
    if (!strcmp(name, "join")) {
        jstr *sep;
        if (jv_iterate(r, v, &items) || jv_to_str(r, arg(&a, 0, "d", jv_undef()), &sep)) return -1;
        return join_values(r, items, sep, arg(&a, 1, "attribute", jv_undef()), out);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (jv_iterate(r, v, &items)) return -1;
        *out = items->n ? items->v[name[0] == 'f' ? 0 : items->n - 1] : jv_undef();
        return 0;
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_impl(r, v, pos, npos, true, name[0] == 's', out);
    if (!strcmp(name, "select") || !strcmp(name, "reject")) return select_impl(r, v, pos, npos, false, name[0] == 's', out);
    if (!strcmp(name, "map")) {
        jlist *res;
        if (jv_iterate(r, v, &items) || !(res = jlist_new(r, items->n))) return -1;
        jval attribute = arg(&a, (size_t)-1, "attribute", jv_undef());
        for (size_t i = 0; i < items->n; i++) {
            jval x;
            if (attribute.t != JV_UNDEF) {
                if (attr_of(r, items->v[i], attribute, &x)) return -1;
                if (x.t == JV_UNDEF) x = arg(&a, (size_t)-1, "default", jv_undef());
            } else {
                if (npos < 1 || pos[0].t != JV_STR) return jr_fail(r, "map needs a filter name or attribute=");
                if (jfilter_apply(r, pos[0].s->s, items->v[i], pos + 1, npos - 1, NULL, NULL, 0, &x)) return -1;
            }
            res->v[res->n++] = x;
        }
        *out = jv_listv(res);
        return 0;
    }
    if (!strcmp(name, "unique")) {
        jlist *res;
        if (jv_iterate(r, v, &items) || !(res = jlist_new(r, 0))) return -1;
        for (size_t i = 0; i < items->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < res->n && !seen; k++) seen = jv_eq(res->v[k], items->v[i]);
            if (!seen && jlist_push(r, res, items->v[i])) return -1;
        }
        *out = jv_listv(res);
        return 0;
    }
    if (!strcmp(name, "reverse")) {
        if (jv_iterate(r, v, &items)) return -1;
        jlist *res = jlist_new(r, items->n);
        if (!res) return -1;
        for (size_t i = items->n; i-- > 0;) res->v[res->n++] = items->v[i];
        if (v.t == JV_STR) return join_values(r, res, jstr_new(r, "", 0), jv_undef(), out);
        *out = jv_listv(res);
        return 0;
    }
    if (!strcmp(name, "sort")) {
        if (jv_iterate(r, v, &items)) return -1;
        jlist *res = jlist_new(r, items->n);
        if (!res) return -1;
        if (items->n) memcpy(res->v, items->v, items->n * sizeof(jval));
        res->n = items->n;
        if (sort_list(r, res, jv_truthy(arg(&a, 0, "reverse", jv_bool(false))), arg(&a, 2, "attribute", jv_undef())))
            return -1;
        *out = jv_listv(res);
        return 0;
    }
    if (!strcmp(name, "dictsort")) {
        if (v.t != JV_DICT) return jr_fail(r, "dictsort needs a dict");
        jval fn = {0};
        fn.t = JV_FUNC;
        fn.fn = M_ITEMS;
        fn.self = &v;
        jval pairs;
        if (jfunc_call(r, fn, NULL, 0, NULL, NULL, 0, &pairs)) return -1;
        if (sort_list(r, pairs.l, jv_truthy(arg(&a, 2, "reverse", jv_bool(false))), jv_int(0))) return -1;
        *out = pairs;
        return 0;
    }
    if (!strcmp(name, "int")) {
        jval def = arg(&a, 0, "default", jv_int(0));
        if (v.t == JV_INT) *out = v;
        else if (v.t == JV_BOOL) *out = jv_int(v.b);
        else if (v.t == JV_FLOAT) *out = isfinite(v.f) ? jv_int((int64_t)v.f) : def;
        else if (v.t == JV_STR) {
            char *end;
            long long x = strtoll(v.s->s, &end, 10);
            *out = (end != v.s->s && *end == 0) ? jv_int(x) : def;
        } else *out = def;
        return 0;
    }
    if (!strcmp(name, "float")) {
        jval def = arg(&a, 0, "default", jv_float(0.0));
        if (v.t == JV_FLOAT) *out = v;
        else if (v.t == JV_INT || v.t == JV_BOOL) *out = jv_float(v.t == JV_INT ? (double)v.i : v.b);
        else if (v.t == JV_STR) {
            char *end;
            double x = strtod(v.s->s, &end);
            *out = (end != v.s->s && *end == 0) ? jv_float(x) : def;
        } else *out = def;
        return 0;
    }
    if (!strcmp(name, "abs")) {
        if (v.t == JV_INT) *out = jv_int(v.i < 0 ? -v.i : v.i);
        else if (v.t == JV_FLOAT) *out = jv_float(fabs(v.f));
        else return jr_fail(r, "bad operand type for abs(): '%s'", jv_type_name(v));
        return 0;
    }
    if (!strcmp(name, "sum")) {
        if (jv_iterate(r, v, &items)) return -1;
        jval attribute = arg(&a, 0, "attribute", jv_undef());
        jval acc = arg(&a, 1, "start", jv_int(0));
        for (size_t i = 0; i < items->n; i++) {
            jval x = items->v[i];
            if (attribute.t != JV_UNDEF && attr_of(r, x, attribute, &x)) return -1;
            if ((acc.t != JV_INT && acc.t != JV_FLOAT) || (x.t != JV_INT && x.t != JV_FLOAT && x.t != JV_BOOL))
                return jr_fail(r, "sum: unsupported operand types");
            if (acc.t == JV_INT && x.t != JV_FLOAT) acc = jv_int(acc.i + (x.t == JV_INT ? x.i : x.b));
            else acc = jv_float((acc.t == JV_INT ? (double)acc.i : acc.f) + (x.t == JV_FLOAT ? x.f : x.t == JV_INT ? (double)x.i : x.b));
        }
        *out = acc;
        return 0;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        if (jv_iterate(r, v, &items)) return -1;
        if (!items->n) {
            *out = jv_undef();
            return 0;
        }
        jval best = items->v[0];
        for (size_t i = 1; i < items->n; i++) {
            int c;
            if (jv_order(r, items->v[i], best, &c)) return -1;
            if (name[1] == 'i' ? c < 0 : c > 0) best = items->v[i];
        }
        *out = best;
        return 0;
    }
    if (!strcmp(name, "round")) {
        double x = v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : 0;
        jval p = arg(&a, 0, "precision", jv_int(0));
        double m = pow(10, (double)(p.t == JV_INT ? p.i : 0));
        double y = x * m, fl = floor(y), d = y - fl;
        y = d > 0.5 ? fl + 1 : d < 0.5 ? fl : (fmod(fl, 2) == 0 ? fl : fl + 1); /* half to even */
        *out = jv_float(y / m);
        return 0;
    }
    if (!strcmp(name, "format")) {
        if (jv_to_str(r, v, &s)) return -1;
        jlist *t = jlist_new(r, npos);
        if (!t) return -1;
        t->tuple = true;
        if (npos) memcpy(t->v, pos, npos * sizeof(jval));
        t->n = npos;
        return jformat_percent(r, s, jv_listv(t), out);
    }
    return jr_fail(r, "no filter named '%s'", name);
}
