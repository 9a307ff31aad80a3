/* Lexer and parser: template text -> tree (jnode), with Jinja's whitespace
 * rules under trim_blocks and lstrip_blocks, and Jinja's expression grammar. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_internal.h"
#include "template/jinja_unicode_names.h"

#define MAX_TEMPLATE_BYTES (4u << 20)
#define MAX_PARSE_DEPTH 200

enum { TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF };

typedef struct tok {
    int type, line;
    const char *s; /* text, name, string value, operator */
    size_t len;
    int64_t i;
    double f;
} tok;

typedef struct lexer {
    jarena *arena;
    const char *src;
    size_t n, pos;
    int line;
    tok *toks;
    size_t ntok, cap;
    fitlm_error *err;
} lexer;

static int lex_fail(lexer *L, const char *fmt, ...) FITLM_PRINTF(2, 3);
static int lex_fail(lexer *L, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fitlm_fail(L->err, "line %d: %s", L->line, msg);
    return -1;
}

static char *arena_strndup(jarena *a, const char *s, size_t n) {
    char *p = jarena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int push(lexer *L, int type, const char *s, size_t len) {
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *nt = realloc(L->toks, cap * sizeof *nt);
        if (!nt) return lex_fail(L, "out of memory");
        L->toks = nt;
        L->cap = cap;
    }
    tok *t = &L->toks[L->ntok++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = L->line;
    t->s = s;
    t->len = len;
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void count_lines(lexer *L, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') L->line++;
}

/* Emits text [a, b), already stripped. */
static int emit_text(lexer *L, size_t a, size_t b) {
    if (b <= a) return 0;
    char *s = arena_strndup(L->arena, L->src + a, b - a);
    if (!s) return lex_fail(L, "out of memory");
    return push(L, TK_TEXT, s, b - a);
}

static const char *const k_ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                    ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};

/* Decodes a Python string literal body (unicode-escape rules). */
/* The code point named name[0..n) (any case, as Python's \N{...}), from the table of
 * jinja_unicode_names.h, or CJK UNIFIED IDEOGRAPH-XXXX (capitals only, as Python). 0, or -1 when
 * unknown. */
static int unicode_by_name(const char *name, size_t n, uint32_t *cp) {
    char up[128];
    if (n >= sizeof up) return -1;
    for (size_t i = 0; i < n; i++) up[i] = (name[i] >= 'a' && name[i] <= 'z') ? (char)(name[i] - 32) : name[i];
    up[n] = 0;
    static const char cjk[] = "CJK UNIFIED IDEOGRAPH-";
    size_t cl = sizeof cjk - 1;
    if (n > cl && !memcmp(up, cjk, cl)) { /* Python: this form only in capitals */
        if (memcmp(name, cjk, cl) || (n - cl != 4 && n - cl != 5)) return -1;
        uint32_t v = 0;
        for (size_t i = cl; i < n; i++) {
            char c = name[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + (uint32_t)d;
        }
        /* the unified ideograph blocks of Unicode 14 */
        static const uint32_t blocks[][2] = {{0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0x20000, 0x2A6DF},
                                             {0x2A700, 0x2B738}, {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1},
                                             {0x2CEB0, 0x2EBE0}, {0x30000, 0x3134A}};
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
            if (v >= blocks[b][0] && v <= blocks[b][1]) {
                *cp = v;
                return 0;
            }
        return -1;
    }
    size_t lo = 0, hi = sizeof junicode_names / sizeof junicode_names[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(junicode_names[mid].name, up);
        if (c == 0) {
            *cp = junicode_names[mid].cp;
            return 0;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static int decode_string(lexer *L, const char *s, size_t n, char **out, size_t *out_len) {
    char *o = jarena_alloc(L->arena, n + 1);
    if (!o) return lex_fail(L, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[k++] = s[i];
            continue;
        }
        char e = s[++i];
        uint32_t cp;
        int digits = 0;
        switch (e) {
        case '\n': continue;
        case '\\': o[k++] = '\\'; continue;
        case '\'': o[k++] = '\''; continue;
        case '"': o[k++] = '"'; continue;
        case 'a': o[k++] = '\a'; continue;
        case 'b': o[k++] = '\b'; continue;
        case 'f': o[k++] = '\f'; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'v': o[k++] = '\v'; continue;
        case 'N': { /* \N{NAME}: a Unicode character by name */
            size_t close = i + 1;
            while (close < n && s[close] != '}') close++;
            if (i + 1 >= n || s[i + 1] != '{' || close >= n || close == i + 2)
                return lex_fail(L, "malformed \\N character escape in a string");
            if (unicode_by_name(s + i + 2, close - i - 2, &cp))
                return lex_fail(L, "unknown Unicode character name '%.*s' (fitlm knows the names of the blocks in "
                                   "src/template/jinja_unicode_names.h and CJK ideographs)",
                                (int)(close - i - 2 > 80 ? 80 : close - i - 2), s + i + 2);
            i = close;
            char u8[4];
            size_t l = ju_encode(cp, u8); /* fits: the escape took at least 5 source bytes */
            memcpy(o + k, u8, l);
            k += l;
            continue;
        }
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = 0;
                int m = 0;
                while (m < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (uint32_t)(s[i++] - '0'), m++;
                i--;
                char u8[4];
                size_t l = ju_encode(cp, u8);
                memcpy(o + k, u8, l); /* an octal escape needs at most 2 bytes for 4 source bytes */
                k += l;
                continue;
            }
            o[k++] = '\\';
            o[k++] = e;
            continue;
        }
        cp = 0;
        for (int m = 0; m < digits; m++) {
            char c = (i + 1 + (size_t)m < n) ? s[i + 1 + m] : 0;
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0) return lex_fail(L, "truncated \\%c escape in a string", e);
            cp = cp * 16 + (uint32_t)v;
        }
        i += (size_t)digits;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return lex_fail(L, "bad \\%c escape in a string", e);
        char u8[4];
        size_t l = ju_encode(cp, u8); /* fits: the escape took at least 4 source bytes */
        memcpy(o + k, u8, l);
        k += l;
    }
    o[k] = 0;
    *out = o;
    *out_len = k;
    return 0;
}

/* Lexes the inside of {{ }} or {% %} from L->pos; stops after the end marker.
 * *strip_after: the end had '-'; *keep_nl: the end had '+'. */
static int lex_tag(lexer *L, bool block, bool *strip_after, bool *keep_nl) {
    char endc = block ? '%' : '}';
    int balance = 0;
    *strip_after = *keep_nl = false;
    for (;;) {
        while (L->pos < L->n && is_ws(L->src[L->pos])) {
            if (L->src[L->pos] == '\n') L->line++;
            L->pos++;
        }
        if (L->pos >= L->n) return lex_fail(L, "unexpected end of template inside a tag");
        const char *p = L->src + L->pos;
        size_t left = L->n - L->pos;
        if (balance == 0) {
            if (left >= 3 && (p[0] == '-' || p[0] == '+') && p[1] == endc && p[2] == '}') {
                *strip_after = p[0] == '-';
                *keep_nl = p[0] == '+';
                L->pos += 3;
                return push(L, block ? TK_BLOCK_END : TK_VAR_END, NULL, 0);
            }
            if (left >= 2 && p[0] == endc && p[1] == '}') {
                L->pos += 2;
                return push(L, block ? TK_BLOCK_END : TK_VAR_END, NULL, 0);
            }
        }
        char c = p[0];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t l = 1;
            while (l < left && ((p[l] >= 'a' && p[l] <= 'z') || (p[l] >= 'A' && p[l] <= 'Z') || p[l] == '_' ||
                                (p[l] >= '0' && p[l] <= '9')))
                l++;
            char *s = arena_strndup(L->arena, p, l);
            if (!s || push(L, TK_NAME, s, l)) return lex_fail(L, "out of memory");
            L->pos += l;
        } else if (c >= '0' && c <= '9') {
            size_t l = 0;
            char num[64];
            size_t k = 0;
            bool is_float = false;
            while (l < left && ((p[l] >= '0' && p[l] <= '9') || p[l] == '_')) {
                if (p[l] != '_' && k < 63) num[k++] = p[l];
                l++;
            }
            bool after_dot = L->pos > 0 && L->src[L->pos - 1] == '.';
            if (!after_dot && l + 1 < left && p[l] == '.' && p[l + 1] >= '0' && p[l + 1] <= '9') {
                is_float = true;
                if (k < 63) num[k++] = '.';
                l++;
                while (l < left && ((p[l] >= '0' && p[l] <= '9') || p[l] == '_')) {
                    if (p[l] != '_' && k < 63) num[k++] = p[l];
                    l++;
                }
            }
            if (!after_dot && l < left && (p[l] == 'e' || p[l] == 'E')) {
                size_t e = l + 1;
                if (e < left && (p[e] == '+' || p[e] == '-')) e++;
                if (e < left && p[e] >= '0' && p[e] <= '9') {
                    is_float = true;
                    if (k < 63) num[k++] = 'e';
                    for (size_t q = l + 1; q < e; q++)
                        if (k < 63) num[k++] = p[q];
                    l = e;
                    while (l < left && p[l] >= '0' && p[l] <= '9') {
                        if (k < 63) num[k++] = p[l];
                        l++;
                    }
                }
            }
            num[k] = 0;
            if (push(L, is_float ? TK_FLOAT : TK_INT, NULL, 0)) return -1;
            tok *t = &L->toks[L->ntok - 1];
            if (is_float) {
                t->f = strtod(num, NULL);
            } else {
                errno = 0;
                t->i = strtoll(num, NULL, 10);
                if (errno == ERANGE) return lex_fail(L, "integer literal too large");
            }
            L->pos += l;
        } else if (c == '\'' || c == '"') {
            size_t l = 1;
            while (l < left && p[l] != c) {
                if (p[l] == '\\' && l + 1 < left) l++;
                l++;
            }
            if (l >= left) return lex_fail(L, "unterminated string");
            char *s = NULL;
            size_t sl = 0;
            if (decode_string(L, p + 1, l - 1, &s, &sl)) return -1;
            if (push(L, TK_STRING, s, sl)) return -1;
            count_lines(L, p, l);
            L->pos += l + 1;
        } else {
            const char *op = NULL;
            for (size_t k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
                size_t ol = strlen(k_ops[k]);
                if (left >= ol && !memcmp(p, k_ops[k], ol)) {
                    op = k_ops[k];
                    break;
                }
            }
            if (!op) return lex_fail(L, "unexpected character '%c'", c);
            if (op[0] == '(' || op[0] == '[' || op[0] == '{') balance++;
            if (op[0] == ')' || op[0] == ']' || op[0] == '}') {
                if (balance == 0) return lex_fail(L, "unexpected '%c'", op[0]);
                balance--;
            }
            if (push(L, TK_OP, op, strlen(op))) return -1;
            L->pos += strlen(op);
        }
    }
}

/* After a tag end: '-' strips all whitespace; trim_blocks drops one newline
 * after a block or comment. */
static void after_tag(lexer *L, bool strip, bool trim_nl) {
    if (strip) {
        while (L->pos < L->n && is_ws(L->src[L->pos])) {
            if (L->src[L->pos] == '\n') L->line++;
            L->pos++;
        }
    } else if (trim_nl && L->pos < L->n && L->src[L->pos] == '\n') {
        L->line++;
        L->pos++;
    }
}

/* {% raw %}...{% endraw %}: L->pos is just after the raw tag's end. */
static int lex_raw(lexer *L) {
    size_t start = L->pos;
    for (size_t i = start; i + 1 < L->n; i++) {
        if (L->src[i] != '{' || L->src[i + 1] != '%') continue;
        size_t j = i + 2;
        bool strip_before = j < L->n && L->src[j] == '-';
        if (j < L->n && (L->src[j] == '-' || L->src[j] == '+')) j++;
        while (j < L->n && is_ws(L->src[j])) j++;
        if (L->n - j < 6 || memcmp(L->src + j, "endraw", 6)) continue;
        j += 6;
        while (j < L->n && is_ws(L->src[j])) j++;
        bool strip_after = false, keep = false;
        if (j < L->n && (L->src[j] == '-' || L->src[j] == '+')) strip_after = L->src[j] == '-', keep = L->src[j] == '+', j++;
        if (L->n - j < 2 || L->src[j] != '%' || L->src[j + 1] != '}') continue;
        size_t end = i;
        if (strip_before)
            while (end > start && is_ws(L->src[end - 1])) end--;
        if (emit_text(L, start, end)) return -1;
        count_lines(L, L->src + start, j + 2 - start);
        L->pos = j + 2;
        after_tag(L, strip_after, !keep);
        return 0;
    }
    return lex_fail(L, "missing {%% endraw %%}");
}

static int lex_all(lexer *L) {
    size_t text_start = 0;
    while (L->pos <= L->n) {
        const char *p = L->src + L->pos;
        const char *tag = NULL;
        for (const char *q = p; (q = memchr(q, '{', (size_t)(L->src + L->n - q))) != NULL; q++) {
            if (q + 1 < L->src + L->n && (q[1] == '{' || q[1] == '%' || q[1] == '#')) {
                tag = q;
                break;
            }
        }
        if (!tag) {
            if (emit_text(L, text_start, L->n)) return -1;
            count_lines(L, L->src + text_start, L->n - text_start);
            break;
        }
        size_t tpos = (size_t)(tag - L->src);
        char kind = tag[1];
        char sign = tpos + 2 < L->n ? tag[2] : 0;
        size_t text_end = tpos;
        bool line_starting = text_start == 0 || L->src[text_start - 1] == '\n';
        if (sign == '-') {
            while (text_end > text_start && is_ws(L->src[text_end - 1])) text_end--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: drop the spaces between a line start and the tag */
            size_t l = text_end;
            while (l > text_start && L->src[l - 1] != '\n') l--;
            bool at_line_start = (l > text_start) || line_starting;
            if (at_line_start && l < text_end) {
                bool all_ws = true;
                for (size_t k = l; k < text_end; k++)
                    if (!is_ws(L->src[k])) all_ws = false;
                if (all_ws) text_end = l;
            }
        }
        if (emit_text(L, text_start, text_end)) return -1;
        count_lines(L, L->src + text_start, tpos - text_start);
        L->pos = tpos + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
        if (kind == '#') {
            const char *e = NULL;
            for (size_t k = L->pos; k + 1 < L->n; k++)
                if (L->src[k] == '#' && L->src[k + 1] == '}') {
                    e = L->src + k;
                    break;
                }
            if (!e) return lex_fail(L, "unterminated comment");
            size_t epos = (size_t)(e - L->src);
            bool strip = epos > L->pos && L->src[epos - 1] == '-';
            bool keep = epos > L->pos && L->src[epos - 1] == '+';
            count_lines(L, L->src + L->pos, epos + 2 - L->pos);
            L->pos = epos + 2;
            after_tag(L, strip, !keep);
        } else {
            bool block = kind == '%';
            size_t first = L->ntok;
            if (push(L, block ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, NULL, 0)) return -1;
            bool strip, keep;
            if (lex_tag(L, block, &strip, &keep)) return -1;
            after_tag(L, strip, block && !keep);
            if (block && L->ntok == first + 3 && L->toks[first + 1].type == TK_NAME &&
                !strcmp(L->toks[first + 1].s, "raw")) {
                L->ntok = first; /* drop the raw tag itself */
                if (lex_raw(L)) return -1;
            }
        }
        text_start = L->pos;
        if (L->pos >= L->n) break;
    }
    return push(L, TK_EOF, NULL, 0);
}

/* ---------------- parser ---------------- */
typedef struct parser {
    jarena *arena;
    tok *t;
    size_t i, n;
    int depth;
    fitlm_error *err;
    bool failed;
} parser;

static int pfail(parser *P, const char *fmt, ...) FITLM_PRINTF(2, 3);
static int pfail(parser *P, const char *fmt, ...) {
    if (P->failed) return -1;
    P->failed = true;
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fitlm_fail(P->err, "line %d: %s", P->t[P->i].line, msg);
    return -1;
}

static tok *cur(parser *P) { return &P->t[P->i]; }
static bool is_op(parser *P, const char *op) { return cur(P)->type == TK_OP && !strcmp(cur(P)->s, op); }
static bool is_name(parser *P, const char *nm) { return cur(P)->type == TK_NAME && !strcmp(cur(P)->s, nm); }
static bool accept_op(parser *P, const char *op) {
    if (!is_op(P, op)) return false;
    P->i++;
    return true;
}
static bool accept_name(parser *P, const char *nm) {
    if (!is_name(P, nm)) return false;
    P->i++;
    return true;
}
static int expect_op(parser *P, const char *op) {
    if (accept_op(P, op)) return 0;
    return pfail(P, "expected '%s'", op);
}

static jnode *mk(parser *P, int kind) {
    jnode *n = jarena_alloc(P->arena, sizeof *n);
    if (!n) {
        pfail(P, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = cur(P)->line;
    return n;
}

typedef struct nvec {
    jnode **v;
    size_t n, cap;
} nvec;

static int nv_push(parser *P, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nn = jarena_alloc(P->arena, cap * sizeof *nn);
        if (!nn) return pfail(P, "out of memory");
        if (v->n) memcpy(nn, v->v, v->n * sizeof *nn);
        v->v = nn;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}
static jnodes nv_done(nvec v) {
    jnodes r = {v.v, v.n};
    return r;
}

static jnode *parse_expr(parser *P, bool with_cond);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *n);

static bool enter(parser *P) {
    if (++P->depth > MAX_PARSE_DEPTH) {
        pfail(P, "the template nests deeper than %d levels", MAX_PARSE_DEPTH);
        return false;
    }
    return true;
}

/* (args, name=value, ...) after the '(' */
static int parse_call_args(parser *P, jnode *n) {
    nvec args = {0}, kw = {0};
    while (!is_op(P, ")")) {
        if (args.n + kw.n && expect_op(P, ",")) return -1;
        if (is_op(P, ")")) break;
        if (cur(P)->type == TK_NAME && P->t[P->i + 1].type == TK_OP && !strcmp(P->t[P->i + 1].s, "=")) {
            jnode *k = mk(P, N_KWARG);
            if (!k) return -1;
            k->name = cur(P)->s;
            P->i += 2;
            if (!(k->a = parse_expr(P, true)) || nv_push(P, &kw, k)) return -1;
        } else {
            if (kw.n) return pfail(P, "a positional argument follows a keyword argument");
            jnode *a = parse_expr(P, true);
            if (!a || nv_push(P, &args, a)) return -1;
        }
    }
    P->i++;
    n->args = nv_done(args);
    n->kwargs = nv_done(kw);
    return 0;
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    for (;;) {
        if (accept_op(P, "|")) {
            if (cur(P)->type != TK_NAME) return pfail(P, "expected a filter name"), NULL;
            jnode *f = mk(P, N_FILTER);
            if (!f) return NULL;
            f->name = cur(P)->s;
            P->i++;
            f->a = n;
            if (accept_op(P, "(") && parse_call_args(P, f)) return NULL;
            n = f;
        } else if (is_name(P, "is")) {
            P->i++;
            jnode *t = mk(P, N_TEST);
            if (!t) return NULL;
            if (accept_name(P, "not")) t->op = 1;
            if (cur(P)->type != TK_NAME) return pfail(P, "expected a test name"), NULL;
            t->name = cur(P)->s;
            P->i++;
            t->a = n;
            if (accept_op(P, "(")) {
                if (parse_call_args(P, t)) return NULL;
            } else {
                tok *c = cur(P);
                bool arg = c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT ||
                           (c->type == TK_OP && (!strcmp(c->s, "[") || !strcmp(c->s, "{"))) ||
                           (c->type == TK_NAME && strcmp(c->s, "else") && strcmp(c->s, "or") && strcmp(c->s, "and"));
                if (arg) {
                    if (is_name(P, "is")) return pfail(P, "tests cannot be chained with 'is'"), NULL;
                    jnode *a = parse_primary(P);
                    if (!a || !(a = parse_postfix(P, a))) return NULL;
                    nvec v = {0};
                    if (nv_push(P, &v, a)) return NULL;
                    t->args = nv_done(v);
                }
            }
            n = t;
        } else if (accept_op(P, "(")) {
            jnode *c = mk(P, N_CALL);
            if (!c) return NULL;
            c->a = n;
            if (parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static jnode *parse_postfix(parser *P, jnode *n) {
    for (;;) {
        if (accept_op(P, ".")) {
            if (cur(P)->type == TK_NAME) {
                jnode *g = mk(P, N_GETATTR);
                if (!g) return NULL;
                g->a = n;
                g->name = cur(P)->s;
                P->i++;
                n = g;
            } else if (cur(P)->type == TK_INT) {
                jnode *g = mk(P, N_GETITEM), *k = g ? mk(P, N_LIT) : NULL;
                if (!k) return NULL;
                k->lit = jv_int(cur(P)->i);
                P->i++;
                g->a = n;
                g->b = k;
                n = g;
            } else {
                return pfail(P, "expected an attribute name after '.'"), NULL;
            }
        } else if (accept_op(P, "[")) {
            jnode *parts[3] = {NULL, NULL, NULL};
            int nparts = 0;
            bool slice = false;
            for (;;) {
                if (is_op(P, ":")) {
                    slice = true;
                    P->i++;
                    if (++nparts > 2) return pfail(P, "bad slice"), NULL;
                    continue;
                }
                if (is_op(P, "]")) break;
                if (parts[nparts]) return pfail(P, "expected ']'"), NULL;
                if (!(parts[nparts] = parse_expr(P, true))) return NULL;
                if (!slice && is_op(P, ",")) return pfail(P, "tuple subscripts are not supported"), NULL;
            }
            P->i++;
            jnode *g = mk(P, slice ? N_SLICE : N_GETITEM);
            if (!g) return NULL;
            g->a = n;
            if (slice) {
                g->b = parts[0];
                g->c = parts[1];
                g->d = parts[2];
            } else {
                if (!parts[0]) return pfail(P, "empty subscript"), NULL;
                g->b = parts[0];
            }
            n = g;
        } else if (accept_op(P, "(")) {
            jnode *c = mk(P, N_CALL);
            if (!c) return NULL;
            c->a = n;
            if (parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static jnode *parse_primary(parser *P) {
    tok *t = cur(P);
    jnode *n;
    if (t->type == TK_NAME) {
        n = mk(P, N_LIT);
        if (!n) return NULL;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) n->lit = jv_bool(true);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) n->lit = jv_bool(false);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) n->lit = jv_none();
        else {
            n->kind = N_NAME;
            n->name = t->s;
        }
        P->i++;
        return n;
    }
    if (t->type == TK_STRING) {
        /* adjacent strings concatenate */
        size_t len = 0, j = P->i;
        while (P->t[j].type == TK_STRING) len += P->t[j++].len;
        jstr *s = jarena_alloc(P->arena, sizeof *s + len + 1);
        if (!(n = mk(P, N_LIT)) || !s) return pfail(P, "out of memory"), NULL;
        s->len = 0;
        while (cur(P)->type == TK_STRING) {
            memcpy(s->s + s->len, cur(P)->s, cur(P)->len);
            s->len += cur(P)->len;
            P->i++;
        }
        s->s[len] = 0;
        n->lit = jv_strv(s);
        return n;
    }
    if (t->type == TK_INT || t->type == TK_FLOAT) {
        if (!(n = mk(P, N_LIT))) return NULL;
        n->lit = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        P->i++;
        return n;
    }
    if (accept_op(P, "(")) {
        if (accept_op(P, ")")) {
            if (!(n = mk(P, N_TUPLE))) return NULL;
            return n;
        }
        jnode *e = parse_expr(P, true);
        if (!e) return NULL;
        if (is_op(P, ",")) {
            nvec v = {0};
            if (nv_push(P, &v, e)) return NULL;
            while (accept_op(P, ",")) {
                if (is_op(P, ")")) break;
                jnode *x = parse_expr(P, true);
                if (!x || nv_push(P, &v, x)) return NULL;
            }
            if (!(n = mk(P, N_TUPLE))) return NULL;
            n->args = nv_done(v);
            e = n;
        }
        if (expect_op(P, ")")) return NULL;
        return e;
    }
    if (accept_op(P, "[")) {
        nvec v = {0};
        while (!is_op(P, "]")) {
            if (v.n && expect_op(P, ",")) return NULL;
            if (is_op(P, "]")) break;
            jnode *x = parse_expr(P, true);
            if (!x || nv_push(P, &v, x)) return NULL;
        }
        P->i++;
        if (!(n = mk(P, N_LIST))) return NULL;
        n->args = nv_done(v);
        return n;
    }
    if (accept_op(P, "{")) {
        nvec v = {0};
        while (!is_op(P, "}")) {
            if (v.n && expect_op(P, ",")) return NULL;
            if (is_op(P, "}")) break;
            jnode *kv = mk(P, N_KWARG);
            if (!kv || !(kv->a = parse_expr(P, true)) || expect_op(P, ":") || !(kv->b = parse_expr(P, true)) ||
                nv_push(P, &v, kv))
                return NULL;
        }
        P->i++;
        if (!(n = mk(P, N_DICT))) return NULL;
        n->args = nv_done(v);
        return n;
    }
    pfail(P, "unexpected %s", t->type == TK_OP ? t->s : t->type == TK_EOF ? "end of template" : "token");
    return NULL;
}

static jnode *parse_unary(parser *P, bool with_filter) {
    if (!enter(P)) return NULL;
    jnode *n;
    if (is_op(P, "-") || is_op(P, "+")) {
        int kind = is_op(P, "-") ? N_NEG : N_POS;
        P->i++;
        n = mk(P, kind);
        if (!n || !(n->a = parse_unary(P, false))) return NULL;
    } else {
        n = parse_primary(P);
    }
    if (n) n = parse_postfix(P, n);
    if (n && with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static jnode *binop(parser *P, int op, jnode *a, jnode *b) {
    jnode *n = mk(P, N_BINOP);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *l = parse_unary(P, true);
    while (l && is_op(P, "**")) {
        P->i++;
        jnode *r = parse_unary(P, true);
        if (!r) return NULL;
        l = binop(P, OP_POW, l, r);
    }
    return l;
}

static jnode *parse_math2(parser *P) {
    jnode *l = parse_pow(P);
    while (l) {
        int op = is_op(P, "*") ? OP_MUL : is_op(P, "/") ? OP_DIV : is_op(P, "//") ? OP_FLOORDIV : is_op(P, "%") ? OP_MOD : 0;
        if (!op) break;
        P->i++;
        jnode *r = parse_pow(P);
        if (!r) return NULL;
        l = binop(P, op, l, r);
    }
    return l;
}

static jnode *parse_concat(parser *P) {
    jnode *l = parse_math2(P);
    while (l && accept_op(P, "~")) {
        jnode *r = parse_math2(P);
        if (!r) return NULL;
        l = binop(P, OP_CONCAT, l, r);
    }
    return l;
}

static jnode *parse_math1(parser *P) {
    jnode *l = parse_concat(P);
    while (l && (is_op(P, "+") || is_op(P, "-"))) {
        int op = is_op(P, "+") ? OP_ADD : OP_SUB;
        P->i++;
        jnode *r = parse_concat(P);
        if (!r) return NULL;
        l = binop(P, op, l, r);
    }
    return l;
}

static jnode *parse_compare(parser *P) {
    jnode *l = parse_math1(P);
    if (!l) return NULL;
    jnode *result = NULL;
    for (;;) {
        int op = is_op(P, "==") ? OP_EQ : is_op(P, "!=") ? OP_NE : is_op(P, "<") ? OP_LT : is_op(P, "<=") ? OP_LE
                 : is_op(P, ">") ? OP_GT : is_op(P, ">=") ? OP_GE : is_name(P, "in") ? OP_IN : 0;
        if (!op && is_name(P, "not") && P->t[P->i + 1].type == TK_NAME && !strcmp(P->t[P->i + 1].s, "in")) {
            op = OP_NOTIN;
            P->i++;
        }
        if (!op) break;
        P->i++;
        jnode *r = parse_math1(P);
        if (!r) return NULL;
        jnode *c = mk(P, N_COMPARE);
        if (!c) return NULL;
        c->op = (uint8_t)op;
        c->a = l;
        c->b = r;
        if (!result) {
            result = c;
        } else { /* a < b < c == (a < b) and (b < c) */
            jnode *and = mk(P, N_AND);
            if (!and) return NULL;
            and->a = result;
            and->b = c;
            result = and;
        }
        l = r;
    }
    return result ? result : l;
}

static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        P->i++;
        if (!enter(P)) return NULL;
        jnode *n = mk(P, N_NOT);
        if (!n || !(n->a = parse_not(P))) return NULL;
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *l = parse_not(P);
    while (l && accept_name(P, "and")) {
        jnode *r = parse_not(P), *n = r ? mk(P, N_AND) : NULL;
        if (!n) return NULL;
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static jnode *parse_or(parser *P) {
    jnode *l = parse_and(P);
    while (l && accept_name(P, "or")) {
        jnode *r = parse_and(P), *n = r ? mk(P, N_OR) : NULL;
        if (!n) return NULL;
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static jnode *parse_expr(parser *P, bool with_cond) {
    if (!enter(P)) return NULL;
    jnode *n = parse_or(P);
    while (n && with_cond && is_name(P, "if")) {
        P->i++;
        jnode *c = mk(P, N_COND);
        if (!c) return NULL;
        c->a = n;
        if (!(c->b = parse_or(P))) return NULL;
        if (accept_name(P, "else") && !(c->c = parse_expr(P, true))) return NULL;
        n = c;
    }
    P->depth--;
    return n;
}

/* expr or expr, expr, ... (an implicit tuple) */
static jnode *parse_tuple(parser *P, bool with_cond) {
    jnode *e = parse_expr(P, with_cond);
    if (!e || !is_op(P, ",")) return e;
    nvec v = {0};
    if (nv_push(P, &v, e)) return NULL;
    while (accept_op(P, ",")) {
        if (cur(P)->type == TK_BLOCK_END || cur(P)->type == TK_VAR_END || is_name(P, "in")) break;
        jnode *x = parse_expr(P, with_cond);
        if (!x || nv_push(P, &v, x)) return NULL;
    }
    jnode *t = mk(P, N_TUPLE);
    if (!t) return NULL;
    t->args = nv_done(v);
    return t;
}

/* Assignment targets: name, name.attr, or names separated by commas. */
static int parse_targets(parser *P, jnodes *out, bool allow_attr) {
    nvec v = {0};
    bool paren = accept_op(P, "(");
    do {
        if (cur(P)->type != TK_NAME) return pfail(P, "expected a variable name");
        jnode *t = mk(P, N_NAME);
        if (!t) return -1;
        t->name = cur(P)->s;
        P->i++;
        if (allow_attr && accept_op(P, ".")) {
            if (cur(P)->type != TK_NAME) return pfail(P, "expected an attribute name");
            t->kind = N_GETATTR;
            jnode *obj = mk(P, N_NAME);
            if (!obj) return -1;
            obj->name = t->name;
            t->a = obj;
            t->name = cur(P)->s;
            P->i++;
        }
        if (nv_push(P, &v, t)) return -1;
    } while (accept_op(P, ","));
    if (paren && expect_op(P, ")")) return -1;
    *out = nv_done(v);
    return 0;
}

static int expect_block_end(parser *P) {
    if (cur(P)->type == TK_BLOCK_END) {
        P->i++;
        return 0;
    }
    return pfail(P, "expected the end of the statement ('%%}')");
}

static int parse_body(parser *P, jnodes *out, const char *const *ends, const char **which);

/* macro parameters: (a, b=default, ...) */
static int parse_params(parser *P, jnode *m) {
    nvec ps = {0};
    if (expect_op(P, "(")) return -1;
    while (!is_op(P, ")")) {
        if (ps.n && expect_op(P, ",")) return -1;
        if (is_op(P, ")")) break;
        if (cur(P)->type != TK_NAME) return pfail(P, "expected a parameter name");
        jnode *p = mk(P, N_KWARG);
        if (!p) return -1;
        p->name = cur(P)->s;
        P->i++;
        if (accept_op(P, "=") && !(p->a = parse_expr(P, true))) return -1;
        if (nv_push(P, &ps, p)) return -1;
    }
    P->i++;
    m->kwargs = nv_done(ps);
    return 0;
}

static jnode *parse_statement(parser *P) {
    if (cur(P)->type != TK_NAME) return pfail(P, "expected a statement name"), NULL;
    const char *kw = cur(P)->s;
    int line = cur(P)->line;
    P->i++;
    jnode *n = NULL;
    const char *which = NULL;
    if (!strcmp(kw, "if")) {
        n = mk(P, N_IF);
        if (!n || !(n->a = parse_tuple(P, true)) || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
        jnode *last = n;
        while (!strcmp(which, "elif")) {
            jnode *e = mk(P, N_IF);
            if (!e || !(e->a = parse_tuple(P, true)) || expect_block_end(P)) return NULL;
            if (parse_body(P, &e->body, ends, &which)) return NULL;
            jnode **one = jarena_alloc(P->arena, sizeof *one);
            if (!one) return pfail(P, "out of memory"), NULL;
            one[0] = e;
            last->body2.v = one;
            last->body2.n = 1;
            last = e;
        }
        if (!strcmp(which, "else")) {
            if (expect_block_end(P)) return NULL;
            static const char *const ends2[] = {"endif", NULL};
            if (parse_body(P, &last->body2, ends2, &which)) return NULL;
        }
    } else if (!strcmp(kw, "for")) {
        n = mk(P, N_FOR);
        if (!n || parse_targets(P, &n->args, false)) return NULL;
        if (!accept_name(P, "in")) return pfail(P, "expected 'in'"), NULL;
        if (!(n->a = parse_tuple(P, false))) return NULL;
        if (accept_name(P, "if") && !(n->b = parse_expr(P, false))) return NULL;
        if (accept_name(P, "recursive")) n->op = 1; /* loop(xs) renders the loop over xs */
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
        if (!strcmp(which, "else")) {
            if (expect_block_end(P)) return NULL;
            static const char *const ends2[] = {"endfor", NULL};
            if (parse_body(P, &n->body2, ends2, &which)) return NULL;
        }
    } else if (!strcmp(kw, "set")) {
        n = mk(P, N_SET);
        if (!n || parse_targets(P, &n->args, true)) return NULL;
        if (accept_op(P, "=")) {
            if (!(n->a = parse_tuple(P, true)) || expect_block_end(P)) return NULL;
        } else {
            n->kind = N_SETBLOCK;
            if (n->args.n != 1 || n->args.v[0]->kind != N_NAME) return pfail(P, "a block set takes one name"), NULL;
            if (accept_op(P, "|")) { /* {% set x | filter %} */
                jnode *f = parse_filter_expr(P, NULL);
                (void)f;
                return pfail(P, "filters on block set are not supported"), NULL;
            }
            if (expect_block_end(P)) return NULL;
            static const char *const ends[] = {"endset", NULL};
            if (parse_body(P, &n->body, ends, &which)) return NULL;
        }
        return n;
    } else if (!strcmp(kw, "macro")) {
        n = mk(P, N_MACRO);
        if (!n) return NULL;
        if (cur(P)->type != TK_NAME) return pfail(P, "expected a macro name"), NULL;
        n->name = cur(P)->s;
        P->i++;
        if (parse_params(P, n) || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
    } else if (!strcmp(kw, "call")) {
        n = mk(P, N_CALLBLOCK);
        if (!n) return NULL;
        if (is_op(P, "(") && parse_params(P, n)) return NULL;
        if (!(n->a = parse_expr(P, true))) return NULL;
        if (n->a->kind != N_CALL) return pfail(P, "expected a macro call after 'call'"), NULL;
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endcall", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
    } else if (!strcmp(kw, "filter")) {
        n = mk(P, N_FILTERBLOCK);
        if (!n) return NULL;
        /* a chain of filters applied to the body: parse "x|f|g" with x = none */
        jnode *f = NULL;
        do {
            if (cur(P)->type != TK_NAME) return pfail(P, "expected a filter name"), NULL;
            jnode *g = mk(P, N_FILTER);
            if (!g) return NULL;
            g->name = cur(P)->s;
            P->i++;
            g->a = f;
            if (accept_op(P, "(") && parse_call_args(P, g)) return NULL;
            f = g;
        } while (accept_op(P, "|"));
        n->a = f;
        if (expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endfilter", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
    } else if (!strcmp(kw, "generation")) { /* transformers' AssistantTracker: renders its body */
        n = mk(P, N_BODY);
        if (!n || expect_block_end(P)) return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        if (parse_body(P, &n->body, ends, &which)) return NULL;
    } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        n = mk(P, kw[0] == 'b' ? N_BREAK : N_CONTINUE);
        if (!n || expect_block_end(P)) return NULL;
        return n;
    } else {
        return pfail(P, "unknown statement '%s'", kw), NULL;
    }
    if (n) n->line = line;
    return n;
}

/* Parses statements until a block whose name is in ends (NULL-terminated;
 * ends NULL = until the end of the template). *which gets that name; the
 * parser is left after it (before its own arguments). */
static int parse_body(parser *P, jnodes *out, const char *const *ends, const char **which) {
    if (!enter(P)) return -1;
    nvec v = {0};
    for (;;) {
        tok *t = cur(P);
        if (t->type == TK_EOF) {
            if (ends) {
                const char *const *e = ends;
                while (e[1]) e++; /* the end* name is last */
                return pfail(P, "unexpected end of template (missing {%% %s %%})", *e);
            }
            break;
        }
        if (t->type == TK_TEXT) {
            jnode *x = mk(P, N_TEXT);
            if (!x) return -1;
            x->lit.t = JV_STR;
            jstr *s = jarena_alloc(P->arena, sizeof *s + t->len + 1);
            if (!s) return pfail(P, "out of memory");
            s->len = t->len;
            memcpy(s->s, t->s, t->len + 1);
            x->lit.s = s;
            P->i++;
            if (nv_push(P, &v, x)) return -1;
        } else if (t->type == TK_VAR_BEGIN) {
            P->i++;
            jnode *x = mk(P, N_OUTPUT);
            if (!x || !(x->a = parse_tuple(P, true))) return -1;
            if (cur(P)->type != TK_VAR_END) return pfail(P, "expected '}}'");
            P->i++;
            if (nv_push(P, &v, x)) return -1;
        } else if (t->type == TK_BLOCK_BEGIN) {
            P->i++;
            if (cur(P)->type == TK_NAME && ends) {
                for (const char *const *e = ends; *e; e++)
                    if (!strcmp(cur(P)->s, *e)) {
                        *which = *e;
                        P->i++;
                        if (strncmp(*e, "end", 3) == 0) {
                            /* Jinja allows a name after endmacro etc.; accept and skip it */
                            if (cur(P)->type == TK_NAME && (!strcmp(*e, "endmacro") || !strcmp(*e, "endblock"))) P->i++;
                            if (expect_block_end(P)) return -1;
                        }
                        *out = nv_done(v);
                        P->depth--;
                        return 0;
                    }
            }
            jnode *x = parse_statement(P);
            if (!x || nv_push(P, &v, x)) return -1;
        } else {
            return pfail(P, "unexpected token");
        }
    }
    *out = nv_done(v);
    P->depth--;
    return 0;
}

jinja_template *jinja_parse(const char *src, size_t len, fitlm_error *err) {
    if (len > MAX_TEMPLATE_BYTES) {
        fitlm_fail(err, "the template has %zu bytes (at most %u)", len, MAX_TEMPLATE_BYTES);
        return NULL;
    }
    if (!ju_valid(src, len)) {
        fitlm_fail(err, "the template is not valid UTF-8");
        return NULL;
    }
    jinja_template *t = calloc(1, sizeof *t);
    char *norm = malloc(len + 1);
    if (!t || !norm) {
        free(t);
        free(norm);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n && norm[n - 1] == '\n') n--; /* keep_trailing_newline=False */
    norm[n] = 0;
    lexer L = {&t->arena, norm, n, 0, 1, NULL, 0, 0, err};
    int rc = lex_all(&L);
    if (rc == 0) {
        parser P = {&t->arena, L.toks, 0, L.ntok, 0, err, false};
        const char *which = NULL;
        rc = parse_body(&P, &t->root, NULL, &which);
    }
    free(L.toks);
    free(norm);
    if (rc) {
        jinja_template_free(t);
        return NULL;
    }
    return t;
}

void jinja_template_free(jinja_template *t) {
    if (!t) return;
    jarena_free_all(&t->arena);
    free(t);
}
