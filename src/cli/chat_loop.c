/* Interactive chat over the runtime. */
#include "cli/chat_loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conversation {
    fitlm_chat_message *m;
    char **owned; /* the strings behind m[i].content */
    size_t n, cap;
} conversation;

static int conv_push(conversation *c, const char *role, const char *text, size_t len, fitlm_error *err) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        fitlm_chat_message *m = realloc(c->m, cap * sizeof *m);
        if (m) c->m = m;
        char **o = realloc(c->owned, cap * sizeof *o);
        if (o) c->owned = o;
        if (!m || !o) return fitlm_fail(err, "out of memory");
        c->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return fitlm_fail(err, "out of memory");
    memcpy(s, text, len);
    s[len] = 0;
    c->owned[c->n] = s;
    c->m[c->n].role = role;
    c->m[c->n].content = s;
    c->n++;
    return 0;
}

static void conv_free(conversation *c) {
    for (size_t i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->owned);
    free(c->m);
}

int chat_loop(gen_ctx *g, fitlm_chat_template t, const char *system, const char *first_user, long n_predict,
              bool print_ids, fitlm_error *err) {
    conversation conv = {0};
    char *prev = NULL, *full = NULL, *line = NULL, *reply = NULL;
    int32_t *ids = NULL;
    size_t line_cap = 0;
    int rc = -1;
    bool first = true;
    if (system && conv_push(&conv, "system", system, strlen(system), err)) goto out;
    prev = fitlm_chat_format(t, conv.m, conv.n, false, err);
    if (!prev) goto out;
    for (;;) {
        const char *user;
        size_t ulen;
        if (first && first_user) {
            user = first_user;
            ulen = strlen(user);
        } else {
            printf("\n> ");
            fflush(stdout);
            ssize_t got = getline(&line, &line_cap, stdin);
            if (got < 0) break; /* end of input */
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) got--;
            if (got == 0) continue;
            user = line;
            ulen = (size_t)got;
        }
        if (conv_push(&conv, "user", user, ulen, err)) goto out;
        free(full);
        full = fitlm_chat_format(t, conv.m, conv.n, true, err);
        if (!full) goto out;
        size_t plen = strlen(prev);
        if (strncmp(full, prev, plen) != 0) {
            fitlm_fail(err, "chat template %s did not extend the previous turn", fitlm_chat_template_name(t));
            goto out;
        }
        size_t n = 0;
        free(ids);
        ids = NULL;
        if (fitlm_tokenizer_encode(g->tok, full + plen, strlen(full + plen), first, true, &ids, &n, err)) goto out;
        uint32_t room = fitlm_runtime_n_ctx(g->rt) - fitlm_runtime_n_past(g->rt);
        if (n + 1 > room) {
            fprintf(stderr, "\nfitlm: the context is full (%u tokens); the conversation ends here\n",
                    fitlm_runtime_n_ctx(g->rt));
            break;
        }
        for (size_t i = 0; i < n; i++) fitlm_sampler_accept(g->smp, ids[i]);
        if (n && fitlm_runtime_eval(g->rt, ids, (uint32_t)n, g->logits, false, err)) goto out;
        g->ds = print_ids ? NULL : fitlm_detok_stream_new(g->tok, false);
        if (!print_ids && !g->ds) {
            fitlm_fail(err, "out of memory");
            goto out;
        }
        gen_result r;
        int e = generate_tokens(g, n_predict, true, &r, err);
        fitlm_detok_stream_free(g->ds);
        g->ds = NULL;
        if (e) goto out;
        printf("\n");
        fflush(stdout);
        size_t rlen = 0;
        free(reply);
        reply = fitlm_tokenizer_decode(g->tok, g->out, (size_t)r.n, false, &rlen, err);
        if (!reply || conv_push(&conv, "assistant", reply, rlen, err)) goto out;
        free(prev);
        prev = fitlm_chat_format(t, conv.m, conv.n, false, err);
        if (!prev) goto out;
        first = false;
        if (!strcmp(r.reason, "context full")) {
            fprintf(stderr, "\nfitlm: the context is full; the conversation ends here\n");
            break;
        }
    }
    rc = 0;
out:
    free(reply);
    free(ids);
    free(line);
    free(full);
    free(prev);
    conv_free(&conv);
    return rc;
}
