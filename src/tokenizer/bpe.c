/* Rank-based BPE (tokenizer.ggml.model "gpt2", and Hugging Face BPE models).
 *
 * Byte-level: the fragment is split by the pre-tokenizer; each piece's bytes
 * start as the single-byte tokens (byte b is the vocabulary string of the code
 * point GPT-2's byte mapping gives it); then the adjacent pair with the lowest
 * merge rank is merged, the leftmost first among equal ranks, until no pair
 * has a merge. With ignore_merges (Llama 3) a piece that is itself in the
 * vocabulary is emitted directly.
 * Char-level (HF Llama-2 style tokenizer.json): the text is escaped with "▁"
 * as its normalizer/pre-tokenizer says, symbols are UTF-8 characters, and
 * characters not in the vocabulary fall back to <0xNN> tokens or <unk>. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct bpe_sym {
    int32_t id; /* -1: unknown character (never merges) */
    uint32_t start, len;
    int32_t prev, next;
} bpe_sym;

static const tok_merge *find_merge(const fitlm_tokenizer *t, int32_t a, int32_t b) {
    if (!t->merges.slot) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint64_t h = tok_hash_u64(t->merges.seed, key) & t->merges.mask;; h = (h + 1) & t->merges.mask) {
        const tok_merge *m = &t->merges.slot[h];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

static int add_cand(const fitlm_tokenizer *t, const bpe_sym *sym, int32_t left, int32_t right, tok_pair_heap *h) {
    if (left < 0 || right < 0 || sym[left].id < 0 || sym[right].id < 0) return 0;
    const tok_merge *m = find_merge(t, sym[left].id, sym[right].id);
    if (!m) return 0;
    /* stale when either side's token has changed since */
    return tok_pair_heap_push(h, (tok_pair){m->rank, left, right, sym[left].id, sym[right].id});
}

/* Work buffers reused across the pieces of one encode call. */
typedef struct bpe_work {
    bpe_sym *sym;
    size_t sym_cap;
    tok_pair_heap heap;
    char *map; /* byte-level mapped piece (for ignore_merges) */
    size_t map_cap;
} bpe_work;

static int ensure(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = need + need / 2 + 16;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int emit_unknown(const fitlm_tokenizer *t, const char *s, size_t n, tok_ids *out, fitlm_error *err) {
    if (t->byte_fallback) {
        int done = tok_push_bytes(t, s, n, out, err);
        if (done) return done < 0 ? -1 : 0;
    }
    if (t->unk >= 0) return tok_ids_push(out, t->unk, err);
    return 0;
}

/* BPE over one piece. Byte-level: s holds raw bytes; char-level: UTF-8 text. */
static int bpe_piece(const fitlm_tokenizer *t, bpe_work *w, const char *s, size_t n, tok_ids *out, fitlm_error *err) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        const char *key = s;
        size_t kl = n;
        if (t->byte_level) {
            if (ensure((void **)&w->map, &w->map_cap, n * 2, 1)) return fitlm_fail(err, "out of memory");
            kl = 0;
            for (size_t i = 0; i < n; i++) kl += tok_utf8_put(w->map + kl, tok_byte_to_cp((uint8_t)s[i]));
            key = w->map;
        }
        int32_t id = tok_lookup(t, key, kl);
        if (id >= 0) return tok_ids_push(out, id, err);
    }
    if (ensure((void **)&w->sym, &w->sym_cap, n, sizeof *w->sym)) return fitlm_fail(err, "out of memory");
    bpe_sym *sym = w->sym;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t l = 1;
        int32_t id;
        if (t->byte_level) {
            id = t->byte_id[(unsigned char)s[i]];
        } else {
            l = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
            if (l == 0) l = 1;
            id = tok_lookup(t, s + i, l);
        }
        sym[ns] = (bpe_sym){id, (uint32_t)i, (uint32_t)l, ns - 1, ns + 1};
        ns++;
        i += l;
    }
    sym[ns - 1].next = -1;
    w->heap.n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (add_cand(t, sym, i, i + 1, &w->heap)) return fitlm_fail(err, "out of memory");
    while (w->heap.n > 0) {
        tok_pair c = tok_pair_heap_pop(&w->heap);
        bpe_sym *a = &sym[c.left];
        if (a->len == 0 || a->next != c.right || a->id != c.check_a || sym[c.right].id != c.check_b) continue;
        bpe_sym *b = &sym[c.right];
        const tok_merge *m = find_merge(t, a->id, b->id);
        a->id = m->result;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) sym[b->next].prev = c.left;
        if (add_cand(t, sym, a->prev, c.left, &w->heap) || add_cand(t, sym, c.left, a->next, &w->heap))
            return fitlm_fail(err, "out of memory");
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0) {
            if (tok_ids_push(out, sym[i].id, err)) return -1;
        } else if (t->byte_level) {
            continue; /* a byte with no token in the vocabulary: dropped */
        } else if (emit_unknown(t, s + sym[i].start, sym[i].len, out, err)) {
            return -1;
        }
    }
    return 0;
}

/* Char-level: escape spaces / add the "▁" prefix as configured. Returns a
 * malloc'd buffer (caller frees). */
static char *escape_spaces(const fitlm_tokenizer *t, const char *text, size_t len, bool prefix, size_t *out_len) {
    char *buf = malloc(len * 3 + 4);
    if (!buf) return NULL;
    size_t o = 0;
    if (prefix) {
        /* Metaspace does not add a second "▁" when the text already starts with one */
        bool starts = len > 0 && ((text[0] == ' ' && t->spacing.replace_space) ||
                                  (len >= 3 && memcmp(text, "\xE2\x96\x81", 3) == 0));
        if (!(starts && t->spacing.prepend_if_missing)) {
            memcpy(buf, "\xE2\x96\x81", 3);
            o = 3;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ' && t->spacing.replace_space) {
            memcpy(buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            buf[o++] = text[i];
        }
    }
    *out_len = o;
    return buf;
}

int tok_bpe_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool prefix, tok_ids *out,
                   fitlm_error *err) {
    if (len > UINT32_MAX / 4) return fitlm_fail(err, "text too long");
    bpe_work w = {0};
    char *esc = NULL;
    size_t *pieces = NULL, np = 0;
    int rc = -1;
    const char *src = text;
    size_t slen = len;
    if (!t->byte_level) {
        esc = escape_spaces(t, text, len, prefix, &slen);
        if (!esc) {
            fitlm_fail(err, "out of memory");
            goto done;
        }
        src = esc;
    }
    if (tok_pretokenize(t, src, slen, &pieces, &np, err)) goto done;
    for (size_t k = 0; k < np; k++) {
        const char *p = src + pieces[2 * k];
        size_t pl = pieces[2 * k + 1];
        if (!t->byte_level && t->spacing.split) {
            /* Metaspace split: a new word starts at every "▁" */
            size_t ws = 0;
            for (size_t i = 1; i <= pl; i++) {
                if (i == pl || (i + 3 <= pl && memcmp(p + i, "\xE2\x96\x81", 3) == 0)) {
                    if (bpe_piece(t, &w, p + ws, i - ws, out, err)) goto done;
                    ws = i;
                }
            }
        } else if (bpe_piece(t, &w, p, pl, out, err)) {
            goto done;
        }
    }
    rc = 0;
done:
    free(esc);
    free(pieces);
    free(w.sym);
    free(w.heap.v);
    free(w.map);
    return rc;
}
