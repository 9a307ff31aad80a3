/* Built-in chat templates. */
#include "runtime/chat_template.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

fitlm_chat_template fitlm_chat_template_detect(const char *j) {
    if (!j) return FITLM_CHAT_NONE;
    if (strstr(j, "<|start_header_id|>")) return FITLM_CHAT_LLAMA3;
    if (strstr(j, "<|im_start|>")) return FITLM_CHAT_CHATML;
    if (strstr(j, "[INST]")) return strstr(j, "<<SYS>>") ? FITLM_CHAT_LLAMA2 : FITLM_CHAT_MISTRAL;
    return FITLM_CHAT_NONE;
}

fitlm_chat_template fitlm_chat_template_from_name(const char *n) {
    if (!n) return FITLM_CHAT_NONE;
    if (!strcasecmp(n, "llama2")) return FITLM_CHAT_LLAMA2;
    if (!strcasecmp(n, "llama3")) return FITLM_CHAT_LLAMA3;
    if (!strcasecmp(n, "chatml") || !strcasecmp(n, "qwen") || !strcasecmp(n, "qwen2")) return FITLM_CHAT_CHATML;
    if (!strcasecmp(n, "mistral")) return FITLM_CHAT_MISTRAL;
    return FITLM_CHAT_NONE;
}

const char *fitlm_chat_template_name(fitlm_chat_template t) {
    switch (t) {
    case FITLM_CHAT_LLAMA2: return "llama2";
    case FITLM_CHAT_LLAMA3: return "llama3";
    case FITLM_CHAT_CHATML: return "chatml";
    case FITLM_CHAT_MISTRAL: return "mistral";
    default: return "none";
    }
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *g = realloc(b->s, cap);
        if (!g) {
            b->oom = true;
            return;
        }
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void put(sbuf *b, const char *s) {
    put_n(b, s, strlen(s));
}

/* Appends s without leading/trailing whitespace (the templates' .strip()). */
static void put_stripped(sbuf *b, const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && isspace((unsigned char)s[a])) a++;
    while (e > a && isspace((unsigned char)s[e - 1])) e--;
    put_n(b, s + a, e - a);
}

char *fitlm_chat_format(fitlm_chat_template t, const fitlm_chat_message *msgs, size_t n, bool add_generation_prompt,
                        fitlm_error *err) {
    if (t == FITLM_CHAT_NONE) {
        fitlm_fail(err, "no chat template");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))) {
            fitlm_fail(err, "chat message %zu: role must be system, user or assistant", i);
            return NULL;
        }
    }
    sbuf b = {0};
    put(&b, ""); /* an empty conversation gives "" rather than NULL */
    const char *system = NULL;
    size_t first = 0;
    if (n > 0 && !strcmp(msgs[0].role, "system") && (t == FITLM_CHAT_LLAMA2 || t == FITLM_CHAT_MISTRAL)) {
        system = msgs[0].content;
        first = 1;
    }
    bool first_user = true;
    for (size_t i = first; i < n; i++) {
        const char *role = msgs[i].role, *text = msgs[i].content;
        switch (t) {
        case FITLM_CHAT_LLAMA2:
            if (!strcmp(role, "user")) {
                if (i > first) put(&b, "<s>");
                put(&b, "[INST] ");
                if (first_user && system) {
                    /* the template strips system block + message as one string */
                    sbuf c = {0};
                    put(&c, "<<SYS>>\n");
                    put(&c, system);
                    put(&c, "\n<</SYS>>\n\n");
                    put(&c, text);
                    if (c.oom) b.oom = true;
                    else put_stripped(&b, c.s);
                    free(c.s);
                } else {
                    put_stripped(&b, text);
                }
                put(&b, " [/INST]");
                first_user = false;
            } else if (!strcmp(role, "assistant")) {
                put(&b, " ");
                put_stripped(&b, text);
                put(&b, " </s>");
            }
            break;
        case FITLM_CHAT_MISTRAL:
            if (!strcmp(role, "user")) {
                put(&b, "[INST] ");
                if (first_user && system) {
                    put(&b, system);
                    put(&b, "\n\n");
                }
                put(&b, text);
                put(&b, " [/INST]");
                first_user = false;
            } else if (!strcmp(role, "assistant")) {
                put(&b, text);
                put(&b, "</s>");
            }
            break;
        case FITLM_CHAT_LLAMA3:
            put(&b, "<|start_header_id|>");
            put(&b, role);
            put(&b, "<|end_header_id|>\n\n");
            put_stripped(&b, text);
            put(&b, "<|eot_id|>");
            break;
        case FITLM_CHAT_CHATML:
            put(&b, "<|im_start|>");
            put(&b, role);
            put(&b, "\n");
            put(&b, text);
            put(&b, "<|im_end|>\n");
            break;
        default: break;
        }
    }
    if (add_generation_prompt) {
        if (t == FITLM_CHAT_LLAMA3) put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        if (t == FITLM_CHAT_CHATML) put(&b, "<|im_start|>assistant\n");
    }
    if (b.oom) {
        free(b.s);
        fitlm_fail(err, "out of memory formatting the chat");
        return NULL;
    }
    return b.s;
}

/* If the `n` bytes at p are a plain string literal (no Jinja expression or
 * concatenation), returns them with the escapes \n and \\ undone (malloc'd,
 * caller frees); else NULL and *bad = the offset of the first character that
 * disqualifies it (n if it was only out of memory). */
static char *unescape_literal(const char *p, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (p[i] == '{' || p[i] == '}' || p[i] == '\'' || p[i] == '"' || p[i] == '+') {
            *bad = i;
            return NULL;
        }
    *bad = n;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n && (p[i + 1] == 'n' || p[i + 1] == '\\')) {
            out[o++] = p[i + 1] == 'n' ? '\n' : '\\';
            i++;
        } else {
            out[o++] = p[i];
        }
    }
    out[o] = 0;
    return out;
}

char *fitlm_chat_default_system(const char *j) {
    if (!j) return NULL;
    /* ChatML templates that insert a system turn when the conversation has
     * none carry it as a literal: '<|im_start|>system\nTEXT<|im_end|>' (the
     * \n written as a Jinja escape, or as a real newline).
     * Linear in the template's length whatever it holds: the next end mark and
     * the first character that spoils a literal before it are found once and
     * reused by every start mark in front of them (a template of many start
     * marks and no end would otherwise be scanned once per mark). */
    static const char *const marks[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    static const char end_mark[] = "<|im_end|>";
    for (size_t k = 0; k < 2; k++) {
        const char *e = NULL, *spoiled = NULL; /* spoiled: a disqualifying character before e */
        for (const char *at = strstr(j, marks[k]); at; at = strstr(at + 1, marks[k])) {
            const char *p = at + strlen(marks[k]);
            if (!e || e < p) {
                e = strstr(p, end_mark);
                spoiled = NULL;
                if (!e) break; /* no end after this start: none after the later ones either */
            }
            if (e == p) continue;
            if (spoiled && spoiled >= p) continue; /* the literal would run into it again */
            size_t bad;
            char *lit = unescape_literal(p, (size_t)(e - p), &bad);
            if (lit) return lit;
            if (bad == (size_t)(e - p)) return NULL; /* out of memory */
            spoiled = p + bad;
        }
    }
    return NULL;
}
