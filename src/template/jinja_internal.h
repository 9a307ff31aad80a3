/* Internals of the Jinja interpreter shared by its files:
 *   jinja_arena.c/jinja_value.c  memory and values (Python semantics: str(),
 *                                repr(), ==, <, truthiness, JSON in and out)
 *   jinja_parse.c                lexer and parser -> tree of jnode
 *   jinja_eval.c                 rendering: scopes, statements, expressions
 *   jinja_builtins.c             filters, tests, methods, global functions
 * Every value created while rendering lives in the render's arena and is freed
 * with it (jinja_vars_free); nothing is freed one by one. */
#ifndef FITLM_TEMPLATE_JINJA_INTERNAL_H
#define FITLM_TEMPLATE_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "template/jinja.h"

/* ---- arena ---- */
typedef struct jarena_chunk jarena_chunk;
typedef struct jarena {
    jarena_chunk *head;
    size_t used;  /* bytes handed out plus chunk headers, in all */
    size_t limit; /* 0 = unlimited */
} jarena;

/* NULL when the limit is reached or malloc fails (the caller reports it). */
void *jarena_alloc(jarena *a, size_t n);
void jarena_free_all(jarena *a);

/* ---- values ---- */
typedef enum {
    JV_UNDEF = 0,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples (jlist.tuple) */
    JV_DICT,
    JV_NS,    /* namespace(): a mutable dict */
    JV_MACRO, /* a macro, or the caller() of a call block */
    JV_LOOP,  /* the `loop` variable of a for loop */
    JV_FUNC,  /* a built-in function or a bound method (fn, self) */
} jtype;

typedef struct jstr {
    size_t len;
    char s[]; /* len bytes of UTF-8, then a NUL */
} jstr;

struct jlist;
struct jdict;
struct jmacro;
struct jloop;

typedef struct jval {
    uint8_t t;
    uint16_t fn; /* JV_FUNC: which built-in */
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s; /* JV_STR; JV_UNDEF: the missing name or NULL */
        struct jlist *l;
        struct jdict *d; /* JV_DICT, JV_NS */
        struct jmacro *m;
        struct jloop *loop;
        struct jval *self; /* JV_FUNC: the bound object, NULL for a global */
    };
} jval;

typedef struct jlist {
    size_t n, cap;
    bool tuple;
    jval *v;
} jlist;

typedef struct jdict {
    size_t n, cap;
    jval *k, *v;
} jdict;

struct jnode;
struct jscope;

typedef struct jmacro {
    const struct jnode *def; /* N_MACRO, or N_CALLBLOCK for caller() */
    struct jscope *closure;
    jval caller; /* the caller() a call block passes, or undefined */
} jmacro;

typedef struct jloop {
    const jlist *items;
    size_t index0;
    int depth;
    /* {% for ... recursive %}: loop(xs) renders the loop again over xs (node: the N_FOR, scope: where
     * it runs); both in the render's arena, alive while the loop runs */
    bool recursive;
    const struct jnode *node;
    struct jscope *scope;
} jloop;

/* ---- the render context ---- */
typedef struct jr {
    jarena arena;
    jinja_limits lim;
    uint64_t steps;
    int depth;
    int line;    /* of the node being evaluated, for messages */
    bool raised; /* the error came from raise_exception() */
    bool failed;
    fitlm_error err;
} jr;

/* Sets the error (once; the first one wins) and returns -1. */
int jr_fail(jr *r, const char *fmt, ...) FITLM_PRINTF(2, 3);

static inline jval jv_undef(void) {
    jval v = {0};
    return v;
}
static inline jval jv_none(void) {
    jval v = {0};
    v.t = JV_NONE;
    return v;
}
static inline jval jv_bool(bool b) {
    jval v = {0};
    v.t = JV_BOOL;
    v.b = b;
    return v;
}
static inline jval jv_int(int64_t i) {
    jval v = {0};
    v.t = JV_INT;
    v.i = i;
    return v;
}
static inline jval jv_float(double f) {
    jval v = {0};
    v.t = JV_FLOAT;
    v.f = f;
    return v;
}
static inline jval jv_strv(jstr *s) {
    jval v = {0};
    v.t = JV_STR;
    v.s = s;
    return v;
}
static inline jval jv_listv(jlist *l) {
    jval v = {0};
    v.t = JV_LIST;
    v.l = l;
    return v;
}
static inline jval jv_dictv(jdict *d) {
    jval v = {0};
    v.t = JV_DICT;
    v.d = d;
    return v;
}

/* Constructors: NULL/-1 with the error set on failure (memory or size limit). */
jstr *jstr_new(jr *r, const char *s, size_t len);
jstr *jstr_cat(jr *r, const char *a, size_t alen, const char *b, size_t blen);
int jv_str(jr *r, const char *s, size_t len, jval *out);
jlist *jlist_new(jr *r, size_t cap);
int jlist_push(jr *r, jlist *l, jval v);
jdict *jdict_new(jr *r, size_t cap);
/* Inserts or replaces (replacing keeps the key's position). */
int jdict_set(jr *r, jdict *d, jval k, jval v);
/* The value of key, or NULL. */
jval *jdict_get(const jdict *d, jval k);
jval *jdict_get_str(const jdict *d, const char *key);

/* Growing text buffer in the arena (output, str(), repr(), tojson). */
typedef struct jbuf {
    char *p;
    size_t n, cap;
} jbuf;
int jbuf_put(jr *r, jbuf *b, const char *s, size_t n);
int jbuf_putc(jr *r, jbuf *b, char c);
jstr *jbuf_to_str(jr *r, const jbuf *b);

bool jv_truthy(jval v);
/* Python ==. */
bool jv_eq(jval a, jval b);
/* Python <, <=, >, >= (op: '<', 'l' (<=), '>', 'g' (>=)); -1 (error set) when
 * the types do not compare. */
int jv_order(jr *r, jval a, jval b, int *cmp);
const char *jv_type_name(jval v);
/* str(v) (undefined -> ""), and repr(v) (as Python prints a list's items). */
int jv_write_str(jr *r, jbuf *b, jval v);
int jv_write_repr(jr *r, jbuf *b, jval v);
int jv_to_str(jr *r, jval v, jstr **out);
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys):
 * indent NULL = none; item_sep/key_sep NULL = Python's defaults. */
int jv_write_json(jr *r, jbuf *b, jval v, const char *indent, const char *item_sep, const char *key_sep,
                  bool sort_keys, int level);
/* Python float repr (0.1, 1.0, 1e+20, inf, nan). */
void jv_format_float(double f, char out[40]);
/* Parses JSON text into a value (in r's arena). */
int jv_from_json(jr *r, const char *s, size_t len, jval *out);

/* UTF-8 helpers. */
size_t ju_len(const char *s, size_t n);                     /* code points */
size_t ju_offset(const char *s, size_t n, size_t cp_index); /* byte offset of a code point index (<= n) */
uint32_t ju_decode(const char *s, size_t n, size_t *adv);
size_t ju_encode(uint32_t cp, char out[4]);
bool ju_isspace(uint32_t cp);
bool ju_valid(const char *s, size_t n);

/* ---- the tree ---- */
typedef enum {
    /* expressions */
    N_LIT,
    N_NAME,
    N_LIST,
    N_TUPLE,
    N_DICT,
    N_GETATTR,
    N_GETITEM,
    N_SLICE,
    N_CALL,
    N_FILTER,
    N_TEST,
    N_BINOP,
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_COMPARE,
    N_COND,
    N_KWARG,
    /* statements */
    N_TEXT,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SETBLOCK,
    N_MACRO,
    N_CALLBLOCK,
    N_BREAK,
    N_CONTINUE,
    N_FILTERBLOCK,
    N_BODY, /* a plain body (generation blocks, with) */
} jnode_kind;

/* Binary operators (N_BINOP) and comparisons (N_COMPARE). */
enum {
    OP_ADD = 1,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
};

typedef struct jnodes {
    struct jnode **v;
    size_t n;
} jnodes;

typedef struct jnode {
    uint8_t kind;
    uint8_t op;   /* N_BINOP / N_COMPARE operator; N_TEST: 1 = negated */
    int line;
    const char *name; /* names (NUL-terminated, in the template's arena) */
    struct jnode *a, *b, *c, *d;
    jnodes args;   /* positional args, list items, dict pairs (N_KWARG a=key b=value), targets */
    jnodes kwargs; /* N_KWARG: name, a = value; macro parameters: N_KWARG name, a = default or NULL */
    jnodes body, body2;
    jval lit;
} jnode;

struct jinja_template {
    jarena arena; /* the tree and its literals */
    jnodes root;
};

/* ---- evaluation (jinja_eval.c) and built-ins (jinja_builtins.c) ---- */
typedef struct jscope jscope;
int jeval(jr *r, jscope *s, const jnode *n, jval *out);
/* Calls a callable value with evaluated arguments. */
int jcall_value(jr *r, jval callee, const jval *args, size_t nargs, const char *const *kwnames, const jval *kwvals,
                size_t nkw, jval *out);

/* Built-ins: each returns 0 or -1 with the error set. `found` false when there
 * is no filter/test/method/global of that name. */
int jfilter_apply(jr *r, const char *name, jval v, const jval *args, size_t nargs, const char *const *kwnames,
                  const jval *kwvals, size_t nkw, jval *out);
int jtest_apply(jr *r, const char *name, jval v, const jval *args, size_t nargs, bool *result);
/* obj.name: a bound method of strings, dicts and lists (JV_FUNC) or NULL. */
bool jmethod_lookup(jval obj, const char *name, jval *out, jr *r);
bool jglobal_lookup(const char *name, jval *out);
int jfunc_call(jr *r, jval fn, const jval *args, size_t nargs, const char *const *kwnames, const jval *kwvals,
               size_t nkw, jval *out);
/* Iterable -> list (lists themselves, dict keys, string characters, undefined
 * -> empty); -1 when not iterable. */
int jv_iterate(jr *r, jval v, jlist **out);

#endif
