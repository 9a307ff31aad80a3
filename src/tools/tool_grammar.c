/* Grammars of tool calls (tool_grammar.h). */
#include "tools/tool_grammar.h"

#include "grammar/json_schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *d;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->d, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) FITLM_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp) {
        b->oom = true; /* (only short, fixed texts go through here) */
        return;
    }
    sb_add(b, tmp, (size_t)k);
}

bool fitlm_tool_name_valid(const char *s) {
    size_t n = 0;
    for (; s && s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n >= 1 && n <= FITLM_TOOL_NAME_MAX;
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Appends GBNF text g with every rule name (definitions and references)
 * prefixed: names are the runs of name characters outside "literals",
 * [classes], {counts} and # comments. */
static void add_prefixed(sbuf *b, const char *g, const char *prefix) {
    size_t i = 0, n = strlen(g);
    while (i < n) {
        char c = g[i];
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            size_t j = i + 1;
            while (j < n && g[j] != close) j += g[j] == '\\' && j + 1 < n ? 2 : 1;
            j = j < n ? j + 1 : n;
            sb_add(b, g + i, j - i);
            i = j;
        } else if (c == '{' || c == '#') {
            char close = c == '{' ? '}' : '\n';
            size_t j = i + 1;
            while (j < n && g[j] != close) j++;
            j = j < n ? j + 1 : n;
            sb_add(b, g + i, j - i);
            i = j;
        } else if (name_char(c)) {
            size_t j = i;
            while (j < n && name_char(g[j])) j++;
            sb_str(b, prefix);
            sb_add(b, g + i, j - i);
            i = j;
        } else {
            sb_add(b, g + i, 1);
            i++;
        }
    }
}

char *fitlm_tool_grammar_gbnf(fitlm_tool_format f, const fitlm_tool_spec *tools, size_t n, unsigned max_calls,
                              fitlm_error *err) {
    if (f != FITLM_TOOLS_HERMES && f != FITLM_TOOLS_LLAMA3 && f != FITLM_TOOLS_MISTRAL)
        return fitlm_fail(err, "the chat template has no tool-call format"), NULL;
    if (n == 0) return fitlm_fail(err, "no tools"), NULL;
    if (f == FITLM_TOOLS_LLAMA3) max_calls = 1;
    sbuf b = {0};
    /* root: the format around 1..max_calls calls */
    const char *sep = f == FITLM_TOOLS_HERMES ? "\"\\n\"" : "\", \"";
    if (f == FITLM_TOOLS_MISTRAL) sb_str(&b, "root ::= \"[TOOL_CALLS]\"? \"[\" call");
    else sb_str(&b, "root ::= call");
    if (max_calls == 0) sb_printf(&b, " ( %s call )*", sep);
    else if (max_calls > 1) sb_printf(&b, " ( %s call ){0,%u}", sep, max_calls - 1);
    sb_str(&b, f == FITLM_TOOLS_MISTRAL ? " \"]\"\n" : "\n");
    sb_str(&b, "call ::= ");
    for (size_t i = 0; i < n; i++) sb_printf(&b, "%scall%zu", i ? " | " : "", i);
    sb_str(&b, "\n");
    for (size_t i = 0; i < n; i++) {
        if (!fitlm_tool_name_valid(tools[i].name)) {
            free(b.d);
            return fitlm_fail(err, "tool %zu: the name must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-'", i), NULL;
        }
        fitlm_error se = {{0}};
        const char *params = tools[i].parameters ? tools[i].parameters : "{\"type\": \"object\", \"properties\": {}}";
        char *g = fitlm_json_schema_to_gbnf(params, strlen(params), &se);
        if (!g) {
            free(b.d);
            return fitlm_fail(err, "tool '%s': %s", tools[i].name, se.msg), NULL;
        }
        /* tool names are [A-Za-z0-9_-]: nothing to escape in a literal */
        switch (f) {
        case FITLM_TOOLS_HERMES:
            sb_printf(&b, "call%zu ::= \"<tool_call>\\n{\\\"name\\\": \\\"%s\\\", \\\"arguments\\\": \" t%zu-root "
                          "\"}\\n</tool_call>\"\n",
                      i, tools[i].name, i);
            break;
        case FITLM_TOOLS_LLAMA3:
            sb_printf(&b, "call%zu ::= \"{\\\"name\\\": \\\"%s\\\", \\\"parameters\\\": \" t%zu-root \"}\"\n", i,
                      tools[i].name, i);
            break;
        default:
            sb_printf(&b, "call%zu ::= \"{\\\"name\\\": \\\"%s\\\", \\\"arguments\\\": \" t%zu-root \"}\"\n", i,
                      tools[i].name, i);
            break;
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        add_prefixed(&b, g, prefix);
        free(g);
    }
    if (b.oom) {
        free(b.d);
        return fitlm_fail(err, "out of memory"), NULL;
    }
    return b.d;
}
