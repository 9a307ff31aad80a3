/* Tool calls and reasoning in output text (tool_calls.h). */
#include "tools/tool_calls.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fitlm_tool_format fitlm_tool_format_detect(const char *t) {
    if (!t) return FITLM_TOOLS_NONE;
    if (strstr(t, "<tool_call>")) return FITLM_TOOLS_HERMES;
    if (strstr(t, "[TOOL_CALLS]")) return FITLM_TOOLS_MISTRAL;
    if (strstr(t, "<|python_tag|>") || strstr(t, "ipython")) return FITLM_TOOLS_LLAMA3;
    return FITLM_TOOLS_NONE;
}

const char *fitlm_tool_format_name(fitlm_tool_format f) {
    switch (f) {
    case FITLM_TOOLS_HERMES: return "hermes";
    case FITLM_TOOLS_LLAMA3: return "llama3";
    case FITLM_TOOLS_MISTRAL: return "mistral";
    default: return "none";
    }
}

typedef struct acc {
    fitlm_tool_parse *p;
    bool oom;
} acc;

static void add_text(acc *a, char **dst, size_t *dlen, const char *s, size_t n) {
    if (a->oom || !n) return;
    char *q = realloc(*dst, *dlen + n + 1);
    if (!q) {
        a->oom = true;
        return;
    }
    memcpy(q + *dlen, s, n);
    *dlen += n;
    q[*dlen] = 0;
    *dst = q;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static const char *find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == needle[0] && !memcmp(s + i, needle, k)) return s + i;
    return NULL;
}

/* The longest suffix of s[0..n) that is a proper prefix of marker. */
static size_t held(const char *s, size_t n, const char *marker) {
    size_t k = strlen(marker);
    for (size_t l = k - 1; l > 0; l--)
        if (l <= n && !memcmp(s + n - l, marker, l)) return l;
    return 0;
}

/* s[0..n) is a proper prefix of marker (non-empty). */
static bool prefix_of(const char *s, size_t n, const char *marker) {
    return n < strlen(marker) && !memcmp(s, marker, n);
}

/* Adds the call in object o ({"name", "arguments"|"parameters", "id"?}); false if it is not one. */
static bool add_call(acc *a, const cJSON *o) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) || !name->valuestring[0]) return false;
    if (args && !cJSON_IsObject(args) && !cJSON_IsString(args)) return false;
    fitlm_tool_parse *p = a->p;
    fitlm_tool_call *c = realloc(p->calls, (p->n_calls + 1) * sizeof *c);
    if (!c) {
        a->oom = true;
        return true;
    }
    p->calls = c;
    fitlm_tool_call *t = &p->calls[p->n_calls];
    char idb[32];
    snprintf(idb, sizeof idb, "call_%zu", p->n_calls);
    t->id = strdup(cJSON_IsString(id) && id->valuestring[0] ? id->valuestring : idb);
    t->name = strdup(name->valuestring);
    t->arguments = !args ? strdup("{}") : cJSON_IsString(args) ? strdup(args->valuestring) : cJSON_PrintUnformatted(args);
    p->n_calls++;
    if (!t->id || !t->name || !t->arguments) a->oom = true;
    return true;
}

/* Parses s[0..n) as JSON: one call object, or (array) an array of call objects. */
static bool parse_calls(acc *a, const char *s, size_t n, bool array) {
    cJSON *j = cJSON_ParseWithLength(s, n);
    if (!j) return false;
    bool ok = false;
    if (array && cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) {
        ok = true;
        const cJSON *it;
        cJSON_ArrayForEach(it, j) ok = ok && cJSON_IsObject(it) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "name"));
        if (ok) cJSON_ArrayForEach(it, j) add_call(a, it);
    } else if (!array) {
        ok = add_call(a, j);
    }
    cJSON_Delete(j);
    return ok;
}

static void hermes(acc *a, const char *b, size_t n, bool final) {
    fitlm_tool_parse *p = a->p;
    size_t i = 0;
    for (;;) {
        const char *q = find(b + i, n - i, "<tool_call>");
        if (!q) {
            size_t keep = final ? 0 : held(b + i, n - i, "<tool_call>");
            add_text(a, &p->content, &p->content_len, b + i, n - i - keep);
            return;
        }
        size_t qi = (size_t)(q - b);
        add_text(a, &p->content, &p->content_len, b + i, qi - i);
        size_t start = qi + strlen("<tool_call>");
        const char *r = find(b + start, n - start, "</tool_call>");
        if (!r) {
            if (final) add_text(a, &p->content, &p->content_len, b + qi, n - qi); /* never closed: text */
            return;
        }
        size_t ri = (size_t)(r - b), end = ri + strlen("</tool_call>");
        if (!parse_calls(a, b + start, ri - start, false)) add_text(a, &p->content, &p->content_len, b + qi, end - qi);
        i = end;
    }
}

/* Llama 3.1 (one call object, after an optional <|python_tag|>) and Mistral
 * ([TOOL_CALLS] and an array): only the whole reply can be a call, so a
 * reply that may still become one is held back until final. */
static void whole(acc *a, fitlm_tool_format f, const char *b, size_t n, bool final) {
    fitlm_tool_parse *p = a->p;
    const char *marker = f == FITLM_TOOLS_LLAMA3 ? "<|python_tag|>" : "[TOOL_CALLS]";
    char open = f == FITLM_TOOLS_LLAMA3 ? '{' : '[';
    size_t s = 0;
    while (s < n && is_ws(b[s])) s++;
    size_t ml = strlen(marker), j = s;
    bool marked = n - s >= ml && !memcmp(b + s, marker, ml);
    if (marked) {
        j = s + ml;
        while (j < n && is_ws(b[j])) j++;
    }
    bool maybe = marked || (j < n && b[j] == open) || (j == n) || prefix_of(b + s, n - s, marker);
    if (!maybe) {
        add_text(a, &p->content, &p->content_len, b, n);
        return;
    }
    if (!final) return; /* could still be a call */
    if (j < n && parse_calls(a, b + j, n - j, f == FITLM_TOOLS_MISTRAL)) return;
    add_text(a, &p->content, &p->content_len, b, n);
}

int fitlm_tool_parse_text(fitlm_tool_format f, bool in_think, const char *text, size_t len, bool final,
                          fitlm_tool_parse *out, fitlm_error *err) {
    memset(out, 0, sizeof *out);
    acc a = {.p = out};
    size_t pos = 0;
    bool think = in_think, stripped = false;
    size_t s = 0;
    while (s < len && is_ws(text[s])) s++;
    if (!in_think) {
        if (len - s >= 7 && !memcmp(text + s, "<think>", 7)) {
            think = true;
            pos = s + 7;
        } else if (!final && prefix_of(text + s, len - s, "<think>")) {
            return 0; /* may still open reasoning */
        }
    }
    if (think) {
        const char *e = find(text + pos, len - pos, "</think>");
        if (!e) {
            size_t keep = final ? 0 : held(text + pos, len - pos, "</think>");
            add_text(&a, &out->reasoning, &out->reasoning_len, text + pos, len - pos - keep);
            goto done;
        }
        add_text(&a, &out->reasoning, &out->reasoning_len, text + pos, (size_t)(e - text) - pos);
        pos = (size_t)(e - text) + strlen("</think>");
        stripped = true;
    }
    if (stripped)
        while (pos < len && is_ws(text[pos])) pos++; /* the blank line after </think> */
    switch (f) {
    case FITLM_TOOLS_HERMES: hermes(&a, text + pos, len - pos, final); break;
    case FITLM_TOOLS_LLAMA3:
    case FITLM_TOOLS_MISTRAL: whole(&a, f, text + pos, len - pos, final); break;
    default: add_text(&a, &out->content, &out->content_len, text + pos, len - pos); break;
    }
done:
    if (a.oom) {
        fitlm_tool_parse_free(out);
        return fitlm_fail(err, "out of memory parsing tool calls");
    }
    return 0;
}

void fitlm_tool_parse_free(fitlm_tool_parse *p) {
    if (!p) return;
    free(p->content);
    free(p->reasoning);
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}
