/* Tokenizer from GGUF metadata (tokenizer.ggml.*). Every array length and id is
 * checked: tokens, scores and token_type must have the same length, special
 * ids must be in range, merges must be "A B" with A, B and AB in the
 * vocabulary. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Makes sure a getter's error names the key. */
static int key_error(fitlm_error *err, const char *key) {
    if (err && !strstr(err->msg, key)) fitlm_error_prefix(err, key);
    return -1;
}

/* Reads an optional token id; -1 (or uint32 0xFFFFFFFF) means "none". Range
 * against the vocabulary is checked later by tok_finish. */
static int get_id(const fitlm_gguf *g, const char *key, int32_t *id, fitlm_error *err) {
    int64_t v;
    int rc = fitlm_gguf_get_i64(g, key, &v, err);
    if (rc < 0) return key_error(err, key);
    if (rc == 0) return 0;
    if (v == -1 || v == (int64_t)UINT32_MAX) {
        *id = -1;
        return 0;
    }
    if (v < 0 || v > INT32_MAX) return fitlm_fail(err, "%s = %lld is not a valid token id", key, (long long)v);
    *id = (int32_t)v;
    return 0;
}

static int get_flag(const fitlm_gguf *g, const char *key, bool *flag, fitlm_error *err) {
    bool b;
    int rc = fitlm_gguf_get_bool(g, key, &b, err);
    if (rc < 0) return key_error(err, key);
    if (rc == 1) *flag = b;
    return 0;
}

static uint32_t read_u32(const void *raw, uint64_t i) {
    uint32_t v;
    memcpy(&v, (const char *)raw + i * 4, 4);
    return v;
}

fitlm_tokenizer *fitlm_tokenizer_from_gguf(const fitlm_gguf *g, fitlm_error *err) {
    fitlm_tokenizer *t = tok_alloc(err);
    const char **strs = NULL;
    uint64_t *lens = NULL;
    if (!t) return NULL;

    const char *model = NULL, *pre = NULL;
    int rc = fitlm_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc < 0) {
        key_error(err, "tokenizer.ggml.model");
        goto fail;
    }
    if (rc == 0) {
        fitlm_fail(err, "no tokenizer (tokenizer.ggml.model is missing)");
        goto fail;
    }
    if (strcmp(model, "llama") == 0) {
        t->type = FITLM_TOK_SPM;
    } else if (strcmp(model, "gpt2") == 0) {
        t->type = FITLM_TOK_BPE;
    } else {
        fitlm_fail(err, "unsupported tokenizer.ggml.model '%.64s' (supported: llama, gpt2)", model);
        goto fail;
    }
    if (fitlm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err) < 0) {
        key_error(err, "tokenizer.ggml.pre");
        goto fail;
    }

    /* vocabulary */
    const fitlm_gguf_value *tokens, *scores = NULL, *types = NULL, *merges = NULL;
    rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.tokens", FITLM_GGUF_STRING, &tokens, err);
    if (rc < 0) {
        key_error(err, "tokenizer.ggml.tokens");
        goto fail;
    }
    if (rc == 0) {
        fitlm_fail(err, "tokenizer.ggml.tokens is missing");
        goto fail;
    }
    uint64_t n = tokens->v.arr.n;
    if (n == 0 || n > TOK_MAX_VOCAB) {
        fitlm_fail(err, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
        goto fail;
    }
    strs = malloc(n * sizeof *strs);
    lens = malloc(n * sizeof *lens);
    if (!strs || !lens) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < n; i++) {
        strs[i] = tokens->v.arr.strs[i].s;
        lens[i] = tokens->v.arr.strs[i].len;
    }
    if (tok_set_vocab(t, n, strs, lens, err)) goto fail;

    rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.scores", FITLM_GGUF_FLOAT32, &scores, err);
    if (rc < 0) {
        key_error(err, "tokenizer.ggml.scores");
        goto fail;
    }
    if (rc == 1) {
        if (scores->v.arr.n != n) {
            fitlm_fail(err, "tokenizer.ggml.scores has %llu entries but there are %llu tokens",
                       (unsigned long long)scores->v.arr.n, (unsigned long long)n);
            goto fail;
        }
        memcpy(t->score, scores->v.arr.raw, n * sizeof(float));
    }
    rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types, err);
    if (rc < 0) {
        key_error(err, "tokenizer.ggml.token_type");
        goto fail;
    }
    if (rc == 1) {
        if (types->v.arr.elem_type != FITLM_GGUF_INT32 && types->v.arr.elem_type != FITLM_GGUF_UINT32) {
            fitlm_fail(err, "tokenizer.ggml.token_type must be an int32 array, not %s",
                       fitlm_gguf_type_name(types->v.arr.elem_type));
            goto fail;
        }
        if (types->v.arr.n != n) {
            fitlm_fail(err, "tokenizer.ggml.token_type has %llu entries but there are %llu tokens",
                       (unsigned long long)types->v.arr.n, (unsigned long long)n);
            goto fail;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint32_t ty = read_u32(types->v.arr.raw, i);
            if (ty > FITLM_TOKEN_BYTE) {
                fitlm_fail(err, "tokenizer.ggml.token_type[%llu] = %d is not a token type", (unsigned long long)i,
                           (int32_t)ty);
                goto fail;
            }
            t->ttype[i] = (uint8_t)(ty == 0 ? FITLM_TOKEN_NORMAL : ty);
        }
    }

    /* defaults as llama.cpp: SPM has <unk>=0 <s>=1 </s>=2, BOS added, dummy prefix */
    if (t->type == FITLM_TOK_SPM) {
        t->unk = n > 0 ? 0 : -1;
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
        t->add_bos = true;
        t->add_space_prefix = true;
        t->byte_fallback = true;
        free(t->pre_name);
        t->pre_name = strdup(pre ? pre : "default");
        if (!t->pre_name) {
            fitlm_fail(err, "out of memory");
            goto fail;
        }
    } else {
        t->byte_level = true;
        if (tok_set_pre(t, pre, err)) goto fail;
        t->add_bos = pre && (strncmp(pre, "llama", 5) == 0 || strncmp(pre, "deepseek-llm", 12) == 0 ||
                             strncmp(pre, "deepseek-coder", 14) == 0 || strcmp(pre, "deepseek-r1-qwen") == 0);
        rc = fitlm_gguf_get_arr(g, "tokenizer.ggml.merges", FITLM_GGUF_STRING, &merges, err);
        if (rc < 0) {
        key_error(err, "tokenizer.ggml.merges");
        goto fail;
    }
        if (rc == 0) {
            fitlm_fail(err, "tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)");
            goto fail;
        }
        uint64_t nm = merges->v.arr.n;
        if (nm > TOK_MAX_VOCAB) {
            fitlm_fail(err, "tokenizer.ggml.merges has %llu entries", (unsigned long long)nm);
            goto fail;
        }
        if (tok_reserve_merges(t, nm, err)) goto fail;
        for (uint64_t i = 0; i < nm; i++) {
            const char *m = merges->v.arr.strs[i].s;
            size_t ml = merges->v.arr.strs[i].len;
            /* split at the first space after the first byte (a part may itself be a space-free "Ġ") */
            const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
            if (!sp || sp + 1 == m + ml) {
                fitlm_fail(err, "tokenizer.ggml.merges[%llu] '%.64s' is not two tokens separated by a space",
                           (unsigned long long)i, m);
                goto fail;
            }
            if (tok_add_merge(t, m, (size_t)(sp - m), sp + 1, (size_t)(m + ml - sp - 1), (int32_t)i, err)) {
                fitlm_error_prefix(err, "tokenizer.ggml.merges");
                goto fail;
            }
        }
    }

    if (get_id(g, "tokenizer.ggml.bos_token_id", &t->bos, err) || get_id(g, "tokenizer.ggml.eos_token_id", &t->eos, err) ||
        get_id(g, "tokenizer.ggml.unknown_token_id", &t->unk, err) ||
        get_id(g, "tokenizer.ggml.padding_token_id", &t->pad, err) ||
        get_id(g, "tokenizer.ggml.eot_token_id", &t->eot, err) || get_id(g, "tokenizer.ggml.eom_token_id", &t->eom, err))
        goto fail;
    if (get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) ||
        get_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err) ||
        get_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))
        goto fail;
    const char *tmpl = NULL;
    if (fitlm_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err) < 0) {
        key_error(err, "tokenizer.chat_template");
        goto fail;
    }
    if (tmpl && !(t->chat_template = strdup(tmpl))) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    if (tok_finish(t, err)) goto fail;
    free(strs);
    free(lens);
    return t;
fail:
    free(strs);
    free(lens);
    fitlm_tokenizer_free(t);
    return NULL;
}
