/* llama2.c checkpoints, format "v0" (karpathy/llama2.c run.c):
 *   7 little-endian int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   (vocab_size < 0: the classifier is NOT shared and follows at the very end),
 *   then float32 arrays, each for all layers at once:
 *   token_embedding [vocab][dim], rms_att [L][dim], wq [L][dim(out)][dim(in)],
 *   wk [L][kv_dim][dim], wv [L][kv_dim][dim], wo [L][dim][dim], rms_ffn [L][dim],
 *   w1 [L][hidden][dim], w2 [L][dim][hidden], w3 [L][hidden][dim], rms_final [dim],
 *   freq_cis_real [seq_len][head_size/2], freq_cis_imag [seq_len][head_size/2] (unused),
 *   [wcls [vocab][dim] if vocab_size < 0].
 * Matrices are row-major [out][in]: a row holds the input features, so the GGUF
 * shape is ne[0] = in, ne[1] = out without any transposition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "model/model_internal.h"

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

bool fitlm_llama2c_header_plausible(const unsigned char head[28]) {
    int32_t v[7];
    for (int i = 0; i < 7; i++) v[i] = rd_i32(head + 4 * i);
    if (v[5] < 0 && v[5] != INT32_MIN) v[5] = -v[5]; /* INT32_MIN has no positive: stays refused */
    for (int i = 0; i < 7; i++)
        if (v[i] <= 0 || v[i] > (1 << 24)) return false;
    return true;
}

static char *base_name_no_ext(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = strdup(b);
    if (!s) return NULL;
    char *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = 0;
    return s;
}

static int fail_path(fitlm_error *err, const char *path) {
    fitlm_error_prefix(err, path);
    return -1;
}

fitlm_model *fitlm_model_open_llama2c(const char *path, int mode, fitlm_error *err) {
    fitlm_mapped_file *f = fitlm_file_map(path, err);
    if (!f) return NULL;
    fitlm_model *m = calloc(1, sizeof *m);
    fitlm_mapped_file **files = calloc(1, sizeof *files);
    if (!m || !files) {
        free(m);
        free(files);
        fitlm_file_unmap(f);
        fitlm_fail(err, "%s: out of memory", path);
        return NULL;
    }
    m->files = files;
    m->files[0] = f;
    m->n_files = 1;
    m->format = FITLM_FORMAT_LLAMA2C;
    m->dtype = FITLM_TYPE_F32;
    m->path = strdup(path);
    m->name = base_name_no_ext(path);
    m->arch_str = strdup("llama");
    if (!m->path || !m->name || !m->arch_str) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    if (f->size < 28) {
        fitlm_fail(err, "llama2.c checkpoint: file is %llu bytes, shorter than the 28-byte header",
                   (unsigned long long)f->size);
        goto fail;
    }
    static const char *field[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t limit[7] = {65536, 1 << 20, 1024, 1024, 1024, 1 << 22, 1 << 24};
    int32_t h[7];
    for (int i = 0; i < 7; i++) {
        h[i] = rd_i32(f->data + 4 * i);
        int64_t v = h[i];
        if (i == 5 && v < 0) v = -v; /* negative vocab: untied classifier */
        if (v <= 0) {
            fitlm_fail(err, "llama2.c header: %s is %d (must be positive)", field[i], h[i]);
            goto fail;
        }
        if (v > limit[i]) {
            fitlm_fail(err, "llama2.c header: %s %lld is too large (limit %d)", field[i], (long long)v, limit[i]);
            goto fail;
        }
    }
    uint64_t dim = (uint64_t)h[0], hidden = (uint64_t)h[1], L = (uint64_t)h[2], nh = (uint64_t)h[3];
    uint64_t nkv = (uint64_t)h[4], seq = (uint64_t)h[6];
    bool shared = h[5] > 0;
    uint64_t vocab = (uint64_t)(shared ? h[5] : -(int64_t)h[5]);
    if (dim % nh != 0 || nh % nkv != 0 || (dim / nh) % 2 != 0) {
        fitlm_fail(err, "llama2.c header: inconsistent attention sizes (dim %llu, n_heads %llu, n_kv_heads %llu)",
                   (unsigned long long)dim, (unsigned long long)nh, (unsigned long long)nkv);
        goto fail;
    }
    uint64_t head = dim / nh, kv_dim = dim * nkv / nh;
    fitlm_hparams *hp = &m->hp;
    hp->arch = FITLM_ARCH_LLAMA;
    hp->n_layers = (uint32_t)L;
    hp->dim = (uint32_t)dim;
    hp->n_heads = (uint32_t)nh;
    hp->n_kv_heads = (uint32_t)nkv;
    hp->head_dim = (uint32_t)head;
    hp->ffn_dim = (uint32_t)hidden;
    hp->vocab_size = (uint32_t)vocab;
    hp->ctx_len = (uint32_t)seq;
    hp->norm_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->rope_layout = FITLM_ROPE_ADJACENT;
    hp->tied_embeddings = shared;

    /* All sizes are bounded above, so these products fit in 64 bits. */
    struct {
        fitlm_tensor_kind kind;
        uint64_t ne0, ne1; /* per layer (or global) */
        bool per_layer;
    } order[] = {
        {FITLM_T_TOKEN_EMBD, dim, vocab, false}, {FITLM_T_ATTN_NORM, dim, 1, true},
        {FITLM_T_ATTN_Q, dim, dim, true},        {FITLM_T_ATTN_K, dim, kv_dim, true},
        {FITLM_T_ATTN_V, dim, kv_dim, true},     {FITLM_T_ATTN_OUT, dim, dim, true},
        {FITLM_T_FFN_NORM, dim, 1, true},        {FITLM_T_FFN_GATE, dim, hidden, true},
        {FITLM_T_FFN_DOWN, hidden, dim, true},   {FITLM_T_FFN_UP, dim, hidden, true},
        {FITLM_T_OUTPUT_NORM, dim, 1, false},
    };
    uint64_t need = 28;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        need += (order[i].per_layer ? L : 1) * order[i].ne0 * order[i].ne1 * 4;
    uint64_t freq_bytes = seq * head * 4; /* real + imag, each seq * head/2 floats */
    uint64_t cls_bytes = shared ? 0 : vocab * dim * 4;
    uint64_t total = need + freq_bytes + cls_bytes;
    if (f->size != total) {
        fitlm_fail(err,
                   "llama2.c checkpoint: file is %llu bytes but the header (dim %llu, hidden %llu, %llu layers, "
                   "vocab %llu%s, seq_len %llu) needs exactly %llu",
                   (unsigned long long)f->size, (unsigned long long)dim, (unsigned long long)hidden,
                   (unsigned long long)L, (unsigned long long)vocab, shared ? "" : " + classifier",
                   (unsigned long long)seq, (unsigned long long)total);
        goto fail;
    }
    uint64_t off = 28;
    char name[64];
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        uint64_t n = order[i].ne0 * order[i].ne1;
        for (uint64_t l = 0; l < (order[i].per_layer ? L : 1); l++) {
            fitlm_tensor_name(order[i].kind, order[i].per_layer ? (int)l : -1, name, sizeof name);
            fitlm_tensor *t = fitlm_model_add_tensor(m, name, NULL, err);
            if (!t) goto fail;
            t->type = FITLM_TYPE_F32;
            t->n_dims = order[i].ne1 == 1 ? 1 : 2;
            t->ne[0] = order[i].ne0;
            t->ne[1] = order[i].ne1;
            t->n_elements = n;
            t->nbytes = n * 4;
            t->file_index = 0;
            t->offset = off;
            t->data = f->data + off;
            off += n * 4;
        }
    }
    if (!shared) {
        off += freq_bytes;
        fitlm_tensor *t = fitlm_model_add_tensor(m, "output.weight", NULL, err);
        if (!t) goto fail;
        t->n_dims = 2;
        t->ne[0] = dim;
        t->ne[1] = vocab;
        t->n_elements = dim * vocab;
        t->nbytes = t->n_elements * 4;
        t->file_index = 0;
        t->offset = off;
        t->data = f->data + off;
    }
    if (fitlm_model_finish(m, mode, err) != 0) goto fail;
    return m;
fail:
    fail_path(err, path);
    fitlm_model_free(m);
    return NULL;
}
