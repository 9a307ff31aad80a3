/* Tokenizer from Hugging Face files: tokenizer.json (model BPE, normalizer,
 * pre_tokenizer, added_tokens, post_processor) plus tokenizer_config.json
 * (add_bos_token, add_eos_token, bos/eos/pad/unk tokens, chat_template), and
 * the path-based entry point fitlm_tokenizer_load(). */
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_JSON_BYTES (512u * 1024u * 1024u)

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A bool member; *out keeps its value when absent. -1 if present but not a bool. */
static int jbool(const cJSON *o, const char *key, bool *out, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fitlm_fail(err, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static const char *token_content(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return jstr(v, "content");
    return NULL;
}

/* Escapes a literal string as a PCRE2 pattern (malloc'd; caller frees). */
static char *quote_literal(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n * 2 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\^$.|?*+()[]{}", s[i])) out[o++] = '\\';
        out[o++] = s[i];
    }
    out[o] = 0;
    return out;
}

static int add_split(fitlm_tokenizer *t, const cJSON *pt, fitlm_error *err) {
    const char *behavior = jstr(pt, "behavior");
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(pt, "invert");
    if (behavior && strcmp(behavior, "Isolated") != 0)
        return fitlm_fail(err, "unsupported Split behavior '%.40s' (only Isolated)", behavior);
    if (cJSON_IsTrue(inv)) return fitlm_fail(err, "unsupported Split with invert=true");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
    const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
    if (re) return tok_add_regex(t, re, err);
    if (lit) {
        char *q = quote_literal(lit);
        if (!q) return fitlm_fail(err, "out of memory");
        int rc = tok_add_regex(t, q, err);
        free(q);
        return rc;
    }
    return fitlm_fail(err, "Split pre-tokenizer without a pattern");
}

static int apply_metaspace(fitlm_tokenizer *t, const cJSON *pt, fitlm_error *err) {
    const char *rep = jstr(pt, "replacement");
    if (rep && strcmp(rep, "\xE2\x96\x81") != 0) return fitlm_fail(err, "unsupported Metaspace replacement");
    t->spacing.replace_space = true;
    t->spacing.prepend_if_missing = true;
    const char *scheme = jstr(pt, "prepend_scheme");
    bool add_prefix = true;
    if (jbool(pt, "add_prefix_space", &add_prefix, err)) return -1;
    if (scheme) {
        t->spacing.prepend = strcmp(scheme, "never") != 0;
        t->spacing.prepend_always = strcmp(scheme, "always") == 0;
    } else {
        t->spacing.prepend = add_prefix;
        t->spacing.prepend_always = add_prefix;
    }
    bool split = true;
    if (jbool(pt, "split", &split, err)) return -1;
    t->spacing.split = split;
    return 0;
}

static int apply_pre_tokenizer(fitlm_tokenizer *t, const cJSON *pt, fitlm_error *err) {
    if (!pt || cJSON_IsNull(pt)) return 0;
    const char *type = jstr(pt, "type");
    if (!type) return fitlm_fail(err, "pre_tokenizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (!cJSON_IsArray(list)) return fitlm_fail(err, "Sequence pre_tokenizer without 'pretokenizers'");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (apply_pre_tokenizer(t, e, err)) return -1;
        return 0;
    }
    if (strcmp(type, "Split") == 0) return add_split(t, pt, err);
    if (strcmp(type, "ByteLevel") == 0) {
        bool use_regex = true, add_prefix = false;
        if (jbool(pt, "use_regex", &use_regex, err) || jbool(pt, "add_prefix_space", &add_prefix, err)) return -1;
        if (add_prefix) return fitlm_fail(err, "unsupported ByteLevel add_prefix_space=true");
        t->byte_level = true;
        if (use_regex) {
            /* the GPT-2 split; the name stays "hf-json" */
            char *keep = t->pre_name ? strdup(t->pre_name) : NULL;
            if (tok_set_pre(t, "gpt-2", err)) {
                free(keep);
                return -1;
            }
            free(t->pre_name);
            t->pre_name = keep;
        }
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) return apply_metaspace(t, pt, err);
    return fitlm_fail(err, "unsupported pre_tokenizer type '%.40s'", type);
}

static int apply_normalizer(fitlm_tokenizer *t, const cJSON *nz, fitlm_error *err) {
    if (!nz || cJSON_IsNull(nz)) return 0;
    const char *type = jstr(nz, "type");
    if (!type) return fitlm_fail(err, "normalizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(nz, "normalizers");
        if (!cJSON_IsArray(list)) return fitlm_fail(err, "Sequence normalizer without 'normalizers'");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (apply_normalizer(t, e, err)) return -1;
        return 0;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *p = jstr(nz, "prepend");
        if (!p || strcmp(p, "\xE2\x96\x81") != 0) return fitlm_fail(err, "unsupported Prepend normalizer (only \"▁\")");
        t->spacing.prepend = true;
        t->spacing.prepend_always = true; /* normalizers run on every run of text between added tokens */
        return 0;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *from = jstr(cJSON_GetObjectItemCaseSensitive(nz, "pattern"), "String"), *to = jstr(nz, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, "\xE2\x96\x81") != 0)
            return fitlm_fail(err, "unsupported Replace normalizer (only \" \" -> \"▁\")");
        t->spacing.replace_space = true;
        return 0;
    }
    /* Unicode normalization forms are not applied (llama.cpp does not either);
     * for the supported models' text in NFC form they change nothing. */
    if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0) return 0;
    return fitlm_fail(err, "unsupported normalizer type '%.40s'", type);
}

/* From post_processor TemplateProcessing (possibly inside a Sequence, as in
 * Llama 3.1): the special tokens around "$A". */
static void template_specials(const cJSON *pp, const char **first, const char **last) {
    const char *type = jstr(pp, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            template_specials(e, first, last);
            if (*first || *last) return;
        }
        return;
    }
    *first = *last = NULL;
    if (!type || strcmp(type, "TemplateProcessing") != 0) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    int n = cJSON_GetArraySize(single);
    if (n < 1) return;
    const cJSON *sp0 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, 0), "SpecialToken");
    const cJSON *spl = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, n - 1), "SpecialToken");
    if (sp0) *first = jstr(sp0, "id");
    if (spl && n > 1) *last = jstr(spl, "id");
}

typedef struct hf_tok {
    const char *s;
    int type;
    uint8_t strip;   /* TOK_STRIP_LEFT/RIGHT from the added token's lstrip/rstrip */
    bool normalized; /* the added token's "normalized" (default: not special) */
} hf_tok;

fitlm_tokenizer *fitlm_tokenizer_from_hf_json(const char *tokenizer_json, size_t len, const char *config_json,
                                              fitlm_error *err) {
    fitlm_tokenizer *t = NULL;
    cJSON *root = cJSON_ParseWithLength(tokenizer_json, len), *cfg = NULL;
    hf_tok *toks = NULL;
    const char **strs = NULL;
    uint64_t *lens = NULL;
    if (!root || !cJSON_IsObject(root)) {
        fitlm_fail(err, "tokenizer.json is not valid JSON");
        goto fail;
    }
    if (config_json) {
        cfg = cJSON_Parse(config_json);
        if (!cfg || !cJSON_IsObject(cfg)) {
            fitlm_fail(err, "tokenizer_config.json is not valid JSON");
            goto fail;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model)) {
        fitlm_fail(err, "tokenizer.json has no 'model'");
        goto fail;
    }
    if (mtype && strcmp(mtype, "BPE") != 0) {
        fitlm_fail(err, "unsupported tokenizer.json model type '%.40s' (only BPE)", mtype);
        goto fail;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        fitlm_fail(err, "tokenizer.json model needs a 'vocab' object and a 'merges' array");
        goto fail;
    }
    /* ids: model.vocab and added_tokens, which must fill 0..max without gaps */
    bool any_strip = false;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= TOK_MAX_VOCAB ||
            e->valuedouble != (double)(int64_t)e->valuedouble) {
            fitlm_fail(err, "tokenizer.json vocab entry '%.64s' has an invalid id", e->string);
            goto fail;
        }
        if ((int64_t)e->valuedouble > max_id) max_id = (int64_t)e->valuedouble;
    }
    if (added && !cJSON_IsArray(added)) {
        fitlm_fail(err, "tokenizer.json 'added_tokens' must be an array");
        goto fail;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOK_MAX_VOCAB ||
            id->valuedouble != (double)(int64_t)id->valuedouble || !jstr(e, "content")) {
            fitlm_fail(err, "tokenizer.json added_tokens entry without a valid id and content");
            goto fail;
        }
        if ((int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
    }
    if (max_id < 0) {
        fitlm_fail(err, "tokenizer.json has an empty vocabulary");
        goto fail;
    }
    size_t n = (size_t)max_id + 1;
    toks = calloc(n, sizeof *toks);
    strs = malloc(n * sizeof *strs);
    lens = malloc(n * sizeof *lens);
    if (!toks || !strs || !lens) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(e, vocab) {
        size_t id = (size_t)e->valuedouble;
        if (toks[id].s) {
            fitlm_fail(err, "tokenizer.json vocab: id %zu is used twice", id);
            goto fail;
        }
        toks[id].s = e->string;
        toks[id].type = FITLM_TOKEN_NORMAL;
    }
    cJSON_ArrayForEach(e, added) {
        size_t id = (size_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *c = jstr(e, "content");
        if (toks[id].s && strcmp(toks[id].s, c) != 0) {
            fitlm_fail(err, "tokenizer.json: added token %zu '%.64s' conflicts with vocab entry '%.64s'", id, c,
                       toks[id].s);
            goto fail;
        }
        toks[id].s = c;
        bool special = false, lstrip = false, rstrip = false, normalized;
        if (jbool(e, "special", &special, err)) goto added_fail;
        normalized = !special;
        if (jbool(e, "lstrip", &lstrip, err) || jbool(e, "rstrip", &rstrip, err) ||
            jbool(e, "normalized", &normalized, err))
            goto added_fail;
        toks[id].type = special ? FITLM_TOKEN_CONTROL : FITLM_TOKEN_USER_DEFINED;
        toks[id].strip = (uint8_t)((lstrip ? TOK_STRIP_LEFT : 0u) | (rstrip ? TOK_STRIP_RIGHT : 0u));
        toks[id].normalized = normalized;
        if (toks[id].strip) any_strip = true;
        continue;
    added_fail: {
        char where[128];
        snprintf(where, sizeof where, "tokenizer.json added token %zu", id);
        fitlm_error_prefix(err, where);
        goto fail;
    }
    }
    for (size_t i = 0; i < n; i++) {
        if (!toks[i].s) {
            fitlm_fail(err, "tokenizer.json: no token has id %zu (ids must be 0..%zu)", i, n - 1);
            goto fail;
        }
        strs[i] = toks[i].s;
        lens[i] = strlen(toks[i].s);
    }
    t = tok_alloc(err);
    if (!t) goto fail;
    t->type = FITLM_TOK_BPE;
    if (tok_set_vocab(t, n, strs, lens, err)) goto fail;
    for (size_t i = 0; i < n; i++) t->ttype[i] = (uint8_t)toks[i].type;
    t->pre_name = strdup("hf-json");
    if (!t->pre_name) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }

    /* pipeline */
    if (apply_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err) ||
        apply_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))
        goto fail;
    /* lstrip/rstrip of added tokens. A normalized one is matched by Hugging
     * Face in the normalized text, where a Replace(" " -> "▁") normalizer has
     * already turned the spaces after it into "▁": rstrip leaves those. */
    if (any_strip) {
        t->strip = calloc(n, 1);
        if (!t->strip) {
            fitlm_fail(err, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (toks[i].strip)
                t->strip[i] = (uint8_t)(toks[i].strip |
                                        (toks[i].normalized && t->spacing.replace_space ? TOK_STRIP_KEEP_SPACE : 0u));
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (jstr(dec, "type") && strcmp(jstr(dec, "type"), "ByteLevel") == 0) t->byte_level = true;
    if (jbool(model, "byte_fallback", &t->byte_fallback, err) || jbool(model, "ignore_merges", &t->ignore_merges, err))
        goto fail;
    if (t->byte_level && (t->spacing.prepend || t->spacing.replace_space)) {
        fitlm_fail(err, "tokenizer.json mixes ByteLevel with Metaspace-style space handling");
        goto fail;
    }
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        t->unk = tok_lookup(t, unk, strlen(unk));
        if (t->unk < 0) {
            fitlm_fail(err, "tokenizer.json unk_token '%.64s' is not in the vocabulary", unk);
            goto fail;
        }
        if (t->ttype[t->unk] == FITLM_TOKEN_NORMAL || t->ttype[t->unk] == FITLM_TOKEN_CONTROL)
            t->ttype[t->unk] = FITLM_TOKEN_UNKNOWN;
    }
    if (!t->byte_level)
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t id = tok_lookup(t, buf, 6);
            if (id >= 0 && t->ttype[id] == FITLM_TOKEN_NORMAL) t->ttype[id] = FITLM_TOKEN_BYTE;
        }

    /* merges: "a b" strings or ["a", "b"] pairs */
    int nm = cJSON_GetArraySize(merges);
    if (tok_reserve_merges(t, (size_t)nm, err)) goto fail;
    int32_t rank = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            size_t sl = strlen(s);
            const char *sp = sl > 1 ? memchr(s + 1, ' ', sl - 1) : NULL;
            if (!sp || sp + 1 == s + sl) {
                fitlm_fail(err, "tokenizer.json merge %d '%.64s' is not two tokens separated by a space", rank, s);
                goto fail;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            fitlm_fail(err, "tokenizer.json merge %d is neither \"a b\" nor [\"a\", \"b\"]", rank);
            goto fail;
        }
        if (tok_add_merge(t, a, al, b, bl, rank, err)) {
            fitlm_error_prefix(err, "tokenizer.json");
            goto fail;
        }
        rank++;
    }

    /* BOS/EOS: tokenizer_config.json first, then the post-processor template */
    const char *first = NULL, *last = NULL;
    template_specials(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), &first, &last);
    const char *bos = cfg ? token_content(cfg, "bos_token") : NULL;
    const char *eos = cfg ? token_content(cfg, "eos_token") : NULL;
    const char *pad = cfg ? token_content(cfg, "pad_token") : NULL;
    if (!bos) bos = first;
    if (!eos) eos = last;
    t->add_bos = first != NULL;
    t->add_eos = last != NULL;
    if (cfg && (jbool(cfg, "add_bos_token", &t->add_bos, err) || jbool(cfg, "add_eos_token", &t->add_eos, err)))
        goto fail;
    const char *names[] = {bos, eos, pad};
    int32_t *ids[] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3; k++) {
        if (!names[k]) continue;
        *ids[k] = tok_lookup(t, names[k], strlen(names[k]));
        if (*ids[k] < 0) {
            fitlm_fail(err, "tokenizer_config.json: token '%.64s' is not in the vocabulary", names[k]);
            goto fail;
        }
    }
    if (cfg) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
        if (cJSON_IsArray(ct)) { /* [{"name": "default", "template": "..."}, ...] */
            cJSON_ArrayForEach(e, ct) if (jstr(e, "name") && strcmp(jstr(e, "name"), "default") == 0) tmpl =
                jstr(e, "template");
        }
        if (tmpl && !(t->chat_template = strdup(tmpl))) {
            fitlm_fail(err, "out of memory");
            goto fail;
        }
    }
    if (tok_finish(t, err)) goto fail;
    free(toks);
    free(strs);
    free(lens);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return t;
fail:
    free(toks);
    free(strs);
    free(lens);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    fitlm_tokenizer_free(t);
    return NULL;
}

/* tokenizer.json at `json_path`, with tokenizer_config.json from `dir` if there. */
static fitlm_tokenizer *load_hf_files(const char *json_path, const char *dir, fitlm_error *err) {
    size_t len;
    char *text = fitlm_file_read_all(json_path, HF_MAX_JSON_BYTES, &len, err);
    if (!text) return NULL;
    char *cfg_path = fitlm_path_join(dir, "tokenizer_config.json");
    char *cfg = NULL;
    if (cfg_path) {
        if (fitlm_file_exists(cfg_path)) {
            cfg = fitlm_file_read_all(cfg_path, 64u * 1024u * 1024u, NULL, err);
            if (!cfg) {
                free(cfg_path);
                free(text);
                return NULL;
            }
        }
    }
    fitlm_tokenizer *t = fitlm_tokenizer_from_hf_json(text, len, cfg, err);
    if (!t) fitlm_error_prefix(err, json_path);
    free(cfg_path);
    free(cfg);
    free(text);
    return t;
}

fitlm_tokenizer *fitlm_tokenizer_load(const char *path, fitlm_error *err) {
    if (fitlm_is_dir(path)) {
        char *json = fitlm_path_join(path, "tokenizer.json");
        if (!json) {
            fitlm_fail(err, "out of memory");
            return NULL;
        }
        if (!fitlm_file_exists(json)) {
            fitlm_fail(err, "%s: no tokenizer.json in this folder", path);
            free(json);
            return NULL;
        }
        fitlm_tokenizer *t = load_hf_files(json, path, err);
        free(json);
        return t;
    }
    if (!fitlm_file_exists(path)) {
        fitlm_fail(err, "%s: cannot open", path);
        return NULL;
    }
    FILE *f = fitlm_file_fopen_regular(path, err);
    if (!f) return NULL;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        fitlm_gguf *g = fitlm_gguf_open(path, err);
        if (!g) {
            fitlm_error_prefix(err, path);
            return NULL;
        }
        fitlm_tokenizer *t = fitlm_tokenizer_from_gguf(g, err);
        fitlm_gguf_close(g);
        if (!t) fitlm_error_prefix(err, path);
        return t;
    }
    /* a tokenizer.json given directly: its folder may hold tokenizer_config.json */
    char *dir = strdup(path);
    if (!dir) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    fitlm_tokenizer *t = load_hf_files(path, dir, err);
    free(dir);
    return t;
}
