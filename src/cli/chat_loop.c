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

int chat_loop(fitlm_engine *e, const fitlm_tokenizer *tok, const fitlm_sampler_params *sp, const fitlm_chat_prompt *cp,
              const char *system, const char *first_user, long n_predict, bool print_ids, fitlm_error *err) {
    conversation conv = {0};
    char *prev = NULL, *full = NULL, *line = NULL, *reply = NULL;
    int32_t *ids = NULL, *hist = NULL; /* hist: the conversation's tokens so far */
    size_t line_cap = 0, n_hist = 0;
    uint32_t n_ctx = fitlm_engine_n_ctx(e);
    int rc = -1;
    bool first = true;
    gen_result r = {0};
    hist = malloc((size_t)n_ctx * sizeof *hist);
    if (!hist) {
        fitlm_fail(err, "out of memory");
        goto out;
    }
    if (system && conv_push(&conv, "system", system, strlen(system), err)) goto out;
    /* a Jinja template may refuse a conversation without a user turn: then
     * nothing comes before the first turn */
    prev = conv.n ? fitlm_chat_prompt_render(cp, conv.m, conv.n, NULL, NULL, false, NULL, err) : NULL;
    if (!prev && !(prev = strdup(""))) {
        fitlm_fail(err, "out of memory");
        goto out;
    }
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
        full = fitlm_chat_prompt_render(cp, conv.m, conv.n, NULL, NULL, true, NULL, err);
        if (!full) goto out;
        size_t plen = strlen(prev);
        bool extends = !strncmp(full, prev, plen);
        if (!extends) { /* the template rewrote earlier turns: the whole conversation again */
            plen = 0;
            n_hist = 0;
            first = true;
        }
        size_t n = 0;
        free(ids);
        ids = NULL;
        if (fitlm_chat_prompt_tokenize(cp, full + plen, strlen(full + plen), first, &ids, &n, err)) goto out;
        if (n_hist + n + 1 > n_ctx) {
            fprintf(stderr, "\nfitlm: the context is full (%u tokens); the conversation ends here\n", n_ctx);
            break;
        }
        memcpy(hist + n_hist, ids, n * sizeof *ids);
        n_hist += n;
        long room = (long)(n_ctx - n_hist);
        free(r.ids);
        if (generate_tokens(e, hist, (uint32_t)n_hist, n_predict < room ? n_predict : room, sp, print_ids, NULL, &r, err))
            goto out;
        printf("\n");
        fflush(stdout);
        /* the reply's tokens (the end-of-generation one too) join the history as generated */
        long keep = r.n_ids;
        if ((size_t)keep > n_ctx - n_hist) keep = (long)(n_ctx - n_hist);
        memcpy(hist + n_hist, r.ids, (size_t)keep * sizeof *hist);
        n_hist += (size_t)keep;
        size_t rlen = 0;
        free(reply);
        reply = fitlm_tokenizer_decode(tok, r.ids, (size_t)r.n, false, &rlen, err);
        if (!reply || conv_push(&conv, "assistant", reply, rlen, err)) goto out;
        free(prev);
        prev = fitlm_chat_prompt_render(cp, conv.m, conv.n, NULL, NULL, false, NULL, err);
        if (!prev) goto out;
        first = false;
        if (!strcmp(r.reason, "context full") || n_hist >= n_ctx) {
            fprintf(stderr, "\nfitlm: the context is full; the conversation ends here\n");
            break;
        }
    }
    rc = 0;
out:
    free(r.ids);
    free(reply);
    free(ids);
    free(hist);
    free(line);
    free(full);
    free(prev);
    conv_free(&conv);
    return rc;
}
