/* SentencePiece BPE encoding (tokenizer.ggml.model "llama").
 *
 * The text is escaped first: ' ' becomes "▁" (U+2581), a "▁" is prepended when
 * the fragment starts the text (add_dummy_prefix), and every byte that is not
 * part of a valid UTF-8 character becomes U+FFFD, as SentencePiece's normalizer
 * does. Each character is a symbol; then, repeatedly, the adjacent pair whose
 * concatenation is a vocabulary piece with the highest score is merged (the
 * leftmost pair on equal scores). A heap of candidate pairs keeps this
 * O(n log n). Symbols that are not pieces in the end are written as <0xNN>
 * byte tokens (byte fallback) or as the unknown token. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    uint32_t start, len; /* bytes in the escaped text; len 0 = merged away */
    int32_t prev, next;
} spm_sym;

/* Pieces SentencePiece may merge into: normal, user-defined and unused ones. */
static int32_t mergeable_piece(const fitlm_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_lookup(t, s, n);
    if (id < 0) return -1;
    int ty = t->ttype[id];
    if (ty == FITLM_TOKEN_CONTROL || ty == FITLM_TOKEN_UNKNOWN || ty == FITLM_TOKEN_BYTE) return -1;
    return id;
}

static int try_pair(const fitlm_tokenizer *t, const char *text, const spm_sym *sym, int32_t left, int32_t right,
                    tok_pair_heap *h) {
    if (left < 0 || right < 0) return 0;
    uint32_t size = sym[left].len + sym[right].len;
    if (size > (uint32_t)t->max_token_len) return 0;
    int32_t id = mergeable_piece(t, text + sym[left].start, size);
    if (id < 0) return 0;
    /* higher score first; stale when either side has grown since */
    return tok_pair_heap_push(h, (tok_pair){-(double)t->score[id], left, right, (int32_t)size, 0});
}

static int emit_symbol(const fitlm_tokenizer *t, const char *s, size_t n, tok_ids *out, fitlm_error *err) {
    int32_t id = tok_lookup(t, s, n);
    if (id >= 0 && t->ttype[id] != FITLM_TOKEN_CONTROL) return tok_ids_push(out, id, err);
    if (t->byte_fallback || t->type == FITLM_TOK_SPM) {
        int done = tok_push_bytes(t, s, n, out, err);
        if (done) return done < 0 ? -1 : 0;
    }
    if (t->unk >= 0) return tok_ids_push(out, t->unk, err);
    return 0; /* no way to represent it: dropped, as SentencePiece without <unk> would */
}

int tok_spm_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool prefix_space, tok_ids *out,
                   fitlm_error *err) {
    if (len > (SIZE_MAX / 4) - 8 || len > UINT32_MAX / 4) return fitlm_fail(err, "text too long");
    char *buf = malloc(len * 3 + 4);
    spm_sym *sym = malloc((len + 1) * sizeof *sym);
    tok_pair_heap h = {0};
    int rc = -1;
    if (!buf || !sym) {
        fitlm_fail(err, "out of memory");
        goto done;
    }
    /* escape and split into characters */
    size_t o = 0;
    int32_t ns = 0;
    if (prefix_space) {
        memcpy(buf, "\xE2\x96\x81", 3);
        sym[ns++] = (spm_sym){0, 3, -1, -1};
        o = 3;
    }
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)text + i;
        size_t l = tok_utf8_valid_len(u, len - i);
        uint32_t start = (uint32_t)o;
        if (l == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3); /* U+FFFD for each stray byte */
            o += 3;
            l = 1;
        } else if (u[0] == ' ') {
            memcpy(buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            memcpy(buf + o, u, l);
            o += l;
        }
        i += l;
        sym[ns] = (spm_sym){start, (uint32_t)(o - start), ns - 1, -1};
        ns++;
    }
    /* Merge word by word when the vocabulary allows it (no piece has a "▁" right
     * after another character, so no merge can cross the start of a word): the
     * result is the same as for the whole text, and the heaps stay small. */
    int32_t w0 = 0;
    while (w0 < ns) {
        int32_t w1 = w0 + 1;
        if (t->spm_word_split)
            while (w1 < ns && !(sym[w1].len == 3 && !memcmp(buf + sym[w1].start, "\xE2\x96\x81", 3) &&
                                !(sym[w1 - 1].len == 3 && !memcmp(buf + sym[w1 - 1].start, "\xE2\x96\x81", 3))))
                w1++;
        else
            w1 = ns;
        for (int32_t i = w0; i < w1; i++) {
            sym[i].prev = i > w0 ? i - 1 : -1;
            sym[i].next = i + 1 < w1 ? i + 1 : -1;
        }
        h.n = 0;
        for (int32_t i = w0; i + 1 < w1; i++)
            if (try_pair(t, buf, sym, i, i + 1, &h)) {
                fitlm_fail(err, "out of memory");
                goto done;
            }
        /* merge best pairs until none is left */
        while (h.n > 0) {
            tok_pair p = tok_pair_heap_pop(&h);
            spm_sym *a = &sym[p.left], *b = &sym[p.right];
            if (a->len == 0 || b->len == 0 || a->next != p.right || a->len + b->len != (uint32_t)p.check_a) continue;
            a->len += b->len;
            b->len = 0;
            a->next = b->next;
            if (b->next >= 0) sym[b->next].prev = p.left;
            if (try_pair(t, buf, sym, a->prev, p.left, &h) || try_pair(t, buf, sym, p.left, a->next, &h)) {
                fitlm_fail(err, "out of memory");
                goto done;
            }
        }
        for (int32_t i = w0; i >= 0; i = sym[i].next)
            if (emit_symbol(t, buf + sym[i].start, sym[i].len, out, err)) goto done;
        w0 = w1;
    }
    rc = 0;
done:
    free(buf);
    free(sym);
    free(h.v);
    return rc;
}
