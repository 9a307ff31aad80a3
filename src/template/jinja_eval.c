#define _GNU_SOURCE /* memmem */
/* Rendering: scopes, statements and expressions with Jinja's (Python's)
 * semantics, inside the bounds of jinja_limits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_internal.h"

struct jscope {
    jscope *parent;
    size_t n, cap;
    const char **names;
    jval *vals;
};

struct jinja_vars {
    jr r;
    jscope *root;
    bool used;
};

enum { FLOW_OK = 0, FLOW_BREAK = 1, FLOW_CONTINUE = 2 };

static jscope *scope_new(jr *r, jscope *parent) {
    jscope *s = jarena_alloc(&r->arena, sizeof *s);
    if (!s) {
        jr_fail(r, "the template needs more than %zu bytes of memory", r->lim.max_memory);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->parent = parent;
    return s;
}

static jval *scope_find_local(jscope *s, const char *name) {
    for (size_t i = s->n; i-- > 0;)
        if (!strcmp(s->names[i], name)) return &s->vals[i];
    return NULL;
}

static jval *scope_find(jscope *s, const char *name) {
    for (; s; s = s->parent) {
        jval *v = scope_find_local(s, name);
        if (v) return v;
    }
    return NULL;
}

static int scope_set(jr *r, jscope *s, const char *name, jval v) {
    jval *old = scope_find_local(s, name);
    if (old) {
        *old = v;
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nn = jarena_alloc(&r->arena, cap * sizeof *nn);
        jval *nv = nn ? jarena_alloc(&r->arena, cap * sizeof *nv) : NULL;
        if (!nv) return jr_fail(r, "the template needs more than %zu bytes of memory", r->lim.max_memory);
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
    return 0;
}

static int step(jr *r, const jnode *n) {
    r->line = n->line;
    if (++r->steps > r->lim.max_steps)
        return jr_fail(r, "the template took more than %llu steps", (unsigned long long)r->lim.max_steps);
    return 0;
}

static int undefined_error(jr *r, jval v) {
    if (v.t == JV_UNDEF && v.s) return jr_fail(r, "'%s' is undefined", v.s->s);
    return jr_fail(r, "a value is undefined");
}

static jval undef_named(jr *r, const char *name) {
    jval u = jv_undef();
    u.s = jstr_new(r, name, strlen(name));
    return u;
}

/* ---------------- attribute and item access ---------------- */
static int loop_attr(jr *r, const jloop *L, const char *name, jval *out) {
    size_t n = L->items->n, i = L->index0;
    if (!strcmp(name, "index")) *out = jv_int((int64_t)i + 1);
    else if (!strcmp(name, "index0")) *out = jv_int((int64_t)i);
    else if (!strcmp(name, "revindex")) *out = jv_int((int64_t)(n - i));
    else if (!strcmp(name, "revindex0")) *out = jv_int((int64_t)(n - i - 1));
    else if (!strcmp(name, "first")) *out = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *out = jv_bool(i + 1 == n);
    else if (!strcmp(name, "length")) *out = jv_int((int64_t)n);
    else if (!strcmp(name, "depth")) *out = jv_int(L->depth);
    else if (!strcmp(name, "depth0")) *out = jv_int(L->depth - 1);
    else if (!strcmp(name, "previtem")) *out = i > 0 ? L->items->v[i - 1] : undef_named(r, "previtem");
    else if (!strcmp(name, "nextitem")) *out = i + 1 < n ? L->items->v[i + 1] : undef_named(r, "nextitem");
    else *out = undef_named(r, name);
    return r->failed ? -1 : 0;
}

static int get_attr(jr *r, jval obj, const char *name, jval *out) {
    if (obj.t == JV_UNDEF) return undefined_error(r, obj);
    if (name[0] == '_') { /* the sandbox hides private attributes */
        *out = undef_named(r, name);
        return r->failed ? -1 : 0;
    }
    if (obj.t == JV_LOOP) return loop_attr(r, obj.loop, name, out);
    if (obj.t == JV_NS) {
        jval *v = jdict_get_str(obj.d, name);
        *out = v ? *v : undef_named(r, name);
        return r->failed ? -1 : 0;
    }
    if (jmethod_lookup(obj, name, out, r)) return r->failed ? -1 : 0;
    if (obj.t == JV_DICT) {
        jval *v = jdict_get_str(obj.d, name);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    *out = undef_named(r, name);
    return r->failed ? -1 : 0;
}

static bool as_index(jval k, int64_t *i) {
    if (k.t == JV_INT) *i = k.i;
    else if (k.t == JV_BOOL) *i = k.b;
    else return false;
    return true;
}

static int get_item(jr *r, jval obj, jval key, jval *out) {
    if (obj.t == JV_UNDEF) return undefined_error(r, obj);
    int64_t i;
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        jval *v = jdict_get(obj.d, key);
        if (v) {
            *out = *v;
            return 0;
        }
    } else if (obj.t == JV_LIST && as_index(key, &i)) {
        int64_t n = (int64_t)obj.l->n;
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
            *out = obj.l->v[i];
            return 0;
        }
    } else if (obj.t == JV_STR && as_index(key, &i)) {
        int64_t n = (int64_t)ju_len(obj.s->s, obj.s->len);
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
            size_t a = ju_offset(obj.s->s, obj.s->len, (size_t)i), b = ju_offset(obj.s->s, obj.s->len, (size_t)i + 1);
            return jv_str(r, obj.s->s + a, b - a, out);
        }
    }
    if (key.t == JV_STR && obj.t != JV_DICT && obj.t != JV_NS) return get_attr(r, obj, key.s->s, out);
    if (key.t == JV_STR && obj.t == JV_DICT && jmethod_lookup(obj, key.s->s, out, r)) return 0;
    *out = jv_undef();
    return 0;
}

static int slice_index(jr *r, jval v, int64_t *out, bool *given) {
    *given = false;
    if (v.t == JV_NONE || v.t == JV_UNDEF) return 0;
    if (!as_index(v, out)) return jr_fail(r, "slice indices must be integers or None");
    *given = true;
    return 0;
}

static int do_slice(jr *r, jval obj, jval vstart, jval vstop, jval vstep, jval *out) {
    int64_t start = 0, stop = 0, stp = 1;
    bool hs, he, hp;
    if (slice_index(r, vstart, &start, &hs) || slice_index(r, vstop, &stop, &he) || slice_index(r, vstep, &stp, &hp))
        return -1;
    if (!hp) stp = 1;
    if (stp == 0) return jr_fail(r, "slice step cannot be zero");
    if (obj.t == JV_UNDEF) return undefined_error(r, obj);
    int64_t n;
    if (obj.t == JV_LIST) n = (int64_t)obj.l->n;
    else if (obj.t == JV_STR) n = (int64_t)ju_len(obj.s->s, obj.s->len);
    else return jr_fail(r, "'%s' object is not subscriptable", jv_type_name(obj));
    /* Python's slice.indices() */
    if (!hs) start = stp > 0 ? 0 : n - 1;
    else {
        if (start < 0) start += n;
        if (start < 0) start = stp > 0 ? 0 : -1;
        if (start > n) start = stp > 0 ? n : n - 1;
        if (start == n && stp < 0) start = n - 1;
    }
    if (!he) stop = stp > 0 ? n : -1;
    else {
        if (stop < 0) stop += n;
        if (stop < 0) stop = stp > 0 ? 0 : -1;
        if (stop > n) stop = n;
    }
    if (obj.t == JV_LIST) {
        jlist *l = jlist_new(r, 0);
        if (!l) return -1;
        l->tuple = obj.l->tuple;
        for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp)
            if (jlist_push(r, l, obj.l->v[i])) return -1;
        *out = jv_listv(l);
        return 0;
    }
    const char *s = obj.s->s;
    size_t len = obj.s->len;
    if (stp == 1) {
        if (stop <= start) return jv_str(r, "", 0, out);
        size_t a = ju_offset(s, len, (size_t)start), b = ju_offset(s, len, (size_t)stop);
        return jv_str(r, s + a, b - a, out);
    }
    /* general step: index the code points */
    size_t *offs = jarena_alloc(&r->arena, ((size_t)n + 1) * sizeof *offs);
    if (!offs) return jr_fail(r, "out of template memory");
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) offs[k++] = i;
    offs[k] = len;
    jbuf b = {0};
    if (jbuf_put(r, &b, "", 0)) return -1;
    for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp)
        if (jbuf_put(r, &b, s + offs[i], offs[i + 1] - offs[i])) return -1;
    jstr *js = jbuf_to_str(r, &b);
    if (!js) return -1;
    *out = jv_strv(js);
    return 0;
}

/* ---------------- operators ---------------- */
static bool is_num(jval v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num_f(jval v) { return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : (double)v.b; }
static int64_t num_i(jval v) { return v.t == JV_INT ? v.i : (int64_t)v.b; }

static const char *op_text(int op) {
    static const char *t[] = {"", "+", "-", "*", "/", "//", "%", "**", "~"};
    return op <= OP_CONCAT ? t[op] : "?";
}

static int repeat(jr *r, jval seq, int64_t times, jval *out) {
    if (times < 0) times = 0;
    if (seq.t == JV_STR) {
        if (seq.s->len && (uint64_t)times > r->lim.max_output / seq.s->len)
            return jr_fail(r, "a string of more than %zu bytes is over the limit", r->lim.max_output);
        jstr *s = jstr_new(r, NULL, (size_t)times * seq.s->len);
        if (!s) return -1;
        for (int64_t i = 0; i < times; i++) memcpy(s->s + (size_t)i * seq.s->len, seq.s->s, seq.s->len);
        *out = jv_strv(s);
        return 0;
    }
    if (seq.l->n && (uint64_t)times > r->lim.max_memory / sizeof(jval) / seq.l->n)
        return jr_fail(r, "a list is over the memory limit");
    jlist *l = jlist_new(r, (size_t)times * seq.l->n);
    if (!l) return -1;
    l->tuple = seq.l->tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq.l->n; k++) l->v[l->n++] = seq.l->v[k];
    *out = jv_listv(l);
    return 0;
}

int jformat_percent(jr *r, jstr *fmt, jval args, jval *out); /* jinja_builtins.c */

static int binop(jr *r, int op, jval a, jval b, jval *out) {
    if (op == OP_CONCAT) {
        jstr *x, *y;
        if (jv_to_str(r, a, &x) || jv_to_str(r, b, &y)) return -1;
        jstr *s = jstr_cat(r, x->s, x->len, y->s, y->len);
        if (!s) return -1;
        *out = jv_strv(s);
        return 0;
    }
    if (a.t == JV_UNDEF) return undefined_error(r, a);
    if (b.t == JV_UNDEF) return undefined_error(r, b);
    if (is_num(a) && is_num(b)) {
        bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
        if (op == OP_DIV) {
            if (num_f(b) == 0) return jr_fail(r, "division by zero");
            *out = jv_float(num_f(a) / num_f(b));
            return 0;
        }
        if (fl || op == OP_POW) {
            double x = num_f(a), y = num_f(b), z;
            if (!fl && op == OP_POW && y >= 0) { /* int ** non-negative int stays an int */
                int64_t base = num_i(a), e = num_i(b), res = 1;
                while (e-- > 0)
                    if (__builtin_mul_overflow(res, base, &res)) return jr_fail(r, "integer overflow");
                *out = jv_int(res);
                return 0;
            }
            switch (op) {
            case OP_ADD: z = x + y; break;
            case OP_SUB: z = x - y; break;
            case OP_MUL: z = x * y; break;
            case OP_FLOORDIV:
                if (y == 0) return jr_fail(r, "float floor division by zero");
                z = floor(x / y);
                break;
            case OP_MOD:
                if (y == 0) return jr_fail(r, "float modulo");
                z = fmod(x, y);
                if (z != 0 && ((z < 0) != (y < 0))) z += y;
                break;
            default: z = pow(x, y);
            }
            *out = jv_float(z);
            return 0;
        }
        int64_t x = num_i(a), y = num_i(b), z;
        bool ovf = false;
        switch (op) {
        case OP_ADD: ovf = __builtin_add_overflow(x, y, &z); break;
        case OP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
        case OP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
        case OP_FLOORDIV:
        case OP_MOD:
            if (y == 0) return jr_fail(r, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) return jr_fail(r, "integer overflow");
            z = op == OP_FLOORDIV ? x / y : x % y;
            if (op == OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) z--;
            if (op == OP_MOD && z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        default: z = 0;
        }
        if (ovf) return jr_fail(r, "integer overflow");
        *out = jv_int(z);
        return 0;
    }
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) {
        jstr *s = jstr_cat(r, a.s->s, a.s->len, b.s->s, b.s->len);
        if (!s) return -1;
        *out = jv_strv(s);
        return 0;
    }
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) {
        jlist *l = jlist_new(r, a.l->n + b.l->n);
        if (!l) return -1;
        l->tuple = a.l->tuple;
        for (size_t i = 0; i < a.l->n; i++) l->v[l->n++] = a.l->v[i];
        for (size_t i = 0; i < b.l->n; i++) l->v[l->n++] = b.l->v[i];
        *out = jv_listv(l);
        return 0;
    }
    if (op == OP_MUL && (a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))
        return repeat(r, a, num_i(b), out);
    if (op == OP_MUL && (b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL))
        return repeat(r, b, num_i(a), out);
    if (op == OP_MOD && a.t == JV_STR) return jformat_percent(r, a.s, b, out);
    if (op == OP_ADD && a.t == JV_STR)
        return jr_fail(r, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    return jr_fail(r, "unsupported operand type(s) for %s: '%s' and '%s'", op_text(op), jv_type_name(a),
                   jv_type_name(b));
}

static int contains(jr *r, jval item, jval seq, bool *out) {
    switch (seq.t) {
    case JV_UNDEF: *out = false; return 0;
    case JV_STR:
        if (item.t != JV_STR) return jr_fail(r, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        *out = item.s->len == 0 || memmem(seq.s->s, seq.s->len, item.s->s, item.s->len) != NULL;
        return 0;
    case JV_LIST:
        *out = false;
        for (size_t i = 0; i < seq.l->n; i++)
            if (jv_eq(item, seq.l->v[i])) {
                *out = true;
                break;
            }
        r->steps += seq.l->n / 16;
        return 0;
    case JV_DICT:
    case JV_NS:
        *out = jdict_get(seq.d, item) != NULL;
        r->steps += seq.d->n / 16;
        return 0;
    default: return jr_fail(r, "argument of type '%s' is not iterable", jv_type_name(seq));
    }
}

/* ---------------- expressions ---------------- */
typedef struct args {
    jval *pos;
    size_t npos;
    const char **kwn;
    jval *kwv;
    size_t nkw;
} args;

static int eval_args(jr *r, jscope *s, const jnode *n, args *a, size_t extra_kw) {
    a->npos = n->args.n;
    a->nkw = n->kwargs.n;
    a->pos = jarena_alloc(&r->arena, (a->npos + 1) * sizeof(jval));
    a->kwv = jarena_alloc(&r->arena, (a->nkw + extra_kw + 1) * sizeof(jval));
    a->kwn = jarena_alloc(&r->arena, (a->nkw + extra_kw + 1) * sizeof(char *));
    if (!a->pos || !a->kwv || !a->kwn) return jr_fail(r, "out of template memory");
    for (size_t i = 0; i < a->npos; i++)
        if (jeval(r, s, n->args.v[i], &a->pos[i])) return -1;
    for (size_t i = 0; i < a->nkw; i++) {
        a->kwn[i] = n->kwargs.v[i]->name;
        if (jeval(r, s, n->kwargs.v[i]->a, &a->kwv[i])) return -1;
    }
    return 0;
}

static int eval_inner(jr *r, jscope *s, const jnode *n, jval *out) {
    jval a, b;
    switch (n->kind) {
    case N_LIT: *out = n->lit; return 0;
    case N_NAME: {
        jval *v = scope_find(s, n->name);
        if (v) *out = *v;
        else if (!jglobal_lookup(n->name, out)) *out = undef_named(r, n->name);
        return r->failed ? -1 : 0;
    }
    case N_LIST:
    case N_TUPLE: {
        jlist *l = jlist_new(r, n->args.n);
        if (!l) return -1;
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->args.n; i++)
            if (jeval(r, s, n->args.v[i], &l->v[l->n++])) return -1;
        *out = jv_listv(l);
        return 0;
    }
    case N_DICT: {
        jdict *d = jdict_new(r, n->args.n);
        if (!d) return -1;
        for (size_t i = 0; i < n->args.n; i++) {
            if (jeval(r, s, n->args.v[i]->a, &a) || jeval(r, s, n->args.v[i]->b, &b) || jdict_set(r, d, a, b)) return -1;
        }
        *out = jv_dictv(d);
        return 0;
    }
    case N_GETATTR:
        if (jeval(r, s, n->a, &a)) return -1;
        return get_attr(r, a, n->name, out);
    case N_GETITEM:
        if (jeval(r, s, n->a, &a) || jeval(r, s, n->b, &b)) return -1;
        return get_item(r, a, b, out);
    case N_SLICE: {
        jval st = jv_none(), sp = jv_none(), sz = jv_none();
        if (jeval(r, s, n->a, &a) || (n->b && jeval(r, s, n->b, &st)) || (n->c && jeval(r, s, n->c, &sp)) ||
            (n->d && jeval(r, s, n->d, &sz)))
            return -1;
        return do_slice(r, a, st, sp, sz, out);
    }
    case N_CALL: {
        args ar;
        if (jeval(r, s, n->a, &a) || eval_args(r, s, n, &ar, 0)) return -1;
        if (a.t == JV_UNDEF) return undefined_error(r, a);
        return jcall_value(r, a, ar.pos, ar.npos, ar.kwn, ar.kwv, ar.nkw, out);
    }
    case N_FILTER: {
        args ar;
        a = jv_undef();
        if ((n->a && jeval(r, s, n->a, &a)) || eval_args(r, s, n, &ar, 0)) return -1;
        return jfilter_apply(r, n->name, a, ar.pos, ar.npos, ar.kwn, ar.kwv, ar.nkw, out);
    }
    case N_TEST: {
        args ar;
        bool res;
        if (jeval(r, s, n->a, &a) || eval_args(r, s, n, &ar, 0)) return -1;
        if (jtest_apply(r, n->name, a, ar.pos, ar.npos, &res)) return -1;
        *out = jv_bool(n->op ? !res : res);
        return 0;
    }
    case N_BINOP:
        if (jeval(r, s, n->a, &a) || jeval(r, s, n->b, &b)) return -1;
        return binop(r, n->op, a, b, out);
    case N_NEG:
    case N_POS:
        if (jeval(r, s, n->a, &a)) return -1;
        if (a.t == JV_INT || a.t == JV_BOOL) {
            int64_t x = num_i(a);
            if (n->kind == N_NEG && x == INT64_MIN) return jr_fail(r, "integer overflow");
            *out = jv_int(n->kind == N_NEG ? -x : x);
        } else if (a.t == JV_FLOAT) {
            *out = jv_float(n->kind == N_NEG ? -a.f : a.f);
        } else if (a.t == JV_UNDEF) {
            return undefined_error(r, a);
        } else {
            return jr_fail(r, "bad operand type for unary %s: '%s'", n->kind == N_NEG ? "-" : "+", jv_type_name(a));
        }
        return 0;
    case N_NOT:
        if (jeval(r, s, n->a, &a)) return -1;
        *out = jv_bool(!jv_truthy(a));
        return 0;
    case N_AND:
        if (jeval(r, s, n->a, &a)) return -1;
        if (!jv_truthy(a)) {
            *out = a;
            return 0;
        }
        return jeval(r, s, n->b, out);
    case N_OR:
        if (jeval(r, s, n->a, &a)) return -1;
        if (jv_truthy(a)) {
            *out = a;
            return 0;
        }
        return jeval(r, s, n->b, out);
    case N_COMPARE: {
        if (jeval(r, s, n->a, &a) || jeval(r, s, n->b, &b)) return -1;
        bool res = false;
        int c = 0;
        switch (n->op) {
        case OP_EQ: res = jv_eq(a, b); break;
        case OP_NE: res = !jv_eq(a, b); break;
        case OP_IN:
        case OP_NOTIN:
            if (contains(r, a, b, &res)) return -1;
            if (n->op == OP_NOTIN) res = !res;
            break;
        default:
            if (a.t == JV_UNDEF) return undefined_error(r, a);
            if (b.t == JV_UNDEF) return undefined_error(r, b);
            if (jv_order(r, a, b, &c)) return -1;
            res = n->op == OP_LT ? c < 0 : n->op == OP_LE ? c <= 0 : n->op == OP_GT ? c > 0 : c >= 0;
        }
        *out = jv_bool(res);
        return 0;
    }
    case N_COND:
        if (jeval(r, s, n->b, &a)) return -1;
        if (jv_truthy(a)) return jeval(r, s, n->a, out);
        if (n->c) return jeval(r, s, n->c, out);
        *out = jv_undef();
        return 0;
    default: return jr_fail(r, "internal error: node %d is not an expression", n->kind);
    }
}

int jeval(jr *r, jscope *s, const jnode *n, jval *out) {
    if (step(r, n)) return -1;
    if (++r->depth > r->lim.max_depth) return jr_fail(r, "the template nests deeper than %d levels", r->lim.max_depth);
    int rc = eval_inner(r, s, n, out);
    r->depth--;
    return rc;
}

/* ---------------- statements ---------------- */
static int exec_body(jr *r, jscope *s, jnodes body, jbuf *out);

static int assign(jr *r, jscope *s, const jnode *t, jval v) {
    if (t->kind == N_NAME) return scope_set(r, s, t->name, v);
    /* ns.attr */
    jval *ns = scope_find(s, t->a->name);
    if (!ns || ns->t != JV_NS) return jr_fail(r, "can only assign attributes of a namespace(), not of '%s'", t->a->name);
    jval k;
    if (jv_str(r, t->name, strlen(t->name), &k)) return -1;
    return jdict_set(r, ns->d, k, v);
}

static int assign_targets(jr *r, jscope *s, jnodes targets, jval v) {
    if (targets.n == 1) return assign(r, s, targets.v[0], v);
    jlist *items;
    if (jv_iterate(r, v, &items)) return -1;
    if (items->n != targets.n)
        return jr_fail(r, "cannot unpack %zu values into %zu names", items->n, targets.n);
    for (size_t i = 0; i < targets.n; i++)
        if (assign(r, s, targets.v[i], items->v[i])) return -1;
    return 0;
}

static int render_to_string(jr *r, jscope *s, jnodes body, jval *out) {
    jbuf b = {0};
    int rc = exec_body(r, s, body, &b);
    if (rc < 0) return -1;
    if (rc > 0) return jr_fail(r, "'break' or 'continue' outside a loop");
    return jv_str(r, b.p ? b.p : "", b.n, out);
}

/* The for loop n over the value seqv (its iterable, or the argument of a recursive loop(...) call). */
static int exec_for_over(jr *r, jscope *s, const jnode *n, jval seqv, jbuf *out, int depth) {
    jlist *items;
    if (jv_iterate(r, seqv, &items)) return -1;
    if (n->b) { /* for x in xs if cond */
        jlist *kept = jlist_new(r, items->n);
        if (!kept) return -1;
        jscope *fs = scope_new(r, s);
        if (!fs) return -1;
        for (size_t i = 0; i < items->n; i++) {
            jval c;
            fs->n = 0;
            if (assign_targets(r, fs, n->args, items->v[i]) || jeval(r, fs, n->b, &c)) return -1;
            if (jv_truthy(c)) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    jloop *L = jarena_alloc(&r->arena, sizeof *L);
    if (!L) return jr_fail(r, "out of template memory");
    L->items = items;
    L->depth = depth;
    L->recursive = n->op == 1;
    L->node = n;
    L->scope = s;
    /* one scope for all iterations, emptied at each: a loop's memory does not
     * grow with its length */
    jscope *it = scope_new(r, s);
    if (!it) return -1;
    for (size_t i = 0; i < items->n; i++) {
        L->index0 = i;
        it->n = 0;
        if (step(r, n) || assign_targets(r, it, n->args, items->v[i])) return -1;
        jval lv = {0};
        lv.t = JV_LOOP;
        lv.loop = L;
        if (scope_set(r, it, "loop", lv)) return -1;
        int rc = exec_body(r, it, n->body, out);
        if (rc < 0) return -1;
        if (rc == FLOW_BREAK) break;
    }
    if (items->n == 0 && n->body2.n) {
        int rc = exec_body(r, s, n->body2, out);
        if (rc) return rc;
    }
    return 0;
}

static int exec_for(jr *r, jscope *s, const jnode *n, jbuf *out, int depth) {
    jval seqv;
    if (jeval(r, s, n->a, &seqv)) return -1;
    return exec_for_over(r, s, n, seqv, out, depth);
}

/* loop(xs) in a recursive loop: the loop rendered over xs one level deeper, as a string. */
static int call_loop(jr *r, const jloop *L, const jval *argv, size_t nargs, size_t nkw, jval *out) {
    if (!L->recursive)
        return jr_fail(r, "the loop must be marked as recursive to be called recursively ({%% for ... recursive %%})");
    if (nargs != 1 || nkw) return jr_fail(r, "loop() takes exactly one argument, the items to loop over");
    if (L->depth >= r->lim.max_depth) return jr_fail(r, "recursive loops nest deeper than %d levels", r->lim.max_depth);
    jbuf b = {0};
    int rc = exec_for_over(r, L->scope, L->node, argv[0], &b, L->depth + 1);
    if (rc < 0) return -1;
    return jv_str(r, b.p ? b.p : "", b.n, out);
}

static int exec_node(jr *r, jscope *s, const jnode *n, jbuf *out) {
    jval v;
    switch (n->kind) {
    case N_TEXT: return jbuf_put(r, out, n->lit.s->s, n->lit.s->len);
    case N_OUTPUT:
        if (jeval(r, s, n->a, &v)) return -1;
        r->line = n->line;
        return jv_write_str(r, out, v);
    case N_IF:
        if (jeval(r, s, n->a, &v)) return -1;
        return exec_body(r, s, jv_truthy(v) ? n->body : n->body2, out);
    case N_FOR: return exec_for(r, s, n, out, 1); /* depth grows only in recursive loops */
    case N_SET:
        if (jeval(r, s, n->a, &v)) return -1;
        return assign_targets(r, s, n->args, v);
    case N_SETBLOCK:
        if (render_to_string(r, s, n->body, &v)) return -1;
        return assign(r, s, n->args.v[0], v);
    case N_MACRO: {
        jmacro *m = jarena_alloc(&r->arena, sizeof *m);
        if (!m) return jr_fail(r, "out of template memory");
        m->def = n;
        m->closure = s;
        m->caller = jv_undef();
        v = jv_undef();
        v.t = JV_MACRO;
        v.m = m;
        return scope_set(r, s, n->name, v);
    }
    case N_CALLBLOCK: {
        jmacro *m = jarena_alloc(&r->arena, sizeof *m);
        if (!m) return jr_fail(r, "out of template memory");
        m->def = n;
        m->closure = s;
        m->caller = jv_undef();
        jval callee, caller = {0};
        caller.t = JV_MACRO;
        caller.m = m;
        args ar;
        if (jeval(r, s, n->a->a, &callee) || eval_args(r, s, n->a, &ar, 1)) return -1;
        ar.kwn[ar.nkw] = "caller";
        ar.kwv[ar.nkw] = caller;
        ar.nkw++;
        if (callee.t != JV_MACRO) return jr_fail(r, "'call' needs a macro");
        if (jcall_value(r, callee, ar.pos, ar.npos, ar.kwn, ar.kwv, ar.nkw, &v)) return -1;
        return jv_write_str(r, out, v);
    }
    case N_FILTERBLOCK: {
        jval body;
        if (render_to_string(r, s, n->body, &body)) return -1;
        /* apply the chain innermost first */
        const jnode *chain[64];
        size_t k = 0;
        for (const jnode *f = n->a; f; f = f->a) {
            if (k == 64) return jr_fail(r, "too many filters");
            chain[k++] = f;
        }
        while (k-- > 0) {
            args ar;
            if (eval_args(r, s, chain[k], &ar, 0)) return -1;
            if (jfilter_apply(r, chain[k]->name, body, ar.pos, ar.npos, ar.kwn, ar.kwv, ar.nkw, &body)) return -1;
        }
        return jv_write_str(r, out, body);
    }
    case N_BODY: return exec_body(r, s, n->body, out);
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: return jr_fail(r, "internal error: node %d is not a statement", n->kind);
    }
}

static int exec_body(jr *r, jscope *s, jnodes body, jbuf *out) {
    if (++r->depth > r->lim.max_depth) return jr_fail(r, "the template nests deeper than %d levels", r->lim.max_depth);
    for (size_t i = 0; i < body.n; i++) {
        if (step(r, body.v[i])) return -1;
        int rc = exec_node(r, s, body.v[i], out);
        if (rc) {
            r->depth--;
            return rc;
        }
    }
    r->depth--;
    return 0;
}

/* ---------------- calls ---------------- */
static int call_macro(jr *r, const jmacro *m, const jval *pos, size_t npos, const char *const *kwn, const jval *kwv,
                      size_t nkw, jval *out) {
    const jnode *def = m->def;
    jscope *s = scope_new(r, m->closure);
    if (!s) return -1;
    size_t np = def->kwargs.n;
    jlist *varargs = jlist_new(r, 0);
    jdict *kwargs = jdict_new(r, 0);
    if (!varargs || !kwargs) return -1;
    varargs->tuple = true;
    bool *bound = jarena_alloc(&r->arena, np + 1);
    if (!bound) return jr_fail(r, "out of template memory");
    memset(bound, 0, np + 1);
    for (size_t i = 0; i < npos; i++) {
        if (i < np) {
            if (scope_set(r, s, def->kwargs.v[i]->name, pos[i])) return -1;
            bound[i] = true;
        } else if (jlist_push(r, varargs, pos[i])) {
            return -1;
        }
    }
    jval caller = m->caller;
    for (size_t k = 0; k < nkw; k++) {
        if (!strcmp(kwn[k], "caller") && kwv[k].t == JV_MACRO && def->kind == N_MACRO) {
            caller = kwv[k];
            continue;
        }
        size_t i;
        for (i = 0; i < np; i++)
            if (!strcmp(def->kwargs.v[i]->name, kwn[k])) break;
        if (i < np) {
            if (bound[i]) return jr_fail(r, "macro got multiple values for argument '%s'", kwn[k]);
            if (scope_set(r, s, kwn[k], kwv[k])) return -1;
            bound[i] = true;
        } else {
            jval key;
            if (jv_str(r, kwn[k], strlen(kwn[k]), &key) || jdict_set(r, kwargs, key, kwv[k])) return -1;
        }
    }
    for (size_t i = 0; i < np; i++) {
        if (bound[i]) continue;
        jval v = jv_undef();
        if (def->kwargs.v[i]->a) {
            if (jeval(r, s, def->kwargs.v[i]->a, &v)) return -1;
        } else {
            v = undef_named(r, def->kwargs.v[i]->name);
        }
        if (scope_set(r, s, def->kwargs.v[i]->name, v)) return -1;
    }
    if (scope_set(r, s, "varargs", jv_listv(varargs)) || scope_set(r, s, "kwargs", jv_dictv(kwargs))) return -1;
    if (caller.t == JV_MACRO && scope_set(r, s, "caller", caller)) return -1;
    return render_to_string(r, s, def->body, out);
}

int jcall_value(jr *r, jval callee, const jval *args_, size_t nargs, const char *const *kwnames, const jval *kwvals,
                size_t nkw, jval *out) {
    if (callee.t == JV_MACRO) {
        if (++r->depth > r->lim.max_depth)
            return jr_fail(r, "macro calls nest deeper than %d levels", r->lim.max_depth);
        int rc = call_macro(r, callee.m, args_, nargs, kwnames, kwvals, nkw, out);
        r->depth--;
        return rc;
    }
    if (callee.t == JV_FUNC) return jfunc_call(r, callee, args_, nargs, kwnames, kwvals, nkw, out);
    if (callee.t == JV_LOOP) {
        (void)kwnames;
        (void)kwvals;
        if (++r->depth > r->lim.max_depth) return jr_fail(r, "loop calls nest deeper than %d levels", r->lim.max_depth);
        int rc = call_loop(r, callee.loop, args_, nargs, nkw, out);
        r->depth--;
        return rc;
    }
    if (callee.t == JV_UNDEF) return undefined_error(r, callee);
    return jr_fail(r, "'%s' object is not callable", jv_type_name(callee));
}

/* ---------------- public API ---------------- */
jinja_limits jinja_default_limits(void) {
    jinja_limits l = {16u << 20, 64u << 20, 5000000, 400};
    return l;
}

jinja_vars *jinja_vars_new(const jinja_limits *limits) {
    jinja_vars *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->r.lim = limits ? *limits : jinja_default_limits();
    v->r.arena.limit = v->r.lim.max_memory;
    v->root = scope_new(&v->r, NULL);
    if (!v->root) {
        jinja_vars_free(v);
        return NULL;
    }
    return v;
}

void jinja_vars_free(jinja_vars *v) {
    if (!v) return;
    jarena_free_all(&v->r.arena);
    free(v);
}

static int set_value(jinja_vars *v, const char *name, jval val, fitlm_error *err) {
    char *nm = jarena_alloc(&v->r.arena, strlen(name) + 1);
    if (!nm) return fitlm_fail(err, "out of memory");
    strcpy(nm, name);
    if (scope_set(&v->r, v->root, nm, val)) {
        if (err) *err = v->r.err;
        return -1;
    }
    return 0;
}

static int vars_fail(jinja_vars *v, fitlm_error *err) {
    if (err) *err = v->r.err;
    v->r.failed = false;
    return -1;
}

int jinja_vars_set_json(jinja_vars *v, const char *name, const char *json, size_t len, fitlm_error *err) {
    jval val;
    if (jv_from_json(&v->r, json, len, &val)) return vars_fail(v, err);
    return set_value(v, name, val, err);
}

int jinja_vars_set_json_object(jinja_vars *v, const char *json, size_t len, fitlm_error *err) {
    jval val;
    if (jv_from_json(&v->r, json, len, &val)) return vars_fail(v, err);
    if (val.t != JV_DICT) return fitlm_fail(err, "expected a JSON object, got %s", jv_type_name(val));
    for (size_t i = 0; i < val.d->n; i++)
        if (set_value(v, val.d->k[i].s->s, val.d->v[i], err)) return -1;
    return 0;
}

int jinja_vars_set_string(jinja_vars *v, const char *name, const char *s, size_t len, fitlm_error *err) {
    if (!ju_valid(s, len)) return fitlm_fail(err, "%s: not valid UTF-8", name);
    jval val;
    if (jv_str(&v->r, s, len, &val)) return vars_fail(v, err);
    return set_value(v, name, val, err);
}

int jinja_vars_set_bool(jinja_vars *v, const char *name, bool b, fitlm_error *err) {
    return set_value(v, name, jv_bool(b), err);
}

int jinja_vars_set_none(jinja_vars *v, const char *name, fitlm_error *err) {
    return set_value(v, name, jv_none(), err);
}

char *jinja_render(const jinja_template *t, jinja_vars *v, size_t *len_out, bool *raised, fitlm_error *err) {
    if (raised) *raised = false;
    if (v->used) {
        fitlm_fail(err, "jinja_render: these variables were already used for a render");
        return NULL;
    }
    v->used = true;
    jr *r = &v->r;
    jscope *top = scope_new(r, v->root);
    jbuf out = {0};
    int rc = top ? exec_body(r, top, t->root, &out) : -1;
    if (rc > 0) rc = jr_fail(r, "'break' or 'continue' outside a loop");
    if (rc) {
        if (raised) *raised = r->raised;
        if (err) *err = r->err;
        return NULL;
    }
    char *res = malloc(out.n + 1);
    if (!res) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    if (out.n) memcpy(res, out.p, out.n);
    res[out.n] = 0;
    if (len_out) *len_out = out.n;
    return res;
}
