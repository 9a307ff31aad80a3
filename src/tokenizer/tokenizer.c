/* Tokenizer core: vocabulary tables, special tokens, encode dispatch, decoding,
 * streaming and accessors. The algorithms live in spm.c and bpe.c, the
 * pre-tokenizers in pretok.c, the loaders in load_gguf.c and load_hf.c. */
#include "tokenizer/tok_internal.h"
#include "util/hash.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

int tok_ids_push(tok_ids *a, int32_t id, fitlm_error *err) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return fitlm_fail(err, "out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

size_t tok_utf8_valid_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t l;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        l = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < l) return 0;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    uint32_t cp = tok_utf8_get(s, l);
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return l;
}

uint32_t tok_utf8_get(const unsigned char *s, size_t l) {
    switch (l) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
}

size_t tok_utf8_put(char *buf, uint32_t cp) {
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 byte-level mapping: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++)
        if (!byte_is_printable(i)) k++;
    return 0x100 + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t k = cp - 0x100;
    for (unsigned i = 0; i < 256; i++)
        if (!byte_is_printable(i) && k-- == 0) return (int)i;
    return -1;
}

int32_t tok_lookup(const fitlm_tokenizer *t, const char *s, size_t len) {
    if (!t->vocab.slot) return -1;
    uint32_t i = (uint32_t)fitlm_hash_bytes(s, len) & t->vocab.mask;
    for (uint32_t probe = 0; probe <= t->vocab.max_probe; probe++) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->text_len[id] == len && memcmp(tok_text(t, id), s, len) == 0) return id;
        i = (i + 1) & t->vocab.mask;
    }
    return -1;
}

/* ---------------------------------------------------------------- building */

fitlm_tokenizer *tok_alloc(fitlm_error *err) {
    fitlm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    t->bos = t->eos = t->eot = t->eom = t->pad = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

int tok_set_vocab(fitlm_tokenizer *t, size_t n, const char *const *strs, const uint64_t *lens, fitlm_error *err) {
    if (n == 0) return fitlm_fail(err, "empty vocabulary");
    if (n > TOK_MAX_VOCAB) return fitlm_fail(err, "vocabulary too large (%zu tokens)", n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > TOK_MAX_TOKEN_BYTES) return fitlm_fail(err, "token %zu is too long (%llu bytes)", i, (unsigned long long)lens[i]);
        if (memchr(strs[i], 0, lens[i])) return fitlm_fail(err, "token %zu contains a NUL byte", i);
        total += lens[i] + 1;
    }
    t->n_vocab = (int32_t)n;
    t->text_buf = malloc(total);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->score = calloc(n, sizeof *t->score);
    t->ttype = malloc(n);
    uint32_t cap = 1;
    while (cap < 2 * n) cap <<= 1;
    t->vocab.slot = malloc((size_t)cap * sizeof *t->vocab.slot);
    if (!t->text_buf || !t->text_off || !t->text_len || !t->score || !t->ttype || !t->vocab.slot)
        return fitlm_fail(err, "out of memory");
    t->vocab.mask = cap - 1;
    memset(t->vocab.slot, 0xff, (size_t)cap * sizeof *t->vocab.slot);
    memset(t->ttype, FITLM_TOKEN_NORMAL, n);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)lens[i];
        memcpy(t->text_buf + off, strs[i], lens[i]);
        t->text_buf[off + lens[i]] = 0;
        off += lens[i] + 1;
        if ((int32_t)lens[i] > t->max_token_len) t->max_token_len = (int32_t)lens[i];
        /* insert unless the same text is already there (the first id wins) */
        uint32_t h = (uint32_t)fitlm_hash_bytes(strs[i], lens[i]) & t->vocab.mask;
        for (uint32_t probe = 0;; probe++) {
            /* a keyed hash at load 1/2 keeps probes short; a long one means a broken hash */
            if (probe > FITLM_HASH_MAX_PROBE)
                return fitlm_fail(err, "vocabulary hash: probe length over %d", FITLM_HASH_MAX_PROBE);
            int32_t id = t->vocab.slot[h];
            if (id < 0) {
                t->vocab.slot[h] = (int32_t)i;
                if (probe > t->vocab.max_probe) t->vocab.max_probe = probe;
                break;
            }
            if (t->text_len[id] == lens[i] && memcmp(tok_text(t, id), strs[i], lens[i]) == 0) break;
            h = (h + 1) & t->vocab.mask;
        }
    }
    return 0;
}

int tok_reserve_merges(fitlm_tokenizer *t, size_t n, fitlm_error *err) {
    if (t->merges.slot) return 0;
    if (n > TOK_MAX_VOCAB) return fitlm_fail(err, "too many merges (%zu)", n);
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap <<= 1;
    t->merges.slot = malloc(cap * sizeof *t->merges.slot);
    if (!t->merges.slot) return fitlm_fail(err, "out of memory");
    for (uint64_t i = 0; i < cap; i++) t->merges.slot[i].key = UINT64_MAX;
    t->merges.mask = cap - 1;
    t->merges.n = 0;
    t->merges.seed = fitlm_hash_u64(0x6d65726765ull);
    return 0;
}

int tok_add_merge(fitlm_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank,
                  fitlm_error *err) {
    if (!t->merges.slot || (t->merges.n + 1) * 2 > t->merges.mask + 1) {
        /* grow */
        tok_mergemap old = t->merges;
        t->merges.slot = NULL;
        if (tok_reserve_merges(t, old.n * 2 + 1024, err)) {
            t->merges = old;
            return -1;
        }
        for (uint64_t i = 0; old.slot && i <= old.mask; i++) {
            if (old.slot[i].key == UINT64_MAX) continue;
            uint64_t h = tok_hash_u64(t->merges.seed, old.slot[i].key) & t->merges.mask;
            while (t->merges.slot[h].key != UINT64_MAX) h = (h + 1) & t->merges.mask;
            t->merges.slot[h] = old.slot[i];
        }
        t->merges.n = old.n;
        free(old.slot);
    }
    int32_t ia = tok_lookup(t, a, alen), ib = tok_lookup(t, b, blen);
    if (ia < 0 || ib < 0)
        return fitlm_fail(err, "merge %d: '%.*s' is not in the vocabulary", rank, (int)(ia < 0 ? alen : blen),
                          ia < 0 ? a : b);
    if (alen + blen > TOK_MAX_TOKEN_BYTES) return fitlm_fail(err, "merge %d: result too long", rank);
    char stackbuf[512];
    char *cat = alen + blen <= sizeof stackbuf ? stackbuf : malloc(alen + blen);
    if (!cat) return fitlm_fail(err, "out of memory");
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t ir = tok_lookup(t, cat, alen + blen);
    if (ir < 0) {
        fitlm_fail(err, "merge %d: '%.*s' + '%.*s' gives a token not in the vocabulary", rank, (int)alen, a, (int)blen,
                   b);
        if (cat != stackbuf) free(cat);
        return -1;
    }
    if (cat != stackbuf) free(cat);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    uint64_t h = tok_hash_u64(t->merges.seed, key) & t->merges.mask;
    while (t->merges.slot[h].key != UINT64_MAX) {
        if (t->merges.slot[h].key == key) return 0; /* duplicate merge: the first (best) rank stays */
        h = (h + 1) & t->merges.mask;
    }
    t->merges.slot[h].key = key;
    t->merges.slot[h].rank = rank;
    t->merges.slot[h].result = ir;
    t->merges.n++;
    return 0;
}

/* Decoded bytes of one token (into dst, which has room for 4x the text). */
static size_t decode_token_text(const fitlm_tokenizer *t, int32_t id, char *dst) {
    const char *s = tok_text(t, id);
    size_t n = t->text_len[id];
    int type = t->ttype[id];
    if (type == FITLM_TOKEN_CONTROL) return 0;
    if (type == FITLM_TOKEN_USER_DEFINED) {
        memcpy(dst, s, n);
        return n;
    }
    if (type == FITLM_TOKEN_UNKNOWN && t->type == FITLM_TOK_SPM) {
        memcpy(dst, " \xE2\x81\x87 ", 5); /* SentencePiece shows <unk> as " ⁇ " */
        return 5;
    }
    if (t->byte_level) {
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            size_t l = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
            if (l == 0) {
                dst[o++] = s[i++];
                continue;
            }
            int b = tok_cp_to_byte(tok_utf8_get((const unsigned char *)s + i, l));
            if (b >= 0) {
                dst[o++] = (char)b;
            } else {
                memcpy(dst + o, s + i, l);
                o += l;
            }
            i += l;
        }
        return o;
    }
    /* SentencePiece style: <0xNN> byte tokens, "▁" is a space */
    if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
        (type == FITLM_TOKEN_BYTE || t->byte_fallback || t->type == FITLM_TOK_SPM)) {
        char hex[3] = {s[3], s[4], 0};
        char *end;
        long v = strtol(hex, &end, 16);
        if (*end == 0 && v >= 0 && v < 256 && type == FITLM_TOKEN_BYTE) {
            dst[0] = (char)v;
            return 1;
        }
        if (*end == 0 && v >= 0 && v < 256 && t->type == FITLM_TOK_BPE) {
            dst[0] = (char)v;
            return 1;
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81) {
            dst[o++] = ' ';
            i += 3;
        } else {
            dst[o++] = s[i++];
        }
    }
    return o;
}

static int32_t trie_child(const tok_trie *tr, int32_t node, unsigned char c) {
    uint64_t key = ((uint64_t)(uint32_t)node << 8) | c;
    for (uint64_t h = tok_hash_u64(tr->seed, key) & tr->mask;; h = (h + 1) & tr->mask) {
        if (tr->edge_key[h] == key) return tr->edge_child[h];
        if (tr->edge_key[h] == UINT64_MAX) return -1;
    }
}

/* Builds the trie of control and user-defined token texts. When two tokens
 * have the same text the lower id wins. */
static int build_specials(fitlm_tokenizer *t, fitlm_error *err) {
    tok_trie *tr = &t->specials;
    size_t total = 1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->ttype[i] == FITLM_TOKEN_CONTROL || t->ttype[i] == FITLM_TOKEN_USER_DEFINED) total += t->text_len[i];
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)total) cap <<= 1;
    tr->mask = cap - 1;
    tr->seed = fitlm_hash_u64(0x74726965ull);
    tr->edge_key = malloc(cap * sizeof *tr->edge_key);
    tr->edge_child = malloc(cap * sizeof *tr->edge_child);
    tr->term = malloc(total * sizeof *tr->term);
    if (!tr->edge_key || !tr->edge_child || !tr->term) return fitlm_fail(err, "out of memory");
    memset(tr->edge_key, 0xff, cap * sizeof *tr->edge_key);
    tr->term[0] = -1;
    tr->n_nodes = 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->ttype[i] != FITLM_TOKEN_CONTROL && t->ttype[i] != FITLM_TOKEN_USER_DEFINED) continue;
        if (t->text_len[i] == 0) continue;
        const unsigned char *s = (const unsigned char *)tok_text(t, i);
        int32_t node = 0;
        tr->first[s[0]] = true;
        for (uint32_t k = 0; k < t->text_len[i]; k++) {
            int32_t child = trie_child(tr, node, s[k]);
            if (child < 0) {
                child = (int32_t)tr->n_nodes++;
                tr->term[child] = -1;
                uint64_t key = ((uint64_t)(uint32_t)node << 8) | s[k];
                uint64_t h = tok_hash_u64(tr->seed, key) & tr->mask;
                while (tr->edge_key[h] != UINT64_MAX) h = (h + 1) & tr->mask;
                tr->edge_key[h] = key;
                tr->edge_child[h] = child;
            }
            node = child;
        }
        if (tr->term[node] < 0) tr->term[node] = i;
    }
    return 0;
}

static bool text_is(const fitlm_tokenizer *t, int32_t id, const char *s) {
    size_t n = strlen(s);
    return t->text_len[id] == n && memcmp(tok_text(t, id), s, n) == 0;
}

int tok_finish(fitlm_tokenizer *t, fitlm_error *err) {
    const int32_t nv = t->n_vocab;
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->pad, &t->unk};
    const char *names[] = {"bos", "eos", "eot", "eom", "padding", "unknown"};
    for (int i = 0; i < 6; i++)
        if (*ids[i] < -1 || *ids[i] >= nv)
            return fitlm_fail(err, "%s token id %d is out of range (vocabulary has %d tokens)", names[i], *ids[i], nv);

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            char buf[4];
            size_t l = tok_utf8_put(buf, tok_byte_to_cp((uint8_t)b));
            t->byte_id[b] = tok_lookup(t, buf, l);
        } else {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            t->byte_id[b] = tok_lookup(t, buf, 6);
        }
    }

    /* decoded pieces */
    size_t total = 0;
    for (int32_t i = 0; i < nv; i++) total += (size_t)t->text_len[i] * 4 + 8;
    t->piece_buf = malloc(total);
    t->piece_off = malloc((size_t)nv * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)nv * sizeof *t->piece_len);
    t->eog = calloc((size_t)nv, 1);
    if (!t->piece_buf || !t->piece_off || !t->piece_len || !t->eog) return fitlm_fail(err, "out of memory");
    size_t off = 0;
    for (int32_t i = 0; i < nv; i++) {
        t->piece_off[i] = off;
        size_t l = decode_token_text(t, i, t->piece_buf + off);
        t->piece_len[i] = (uint32_t)l;
        off += l;
    }

    if (build_specials(t, err)) return -1;

    /* SentencePiece may merge word by word if no mergeable piece has a "▁" that
     * follows another character */
    t->spm_word_split = true;
    for (int32_t i = 0; i < nv && t->spm_word_split; i++) {
        int ty = t->ttype[i];
        if (ty == FITLM_TOKEN_CONTROL || ty == FITLM_TOKEN_UNKNOWN || ty == FITLM_TOKEN_BYTE) continue;
        const char *s = tok_text(t, i);
        for (uint32_t k = 1; k + 3 <= t->text_len[i]; k++)
            if (!memcmp(s + k, "\xE2\x96\x81", 3) && !(k >= 3 && !memcmp(s + k - 3, "\xE2\x96\x81", 3))) {
                t->spm_word_split = false;
                break;
            }
    }

    /* end of generation */
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", NULL};
    for (int32_t i = 0; i < nv; i++) {
        if (t->ttype[i] != FITLM_TOKEN_CONTROL && t->ttype[i] != FITLM_TOKEN_USER_DEFINED) continue;
        for (int k = 0; eot_names[k]; k++)
            if (text_is(t, i, eot_names[k])) {
                t->eog[i] = 1;
                if (t->eot < 0 && k < 4) t->eot = i;
            }
        if (text_is(t, i, "<|eom_id|>")) {
            t->eog[i] = 1;
            if (t->eom < 0) t->eom = i;
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
    return 0;
}

void fitlm_tokenizer_free(fitlm_tokenizer *t) {
    if (!t) return;
    free(t->pre_name);
    free(t->text_buf);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->ttype);
    free(t->piece_buf);
    free(t->piece_off);
    free(t->piece_len);
    free(t->vocab.slot);
    free(t->merges.slot);
    free(t->eog);
    free(t->specials.edge_key);
    free(t->specials.edge_child);
    free(t->specials.term);
    free(t->strip);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->chat_template);
    free(t);
}

/* ---------------------------------------------------------------- encoding */

/* Finds the longest special token that starts at s, or -1. Control tokens
 * count only with parse_special. */
static int32_t match_special(const fitlm_tokenizer *t, const char *s, size_t n, bool parse_special) {
    const tok_trie *tr = &t->specials;
    if (!tr->first[(unsigned char)s[0]]) return -1;
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(tr, node, (unsigned char)s[i]);
        if (node < 0) break;
        int32_t id = tr->term[node];
        if (id >= 0 && (parse_special || t->ttype[id] != FITLM_TOKEN_CONTROL)) best = id;
    }
    return best;
}

/* One run of text between special tokens. after_special: it starts the text or
 * follows a special token; at_start: it starts the text. */
static int encode_fragment(const fitlm_tokenizer *t, const char *s, size_t n, bool after_special, bool at_start,
                           tok_ids *out, fitlm_error *err) {
    if (n == 0) return 0;
    if (t->type == FITLM_TOK_SPM) return tok_spm_encode(t, s, n, t->add_space_prefix && after_special, out, err);
    bool prefix = t->spacing.prepend && (at_start || (after_special && t->spacing.prepend_always));
    return tok_bpe_encode(t, s, n, prefix, out, err);
}

/* Length of the Unicode White_Space character (Rust's char::is_whitespace,
 * which Hugging Face's added-token lstrip/rstrip use) that starts at s, or 0.
 * keep_space: ' ' does not count. */
static size_t ws_len_at(const unsigned char *s, size_t n, bool keep_space) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0D) || (c == ' ' && !keep_space)) return 1;
    if (c == 0xC2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (c == 0xE1 && n >= 3 && s[1] == 0x9A && s[2] == 0x80) return 3; /* U+1680 */
    if (c == 0xE2 && n >= 3) {
        if (s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
            return 3; /* U+2000..200A, 2028, 2029, 202F */
        if (s[1] == 0x81 && s[2] == 0x9F) return 3; /* U+205F */
    }
    if (c == 0xE3 && n >= 3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

/* The end of s[from..to) once the white space at its end is cut off. */
static size_t ws_trim_back(const char *s, size_t from, size_t to, bool keep_space) {
    while (to > from) {
        size_t k = to - 1, l = 0;
        /* step back over continuation bytes (at most 3) to the character's first byte */
        while (k > from && to - k < 4 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        l = ws_len_at((const unsigned char *)s + k, to - k, keep_space);
        if (l == 0 || k + l != to) break;
        to = k;
    }
    return to;
}

/* The first position at or after from in s[..len) that is not white space. */
static size_t ws_skip(const char *s, size_t from, size_t len, bool keep_space) {
    size_t l;
    while ((l = ws_len_at((const unsigned char *)s + from, len - from, keep_space)) > 0) from += l;
    return from;
}

int fitlm_tokenizer_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                           int32_t **out, size_t *n, fitlm_error *err) {
    tok_ids ids = {0};
    *out = NULL;
    *n = 0;
    if (!text && len) return fitlm_fail(err, "NULL text");
    if (add_special && t->add_bos && t->bos >= 0 && tok_ids_push(&ids, t->bos, err)) goto fail;
    size_t start = 0, i = 0;
    bool after_special = true;
    bool have_specials = t->specials.n_nodes > 1;
    while (have_specials && i < len) {
        int32_t sp = match_special(t, text + i, len - i, parse_special);
        if (sp < 0) {
            i++;
            continue;
        }
        unsigned fl = t->strip ? t->strip[sp] : 0;
        /* lstrip: the white space before the token (down to the previous
         * token's end) belongs to it */
        size_t end = (fl & TOK_STRIP_LEFT) ? ws_trim_back(text, start, i, false) : i;
        if (encode_fragment(t, text + start, end - start, after_special, start == 0, &ids, err)) goto fail;
        if (tok_ids_push(&ids, sp, err)) goto fail;
        after_special = true;
        i += t->text_len[sp];
        if (fl & TOK_STRIP_RIGHT) i = ws_skip(text, i, len, (fl & TOK_STRIP_KEEP_SPACE) != 0);
        start = i;
    }
    if (encode_fragment(t, text + start, len - start, after_special, start == 0, &ids, err)) goto fail;
    if (add_special && t->add_eos && t->eos >= 0 && tok_ids_push(&ids, t->eos, err)) goto fail;
    *out = ids.v;
    *n = ids.n;
    return 0;
fail:
    free(ids.v);
    return -1;
}

/* ---------------------------------------------------------------- decoding */

const char *fitlm_tokenizer_piece(const fitlm_tokenizer *t, int32_t id, bool render_special, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    if (render_special && t->ttype[id] == FITLM_TOKEN_CONTROL) {
        *len = t->text_len[id];
        return tok_text(t, id);
    }
    *len = t->piece_len[id];
    return t->piece_buf + t->piece_off[id];
}

/* SentencePiece drops the space of the dummy prefix when the text starts. */
static bool strips_leading_space(const fitlm_tokenizer *t) {
    return (t->type == FITLM_TOK_SPM && t->add_space_prefix) || (t->type == FITLM_TOK_BPE && t->spacing.prepend);
}

char *fitlm_tokenizer_decode(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                             size_t *out_len, fitlm_error *err) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!fitlm_tokenizer_piece(t, ids[i], render_special, &l)) {
            fitlm_fail(err, "token id %d is out of range (vocabulary has %d tokens)", ids[i], t->n_vocab);
            return NULL;
        }
        total += l;
    }
    char *buf = malloc(total);
    if (!buf) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    size_t o = 0;
    bool at_start = strips_leading_space(t);
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *p = fitlm_tokenizer_piece(t, ids[i], render_special, &l);
        if (at_start && ids[i] != t->bos) {
            if (l > 0 && p[0] == ' ') {
                p++;
                l--;
            }
            at_start = false;
        }
        memcpy(buf + o, p, l);
        o += l;
    }
    buf[o] = 0;
    if (out_len) *out_len = o;
    return buf;
}

/* ---------------------------------------------------------------- streaming */

struct fitlm_detok_stream {
    const fitlm_tokenizer *t;
    bool render_special;
    bool at_start;
    char held[4]; /* start of an unfinished UTF-8 character */
    size_t n_held;
    char *buf; /* output of the last call */
    size_t cap;
};

fitlm_detok_stream *fitlm_detok_stream_new(const fitlm_tokenizer *t, bool render_special) {
    fitlm_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->render_special = render_special;
    s->at_start = strips_leading_space(t);
    return s;
}

void fitlm_detok_stream_continue(fitlm_detok_stream *s) {
    s->at_start = false;
}

void fitlm_detok_stream_free(fitlm_detok_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s);
}

/* Length of the tail of b[0..n) that is a proper prefix of a valid UTF-8
 * character (and so may still complete); 0 if none. */
static size_t incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need <= k) return 0; /* ASCII, invalid lead, or already complete */
        if (k >= 2) {            /* the second byte's allowed range depends on the lead */
            unsigned c1 = b[n - k + 1];
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (c1 < lo || c1 > hi) return 0;
        }
        return k;
    }
    return 0;
}

int fitlm_detok_stream_push(fitlm_detok_stream *s, int32_t id, const char **out, size_t *out_len, fitlm_error *err) {
    size_t l;
    const char *p = fitlm_tokenizer_piece(s->t, id, s->render_special, &l);
    *out = NULL;
    *out_len = 0;
    if (!p) return fitlm_fail(err, "token id %d is out of range (vocabulary has %d tokens)", id, s->t->n_vocab);
    if (s->at_start && id != s->t->bos) {
        if (l > 0 && p[0] == ' ') {
            p++;
            l--;
        }
        s->at_start = false;
    }
    size_t need = s->n_held + l;
    if (need + 1 > s->cap) {
        size_t cap = need + 64;
        char *nb = realloc(s->buf, cap);
        if (!nb) return fitlm_fail(err, "out of memory");
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf, s->held, s->n_held);
    memcpy(s->buf + s->n_held, p, l);
    size_t keep = incomplete_tail((const unsigned char *)s->buf, need);
    memcpy(s->held, s->buf + need - keep, keep);
    s->n_held = keep;
    *out = s->buf;
    *out_len = need - keep;
    return 0;
}

void fitlm_detok_stream_flush(fitlm_detok_stream *s, const char **out, size_t *out_len) {
    *out = s->held;
    *out_len = s->n_held;
    s->n_held = 0;
}

/* ---------------------------------------------------------------- accessors */

fitlm_tokenizer_type fitlm_tokenizer_get_type(const fitlm_tokenizer *t) { return t->type; }
const char *fitlm_tokenizer_model_name(const fitlm_tokenizer *t) { return t->type == FITLM_TOK_SPM ? "llama" : "gpt2"; }
const char *fitlm_tokenizer_pre_name(const fitlm_tokenizer *t) { return t->pre_name ? t->pre_name : "default"; }
int32_t fitlm_tokenizer_vocab_size(const fitlm_tokenizer *t) { return t->n_vocab; }
int32_t fitlm_tokenizer_bos(const fitlm_tokenizer *t) { return t->bos; }
int32_t fitlm_tokenizer_eos(const fitlm_tokenizer *t) { return t->eos; }
int32_t fitlm_tokenizer_eot(const fitlm_tokenizer *t) { return t->eot; }
int32_t fitlm_tokenizer_pad(const fitlm_tokenizer *t) { return t->pad; }
int32_t fitlm_tokenizer_unk(const fitlm_tokenizer *t) { return t->unk; }
bool fitlm_tokenizer_add_bos(const fitlm_tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool fitlm_tokenizer_add_eos(const fitlm_tokenizer *t) { return t->add_eos && t->eos >= 0; }
const char *fitlm_tokenizer_chat_template(const fitlm_tokenizer *t) { return t->chat_template; }

int fitlm_tokenizer_token_type(const fitlm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->ttype[id] : -1;
}
bool fitlm_tokenizer_is_control(const fitlm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->ttype[id] == FITLM_TOKEN_CONTROL;
}
bool fitlm_tokenizer_is_eog(const fitlm_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }
const char *fitlm_tokenizer_token_text(const fitlm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? tok_text(t, id) : NULL;
}
int32_t fitlm_tokenizer_find(const fitlm_tokenizer *t, const char *text, size_t len) {
    return tok_lookup(t, text, len);
}
