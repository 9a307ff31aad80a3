/* GGUF files -> fitlm_model, following the GGUF key conventions:
 * general.architecture names the key prefix ARCH; hyperparameters live under
 * ARCH.block_count, ARCH.embedding_length, ARCH.attention.head_count, ...
 * Tensor names are already canonical. RoPE layout: "llama" (and "mistral") GGUFs
 * store q/k rows for adjacent-pair rotation; "qwen2" and "qwen3" use rotate-half (neox). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "format/gguf.h"
#include "model/model_internal.h"

/* Reads ARCH.<suffix> as u32 into *out if present. 1 found, 0 absent, -1 error. */
static int get_arch_u32(const fitlm_gguf *g, const char *arch, const char *suffix, uint32_t *out, fitlm_error *err) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return fitlm_gguf_get_u32(g, key, out, err); /* the reader's message names the key */
}

static int get_arch_f32(const fitlm_gguf *g, const char *arch, const char *suffix, float *out, fitlm_error *err) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return fitlm_gguf_get_f32(g, key, out, err);
}

static int get_arch_str(const fitlm_gguf *g, const char *arch, const char *suffix, const char **out, fitlm_error *err) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return fitlm_gguf_get_str(g, key, out, err);
}

/* A tensor of the model (all splits) by name, NULL if absent. */
static const fitlm_tensor *find(const fitlm_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

static int read_hparams(fitlm_model *m, const fitlm_gguf *g, fitlm_error *err) {
    fitlm_hparams *hp = &m->hp;
    const char *arch = m->arch_str;
    if (!arch) return 0;
    hp->arch = fitlm_arch_from_name(arch);
    hp->rope_layout = (hp->arch == FITLM_ARCH_QWEN2 || hp->arch == FITLM_ARCH_QWEN3) ? FITLM_ROPE_HALF : FITLM_ROPE_ADJACENT;
    if (hp->arch != FITLM_ARCH_UNKNOWN) hp->rope_theta = 10000.0f; /* the default when freq_base is absent */
    uint32_t key_len = 0, value_len = 0, rope_dims = 0;
    if (get_arch_u32(g, arch, "block_count", &hp->n_layers, err) < 0 ||
        get_arch_u32(g, arch, "embedding_length", &hp->dim, err) < 0 ||
        get_arch_u32(g, arch, "feed_forward_length", &hp->ffn_dim, err) < 0 ||
        get_arch_u32(g, arch, "attention.head_count", &hp->n_heads, err) < 0 ||
        get_arch_u32(g, arch, "attention.head_count_kv", &hp->n_kv_heads, err) < 0 ||
        get_arch_u32(g, arch, "context_length", &hp->ctx_len, err) < 0 ||
        get_arch_u32(g, arch, "attention.key_length", &key_len, err) < 0 ||
        get_arch_u32(g, arch, "attention.value_length", &value_len, err) < 0 ||
        get_arch_u32(g, arch, "rope.dimension_count", &rope_dims, err) < 0 ||
        get_arch_u32(g, arch, "attention.sliding_window", &hp->sliding_window, err) < 0 ||
        get_arch_u32(g, arch, "vocab_size", &hp->vocab_size, err) < 0 ||
        get_arch_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps, err) < 0 ||
        get_arch_f32(g, arch, "rope.freq_base", &hp->rope_theta, err) < 0)
        return -1;
    if (key_len && value_len && key_len != value_len && hp->arch != FITLM_ARCH_UNKNOWN)
        return fitlm_fail(err, "%s.attention.key_length %u differs from value_length %u (unsupported)", arch, key_len,
                          value_len);
    hp->head_dim = key_len;
    if (hp->arch != FITLM_ARCH_UNKNOWN && rope_dims) {
        uint32_t hd = key_len ? key_len : (hp->n_heads && hp->dim % hp->n_heads == 0 ? hp->dim / hp->n_heads : 0);
        if (hd && rope_dims != hd)
            return fitlm_fail(err, "%s.rope.dimension_count %u differs from the head size %u (partial RoPE is unsupported)",
                              arch, rope_dims, hd);
    }
    /* RoPE scaling */
    const char *stype = NULL;
    if (get_arch_str(g, arch, "rope.scaling.type", &stype, err) < 0 ||
        get_arch_f32(g, arch, "rope.scaling.factor", &hp->rope_factor, err) < 0 ||
        get_arch_u32(g, arch, "rope.scaling.original_context_length", &hp->rope_orig_ctx, err) < 0 ||
        get_arch_f32(g, arch, "rope.scaling.low_freq_factor", &hp->rope_low_freq_factor, err) < 0 ||
        get_arch_f32(g, arch, "rope.scaling.high_freq_factor", &hp->rope_high_freq_factor, err) < 0)
        return -1;
    bool has_rope_freqs = find(m, "rope_freqs.weight") != NULL;
    if (stype && strcmp(stype, "none") != 0) {
        if (!strcmp(stype, "linear")) hp->rope_scaling = FITLM_ROPE_SCALING_LINEAR;
        else if (!strcmp(stype, "yarn")) hp->rope_scaling = FITLM_ROPE_SCALING_YARN;
        else if (!strcmp(stype, "llama3")) hp->rope_scaling = FITLM_ROPE_SCALING_LLAMA3;
        else if (hp->arch != FITLM_ARCH_UNKNOWN)
            return fitlm_fail(err, "%s.rope.scaling.type '%s' is not supported (none, linear, yarn, llama3)", arch, stype);
    }
    if (has_rope_freqs && hp->arch != FITLM_ARCH_UNKNOWN) hp->rope_scaling = FITLM_ROPE_SCALING_LLAMA3;
    if (hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3 &&
        (hp->rope_low_freq_factor == 0.0f || hp->rope_high_freq_factor == 0.0f || hp->rope_orig_ctx == 0)) {
        /* factors unknown: the rope_freqs tensor carries the per-dimension divisors */
        if (!has_rope_freqs) return fitlm_fail(err, "llama3 rope scaling without its factors or a rope_freqs tensor");
        hp->rope_factor = hp->rope_low_freq_factor = hp->rope_high_freq_factor = 0.0f;
        hp->rope_orig_ctx = 0;
    }
    if (hp->arch == FITLM_ARCH_LLAMA && hp->sliding_window > 0) hp->arch = FITLM_ARCH_MISTRAL;
    /* vocabulary: explicit key, else the embedding rows, else the token list */
    const fitlm_tensor *embd = find(m, "token_embd.weight");
    if (!hp->vocab_size && embd && embd->n_dims >= 2 && embd->ne[1] <= UINT32_MAX) hp->vocab_size = (uint32_t)embd->ne[1];
    if (!hp->vocab_size) {
        const fitlm_gguf_value *toks = fitlm_gguf_get(g, "tokenizer.ggml.tokens");
        if (toks && toks->type == FITLM_GGUF_ARRAY && toks->v.arr.n <= UINT32_MAX) hp->vocab_size = (uint32_t)toks->v.arr.n;
    }
    hp->qkv_bias = hp->arch == FITLM_ARCH_QWEN2 || find(m, "blk.0.attn_q.bias") != NULL;
    hp->qk_norm = hp->arch == FITLM_ARCH_QWEN3;
    hp->tied_embeddings = embd && !find(m, "output.weight");
    return 0;
}

static int add_tensors(fitlm_model *m, const fitlm_gguf *g, int file_index, fitlm_error *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fitlm_gguf_tensor *gt = &g->tensors[i];
        fitlm_tensor *t = fitlm_model_add_tensor(m, gt->name.s, NULL, err);
        if (!t) return -1;
        t->type = gt->type;
        t->n_dims = gt->n_dims;
        for (int d = 0; d < 4; d++) t->ne[d] = gt->ne[d];
        t->n_elements = gt->n_elements;
        t->nbytes = gt->nbytes;
        t->file_index = file_index;
        t->offset = gt->offset;
        t->data = gt->data;
    }
    return 0;
}

/* llama.cpp's gguf-split: "PREFIX-00001-of-0000N.gguf"; split 1 holds the
 * metadata, every split has split.no / split.count. Opens splits 2..N. */
static int open_splits(fitlm_model *m, const char *path, uint32_t count, fitlm_error *err) {
    const fitlm_gguf *first = m->gguf;
    uint32_t no = 0;
    if (fitlm_gguf_get_u32(first, "split.no", &no, err) < 0) return -1;
    if (no != 0) return fitlm_fail(err, "this is split %u of %u of a split GGUF: open the first one", no + 1, count);
    if (count > 4096) return fitlm_fail(err, "split.count %u is too large", count);
    size_t len = strlen(path);
    const char *suffix = "-00001-of-00000.gguf"; /* shape only */
    size_t sl = strlen(suffix);
    unsigned a = 0, b = 0;
    char tail[32];
    if (len < sl || sscanf(path + len - sl, "-%5u-of-%5u%8s", &a, &b, tail) != 3 || strcmp(tail, ".gguf") != 0 ||
        path[len - sl] != '-' || a != 1 || b != count)
        return fitlm_fail(err, "split GGUF (split.count %u) whose name does not end in -00001-of-%05u.gguf", count, count);
    char *name = malloc(len + 1);
    if (!name) return fitlm_fail(err, "out of memory");
    m->gguf_splits = calloc(count - 1, sizeof *m->gguf_splits);
    fitlm_mapped_file **files = realloc(m->files, count * sizeof *files);
    if (!m->gguf_splits || !files) {
        free(name);
        return fitlm_fail(err, "out of memory");
    }
    m->files = files;
    int rc = 0;
    for (uint32_t i = 2; i <= count && rc == 0; i++) {
        memcpy(name, path, len - sl);
        snprintf(name + len - sl, sl + 1, "-%05u-of-%05u.gguf", i, count);
        fitlm_gguf *g = fitlm_gguf_open(name, err);
        if (!g) {
            const char *base = strrchr(name, '/');
            fitlm_error_prefix(err, base ? base + 1 : name);
            rc = -1;
            break;
        }
        m->gguf_splits[m->n_gguf_splits++] = g;
        m->files[m->n_files++] = g->file;
        uint32_t gno = 0, gcount = 0;
        if (fitlm_gguf_get_u32(g, "split.no", &gno, err) < 0 || fitlm_gguf_get_u32(g, "split.count", &gcount, err) < 0) {
            rc = -1;
        } else if (gno != i - 1 || gcount != count) {
            const char *base = strrchr(name, '/');
            rc = fitlm_fail(err, "%s: split.no %u / split.count %u, expected %u / %u", base ? base + 1 : name, gno,
                            gcount, i - 1, count);
        } else {
            rc = add_tensors(m, g, (int)m->n_files - 1, err);
        }
    }
    free(name);
    if (rc) return -1;
    uint32_t total = 0;
    if (fitlm_gguf_get_u32(first, "split.tensors.count", &total, err) < 0) return -1;
    if (total && total != m->n_tensors)
        return fitlm_fail(err, "split.tensors.count is %u but the %u splits hold %zu tensors", total, count, m->n_tensors);
    return 0;
}

fitlm_model *fitlm_model_open_gguf(const char *path, int mode, fitlm_error *err) {
    fitlm_gguf *g = fitlm_gguf_open(path, err);
    if (!g) {
        fitlm_error_prefix(err, path);
        return NULL;
    }
    fitlm_model *m = calloc(1, sizeof *m);
    if (!m) {
        fitlm_gguf_close(g);
        fitlm_fail(err, "%s: out of memory", path);
        return NULL;
    }
    m->gguf = g;
    m->format = FITLM_FORMAT_GGUF;
    m->dtype = FITLM_TYPE_INVALID;
    m->path = strdup(path);
    m->files = calloc(1, sizeof *m->files);
    if (!m->path || !m->files) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    m->files[0] = g->file; /* borrowed: the reader owns its map */
    m->n_files = 1;
    const char *s = NULL;
    if (fitlm_gguf_get_str(g, "general.architecture", &s, err) < 0) goto fail;
    if (s && !(m->arch_str = strdup(s))) goto oom;
    s = NULL;
    if (fitlm_gguf_get_str(g, "general.name", &s, err) < 0) goto fail;
    if (!s) {
        const char *b = strrchr(path, '/');
        s = b ? b + 1 : path;
    }
    if (!(m->name = strdup(s))) goto oom;
    if (add_tensors(m, g, 0, err) != 0) goto fail;
    uint32_t split_count = 0;
    if (fitlm_gguf_get_u32(g, "split.count", &split_count, err) < 0) goto fail;
    if (split_count > 1 && open_splits(m, path, split_count, err) != 0) goto fail;
    if (read_hparams(m, g, err) != 0) goto fail;
    if (m->hp.arch != FITLM_ARCH_UNKNOWN && m->hp.rope_scaling == FITLM_ROPE_SCALING_LLAMA3 &&
        m->hp.rope_low_freq_factor == 0.0f && mode == FITLM_LOAD_RUN) {
        const fitlm_tensor *rf = find(m, "rope_freqs.weight");
        if (rf && rf->type != FITLM_TYPE_F32) {
            fitlm_fail(err, "rope_freqs.weight has type %s (F32 expected)", fitlm_type_name(rf->type));
            goto fail;
        }
    }
    if (fitlm_model_finish(m, mode, err) != 0) goto fail;
    return m;
oom:
    fitlm_fail(err, "out of memory");
fail:
    fitlm_error_prefix(err, path);
    fitlm_model_free(m);
    return NULL;
}
