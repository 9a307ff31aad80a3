/* Weight formats and the exact bytes of every tensor under each.
 *
 * GGUF types take their bits per weight from the block layouts in
 * format/ggml_type.h; GPTQ/AWQ count packed 4-bit weights plus per-group 16-bit
 * scales and 4-bit zero points (GPTQ also its int32 g_idx), and keep embeddings
 * and the output head at 16 bit, as those checkpoint formats do. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

static int lower_eq(const char *a, const char *b) {
    for (;; a++, b++) {
        int x = tolower((unsigned char)*a), y = tolower((unsigned char)*b);
        if (x == '-') x = '_';
        if (y == '-') y = '_';
        if (x != y) return 0;
        if (!x) return 1;
    }
}

int fitlm_wformat_parse(const char *s, fitlm_wformat *f, fitlm_error *err) {
    memset(f, 0, sizeof *f);
    if (!s || !*s || strlen(s) >= sizeof f->name) return fitlm_fail(err, "empty or too long weight format");
    char low[32];
    size_t n = strlen(s);
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)s[i]);
    f->type = FITLM_TYPE_INVALID;
    if (lower_eq(low, "f16") || lower_eq(low, "fp16") || lower_eq(low, "float16") || lower_eq(low, "half")) {
        f->kind = FITLM_W_PLAIN, f->type = FITLM_TYPE_F16;
        snprintf(f->name, sizeof f->name, "F16");
    } else if (lower_eq(low, "bf16") || lower_eq(low, "bfloat16")) {
        f->kind = FITLM_W_PLAIN, f->type = FITLM_TYPE_BF16;
        snprintf(f->name, sizeof f->name, "BF16");
    } else if (lower_eq(low, "f32") || lower_eq(low, "fp32") || lower_eq(low, "float32")) {
        f->kind = FITLM_W_PLAIN, f->type = FITLM_TYPE_F32;
        snprintf(f->name, sizeof f->name, "F32");
    } else if (lower_eq(low, "fp8") || lower_eq(low, "f8") || lower_eq(low, "f8_e4m3") || lower_eq(low, "fp8_e4m3")) {
        f->kind = FITLM_W_PLAIN, f->type = FITLM_TYPE_F8_E4M3;
        snprintf(f->name, sizeof f->name, "FP8");
    } else if (lower_eq(low, "int8") || lower_eq(low, "w8a16") || lower_eq(low, "int8_wo")) {
        f->kind = FITLM_W_INT8;
        snprintf(f->name, sizeof f->name, "INT8");
    } else if (!strncmp(low, "gptq", 4) || !strncmp(low, "awq", 3)) {
        bool gptq = low[0] == 'g';
        f->kind = gptq ? FITLM_W_GPTQ : FITLM_W_AWQ;
        f->group = 128;
        const char *g = strstr(low, "-g");
        if (!g) g = strstr(low, "_g");
        if (g) {
            char *end;
            long v = strtol(g + 2, &end, 10);
            if (*end || v < 8 || v > 65536)
                return fitlm_fail(err, "weight format '%s': group size must be 8..65536 (e.g. gptq-g128)", s);
            f->group = (int)v;
        }
        const char *rest = low + (gptq ? 4 : 3);
        if (*rest && strncmp(rest, "-4bit", 5) && strncmp(rest, "_4bit", 5) && strncmp(rest, "-g", 2) &&
            strncmp(rest, "_g", 2))
            return fitlm_fail(err, "weight format '%s': expected gptq, gptq-g64, awq-4bit-g128, ...", s);
        snprintf(f->name, sizeof f->name, "%s-4bit-g%d", gptq ? "GPTQ" : "AWQ", f->group);
        f->is_4bit_or_less = true;
    } else if (lower_eq(low, "q4_k_m")) {
        f->kind = FITLM_W_GGUF_MIX, f->mix = FITLM_MIX_Q4_K_M, f->type = FITLM_TYPE_Q4_K;
        snprintf(f->name, sizeof f->name, "Q4_K_M");
        f->is_4bit_or_less = true;
    } else if (lower_eq(low, "q4_k_s")) {
        f->kind = FITLM_W_GGUF_MIX, f->mix = FITLM_MIX_Q4_K_S, f->type = FITLM_TYPE_Q4_K;
        snprintf(f->name, sizeof f->name, "Q4_K_S");
        f->is_4bit_or_less = true;
    } else if (lower_eq(low, "q5_k_m")) {
        f->kind = FITLM_W_GGUF_MIX, f->mix = FITLM_MIX_Q5_K_M, f->type = FITLM_TYPE_Q5_K;
        snprintf(f->name, sizeof f->name, "Q5_K_M");
    } else if (lower_eq(low, "q3_k_m")) {
        f->kind = FITLM_W_GGUF_MIX, f->mix = FITLM_MIX_Q3_K_M, f->type = FITLM_TYPE_Q3_K;
        snprintf(f->name, sizeof f->name, "Q3_K_M");
        f->is_4bit_or_less = true;
    } else if (lower_eq(low, "q2_k")) {
        f->kind = FITLM_W_GGUF_MIX, f->mix = FITLM_MIX_Q2_K, f->type = FITLM_TYPE_Q2_K;
        snprintf(f->name, sizeof f->name, "Q2_K");
        f->is_4bit_or_less = true;
    } else {
        int t = fitlm_type_from_name(s);
        const fitlm_type_info *ti = fitlm_type_get(t);
        if (t == FITLM_TYPE_INVALID || !ti || t >= FITLM_TYPE_GGML_COUNT || t == FITLM_TYPE_I8 ||
            t == FITLM_TYPE_I16 || t == FITLM_TYPE_I32 || t == FITLM_TYPE_I64 || t == FITLM_TYPE_F64 ||
            t == FITLM_TYPE_Q8_1 || t == FITLM_TYPE_Q8_K)
            return fitlm_fail(err,
                              "unknown weight format '%s' (try f16, bf16, f32, fp8, int8, gptq, awq, q8_0, q4_k_m, "
                              "q4_0, q6_k, iq4_xs, ...)",
                              s);
        f->kind = FITLM_W_GGUF, f->type = t;
        snprintf(f->name, sizeof f->name, "%s", ti->name);
        f->is_4bit_or_less = fitlm_type_bpw(t) <= 4.6;
    }
    return 0;
}

/* GGUF fallback when a row is not a whole number of blocks. */
static int gguf_fallback(int type, uint64_t row) {
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (ti && row % ti->block_size == 0) return type;
    int fb;
    switch (type) {
    case FITLM_TYPE_Q4_K: fb = FITLM_TYPE_Q5_0; break;
    case FITLM_TYPE_Q5_K: fb = FITLM_TYPE_Q5_1; break;
    case FITLM_TYPE_Q6_K: fb = FITLM_TYPE_Q8_0; break;
    default: fb = FITLM_TYPE_IQ4_NL; break;
    }
    if (row % 32 == 0) return fb;
    return FITLM_TYPE_F16;
}

static double type_bytes(int type, uint64_t row, uint64_t rows) {
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti) return 0;
    return (double)row / ti->block_size * ti->block_bytes * (double)rows;
}

/* llama.cpp's "use more bits" layer pattern: first and last eighth, every third in between. */
static bool more_bits(uint32_t i, uint32_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2);
}

typedef enum { T_Q, T_K, T_V, T_O, T_GATE, T_UP, T_DOWN, T_EMBD, T_OUT } tkind;

static int mix_type(const fitlm_wformat *f, const fitlm_hparams *hp, tkind k, uint32_t layer) {
    uint32_t L = hp->n_layers;
    bool is70b = hp->n_layers == 80 && hp->dim == 8192; /* llama.cpp's 70B special case for attn_v */
    int base = f->type, t = base;
    if (k == T_OUT) return FITLM_TYPE_Q6_K;
    if (k == T_EMBD) return base;
    switch (f->mix) {
    case FITLM_MIX_Q4_K_M:
    case FITLM_MIX_Q5_K_M:
        if ((k == T_V || k == T_DOWN) && more_bits(layer, L)) t = FITLM_TYPE_Q6_K;
        break;
    case FITLM_MIX_Q4_K_S:
        if (k == T_V && layer < 4) t = FITLM_TYPE_Q5_K;
        if (k == T_DOWN && layer < L / 8) t = FITLM_TYPE_Q5_K;
        break;
    case FITLM_MIX_Q3_K_M:
        if (k == T_V) t = layer < 2 ? FITLM_TYPE_Q5_K : FITLM_TYPE_Q4_K;
        if (k == T_DOWN) t = layer < L / 16 ? FITLM_TYPE_Q5_K : FITLM_TYPE_Q4_K;
        if (k == T_O) t = FITLM_TYPE_Q4_K;
        break;
    case FITLM_MIX_Q2_K:
        if (k == T_V) t = hp->n_heads / hp->n_kv_heads >= 4 ? FITLM_TYPE_Q4_K : FITLM_TYPE_Q3_K;
        if (k == T_DOWN || k == T_O) t = FITLM_TYPE_Q3_K;
        break;
    }
    if (k == T_V && is70b && (t == FITLM_TYPE_Q3_K || t == FITLM_TYPE_Q4_K)) t = FITLM_TYPE_Q5_K;
    return t;
}

/* Bytes of one 2-D weight (row = input features, rows = output features). */
static double tensor_bytes(const fitlm_wformat *f, const fitlm_hparams *hp, tkind k, uint32_t layer, uint64_t row,
                           uint64_t rows) {
    bool emb = k == T_EMBD || k == T_OUT;
    switch (f->kind) {
    case FITLM_W_PLAIN: {
        if (f->type == FITLM_TYPE_F8_E4M3) /* FP8 checkpoints: linear FP8 + fp32 scale; emb/head 16-bit */
            return emb ? 2.0 * row * rows : (double)row * rows + 4.0;
        return type_bytes(f->type, row, rows);
    }
    case FITLM_W_INT8:
        return emb ? 2.0 * row * rows : (double)row * rows + 2.0 * rows;
    case FITLM_W_GPTQ:
    case FITLM_W_AWQ: {
        if (emb) return 2.0 * row * rows;
        double groups = ceil((double)row / f->group);
        double b = (double)row * rows / 2.0 + groups * rows * 2.0 + groups * rows / 2.0;
        if (f->kind == FITLM_W_GPTQ) b += 4.0 * row; /* g_idx */
        return b;
    }
    case FITLM_W_GGUF: {
        int t = f->type;
        const fitlm_type_info *ti = fitlm_type_get(t);
        if (k == T_OUT && ti && ti->quantized && fitlm_type_bpw(t) < 6.5 ) t = FITLM_TYPE_Q6_K;
        return type_bytes(gguf_fallback(t, row), row, rows);
    }
    case FITLM_W_GGUF_MIX:
        return type_bytes(gguf_fallback(mix_type(f, hp, k, layer), row), row, rows);
    case FITLM_W_FILE:
        return 0;
    }
    return 0;
}

/* Bytes of a 1-D tensor (norm weights, biases). */
static double vec_bytes(const fitlm_wformat *f, uint64_t n) {
    if (f->kind == FITLM_W_GGUF || f->kind == FITLM_W_GGUF_MIX) return 4.0 * n;
    if (f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F32) return 4.0 * n;
    return 2.0 * n;
}

int fitlm_weight_bytes_compute(const fitlm_plan_model *m, const fitlm_wformat *f, fitlm_weight_bytes *wb,
                               fitlm_error *err) {
    memset(wb, 0, sizeof *wb);
    const fitlm_hparams *hp = &m->hp;
    wb->n_layers = hp->n_layers;
    wb->layer = calloc(hp->n_layers ? hp->n_layers : 1, sizeof *wb->layer);
    if (!wb->layer) return fitlm_fail(err, "out of memory");
    if (f->kind == FITLM_W_FILE) {
        if (!m->from_file || !m->file_layer_bytes) {
            fitlm_weight_bytes_free(wb);
            return fitlm_fail(err, "weight format 'file' needs a model file with weights");
        }
        for (uint32_t l = 0; l < hp->n_layers; l++) {
            wb->layer[l] = m->file_layer_bytes[l];
            if (wb->layer[l] > wb->largest_layer_bytes) wb->largest_layer_bytes = wb->layer[l];
        }
        wb->embedding = m->file_embd_bytes;
        wb->output = m->file_output_bytes;
        wb->other = m->file_other_bytes;
    } else {
        uint64_t d = hp->dim, hd = hp->head_dim, q = (uint64_t)hp->n_heads * hd, kv = (uint64_t)hp->n_kv_heads * hd;
        uint64_t ff = hp->ffn_dim;
        for (uint32_t l = 0; l < hp->n_layers; l++) {
            double b = tensor_bytes(f, hp, T_Q, l, d, q) + tensor_bytes(f, hp, T_K, l, d, kv) +
                       tensor_bytes(f, hp, T_V, l, d, kv) + tensor_bytes(f, hp, T_O, l, q, d) +
                       tensor_bytes(f, hp, T_GATE, l, d, ff) + tensor_bytes(f, hp, T_UP, l, d, ff) +
                       tensor_bytes(f, hp, T_DOWN, l, ff, d) + vec_bytes(f, 2 * d);
            if (hp->qkv_bias) b += vec_bytes(f, q + 2 * kv);
            if (hp->qk_norm) b += vec_bytes(f, 2 * hd);
            wb->layer[l] = b;
            double big = tensor_bytes(f, hp, T_DOWN, l, ff, d);
            if (big > wb->largest_layer_bytes) wb->largest_layer_bytes = big;
        }
        wb->embedding = tensor_bytes(f, hp, T_EMBD, 0, d, hp->vocab_size);
        wb->output = hp->tied_embeddings ? 0 : tensor_bytes(f, hp, T_OUT, 0, d, hp->vocab_size);
        wb->other = vec_bytes(f, d);
    }
    double t = wb->embedding + wb->output + wb->other;
    for (uint32_t l = 0; l < hp->n_layers; l++) t += wb->layer[l];
    wb->total = t;
    return 0;
}

void fitlm_weight_bytes_free(fitlm_weight_bytes *wb) {
    if (!wb) return;
    free(wb->layer);
    wb->layer = NULL;
}

double fitlm_wformat_bits_per_weight(const fitlm_plan_model *m, const fitlm_wformat *f) {
    fitlm_weight_bytes wb;
    if (fitlm_weight_bytes_compute(m, f, &wb, NULL)) return 0;
    double bits = 8.0 * wb.total / (double)(m->params ? m->params : 1);
    fitlm_weight_bytes_free(&wb);
    return bits;
}
