/* JSON Schema -> GBNF (json_schema.h). Every subschema becomes a rule sN;
 * its body is built in a local buffer while the subschemas it uses append
 * their own rules to the output. */
#include "grammar/json_schema.h"

#include "grammar/grammar.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->s, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->s = q;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) FITLM_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A GBNF literal matching exactly the bytes s[0..n). */
static void sb_literal(sbuf *b, const char *s, size_t n) {
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_add(b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            sb_printf(b, "\\x%02X", c);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_add(b, "\"", 1);
}

typedef struct ref_ent {
    const cJSON *target;
    int rule;
} ref_ent;

typedef struct ctx {
    sbuf out;
    const cJSON *root;
    int n_rules, n_nodes;
    ref_ent refs[256];
    int n_refs;
    fitlm_error *err;
    bool failed;
    char path[512]; /* JSON pointer of the subschema being compiled */
} ctx;

static int fail(ctx *c, const char *fmt, ...) FITLM_PRINTF(2, 3);
static int fail(ctx *c, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = true;
    char m[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    fitlm_fail(c->err, "JSON schema: %s%s%s", c->path[0] ? c->path : "", c->path[0] ? ": " : "", m);
    return -1;
}

#define PRELUDE \
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n" \
    "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n" \
    "string ::= \"\\\"\" char* \"\\\"\"\n" \
    "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n" \
    "number ::= integer (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n" \
    "boolean ::= \"true\" | \"false\"\n" \
    "null ::= \"null\"\n" \
    "value ::= object | array | string | number | boolean | null\n" \
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"\n" \
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n"

static const char *const REFUSED[] = {
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "oneOf",
    "allOf", "not", "if", "then", "else", "prefixItems", "uniqueItems", "contains", "minContains", "maxContains",
    "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
    "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems", "additionalItems",
    "$dynamicRef", "$recursiveRef", NULL};

static int gen(ctx *c, const cJSON *s, int depth, int rule);

/* A non-negative integer keyword (absent: def). */
static int get_count(ctx *c, const cJSON *s, const char *key, long def, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    *out = def;
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (double)(long)v->valuedouble)
        return fail(c, "'%s' must be a non-negative integer", key);
    if (v->valuedouble > FITLM_GRAMMAR_MAX_REPEAT)
        return fail(c, "'%s' above %d is not supported", key, FITLM_GRAMMAR_MAX_REPEAT);
    *out = (long)v->valuedouble;
    return 0;
}

/* " {lo,hi}" for a repetition (hi < 0: unbounded). */
static void sb_repeat(sbuf *b, long lo, long hi) {
    if (hi < 0) sb_printf(b, "{%ld,}", lo);
    else sb_printf(b, "{%ld,%ld}", lo, hi);
}

/* A subschema's rule (its number); path gets "/key" while it compiles. */
static int sub(ctx *c, const cJSON *s, int depth, const char *key) {
    size_t n = strlen(c->path);
    snprintf(c->path + n, sizeof c->path - n, "/%s", key);
    int r = gen(c, s, depth + 1, -1);
    c->path[n] = 0;
    return r;
}

static int type_object(ctx *c, const cJSON *s, int depth, sbuf *b) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return fail(c, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return fail(c, "'required' must be an array");
    const cJSON *r;
    cJSON_ArrayForEach(r, req) {
        if (!cJSON_IsString(r)) return fail(c, "'required' must hold strings");
        if (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return fail(c, "required property '%.100s' is not in 'properties' (not supported)", r->valuestring);
    }
    int n = props ? cJSON_GetArraySize(props) : 0;
    if (!props) {
        if (cJSON_IsFalse(addl)) {
            sb_str(b, "\"{\" ws \"}\"");
        } else if (addl && !cJSON_IsTrue(addl)) {
            int v = sub(c, addl, depth, "additionalProperties");
            if (v < 0) return -1;
            sb_printf(b, "\"{\" ws ( string ws \":\" ws s%d ws ( \",\" ws string ws \":\" ws s%d ws )* )? \"}\"", v, v);
        } else {
            sb_str(b, "object");
        }
        return 0;
    }
    /* kv_k, then B(k) (nothing emitted before k) and A(k) (something was) as rules */
    int *kv = malloc((size_t)n * sizeof *kv + 1);
    bool *required = calloc((size_t)n + 1, 1);
    if (!kv || !required) {
        free(kv);
        free(required);
        return fail(c, "out of memory");
    }
    int k = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, props) {
        cJSON_ArrayForEach(r, req) if (!strcmp(r->valuestring, p->string)) required[k] = true;
        char key[160];
        snprintf(key, sizeof key, "properties/%.140s", p->string);
        int v = sub(c, p, depth, key);
        if (v < 0) break;
        kv[k] = c->n_rules++;
        sbuf line = {0};
        sb_printf(&line, "s%d ::= ", kv[k]);
        cJSON *ks = cJSON_CreateString(p->string);
        char *kj = ks ? cJSON_PrintUnformatted(ks) : NULL;
        if (!kj) line.oom = true;
        else sb_literal(&line, kj, strlen(kj));
        free(kj);
        cJSON_Delete(ks);
        sb_printf(&line, " ws \":\" ws s%d ws\n", v);
        sb_add(&c->out, line.s ? line.s : "", line.n);
        if (line.oom) c->out.oom = true;
        free(line.s);
        k++;
    }
    if (c->failed) {
        free(kv);
        free(required);
        return -1;
    }
    int base = c->n_rules; /* A(j) = s(base + j), B(j) = s(base + n + 1 + j), j = 0..n */
    c->n_rules += 2 * (n + 1);
    for (int j = n; j >= 0; j--) {
        int a = base + j, bb = base + n + 1 + j;
        if (j == n) {
            sb_printf(&c->out, "s%d ::= \"\"\ns%d ::= \"\"\n", a, bb);
        } else if (required[j]) {
            sb_printf(&c->out, "s%d ::= \",\" ws s%d s%d\n", a, kv[j], a + 1);
            sb_printf(&c->out, "s%d ::= s%d s%d\n", bb, kv[j], a + 1);
        } else {
            sb_printf(&c->out, "s%d ::= ( \",\" ws s%d )? s%d\n", a, kv[j], a + 1);
            sb_printf(&c->out, "s%d ::= s%d s%d | s%d\n", bb, kv[j], a + 1, bb + 1);
        }
    }
    sb_printf(b, "\"{\" ws s%d \"}\"", base + n + 1);
    free(kv);
    free(required);
    return 0;
}

static int type_array(ctx *c, const cJSON *s, int depth, sbuf *b) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    long lo, hi;
    if (get_count(c, s, "minItems", 0, &lo) || get_count(c, s, "maxItems", -1, &hi)) return -1;
    if (hi >= 0 && hi < lo) return fail(c, "'maxItems' is below 'minItems'");
    if (cJSON_IsArray(items)) return fail(c, "'items' as an array (tuples) is not supported");
    if (cJSON_IsFalse(items)) hi = 0;
    if (hi >= 0 && lo > hi) return fail(c, "no array can satisfy 'minItems' with 'items': false");
    char it[32] = "value";
    if (items && !cJSON_IsTrue(items) && hi != 0) {
        int v = sub(c, items, depth, "items");
        if (v < 0) return -1;
        snprintf(it, sizeof it, "s%d", v);
    }
    if (hi == 0) {
        sb_str(b, "\"[\" ws \"]\"");
        return 0;
    }
    if (lo == 0) sb_printf(b, "\"[\" ws ( %s ws ( \",\" ws %s ws )", it, it);
    else sb_printf(b, "\"[\" ws %s ws ( \",\" ws %s ws )", it, it);
    sb_repeat(b, lo ? lo - 1 : 0, hi < 0 ? -1 : hi - 1);
    sb_str(b, lo == 0 ? " )? \"]\"" : " \"]\"");
    return 0;
}

static int type_body(ctx *c, const cJSON *s, int depth, const char *t, sbuf *b) {
    if (!strcmp(t, "object")) return type_object(c, s, depth, b);
    if (!strcmp(t, "array")) return type_array(c, s, depth, b);
    if (!strcmp(t, "string")) {
        long lo, hi;
        if (get_count(c, s, "minLength", 0, &lo) || get_count(c, s, "maxLength", -1, &hi)) return -1;
        if (hi >= 0 && hi < lo) return fail(c, "'maxLength' is below 'minLength'");
        if (lo == 0 && hi < 0) {
            sb_str(b, "string");
        } else {
            sb_str(b, "\"\\\"\" char");
            sb_repeat(b, lo, hi);
            sb_str(b, " \"\\\"\"");
        }
        return 0;
    }
    if (!strcmp(t, "number") || !strcmp(t, "integer") || !strcmp(t, "boolean") || !strcmp(t, "null")) {
        sb_str(b, t);
        return 0;
    }
    return fail(c, "unknown type '%.64s'", t);
}

static const cJSON *resolve_ref(ctx *c, const char *ref) {
    if (!strcmp(ref, "#")) return c->root;
    const char *pre[] = {"#/$defs/", "#/definitions/"};
    for (int i = 0; i < 2; i++) {
        size_t pl = strlen(pre[i]);
        if (strncmp(ref, pre[i], pl)) continue;
        char name[256];
        size_t k = 0;
        for (const char *q = ref + pl; *q && k + 1 < sizeof name; q++) {
            if (*q == '/') return NULL;
            if (*q == '~' && (q[1] == '0' || q[1] == '1')) {
                name[k++] = q[1] == '0' ? '~' : '/';
                q++;
            } else {
                name[k++] = *q;
            }
        }
        name[k] = 0;
        const cJSON *defs = cJSON_GetObjectItemCaseSensitive(c->root, i ? "definitions" : "$defs");
        return defs ? cJSON_GetObjectItemCaseSensitive(defs, name) : NULL;
    }
    return NULL;
}

/* Compiles schema s into rule `rule` (-1: a new one); returns its number. */
static int gen(ctx *c, const cJSON *s, int depth, int rule) {
    if (c->failed) return -1;
    if (depth > FITLM_JSON_SCHEMA_MAX_DEPTH) return fail(c, "nested deeper than %d", FITLM_JSON_SCHEMA_MAX_DEPTH);
    if (++c->n_nodes > FITLM_JSON_SCHEMA_MAX_NODES)
        return fail(c, "more than %d subschemas", FITLM_JSON_SCHEMA_MAX_NODES);
    if (rule < 0) rule = c->n_rules++;
    sbuf b = {0};
    if (cJSON_IsTrue(s)) {
        sb_str(&b, "value");
        goto done;
    }
    if (cJSON_IsFalse(s)) return fail(c, "the schema false allows no value");
    if (!cJSON_IsObject(s)) return fail(c, "a schema must be an object or a boolean");
    for (int i = 0; REFUSED[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(s, REFUSED[i])) return fail(c, "'%s' is not supported", REFUSED[i]);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (ref) {
        if (!cJSON_IsString(ref)) return fail(c, "'$ref' must be a string");
        const cJSON *t = resolve_ref(c, ref->valuestring);
        if (!t) return fail(c, "'$ref' %.200s: only local references to #/$defs/NAME or #/definitions/NAME are supported",
                            ref->valuestring);
        int r = -1;
        for (int i = 0; i < c->n_refs; i++)
            if (c->refs[i].target == t) r = c->refs[i].rule;
        if (r < 0) {
            if (c->n_refs >= (int)(sizeof c->refs / sizeof c->refs[0])) return fail(c, "too many '$ref' targets");
            r = c->n_rules++;
            c->refs[c->n_refs++] = (ref_ent){t, r};
            char saved[sizeof c->path];
            memcpy(saved, c->path, sizeof saved);
            snprintf(c->path, sizeof c->path, "%.500s", ref->valuestring + 1);
            int rr = gen(c, t, depth + 1, r);
            memcpy(c->path, saved, sizeof saved);
            if (rr < 0) return -1;
        }
        sb_printf(&b, "s%d", r);
    } else if (en || cn) {
        if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0)) return fail(c, "'enum' must be a non-empty array");
        const cJSON *v;
        int i = 0;
        if (cn) {
            char *j = cJSON_PrintUnformatted(cn);
            if (!j) return fail(c, "out of memory");
            sb_literal(&b, j, strlen(j));
            free(j);
        } else {
            cJSON_ArrayForEach(v, en) {
                char *j = cJSON_PrintUnformatted(v);
                if (!j) return fail(c, "out of memory");
                if (i++) sb_str(&b, " | ");
                sb_literal(&b, j, strlen(j));
                free(j);
            }
        }
    } else if (any) {
        if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) == 0) return fail(c, "'anyOf' must be a non-empty array");
        const cJSON *v;
        int i = 0;
        cJSON_ArrayForEach(v, any) {
            char key[32];
            snprintf(key, sizeof key, "anyOf/%d", i);
            int r = sub(c, v, depth, key);
            if (r < 0) {
                free(b.s);
                return -1;
            }
            sb_printf(&b, "%ss%d", i++ ? " | " : "", r);
        }
    } else if (cJSON_IsString(type)) {
        if (type_body(c, s, depth, type->valuestring, &b)) {
            free(b.s);
            return -1;
        }
    } else if (cJSON_IsArray(type)) {
        if (cJSON_GetArraySize(type) == 0) return fail(c, "'type' is an empty array");
        const cJSON *t;
        int i = 0;
        cJSON_ArrayForEach(t, type) {
            if (!cJSON_IsString(t)) return fail(c, "'type' must hold strings");
            sb_str(&b, i++ ? " | ( " : "( ");
            if (type_body(c, s, depth, t->valuestring, &b)) {
                free(b.s);
                return -1;
            }
            sb_str(&b, " )");
        }
    } else if (type) {
        return fail(c, "'type' must be a string or an array");
    } else if (cJSON_GetObjectItemCaseSensitive(s, "properties")) {
        if (type_object(c, s, depth, &b)) {
            free(b.s);
            return -1;
        }
    } else {
        sb_str(&b, "value");
    }
done:
    sb_printf(&c->out, "s%d ::= ", rule);
    sb_add(&c->out, b.s ? b.s : "", b.n);
    sb_str(&c->out, "\n");
    if (b.oom) c->out.oom = true;
    free(b.s);
    return c->failed ? -1 : rule;
}

char *fitlm_json_schema_to_gbnf(const char *text, size_t len, fitlm_error *err) {
    if (len > FITLM_JSON_SCHEMA_MAX_BYTES) {
        fitlm_fail(err, "JSON schema: larger than %u bytes", FITLM_JSON_SCHEMA_MAX_BYTES);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        fitlm_fail(err, "JSON schema: not valid JSON");
        return NULL;
    }
    ctx c = {.root = root, .err = err};
    sb_str(&c.out, PRELUDE);
    int r = gen(&c, root, 0, -1);
    cJSON_Delete(root);
    if (r >= 0) sb_printf(&c.out, "root ::= s%d\n", r);
    if (r < 0 || c.out.oom) {
        if (!c.failed) fitlm_fail(err, "JSON schema: out of memory");
        free(c.out.s);
        return NULL;
    }
    return c.out.s;
}

const char *fitlm_json_object_gbnf(void) { return PRELUDE "root ::= object\n"; }

fitlm_grammar *fitlm_json_schema_grammar(const char *text, size_t len, fitlm_error *err) {
    char *g = fitlm_json_schema_to_gbnf(text, len, err);
    if (!g) return NULL;
    fitlm_grammar *gr = fitlm_grammar_parse(g, strlen(g), err);
    if (!gr) fitlm_error_prefix(err, "JSON schema");
    free(g);
    return gr;
}
