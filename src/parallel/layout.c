/* Tensor- and pipeline-parallel layout rules. */
#include "parallel/layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"

static int block_cut_ok(int type, uint64_t cols, uint32_t T, const char *what, fitlm_error *err) {
    if (type < 0) return 0;
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti) return fitlm_fail(err, "%s has an unknown type %d", what, type);
    uint64_t part = cols / T;
    if (part % ti->block_size)
        return fitlm_fail(err,
                          "--tp %u would cut %s (%llu columns, type %s) into parts of %llu columns, which are not "
                          "whole %u-element quantization blocks",
                          T, what, (unsigned long long)cols, ti->name, (unsigned long long)part, ti->block_size);
    return 0;
}

int fitlm_tp_check_shape(const fitlm_hparams *hp, int o_type, int down_type, uint32_t T, fitlm_error *err) {
    if (T == 0 || T > FITLM_PARALLEL_MAX) return fitlm_fail(err, "--tp %u is out of range (1..%d)", T, FITLM_PARALLEL_MAX);
    if (T == 1) return 0;
    if (hp->n_heads % T)
        return fitlm_fail(err, "--tp %u does not divide the model's %u attention heads", T, hp->n_heads);
    if (hp->n_kv_heads % T && T % hp->n_kv_heads)
        return fitlm_fail(err,
                          "--tp %u neither divides the model's %u KV heads nor is a multiple of them (a rank's "
                          "query heads must share one KV head)",
                          T, hp->n_kv_heads);
    if (hp->ffn_dim % T)
        return fitlm_fail(err, "--tp %u does not divide the model's FFN size %u", T, hp->ffn_dim);
    if (block_cut_ok(o_type, (uint64_t)hp->n_heads * hp->head_dim, T, "attn_output", err) ||
        block_cut_ok(down_type, hp->ffn_dim, T, "ffn_down", err))
        return -1;
    return 0;
}

int fitlm_tp_check_model(const fitlm_model *m, uint32_t T, fitlm_error *err) {
    if (fitlm_tp_check_shape(&m->hp, -1, -1, T, err)) return -1;
    if (T == 1 || !m->layer_tensors) return 0;
    for (uint32_t l = 0; l < m->hp.n_layers; l++) {
        const fitlm_tensor *o = m->layer_tensors[l][FITLM_T_ATTN_OUT], *d = m->layer_tensors[l][FITLM_T_FFN_DOWN];
        if (fitlm_tp_check_shape(&m->hp, o ? o->type : -1, d ? d->type : -1, T, err)) {
            char layer[32];
            snprintf(layer, sizeof layer, "layer %u", l);
            fitlm_error_prefix(err, layer);
            return -1;
        }
    }
    return 0;
}

void fitlm_tp_shard_of(const fitlm_hparams *hp, uint32_t T, uint32_t r, fitlm_tp_shard *out) {
    memset(out, 0, sizeof *out);
    out->rank = r;
    out->size = T;
    out->n_heads = hp->n_heads / T;
    out->head0 = r * out->n_heads;
    if (hp->n_kv_heads % T == 0) {
        out->n_kv_heads = hp->n_kv_heads / T;
        out->kv_head0 = r * out->n_kv_heads;
    } else { /* T is a multiple of n_kv_heads: one KV head, shared with the neighbours */
        uint32_t group = hp->n_heads / hp->n_kv_heads;
        out->n_kv_heads = 1;
        out->kv_head0 = out->head0 / group;
    }
    out->n_ffn = hp->ffn_dim / T;
    out->ffn0 = (uint64_t)r * out->n_ffn;
}

static uint64_t layer_bytes(const fitlm_model *m, uint32_t l) {
    uint64_t b = 0;
    for (int k = 0; k < FITLM_T_COUNT; k++)
        if (m->layer_tensors[l][k]) b += m->layer_tensors[l][k]->nbytes;
    return b;
}

int fitlm_pp_split(const fitlm_model *m, uint32_t P, const char *spec, uint32_t *bounds, fitlm_error *err) {
    uint32_t L = m->hp.n_layers;
    if (P == 0 || P > FITLM_PARALLEL_MAX) return fitlm_fail(err, "--pp %u is out of range (1..%d)", P, FITLM_PARALLEL_MAX);
    if (P > L) return fitlm_fail(err, "--pp %u is more stages than the model's %u layers", P, L);
    bounds[0] = 0;
    if (spec) {
        const char *p = spec;
        uint32_t s = 0, sum = 0;
        while (*p) {
            char *end = NULL;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 1 || v > (long)L || (*end && *end != ','))
                return fitlm_fail(err, "--pp-layers '%s': expected %u positive layer counts separated by commas", spec, P);
            if (s >= P) return fitlm_fail(err, "--pp-layers '%s' lists more than the %u stages of --pp", spec, P);
            sum += (uint32_t)v;
            bounds[++s] = sum;
            p = *end ? end + 1 : end;
        }
        if (s != P) return fitlm_fail(err, "--pp-layers '%s' lists %u stages, --pp asks for %u", spec, s, P);
        if (sum != L) return fitlm_fail(err, "--pp-layers '%s' adds up to %u layers, the model has %u", spec, sum, L);
        return 0;
    }
    if (!m->layer_tensors) return fitlm_fail(err, "the model's tensors are not indexed");
    /* balance the bytes each stage streams per token: layers, plus the output
     * matrix and norm on the last stage */
    uint64_t total = 0, head = 0;
    const fitlm_tensor *out = m->global_tensors[FITLM_T_OUTPUT] ? m->global_tensors[FITLM_T_OUTPUT]
                                                                : m->global_tensors[FITLM_T_TOKEN_EMBD];
    if (out) head += out->nbytes;
    for (uint32_t l = 0; l < L; l++) total += layer_bytes(m, l);
    total += head;
    uint64_t acc = 0;
    uint32_t l = 0;
    for (uint32_t s = 1; s < P; s++) {
        uint64_t target = total * s / P;
        /* at least one layer per stage, and leave one for every later stage */
        do {
            acc += layer_bytes(m, l);
            l++;
        } while (l < L - (P - s) && acc + layer_bytes(m, l) / 2 < target);
        bounds[s] = l;
    }
    bounds[P] = L;
    return 0;
}

uint32_t fitlm_pp_micro_batches(int64_t n, uint32_t P) {
    if (P < 2 || n < 2) return 1;
    int64_t k;
    if (n >= FITLM_PP_MICRO_BIG_ROWS) {
        k = n / (FITLM_PP_MICRO_BIG_ROWS / 2);
        if (k > 8) k = 8;
    } else {
        k = n / 4;
        if (k > P) k = P;
    }
    return k < 2 ? 1 : (uint32_t)k;
}
