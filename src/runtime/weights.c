/* Weights prepared once per model on a backend. */
#include "runtime/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "parallel/parallel.h"
#include "parallel/shard.h"
#include "runtime/kv_cache.h"

/* ---- RoPE frequencies ---- */

int fitlm_rope_inv_freq(const fitlm_hparams *hp, const float *freq_factors, float *inv_freq, fitlm_error *err) {
    int half = (int)hp->head_dim / 2;
    float theta = hp->rope_theta > 0.0f ? hp->rope_theta : 10000.0f;
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hp->head_dim);
    if (freq_factors) {
        /* GGUF llama3-style files carry the scaling as per-pair divisors */
        for (int i = 0; i < half; i++) inv_freq[i] /= freq_factors[i];
        return 0;
    }
    switch (hp->rope_scaling) {
    case FITLM_ROPE_SCALING_NONE: return 0;
    case FITLM_ROPE_SCALING_LINEAR: {
        float f = hp->rope_factor;
        if (!(f > 0.0f)) return fitlm_fail(err, "linear RoPE scaling needs a positive factor (got %g)", (double)f);
        for (int i = 0; i < half; i++) inv_freq[i] /= f;
        return 0;
    }
    case FITLM_ROPE_SCALING_LLAMA3: {
        double factor = hp->rope_factor, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
        double orig = hp->rope_orig_ctx;
        if (!(factor > 0) || !(lo > 0) || !(hi > lo) || !(orig > 0))
            return fitlm_fail(err, "Llama 3 RoPE scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                                   "original_max_position_embeddings > 0");
        double low_wavelen = orig / lo, high_wavelen = orig / hi;
        for (int i = 0; i < half; i++) {
            double f = inv_freq[i], wavelen = 2.0 * M_PI / f;
            if (wavelen < high_wavelen) continue; /* high frequencies: unchanged */
            if (wavelen > low_wavelen) {
                inv_freq[i] = (float)(f / factor);
            } else {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                inv_freq[i] = (float)((1.0 - smooth) * f / factor + smooth * f);
            }
        }
        return 0;
    }
    case FITLM_ROPE_SCALING_YARN:
        return fitlm_fail(err, "YaRN RoPE scaling is not supported by the runtime");
    }
    return fitlm_fail(err, "unknown RoPE scaling %d", (int)hp->rope_scaling);
}

/* ---- model checks ---- */

static int check_tensor(const fitlm_model *m, const fitlm_tensor *t, const char *what, int layer, uint64_t ne0,
                        uint64_t ne1, bool matrix, const fitlm_backend *be, fitlm_error *err) {
    char name[96];
    if (!t) {
        if (layer >= 0)
            snprintf(name, sizeof name, "layer %d %s", layer, what);
        else
            snprintf(name, sizeof name, "%s", what);
        return fitlm_fail(err, "the model has no %s tensor, which the forward pass needs", name);
    }
    (void)m;
    if (!t->data) return fitlm_fail(err, "tensor %s has no data", t->name);
    uint64_t rows = t->ne[0] ? t->n_elements / t->ne[0] : 0;
    if (t->ne[0] != ne0 || rows != ne1 || t->ne[2] > 1 || t->ne[3] > 1)
        return fitlm_fail(err, "tensor %s has shape [%llu, %llu], the hyperparameters imply [%llu, %llu]", t->name,
                          (unsigned long long)t->ne[0], (unsigned long long)rows, (unsigned long long)ne0,
                          (unsigned long long)ne1);
    const fitlm_type_info *ti = fitlm_type_get(t->type);
    if (!ti) return fitlm_fail(err, "tensor %s has an unknown type id %d", t->name, t->type);
    bool ok = true;
    uint64_t row_bytes = fitlm_type_row_bytes(t->type, ne0, &ok);
    if (!ok || row_bytes * ne1 != t->nbytes)
        return fitlm_fail(err, "tensor %s: %llu bytes do not match its type %s and shape", t->name,
                          (unsigned long long)t->nbytes, ti->name);
    if (matrix) {
        if (!be->weight_type_supported(be, t->type))
            return fitlm_fail(err, "tensor %s has type %s, which the %s backend cannot run", t->name, ti->name,
                              be->device == FITLM_DEVICE_CPU      ? "CPU"
                              : be->device == FITLM_DEVICE_VULKAN ? "Vulkan"
                                                                  : "CUDA");
    } else if (t->type != FITLM_TYPE_F32 && t->type != FITLM_TYPE_F16 && t->type != FITLM_TYPE_BF16) {
        return fitlm_fail(err, "tensor %s has type %s; vectors must be F32, F16 or BF16", t->name, ti->name);
    }
    return 0;
}

int fitlm_weights_check_model(const fitlm_model *m, const fitlm_backend *be, int kv_type, fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    if (hp->arch != FITLM_ARCH_LLAMA && hp->arch != FITLM_ARCH_MISTRAL && hp->arch != FITLM_ARCH_QWEN2 &&
        hp->arch != FITLM_ARCH_QWEN3)
        return fitlm_fail(err, "architecture '%s' is not supported by the runtime (llama, mistral, qwen2, qwen3)",
                          fitlm_arch_name(hp->arch));
    if (m->format == FITLM_FORMAT_NONE || m->n_tensors == 0)
        return fitlm_fail(err, "the model has no weights (a config or preset can be planned, not run)");
    if (!m->layer_tensors) return fitlm_fail(err, "the model's tensors are not indexed");
    if (hp->n_layers == 0 || hp->dim == 0 || hp->n_heads == 0 || hp->n_kv_heads == 0 || hp->head_dim == 0 ||
        hp->ffn_dim == 0 || hp->vocab_size == 0 || hp->ctx_len == 0)
        return fitlm_fail(err, "the model's hyperparameters are incomplete");
    if (hp->n_heads % hp->n_kv_heads)
        return fitlm_fail(err, "n_heads (%u) is not a multiple of n_kv_heads (%u)", hp->n_heads, hp->n_kv_heads);
    if (hp->head_dim % 2) return fitlm_fail(err, "head_dim %u is odd; RoPE needs pairs", hp->head_dim);
    if (hp->vocab_size > INT32_MAX) return fitlm_fail(err, "vocabulary of %u tokens is too large", hp->vocab_size);
    if (!(hp->norm_eps >= 0.0f) || !(hp->norm_eps < 1.0f))
        return fitlm_fail(err, "RMSNorm epsilon %g is out of range", (double)hp->norm_eps);
    const fitlm_tensor *rf0 = m->global_tensors[FITLM_T_ROPE_FREQS];
    float probe[1], one_factor[1] = {1.0f};
    fitlm_hparams one = *hp;
    one.head_dim = 2;
    if (fitlm_rope_inv_freq(&one, rf0 ? one_factor : NULL, probe, err)) return -1;

    uint64_t dim = hp->dim, qd = (uint64_t)hp->n_heads * hp->head_dim, kvd = (uint64_t)hp->n_kv_heads * hp->head_dim;
    if (fitlm_kv_type_check(kv_type, (int64_t)kvd, err)) return -1;
    const fitlm_tensor *const *g = (const fitlm_tensor *const *)m->global_tensors;
    if (check_tensor(m, g[FITLM_T_TOKEN_EMBD], "token_embd.weight", -1, dim, hp->vocab_size, true, be, err)) return -1;
    if (check_tensor(m, g[FITLM_T_OUTPUT_NORM], "output_norm.weight", -1, dim, 1, false, be, err)) return -1;
    if (g[FITLM_T_OUTPUT] || !hp->tied_embeddings)
        if (check_tensor(m, g[FITLM_T_OUTPUT], "output.weight", -1, dim, hp->vocab_size, true, be, err)) return -1;
    const fitlm_tensor *rf = g[FITLM_T_ROPE_FREQS];
    if (rf && (rf->type != FITLM_TYPE_F32 || rf->n_elements != hp->head_dim / 2 || !rf->data))
        return fitlm_fail(err, "tensor %s must be F32 with head_dim/2 = %u values", rf->name, hp->head_dim / 2);
    for (uint32_t l = 0; l < hp->n_layers; l++) {
        fitlm_tensor *const *t = m->layer_tensors[l];
        int L = (int)l;
        if (check_tensor(m, t[FITLM_T_ATTN_NORM], "attn_norm", L, dim, 1, false, be, err) ||
            check_tensor(m, t[FITLM_T_ATTN_Q], "attn_q", L, dim, qd, true, be, err) ||
            check_tensor(m, t[FITLM_T_ATTN_K], "attn_k", L, dim, kvd, true, be, err) ||
            check_tensor(m, t[FITLM_T_ATTN_V], "attn_v", L, dim, kvd, true, be, err) ||
            check_tensor(m, t[FITLM_T_ATTN_OUT], "attn_output", L, qd, dim, true, be, err) ||
            check_tensor(m, t[FITLM_T_FFN_NORM], "ffn_norm", L, dim, 1, false, be, err) ||
            check_tensor(m, t[FITLM_T_FFN_GATE], "ffn_gate", L, dim, hp->ffn_dim, true, be, err) ||
            check_tensor(m, t[FITLM_T_FFN_UP], "ffn_up", L, dim, hp->ffn_dim, true, be, err) ||
            check_tensor(m, t[FITLM_T_FFN_DOWN], "ffn_down", L, hp->ffn_dim, dim, true, be, err))
            return -1;
        bool any_bias = t[FITLM_T_ATTN_Q_BIAS] || t[FITLM_T_ATTN_K_BIAS] || t[FITLM_T_ATTN_V_BIAS];
        if (hp->qkv_bias || any_bias) {
            if (check_tensor(m, t[FITLM_T_ATTN_Q_BIAS], "attn_q.bias", L, qd, 1, false, be, err) ||
                check_tensor(m, t[FITLM_T_ATTN_K_BIAS], "attn_k.bias", L, kvd, 1, false, be, err) ||
                check_tensor(m, t[FITLM_T_ATTN_V_BIAS], "attn_v.bias", L, kvd, 1, false, be, err))
                return -1;
        }
        if (hp->qk_norm && (check_tensor(m, t[FITLM_T_ATTN_Q_NORM], "attn_q_norm", L, hp->head_dim, 1, false, be, err) ||
                            check_tensor(m, t[FITLM_T_ATTN_K_NORM], "attn_k_norm", L, hp->head_dim, 1, false, be, err)))
            return -1;
    }
    return 0;
}

/* ---- preparation ---- */

static int prep(fitlm_weights *w, const fitlm_tensor *t, fitlm_btensor *out, fitlm_error *err) {
    if (w->be->prepare_weight(w->be, t, out, err)) return -1;
    w->weight_bytes += t->nbytes;
    /* a repacked copy replaces the mapped weight (counted there), not scratch */
    if (out->repacked) w->repacked_bytes += out->nbytes;
    else if (out->owned) w->owned_bytes += out->nbytes;
    /* the matrices the matmuls read: not an embedding that is only looked up */
    bool looked_up = t->kind == FITLM_T_TOKEN_EMBD && w->m->global_tensors[FITLM_T_OUTPUT];
    if (t->type == FITLM_TYPE_F16 && out->type == FITLM_TYPE_BF16 && !looked_up) w->bf16_from_f16_bytes += out->nbytes;
    if (t->type == FITLM_TYPE_F16 && t->ne[1] > 1 && !looked_up) w->f16_matrix_bytes += t->nbytes;
    return 0;
}

/* How a tensor is cut between tensor-parallel ranks. */
typedef enum { PART_WHOLE, PART_OUT, PART_IN } part_kind;

/* Prepares this rank's part of t: PART_OUT keeps rows [lo, lo+cnt) (output
 * features; vector elements), PART_IN columns [lo, lo+cnt) (input features,
 * copied). Counts the bytes read per token when per_token. */
static int prep_part(fitlm_weights *w, const fitlm_tensor *t, part_kind k, uint64_t lo, uint64_t cnt, bool per_token,
                     fitlm_btensor *out, fitlm_error *err) {
    fitlm_tensor view;
    void *buf = NULL;
    const fitlm_tensor *src = t;
    if (k == PART_OUT) {
        if (fitlm_shard_rows(t, lo, cnt, &view, err)) return -1;
        src = &view;
    } else if (k == PART_IN) {
        if (w->n_part_bufs % 16 == 0) {
            void **g = realloc(w->part_bufs, (w->n_part_bufs + 16) * sizeof *g);
            if (!g) return fitlm_fail(err, "out of memory");
            w->part_bufs = g;
        }
        if (fitlm_shard_cols(t, lo, cnt, &view, &buf, err)) return -1;
        src = &view;
    }
    int rc = prep(w, src, out, err);
    /* a copy of this rank's rows: the other ranks' rows around them were
     * mapped too (a read fault maps the cached pages around it, 64 KiB) */
    if (rc == 0 && k == PART_OUT && out->owned) fitlm_tensor_drop_pages(t);
    if (buf) {
        if (rc == 0 && out->data == buf) w->part_bufs[w->n_part_bufs++] = buf; /* borrowed by the backend */
        else free(buf);
    }
    if (rc == 0 && per_token) w->weight_read_per_token += src->nbytes;
    return rc;
}

fitlm_weights *fitlm_weights_new(const fitlm_model *m, fitlm_backend *be, int kv_type, fitlm_error *err) {
    return fitlm_weights_new_part(m, be, kv_type, NULL, err);
}

fitlm_weights *fitlm_weights_new_part(const fitlm_model *m, fitlm_backend *be, int kv_type,
                                      struct fitlm_parallel *par, fitlm_error *err) {
    if (fitlm_weights_check_model(m, be, kv_type, err)) return NULL;
    const fitlm_hparams *hp = &m->hp;
    fitlm_weights *w = calloc(1, sizeof *w);
    if (!w) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    w->m = m;
    w->be = be;
    w->hp = *hp;
    w->par = par;
    w->layer0 = 0;
    w->layer1 = hp->n_layers;
    w->has_embd = w->has_head = true;
    /* this rank's part: heads [h0, h0+nh), KV heads [kh0, kh0+nkh), FFN columns [f0, f0+nf) */
    uint64_t hd = hp->head_dim, h0 = 0, nh = hp->n_heads, kh0 = 0, nkh = hp->n_kv_heads, f0 = 0, nf = hp->ffn_dim;
    part_kind out_k = PART_WHOLE, in_k = PART_WHOLE;
    if (par) {
        const fitlm_tp_shard *sh = &par->shard;
        w->layer0 = par->layer0;
        w->layer1 = par->layer1;
        w->has_head = fitlm_parallel_head(par);
        w->has_embd = fitlm_parallel_first_stage(par);
        if (sh->size > 1) {
            h0 = sh->head0, nh = sh->n_heads, kh0 = sh->kv_head0, nkh = sh->n_kv_heads, f0 = sh->ffn0, nf = sh->n_ffn;
            out_k = PART_OUT;
            in_k = PART_IN;
            w->hp.n_heads = (uint32_t)nh;
            w->hp.n_kv_heads = (uint32_t)nkh;
            w->hp.ffn_dim = (uint32_t)nf;
        }
    }
    w->q_dim = (int64_t)(nh * hd);
    w->kv_dim = (int64_t)(nkh * hd);
    w->layers = calloc(hp->n_layers, sizeof *w->layers);
    w->inv_freq = calloc(hp->head_dim / 2, sizeof(float));
    if (!w->layers || !w->inv_freq) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    const fitlm_tensor *rf = m->global_tensors[FITLM_T_ROPE_FREQS];
    if (fitlm_rope_inv_freq(hp, rf ? (const float *)rf->data : NULL, w->inv_freq, err)) goto fail;
    w->rope.layout = hp->rope_layout;
    w->rope.head_dim = (int)hp->head_dim;
    w->rope.inv_freq = w->inv_freq;

    fitlm_tensor *const *g = m->global_tensors;
    const fitlm_tensor *out_t = g[FITLM_T_OUTPUT] ? g[FITLM_T_OUTPUT] : g[FITLM_T_TOKEN_EMBD];
    /* the embedding table: on the first stage, and on the logits rank when tied */
    bool need_embd = w->has_embd || (w->has_head && !g[FITLM_T_OUTPUT]);
    if (need_embd && prep(w, g[FITLM_T_TOKEN_EMBD], &w->tok_embd, err)) goto fail;
    if (w->has_head) {
        if (prep(w, g[FITLM_T_OUTPUT_NORM], &w->out_norm, err)) goto fail;
        if (g[FITLM_T_OUTPUT]) {
            if (prep(w, out_t, &w->output, err)) goto fail;
        } else {
            w->output = w->tok_embd; /* tied: same data, borrowed */
            w->output.owned = false;
        }
        w->weight_read_per_token = out_t->nbytes + g[FITLM_T_OUTPUT_NORM]->nbytes;
    }
    for (uint32_t l = w->layer0; l < w->layer1; l++) {
        fitlm_tensor *const *t = m->layer_tensors[l];
        fitlm_layer_weights *lw = &w->layers[l];
        if (prep_part(w, t[FITLM_T_ATTN_NORM], PART_WHOLE, 0, 0, true, &lw->attn_norm, err) ||
            prep_part(w, t[FITLM_T_ATTN_Q], out_k, h0 * hd, nh * hd, true, &lw->wq, err) ||
            prep_part(w, t[FITLM_T_ATTN_K], out_k, kh0 * hd, nkh * hd, true, &lw->wk, err) ||
            prep_part(w, t[FITLM_T_ATTN_V], out_k, kh0 * hd, nkh * hd, true, &lw->wv, err) ||
            prep_part(w, t[FITLM_T_ATTN_OUT], in_k, h0 * hd, nh * hd, true, &lw->wo, err) ||
            prep_part(w, t[FITLM_T_FFN_NORM], PART_WHOLE, 0, 0, true, &lw->ffn_norm, err) ||
            prep_part(w, t[FITLM_T_FFN_GATE], out_k, f0, nf, true, &lw->w_gate, err) ||
            prep_part(w, t[FITLM_T_FFN_UP], out_k, f0, nf, true, &lw->w_up, err) ||
            prep_part(w, t[FITLM_T_FFN_DOWN], in_k, f0, nf, true, &lw->w_down, err))
            goto fail;
        if (t[FITLM_T_ATTN_Q_BIAS]) {
            lw->has_bias = true;
            if (prep_part(w, t[FITLM_T_ATTN_Q_BIAS], out_k, h0 * hd, nh * hd, true, &lw->bq, err) ||
                prep_part(w, t[FITLM_T_ATTN_K_BIAS], out_k, kh0 * hd, nkh * hd, true, &lw->bk, err) ||
                prep_part(w, t[FITLM_T_ATTN_V_BIAS], out_k, kh0 * hd, nkh * hd, true, &lw->bv, err))
                goto fail;
        }
        if (hp->qk_norm) {
            lw->has_qk_norm = true;
            if (prep_part(w, t[FITLM_T_ATTN_Q_NORM], PART_WHOLE, 0, 0, true, &lw->q_norm, err) ||
                prep_part(w, t[FITLM_T_ATTN_K_NORM], PART_WHOLE, 0, 0, true, &lw->k_norm, err))
                goto fail;
        }
    }
    return w;
fail:
    fitlm_weights_free(w);
    return NULL;
}

void fitlm_weights_free(fitlm_weights *w) {
    if (!w) return;
    fitlm_backend *be = w->be;
    if (w->layers) {
        for (uint32_t l = 0; l < w->hp.n_layers; l++) {
            fitlm_layer_weights *lw = &w->layers[l];
            fitlm_btensor *all[] = {&lw->attn_norm, &lw->wq,     &lw->wk,     &lw->wv,       &lw->wo,
                                    &lw->bq,        &lw->bk,     &lw->bv,     &lw->q_norm,   &lw->k_norm,
                                    &lw->ffn_norm,  &lw->w_gate, &lw->w_up,   &lw->w_down};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(be, all[i]);
        }
        free(w->layers);
    }
    be->release(be, &w->tok_embd);
    be->release(be, &w->out_norm);
    be->release(be, &w->output);
    for (uint32_t i = 0; i < w->n_part_bufs; i++) free(w->part_bufs[i]);
    free(w->part_bufs);
    free(w->inv_freq);
    free(w);
}

size_t fitlm_weights_regions(const fitlm_weights *w, const void **addr, uint64_t *bytes, size_t cap) {
    size_t n = 0;
#define REGION(t)                                                                                                      \
    do {                                                                                                               \
        if ((t).data && (t).nbytes) {                                                                                  \
            if (n < cap) {                                                                                             \
                addr[n] = (t).data;                                                                                    \
                bytes[n] = (t).nbytes;                                                                                 \
            }                                                                                                          \
            n++;                                                                                                       \
        }                                                                                                              \
    } while (0)
    for (uint32_t l = 0; l < w->hp.n_layers; l++) {
        const fitlm_layer_weights *lw = &w->layers[l];
        REGION(lw->attn_norm);
        REGION(lw->wq);
        REGION(lw->wk);
        REGION(lw->wv);
        if (lw->has_bias) {
            REGION(lw->bq);
            REGION(lw->bk);
            REGION(lw->bv);
        }
        if (lw->has_qk_norm) {
            REGION(lw->q_norm);
            REGION(lw->k_norm);
        }
        REGION(lw->wo);
        REGION(lw->ffn_norm);
        REGION(lw->w_gate);
        REGION(lw->w_up);
        REGION(lw->w_down);
    }
    REGION(w->out_norm);
    REGION(w->output);
#undef REGION
    return n;
}
