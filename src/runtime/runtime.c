/* The LLaMA-family forward pass over the backend interface. */
#include "runtime/runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "runtime/kv_cache.h"

/* Logit rows computed per output-projection call when every position's logits
 * are wanted (bounds the logits buffer to LOGIT_ROWS x vocab floats). */
#define LOGIT_ROWS 32

typedef struct layer_weights {
    fitlm_btensor attn_norm, wq, wk, wv, wo, bq, bk, bv;
    fitlm_btensor q_norm, k_norm; /* qwen3: per-head RMSNorm of q and k (head_dim each) */
    fitlm_btensor ffn_norm, w_gate, w_up, w_down;
    bool has_bias, has_qk_norm;
} layer_weights;

struct fitlm_runtime {
    const fitlm_model *m;
    fitlm_backend *be;
    fitlm_hparams hp;
    uint32_t n_ctx, n_ubatch, n_logit_rows, n_past;
    int64_t q_dim, kv_dim;

    fitlm_btensor tok_embd, out_norm, output;
    layer_weights *layers;
    fitlm_kv_cache *kv;

    /* activations: n_ubatch rows each */
    fitlm_btensor x, xb, xb2, q, k, v, att, hb, hb2;
    fitlm_btensor logits; /* n_logit_rows x vocab */

    float *inv_freq;
    fitlm_rope_table rope;
    uint64_t weight_bytes, weight_read_per_token, owned_bytes, repacked_bytes;
};

fitlm_runtime_params fitlm_runtime_params_default(void) {
    fitlm_runtime_params p = {.n_ctx = 0, .kv_type = FITLM_TYPE_F16, .n_ubatch = FITLM_DEFAULT_UBATCH};
    return p;
}

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
                              be->device == FITLM_DEVICE_CPU ? "CPU" : "CUDA");
    } else if (t->type != FITLM_TYPE_F32 && t->type != FITLM_TYPE_F16 && t->type != FITLM_TYPE_BF16) {
        return fitlm_fail(err, "tensor %s has type %s; vectors must be F32, F16 or BF16", t->name, ti->name);
    }
    return 0;
}

int fitlm_runtime_check_model(const fitlm_model *m, const fitlm_backend *be, int kv_type, fitlm_error *err) {
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

/* ---- construction ---- */

static int prep(fitlm_runtime *rt, const fitlm_tensor *t, fitlm_btensor *out, fitlm_error *err) {
    if (rt->be->prepare_weight(rt->be, t, out, err)) return -1;
    rt->weight_bytes += t->nbytes;
    /* a repacked copy replaces the mapped weight (counted there), not scratch */
    if (out->repacked) rt->repacked_bytes += out->nbytes;
    else if (out->owned) rt->owned_bytes += out->nbytes;
    return 0;
}

static int alloc_act(fitlm_runtime *rt, fitlm_btensor *t, int64_t ne0, int64_t rows, fitlm_error *err) {
    if (rt->be->alloc(rt->be, FITLM_TYPE_F32, ne0, rows, t, err)) return -1;
    rt->be->clear(rt->be, t);
    rt->owned_bytes += t->nbytes;
    return 0;
}

fitlm_runtime *fitlm_runtime_new(const fitlm_model *m, fitlm_backend *be, const fitlm_runtime_params *p,
                                 fitlm_error *err) {
    fitlm_runtime_params params = p ? *p : fitlm_runtime_params_default();
    if (fitlm_runtime_check_model(m, be, params.kv_type, err)) return NULL;
    const fitlm_hparams *hp = &m->hp;
    uint32_t n_ctx = params.n_ctx;
    if (n_ctx == 0) n_ctx = hp->ctx_len < FITLM_DEFAULT_CTX ? hp->ctx_len : FITLM_DEFAULT_CTX;
    if (n_ctx > hp->ctx_len) {
        fitlm_fail(err, "context %u is larger than the model's context length %u", n_ctx, hp->ctx_len);
        return NULL;
    }
    uint32_t ub = params.n_ubatch ? params.n_ubatch : FITLM_DEFAULT_UBATCH;
    if (ub > n_ctx) ub = n_ctx;

    fitlm_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    rt->m = m;
    rt->be = be;
    rt->hp = *hp;
    rt->n_ctx = n_ctx;
    rt->n_ubatch = ub;
    rt->n_logit_rows = ub < LOGIT_ROWS ? ub : LOGIT_ROWS;
    rt->q_dim = (int64_t)hp->n_heads * hp->head_dim;
    rt->kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    rt->layers = calloc(hp->n_layers, sizeof *rt->layers);
    rt->inv_freq = calloc(hp->head_dim / 2, sizeof(float));
    if (!rt->layers || !rt->inv_freq) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    const fitlm_tensor *rf = m->global_tensors[FITLM_T_ROPE_FREQS];
    if (fitlm_rope_inv_freq(hp, rf ? (const float *)rf->data : NULL, rt->inv_freq, err)) goto fail;
    rt->rope.layout = hp->rope_layout;
    rt->rope.head_dim = (int)hp->head_dim;
    rt->rope.inv_freq = rt->inv_freq;

    fitlm_tensor *const *g = m->global_tensors;
    const fitlm_tensor *out_t = g[FITLM_T_OUTPUT] ? g[FITLM_T_OUTPUT] : g[FITLM_T_TOKEN_EMBD];
    if (prep(rt, g[FITLM_T_TOKEN_EMBD], &rt->tok_embd, err) || prep(rt, g[FITLM_T_OUTPUT_NORM], &rt->out_norm, err))
        goto fail;
    if (g[FITLM_T_OUTPUT]) {
        if (prep(rt, out_t, &rt->output, err)) goto fail;
    } else {
        rt->output = rt->tok_embd; /* tied: same data, borrowed */
        rt->output.owned = false;
    }
    rt->weight_read_per_token = out_t->nbytes + g[FITLM_T_OUTPUT_NORM]->nbytes;
    for (uint32_t l = 0; l < hp->n_layers; l++) {
        fitlm_tensor *const *t = m->layer_tensors[l];
        layer_weights *w = &rt->layers[l];
        if (prep(rt, t[FITLM_T_ATTN_NORM], &w->attn_norm, err) || prep(rt, t[FITLM_T_ATTN_Q], &w->wq, err) ||
            prep(rt, t[FITLM_T_ATTN_K], &w->wk, err) || prep(rt, t[FITLM_T_ATTN_V], &w->wv, err) ||
            prep(rt, t[FITLM_T_ATTN_OUT], &w->wo, err) || prep(rt, t[FITLM_T_FFN_NORM], &w->ffn_norm, err) ||
            prep(rt, t[FITLM_T_FFN_GATE], &w->w_gate, err) || prep(rt, t[FITLM_T_FFN_UP], &w->w_up, err) ||
            prep(rt, t[FITLM_T_FFN_DOWN], &w->w_down, err))
            goto fail;
        static const fitlm_tensor_kind per_token[] = {FITLM_T_ATTN_NORM, FITLM_T_ATTN_Q,   FITLM_T_ATTN_K,
                                                      FITLM_T_ATTN_V,    FITLM_T_ATTN_OUT, FITLM_T_FFN_NORM,
                                                      FITLM_T_FFN_GATE,  FITLM_T_FFN_UP,   FITLM_T_FFN_DOWN};
        for (size_t i = 0; i < sizeof per_token / sizeof per_token[0]; i++)
            rt->weight_read_per_token += t[per_token[i]]->nbytes;
        if (t[FITLM_T_ATTN_Q_BIAS]) {
            w->has_bias = true;
            if (prep(rt, t[FITLM_T_ATTN_Q_BIAS], &w->bq, err) || prep(rt, t[FITLM_T_ATTN_K_BIAS], &w->bk, err) ||
                prep(rt, t[FITLM_T_ATTN_V_BIAS], &w->bv, err))
                goto fail;
            rt->weight_read_per_token += t[FITLM_T_ATTN_Q_BIAS]->nbytes + t[FITLM_T_ATTN_K_BIAS]->nbytes +
                                         t[FITLM_T_ATTN_V_BIAS]->nbytes;
        }
        if (hp->qk_norm) {
            w->has_qk_norm = true;
            if (prep(rt, t[FITLM_T_ATTN_Q_NORM], &w->q_norm, err) || prep(rt, t[FITLM_T_ATTN_K_NORM], &w->k_norm, err))
                goto fail;
            rt->weight_read_per_token += t[FITLM_T_ATTN_Q_NORM]->nbytes + t[FITLM_T_ATTN_K_NORM]->nbytes;
        }
    }

    rt->kv = fitlm_kv_cache_new(be, params.kv_type, n_ctx, hp->n_layers, rt->kv_dim, err);
    if (!rt->kv) goto fail;
    if (alloc_act(rt, &rt->x, hp->dim, ub, err) || alloc_act(rt, &rt->xb, hp->dim, ub, err) ||
        alloc_act(rt, &rt->xb2, hp->dim, ub, err) || alloc_act(rt, &rt->q, rt->q_dim, ub, err) ||
        alloc_act(rt, &rt->k, rt->kv_dim, ub, err) || alloc_act(rt, &rt->v, rt->kv_dim, ub, err) ||
        alloc_act(rt, &rt->att, rt->q_dim, ub, err) || alloc_act(rt, &rt->hb, hp->ffn_dim, ub, err) ||
        alloc_act(rt, &rt->hb2, hp->ffn_dim, ub, err) ||
        alloc_act(rt, &rt->logits, hp->vocab_size, rt->n_logit_rows, err))
        goto fail;
    if (be->reserve(be, n_ctx, hp->n_heads, hp->n_kv_heads, hp->head_dim, err)) goto fail;
    return rt;
fail:
    fitlm_runtime_free(rt);
    return NULL;
}

void fitlm_runtime_free(fitlm_runtime *rt) {
    if (!rt) return;
    fitlm_backend *be = rt->be;
    if (rt->layers) {
        for (uint32_t l = 0; l < rt->hp.n_layers; l++) {
            layer_weights *w = &rt->layers[l];
            fitlm_btensor *all[] = {&w->attn_norm, &w->wq,     &w->wk,       &w->wv,     &w->wo,
                                    &w->bq,        &w->bk,     &w->bv,       &w->q_norm, &w->k_norm,
                                    &w->ffn_norm,  &w->w_gate, &w->w_up,     &w->w_down};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(be, all[i]);
        }
        free(rt->layers);
    }
    be->release(be, &rt->tok_embd);
    be->release(be, &rt->out_norm);
    be->release(be, &rt->output);
    fitlm_kv_cache_free(be, rt->kv);
    fitlm_btensor *acts[] = {&rt->x, &rt->xb, &rt->xb2, &rt->q, &rt->k, &rt->v, &rt->att, &rt->hb, &rt->hb2, &rt->logits};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) be->release(be, acts[i]);
    free(rt->inv_freq);
    free(rt);
}

/* ---- forward ---- */

/* One micro-batch of n tokens at positions pos0..pos0+n-1: leaves the final
 * hidden states (before the output norm) in rt->x. */
static void forward_hidden(fitlm_runtime *rt, const int32_t *ids, int64_t n, int64_t pos0) {
    fitlm_backend *be = rt->be;
    const fitlm_hparams *hp = &rt->hp;
    be->embed(be, &rt->tok_embd, ids, n, &rt->x);
    for (uint32_t l = 0; l < hp->n_layers; l++) {
        layer_weights *w = &rt->layers[l];
        /* attention block */
        be->rmsnorm(be, &rt->x, &w->attn_norm, hp->norm_eps, n, &rt->xb);
        const fitlm_btensor *qkv_w[3] = {&w->wq, &w->wk, &w->wv};
        fitlm_btensor *qkv_y[3] = {&rt->q, &rt->k, &rt->v};
        be->matmul_multi(be, 3, qkv_w, &rt->xb, n, qkv_y);
        if (w->has_bias) {
            be->add_bias(be, &rt->q, &w->bq, n);
            be->add_bias(be, &rt->k, &w->bk, n);
            be->add_bias(be, &rt->v, &w->bv, n);
        }
        if (w->has_qk_norm) { /* q and k viewed as rows of one head each */
            fitlm_btensor qh = rt->q, kh = rt->k;
            qh.ne0 = kh.ne0 = hp->head_dim;
            qh.ne1 = rt->q.ne1 * hp->n_heads;
            kh.ne1 = rt->k.ne1 * hp->n_kv_heads;
            qh.owned = kh.owned = false;
            be->rmsnorm(be, &qh, &w->q_norm, hp->norm_eps, n * hp->n_heads, &qh);
            be->rmsnorm(be, &kh, &w->k_norm, hp->norm_eps, n * hp->n_kv_heads, &kh);
        }
        be->rope(be, &rt->q, n, (int)hp->n_heads, pos0, &rt->rope);
        be->rope(be, &rt->k, n, (int)hp->n_kv_heads, pos0, &rt->rope);
        be->kv_store(be, &rt->kv->k[l], pos0, &rt->k, n);
        be->kv_store(be, &rt->kv->v[l], pos0, &rt->v, n);
        be->attention(be, &rt->q, &rt->kv->k[l], &rt->kv->v[l], n, pos0, (int)hp->n_heads, (int)hp->n_kv_heads,
                      (int)hp->head_dim, hp->sliding_window, &rt->att);
        be->matmul(be, &w->wo, &rt->att, n, &rt->xb2);
        be->add(be, &rt->x, &rt->xb2, n);
        /* feed-forward block (SwiGLU) */
        be->rmsnorm(be, &rt->x, &w->ffn_norm, hp->norm_eps, n, &rt->xb);
        const fitlm_btensor *gu_w[2] = {&w->w_gate, &w->w_up};
        fitlm_btensor *gu_y[2] = {&rt->hb, &rt->hb2};
        be->matmul_multi(be, 2, gu_w, &rt->xb, n, gu_y);
        be->silu_mul(be, &rt->hb, &rt->hb2, n, &rt->hb);
        be->matmul(be, &w->w_down, &rt->hb, n, &rt->xb2);
        be->add(be, &rt->x, &rt->xb2, n);
    }
}

/* Logits of hidden rows [row0, row0+n) of rt->x into host memory dst. */
static void project_rows(fitlm_runtime *rt, int64_t row0, int64_t n, float *dst) {
    fitlm_backend *be = rt->be;
    for (int64_t done = 0; done < n; done += rt->n_logit_rows) {
        int64_t k = n - done < rt->n_logit_rows ? n - done : rt->n_logit_rows;
        fitlm_btensor xs = fitlm_btensor_rows(&rt->x, row0 + done, k);
        be->rmsnorm(be, &xs, &rt->out_norm, rt->hp.norm_eps, k, &rt->xb);
        be->matmul(be, &rt->output, &rt->xb, k, &rt->logits);
        be->download(be, &rt->logits, 0, k, dst + done * (int64_t)rt->hp.vocab_size);
    }
}

int fitlm_runtime_eval(fitlm_runtime *rt, const int32_t *ids, uint32_t n, float *logits, bool all_logits,
                       fitlm_error *err) {
    if (n == 0) return 0;
    if ((uint64_t)rt->n_past + n > rt->n_ctx)
        return fitlm_fail(err, "context overflow: %u tokens already in the context plus %u new exceed the context "
                               "size %u (raise -c, up to the model's %u)",
                          rt->n_past, n, rt->n_ctx, rt->hp.ctx_len);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= rt->hp.vocab_size)
            return fitlm_fail(err, "token id %d is outside the vocabulary (0..%u)", ids[i], rt->hp.vocab_size - 1);
    for (uint32_t off = 0; off < n; off += rt->n_ubatch) {
        uint32_t nb = n - off < rt->n_ubatch ? n - off : rt->n_ubatch;
        forward_hidden(rt, ids + off, nb, rt->n_past);
        if (logits) {
            if (all_logits)
                project_rows(rt, 0, nb, logits + (uint64_t)off * rt->hp.vocab_size);
            else if (off + nb == n)
                project_rows(rt, nb - 1, 1, logits);
        }
        rt->n_past += nb;
    }
    return rt->be->sync(rt->be, err);
}

void fitlm_runtime_reset(fitlm_runtime *rt) {
    rt->n_past = 0;
}

uint32_t fitlm_runtime_n_past(const fitlm_runtime *rt) {
    return rt->n_past;
}
uint32_t fitlm_runtime_n_ctx(const fitlm_runtime *rt) {
    return rt->n_ctx;
}
uint32_t fitlm_runtime_vocab(const fitlm_runtime *rt) {
    return rt->hp.vocab_size;
}

void fitlm_runtime_get_memory(const fitlm_runtime *rt, fitlm_runtime_memory *out) {
    memset(out, 0, sizeof *out);
    out->weight_bytes = rt->weight_bytes;
    out->weight_read_per_token = rt->weight_read_per_token;
    out->repacked_bytes = rt->repacked_bytes;
    out->kv_bytes = rt->kv->nbytes;
    out->scratch_bytes = rt->owned_bytes + rt->be->scratch_bytes(rt->be) + (uint64_t)(rt->hp.head_dim / 2) * 4;
    out->kv_type = rt->kv->type;
    out->n_ctx = rt->n_ctx;
    out->n_ubatch = rt->n_ubatch;
}

size_t fitlm_runtime_weight_regions(const fitlm_runtime *rt, const void **addr, uint64_t *bytes, size_t cap) {
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
    for (uint32_t l = 0; l < rt->hp.n_layers; l++) {
        const layer_weights *w = &rt->layers[l];
        REGION(w->attn_norm);
        REGION(w->wq);
        REGION(w->wk);
        REGION(w->wv);
        if (w->has_bias) {
            REGION(w->bq);
            REGION(w->bk);
            REGION(w->bv);
        }
        if (w->has_qk_norm) {
            REGION(w->q_norm);
            REGION(w->k_norm);
        }
        REGION(w->wo);
        REGION(w->ffn_norm);
        REGION(w->w_gate);
        REGION(w->w_up);
        REGION(w->w_down);
    }
    REGION(rt->out_norm);
    REGION(rt->output);
#undef REGION
    return n;
}
