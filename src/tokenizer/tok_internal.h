/* Internal representation shared by the tokenizer's source files. Not a public
 * interface: use tokenizer.h. */
#ifndef FITLM_TOKENIZER_TOK_INTERNAL_H
#define FITLM_TOKENIZER_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* Hard limits that keep a lying file from making us allocate without bound. */
#define TOK_MAX_VOCAB (16u * 1024u * 1024u)
#define TOK_MAX_TOKEN_BYTES (64u * 1024u)
#define TOK_MAX_REGEXES 16

/* Growable int32 array. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *a, int32_t id, fitlm_error *err);

/* Open-addressing hash set of token ids keyed by their text (the text lives in
 * the tokenizer's arena). */
typedef struct tok_strmap {
    uint32_t mask; /* capacity - 1 (capacity is a power of two) */
    int32_t *slot; /* -1 = empty */
    uint32_t max_probe; /* longest probe sequence an insertion took: lookups stop after it */
} tok_strmap;

/* Merge table for rank-based BPE: (left id, right id) -> (rank, merged id). */
typedef struct tok_merge {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} tok_merge;
typedef struct tok_mergemap {
    uint64_t seed; /* the process's hash key (fitlm_hash_u64), mixed into every slot hash */
    uint64_t mask;
    tok_merge *slot;
    size_t n;
} tok_mergemap;
/* Slot hash of a 64-bit key for the merge map and the special-token trie: a
 * finalizer mix of the key XOR the table's seed (a per-process secret, so a
 * file cannot choose ids whose slots collide; cheaper than SipHash in the BPE
 * inner loop). The merge map's builder (tokenizer.c) and its lookup (bpe.c)
 * must use the same one. */
static inline uint64_t tok_hash_u64(uint64_t seed, uint64_t x) {
    x ^= seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Byte trie of the special tokens' texts. Edges live in a hash table keyed
 * by (node << 8 | byte). */
typedef struct tok_trie {
    uint64_t seed; /* as tok_mergemap.seed */
    uint64_t mask;
    uint64_t *edge_key; /* UINT64_MAX = empty */
    int32_t *edge_child;
    int32_t *term;      /* per node: token id ending here, or -1 */
    size_t n_nodes;
    bool first[256];    /* bytes that can start a special token */
} tok_trie;

/* Added-token flags (fitlm_tokenizer.strip). LEFT: the white space just
 * before the token is absorbed into it (HF lstrip); RIGHT: the white space
 * just after it (rstrip); KEEP_SPACE: rstrip leaves ' ' alone (a normalized
 * token of a tokenizer whose normalizer turns ' ' into "▁": Hugging Face
 * matches it in the normalized text, where the spaces after it are "▁"
 * already; the one before it is part of its normalized form "▁TOKEN"). */
#define TOK_STRIP_LEFT 1u
#define TOK_STRIP_RIGHT 2u
#define TOK_STRIP_KEEP_SPACE 4u

/* How an HF Metaspace-style (non byte-level) BPE prepares text. */
typedef struct tok_spacing {
    bool replace_space;  /* ' ' -> "▁" */
    bool prepend;        /* "▁" before the text */
    bool prepend_if_missing; /* Metaspace: not when the text already starts with "▁" */
    bool prepend_always; /* also after special tokens (Metaspace prepend_scheme "always") */
    bool split;          /* Metaspace split=true: words start at each "▁" */
} tok_spacing;

struct fitlm_tokenizer {
    fitlm_tokenizer_type type;
    char *pre_name; /* owned */
    int32_t n_vocab;

    char *text_buf;      /* owned: all token texts, each NUL-terminated */
    size_t *text_off;    /* owned: offset of token i's text in text_buf */
    uint32_t *text_len;  /* owned */
    float *score;        /* owned (all 0 if the vocabulary has none) */
    uint8_t *ttype;      /* owned: fitlm_token_type per token */
    char *piece_buf;     /* owned: decoded bytes of every token */
    size_t *piece_off;   /* owned */
    uint32_t *piece_len; /* owned */

    tok_strmap vocab;     /* text -> id */
    tok_mergemap merges;  /* BPE only */
    int32_t byte_id[256]; /* token for a single raw byte (-1 if none) */
    int32_t max_token_len;

    bool byte_level;    /* BPE: bytes mapped to printable code points (GPT-2) */
    bool byte_fallback; /* unknown characters become <0xNN> tokens */
    bool ignore_merges; /* BPE: a whole pre-token that is in the vocabulary is one token */
    bool add_bos, add_eos;
    bool add_space_prefix; /* SPM dummy prefix */
    bool spm_word_split;   /* SPM: no piece has "▁" after another character (set by tok_finish) */
    tok_spacing spacing;   /* non byte-level BPE from tokenizer.json */

    int32_t bos, eos, eot, eom, pad, unk;
    uint8_t *eog; /* owned: 1 if id ends generation */

    /* special tokens (control + user-defined) matched before the algorithm:
     * a byte trie; node 0 is the root */
    tok_trie specials;
    /* owned or NULL (no token has any): per token, TOK_STRIP_* flags of Hugging
     * Face added tokens (lstrip/rstrip), applied when a special token matches */
    uint8_t *strip;

    int n_re;
    pcre2_code *re[TOK_MAX_REGEXES]; /* owned: pre-tokenizer regexes applied in sequence */

    char *chat_template; /* owned or NULL */
};

static inline const char *tok_text(const fitlm_tokenizer *t, int32_t id) { return t->text_buf + t->text_off[id]; }

/* ---- construction (tokenizer.c) ---- */
/* Allocates an empty tokenizer with every special id -1. Caller frees with
 * fitlm_tokenizer_free(). */
fitlm_tokenizer *tok_alloc(fitlm_error *err);
/* Copies n token strings into the arena, allocates score/type arrays (zeroed /
 * FITLM_TOKEN_NORMAL) and builds the text -> id map. */
int tok_set_vocab(fitlm_tokenizer *t, size_t n, const char *const *strs, const uint64_t *lens, fitlm_error *err);
/* Adds merge number `rank` ("a" + "b"); both parts and their concatenation must
 * be in the vocabulary. */
int tok_add_merge(fitlm_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank,
                  fitlm_error *err);
/* Reserves room for n merges (avoids rehashing). */
int tok_reserve_merges(fitlm_tokenizer *t, size_t n, fitlm_error *err);
/* Compiles the pre-tokenizer regexes for a GGUF tokenizer.ggml.pre name. */
int tok_set_pre(fitlm_tokenizer *t, const char *pre, fitlm_error *err);
/* Compiles one more regex (Hugging Face syntax, \s meaning Unicode White_Space). */
int tok_add_regex(fitlm_tokenizer *t, const char *pattern, fitlm_error *err);
/* Checks special ids, builds byte ids, decoded pieces, special-token index and
 * the end-of-generation set. Call once, after everything else is set. */
int tok_finish(fitlm_tokenizer *t, fitlm_error *err);

/* ---- algorithms ---- */
int32_t tok_lookup(const fitlm_tokenizer *t, const char *s, size_t len);
/* SentencePiece BPE over one fragment of text. */
int tok_spm_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool prefix_space, tok_ids *out,
                   fitlm_error *err);
/* Rank-based BPE over one fragment (pre-tokenized here); prefix: put "▁" in
 * front (non byte-level tokenizer.json vocabularies). */
int tok_bpe_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool prefix, tok_ids *out,
                   fitlm_error *err);
/* Candidate merge of two adjacent symbols, queued by the BPE and SPM merge
 * loops (merge_heap.c). */
typedef struct tok_pair {
    double order;        /* lower merges first (BPE: merge rank; SPM: -score) */
    int32_t left, right; /* symbol indices; equal orders merge leftmost first */
    int32_t check_a, check_b; /* what the loop compares to drop stale entries */
} tok_pair;
typedef struct tok_pair_heap {
    tok_pair *v; /* owned: free(h.v) when done */
    size_t n, cap;
} tok_pair_heap;
/* Adds p (grows the array; -1 when out of memory). */
int tok_pair_heap_push(tok_pair_heap *h, tok_pair p);
/* Removes and returns the first pair (h->n must be > 0). */
tok_pair tok_pair_heap_pop(tok_pair_heap *h);
/* Byte fallback: when every byte of s has a <0xNN> token, pushes those tokens
 * and returns 1; returns 0 (nothing pushed) when one lacks a token; -1 on error. */
int tok_push_bytes(const fitlm_tokenizer *t, const char *s, size_t n, tok_ids *out, fitlm_error *err);
/* Byte-level mapping: code point for byte b, and the inverse (-1 if none). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* UTF-8 helpers. Length of a valid sequence starting at s (<= n), or 0 if the
 * bytes there do not form a valid character (then treat one byte on its own). */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);
/* Appends the UTF-8 encoding of cp to buf, returns bytes written (1..4). */
size_t tok_utf8_put(char *buf, uint32_t cp);
/* Decodes one valid character (use after tok_utf8_valid_len). */
uint32_t tok_utf8_get(const unsigned char *s, size_t l);

/* Splits text with the pre-tokenizer regexes (pretok.c): *pieces is a malloc'd
 * array of *np (offset, length) pairs the caller frees. */
int tok_pretokenize(const fitlm_tokenizer *t, const char *text, size_t len, size_t **pieces, size_t *np,
                    fitlm_error *err);


#endif
