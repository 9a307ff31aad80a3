/* Tool calls and reasoning in output text (tool_calls.h). */
#include "tools/tool_calls.h"

#include <cjson/cJSON.h>
#include <stdint.h>
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
    size_t base_calls; /* calls reported before this parse (default ids continue from there) */
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

/* ---- raw JSON spans (the text is known to be valid JSON where these run) */

static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* s[i] is '"': the index after the closing quote, or 0 when it is not there. */
static size_t skip_string(const char *s, size_t i, size_t n) {
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return 0;
}

/* The end of the JSON value at s[i], or 0. */
static size_t skip_value(const char *s, size_t i, size_t n) {
    if (i >= n) return 0;
    if (s[i] == '"') return skip_string(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        for (; i < n; i++) {
            char c = s[i];
            if (c == '"') {
                size_t e = skip_string(s, i, n);
                if (!e) return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return 0;
    }
    size_t j = i;
    while (j < n && !strchr(",}] \t\r\n", s[j])) j++;
    return j > i ? j : 0;
}

/* The span [*v0, *v1) of the first member named key (written without escapes) of the object s[0..n). */
static bool member_span(const char *s, size_t n, const char *key, size_t *v0, size_t *v1) {
    size_t kl = strlen(key), i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{') return false;
    i = skip_ws(s, i + 1, n);
    while (i < n && s[i] == '"') {
        size_t ke = skip_string(s, i, n);
        if (!ke) return false;
        bool hit = ke - i == kl + 2 && !memcmp(s + i + 1, key, kl);
        i = skip_ws(s, ke, n);
        if (i >= n || s[i] != ':') return false;
        i = skip_ws(s, i + 1, n);
        size_t ve = skip_value(s, i, n);
        if (!ve) return false;
        if (hit) {
            *v0 = i;
            *v1 = ve;
            return true;
        }
        i = skip_ws(s, ve, n);
        if (i < n && s[i] == ',') i = skip_ws(s, i + 1, n);
    }
    return false;
}

/* Whether c is JSON white space. */
static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* JSON text s[0..n) without the white space between tokens (strings kept as
 * written): malloc'd, caller frees; NULL when out of memory. The streamed
 * arguments are the same bytes, produced piece by piece (open_args). */
static char *compact_json(const char *s, size_t n) {
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            o[k++] = c;
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
        } else if (!json_ws(c)) {
            o[k++] = c;
            if (c == '"') in_str = true;
        }
    }
    o[k] = 0;
    return o;
}

/* Adds the call in object o ({"name", "arguments"|"parameters", "id"?}), whose JSON text is raw[0..raw_n);
 * false if it is not one. An arguments object is its text as written, without the white space between
 * tokens (what streaming sends piece by piece). */
static bool add_call(acc *a, const cJSON *o, const char *raw, size_t raw_n) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const char *akey = "arguments";
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args) {
        akey = "parameters";
        args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    }
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
    snprintf(idb, sizeof idb, "call_%zu", a->base_calls + p->n_calls);
    t->id = strdup(cJSON_IsString(id) && id->valuestring[0] ? id->valuestring : idb);
    t->name = strdup(name->valuestring);
    size_t v0, v1;
    if (!args) t->arguments = strdup("{}");
    else if (cJSON_IsString(args)) t->arguments = strdup(args->valuestring);
    else if (member_span(raw, raw_n, akey, &v0, &v1)) t->arguments = compact_json(raw + v0, v1 - v0);
    else t->arguments = cJSON_PrintUnformatted(args); /* a key written with escapes */
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
        if (ok) {
            size_t i = skip_ws(s, 0, n) + 1; /* after '[' */
            cJSON_ArrayForEach(it, j) {
                i = skip_ws(s, i, n);
                size_t e = skip_value(s, i, n);
                add_call(a, it, s + i, e > i ? e - i : 0);
                i = skip_ws(s, e, n) + 1; /* after ',' */
            }
        }
    } else if (!array) {
        ok = add_call(a, j, s, n);
    }
    cJSON_Delete(j);
    return ok;
}

enum { M_START, M_THINK, M_AFTER_THINK, M_BODY, M_PLAIN };

/* Bytes at the end of s[0..n) that begin a UTF-8 character not complete yet. */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* The open call at text[start..len) (after <tool_call>, or the reply / its array's first element): once it reads
 * {"name": "NAME", "arguments": {  (or "parameters"), its name, then the
 * arguments object's bytes without white space between tokens, as they come. */
static void open_call(acc *a, fitlm_tool_resume *r, const char *text, size_t start, size_t len) {
    fitlm_tool_parse *p = a->p;
    if (r->open_state == 0) {
        size_t i = skip_ws(text, start, len);
        static const char *const steps[] = {"{", "\"name\"", ":", NULL};
        for (int k = 0; steps[k]; k++) {
            size_t l = strlen(steps[k]);
            if (len - i < l) {
                if (memcmp(text + i, steps[k], len - i)) r->open_state = -1;
                return; /* more to come */
            }
            if (memcmp(text + i, steps[k], l)) {
                r->open_state = -1;
                return;
            }
            i = skip_ws(text, i + l, len);
        }
        if (i >= len) return;
        if (text[i] != '"') {
            r->open_state = -1;
            return;
        }
        size_t ne = skip_string(text, i, len);
        if (!ne) {
            if (len - start > 4096) r->open_state = -1; /* not worth waiting for */
            return;
        }
        size_t n0 = i;
        i = skip_ws(text, ne, len);
        if (i >= len) return;
        if (text[i] != ',') {
            r->open_state = -1;
            return;
        }
        i = skip_ws(text, i + 1, len);
        const char *keys[] = {"\"arguments\"", "\"parameters\""};
        size_t kl = 0;
        for (int k = 0; k < 2; k++) {
            size_t l = strlen(keys[k]), m = len - i < l ? len - i : l;
            if (!memcmp(text + i, keys[k], m)) kl = m == l ? l : SIZE_MAX;
        }
        if (kl == SIZE_MAX) return; /* a prefix of a key so far */
        if (!kl) {
            r->open_state = -1;
            return;
        }
        i = skip_ws(text, i + kl, len);
        if (i >= len) return;
        if (text[i] != ':') {
            r->open_state = -1;
            return;
        }
        i = skip_ws(text, i + 1, len);
        if (i >= len) return;
        if (text[i] != '{') {
            r->open_state = -1; /* a string or something else: sent whole once complete */
            return;
        }
        cJSON *nm = cJSON_ParseWithLength(text + n0, ne - n0);
        if (!cJSON_IsString(nm) || !nm->valuestring[0]) {
            cJSON_Delete(nm);
            r->open_state = -1;
            return;
        }
        p->open_name = strdup(nm->valuestring);
        cJSON_Delete(nm);
        if (!p->open_name) {
            a->oom = true;
            return;
        }
        r->open_state = 1;
        r->args_pos = i;
        r->depth = 0;
        r->in_str = r->esc = false;
    }
    if (r->open_state != 1) return;
    size_t end = len - utf8_incomplete_tail(text, len), i = r->args_pos;
    /* what is sent: the bytes of [from, i) less the white space between tokens */
    size_t cap = end > i ? end - i : 0;
    char *buf = cap ? malloc(cap) : NULL;
    size_t k = 0;
    if (cap && !buf) {
        a->oom = true;
        return;
    }
    for (; i < end; i++) {
        char c = text[i];
        if (r->in_str) {
            buf[k++] = c;
            if (r->esc) r->esc = false;
            else if (c == '\\') r->esc = true;
            else if (c == '"') r->in_str = false;
            continue;
        }
        if (json_ws(c)) continue;
        buf[k++] = c;
        if (c == '"') {
            r->in_str = true;
        } else if (c == '{' || c == '[') {
            r->depth++;
        } else if ((c == '}' || c == ']') && r->depth > 0 && --r->depth == 0) {
            i++;
            r->open_state = 2; /* the arguments ended; the rest comes with the complete call */
            break;
        }
    }
    r->args_pos = i;
    add_text(a, &p->open_args, &p->open_args_len, buf, k);
    free(buf);
}

static void hermes(acc *a, fitlm_tool_resume *r, const char *text, size_t len, bool final) {
    fitlm_tool_parse *p = a->p;
    const size_t open_l = strlen("<tool_call>"), close_l = strlen("</tool_call>");
    size_t i = r->pos;
    for (;;) {
        size_t qi;
        if (r->close_from) {
            qi = r->pos; /* the open call */
        } else {
            const char *q = find(text + i, len - i, "<tool_call>");
            if (!q) {
                size_t keep = final ? 0 : held(text + i, len - i, "<tool_call>");
                add_text(a, &p->content, &p->content_len, text + i, len - i - keep);
                r->pos = len - keep;
                return;
            }
            qi = (size_t)(q - text);
            add_text(a, &p->content, &p->content_len, text + i, qi - i);
            r->pos = qi;
            r->open_state = 0;
        }
        size_t start = qi + open_l, from = r->close_from ? r->close_from : start;
        const char *e = find(text + from, len - from, "</tool_call>");
        if (!e) {
            if (final) { /* never closed: text */
                add_text(a, &p->content, &p->content_len, text + qi, len - qi);
                if (r->open_state > 0) p->open_dropped = true;
                r->pos = len;
                r->close_from = 0;
                return;
            }
            r->close_from = len - start >= close_l ? len - close_l + 1 : start;
            open_call(a, r, text, start, len);
            return;
        }
        size_t ri = (size_t)(e - text), end = ri + close_l;
        if (!parse_calls(a, text + start, ri - start, false)) {
            add_text(a, &p->content, &p->content_len, text + qi, end - qi);
            if (r->open_state > 0) p->open_dropped = true;
        }
        r->close_from = 0;
        r->open_state = 0;
        r->pos = i = end;
    }
}

/* Llama 3.1 (one call object, after an optional <|python_tag|>) and Mistral
 * ([TOOL_CALLS] and an array): only the whole reply can be a call, so a
 * reply that may still become one is held back until final; meanwhile the
 * first call's name and arguments are reported as they come (open_call). */
static void whole(acc *a, fitlm_tool_resume *r, fitlm_tool_format f, const char *text, size_t len, bool final) {
    fitlm_tool_parse *p = a->p;
    const char *b = text + r->pos;
    size_t n = len - r->pos;
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
    if (!maybe) { /* never a call: plain text from here on */
        add_text(a, &p->content, &p->content_len, b, n);
        r->pos = len;
        r->mode = M_PLAIN;
        return;
    }
    if (!final) { /* could still be a call: the first call's name and arguments as they come */
        if (j < n && b[j] == open && (marked || !prefix_of(b + s, n - s, marker)))
            open_call(a, r, text, r->pos + j + (open == '['), len);
        return;
    }
    r->pos = len;
    if (j < n && parse_calls(a, b + j, n - j, f == FITLM_TOOLS_MISTRAL)) return;
    add_text(a, &p->content, &p->content_len, b, n);
    if (r->open_state > 0) p->open_dropped = true;
}

int fitlm_tool_parse_resume(fitlm_tool_format f, bool in_think, fitlm_tool_resume *r, const char *text, size_t len,
                            bool final, fitlm_tool_parse *out, fitlm_error *err) {
    memset(out, 0, sizeof *out);
    acc a = {.p = out, .base_calls = r->n_calls};
    if (r->pos > len) return fitlm_fail(err, "tool-call parse: the text got shorter");
    if (r->mode == M_START) {
        size_t s = 0;
        while (s < len && is_ws(text[s])) s++;
        if (in_think) {
            r->mode = M_THINK;
        } else if (len - s >= 7 && !memcmp(text + s, "<think>", 7)) {
            r->mode = M_THINK;
            r->pos = s + 7;
        } else if (!final && prefix_of(text + s, len - s, "<think>")) {
            return 0; /* may still open reasoning */
        } else {
            r->mode = M_BODY;
        }
    }
    if (r->mode == M_THINK) {
        const char *e = find(text + r->pos, len - r->pos, "</think>");
        if (!e) {
            size_t keep = final ? 0 : held(text + r->pos, len - r->pos, "</think>");
            add_text(&a, &out->reasoning, &out->reasoning_len, text + r->pos, len - r->pos - keep);
            r->pos = len - keep;
            goto done;
        }
        add_text(&a, &out->reasoning, &out->reasoning_len, text + r->pos, (size_t)(e - text) - r->pos);
        r->pos = (size_t)(e - text) + strlen("</think>");
        r->mode = M_AFTER_THINK;
    }
    if (r->mode == M_AFTER_THINK) {
        while (r->pos < len && is_ws(text[r->pos])) r->pos++; /* the blank line after </think> */
        if (r->pos == len && !final) goto done;
        r->mode = M_BODY;
    }
    if (r->mode == M_BODY) {
        switch (f) {
        case FITLM_TOOLS_HERMES: hermes(&a, r, text, len, final); goto done;
        case FITLM_TOOLS_LLAMA3:
        case FITLM_TOOLS_MISTRAL: whole(&a, r, f, text, len, final); goto done;
        default: r->mode = M_PLAIN; break;
        }
    }
    if (r->mode == M_PLAIN) {
        add_text(&a, &out->content, &out->content_len, text + r->pos, len - r->pos);
        r->pos = len;
    }
done:
    if (a.oom) {
        fitlm_tool_parse_free(out);
        return fitlm_fail(err, "out of memory parsing tool calls");
    }
    r->n_calls += out->n_calls;
    return 0;
}

int fitlm_tool_parse_text(fitlm_tool_format f, bool in_think, const char *text, size_t len, bool final,
                          fitlm_tool_parse *out, fitlm_error *err) {
    fitlm_tool_resume r = {0};
    return fitlm_tool_parse_resume(f, in_think, &r, text, len, final, out, err);
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
    free(p->open_name);
    free(p->open_args);
    memset(p, 0, sizeof *p);
}
