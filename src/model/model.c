/* The model description: hyperparameter checks, the canonical tensor table,
 * parameter counts, name mapping and the format-detecting loader. */
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/ggml_type.h"
#include "format/gguf.h"
#include "util/fp16.h"

/* ---- names ---- */

typedef struct {
    const char *gguf; /* suffix after "blk.N." for layer kinds, full name otherwise */
    const char *hf;   /* suffix after "model.layers.N." for layer kinds, full name otherwise */
    bool per_layer;
} kind_names;

static const kind_names k_names[FITLM_T_COUNT] = {
    [FITLM_T_TOKEN_EMBD] = {"token_embd.weight", "model.embed_tokens.weight", false},
    [FITLM_T_OUTPUT_NORM] = {"output_norm.weight", "model.norm.weight", false},
    [FITLM_T_OUTPUT] = {"output.weight", "lm_head.weight", false},
    [FITLM_T_ATTN_NORM] = {"attn_norm.weight", "input_layernorm.weight", true},
    [FITLM_T_ATTN_Q] = {"attn_q.weight", "self_attn.q_proj.weight", true},
    [FITLM_T_ATTN_K] = {"attn_k.weight", "self_attn.k_proj.weight", true},
    [FITLM_T_ATTN_V] = {"attn_v.weight", "self_attn.v_proj.weight", true},
    [FITLM_T_ATTN_Q_BIAS] = {"attn_q.bias", "self_attn.q_proj.bias", true},
    [FITLM_T_ATTN_K_BIAS] = {"attn_k.bias", "self_attn.k_proj.bias", true},
    [FITLM_T_ATTN_V_BIAS] = {"attn_v.bias", "self_attn.v_proj.bias", true},
    [FITLM_T_ATTN_OUT] = {"attn_output.weight", "self_attn.o_proj.weight", true},
    [FITLM_T_FFN_NORM] = {"ffn_norm.weight", "post_attention_layernorm.weight", true},
    [FITLM_T_FFN_GATE] = {"ffn_gate.weight", "mlp.gate_proj.weight", true},
    [FITLM_T_FFN_UP] = {"ffn_up.weight", "mlp.up_proj.weight", true},
    [FITLM_T_FFN_DOWN] = {"ffn_down.weight", "mlp.down_proj.weight", true},
    [FITLM_T_ROPE_FREQS] = {"rope_freqs.weight", NULL, false},
    [FITLM_T_ATTN_Q_NORM] = {"attn_q_norm.weight", "self_attn.q_norm.weight", true},
    [FITLM_T_ATTN_K_NORM] = {"attn_k_norm.weight", "self_attn.k_norm.weight", true},
};

int fitlm_tensor_name(fitlm_tensor_kind kind, int layer, char *buf, size_t bufsize) {
    if ((unsigned)kind >= FITLM_T_COUNT || !buf) return -1;
    int n;
    if (k_names[kind].per_layer) {
        if (layer < 0) return -1;
        n = snprintf(buf, bufsize, "blk.%d.%s", layer, k_names[kind].gguf);
    } else {
        n = snprintf(buf, bufsize, "%s", k_names[kind].gguf);
    }
    return (n < 0 || (size_t)n >= bufsize) ? -1 : 0;
}

int fitlm_tensor_hf_name(fitlm_tensor_kind kind, int layer, char *buf, size_t bufsize) {
    if ((unsigned)kind >= FITLM_T_COUNT || !buf || !k_names[kind].hf) return -1;
    int n;
    if (k_names[kind].per_layer) {
        if (layer < 0) return -1;
        n = snprintf(buf, bufsize, "model.layers.%d.%s", layer, k_names[kind].hf);
    } else {
        n = snprintf(buf, bufsize, "%s", k_names[kind].hf);
    }
    return (n < 0 || (size_t)n >= bufsize) ? -1 : 0;
}

/* Parses "<prefix><digits>." at the start of s. Returns the rest or NULL. */
static const char *parse_layer_prefix(const char *s, const char *prefix, int *layer) {
    size_t p = strlen(prefix);
    if (strncmp(s, prefix, p) != 0) return NULL;
    s += p;
    if (*s < '0' || *s > '9') return NULL;
    if (*s == '0' && s[1] >= '0' && s[1] <= '9') return NULL; /* no leading zeros */
    long v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v > 1000000) return NULL;
        s++;
    }
    if (*s != '.') return NULL;
    *layer = (int)v;
    return s + 1;
}

static int parse_name(const char *name, const char *layer_prefix, bool hf, fitlm_tensor_kind *kind, int *layer) {
    if (!name) return -1;
    int l = -1;
    const char *rest = parse_layer_prefix(name, layer_prefix, &l);
    for (int k = 0; k < FITLM_T_COUNT; k++) {
        const char *nm = hf ? k_names[k].hf : k_names[k].gguf;
        if (!nm) continue;
        if (k_names[k].per_layer) {
            if (rest && strcmp(rest, nm) == 0) {
                *kind = (fitlm_tensor_kind)k;
                *layer = l;
                return 0;
            }
        } else if (strcmp(name, nm) == 0) {
            *kind = (fitlm_tensor_kind)k;
            *layer = -1;
            return 0;
        }
    }
    return -1;
}

int fitlm_tensor_parse_gguf_name(const char *name, fitlm_tensor_kind *kind, int *layer) {
    return parse_name(name, "blk.", false, kind, layer);
}

int fitlm_tensor_parse_hf_name(const char *name, fitlm_tensor_kind *kind, int *layer) {
    return parse_name(name, "model.layers.", true, kind, layer);
}

const char *fitlm_arch_name(fitlm_arch a) {
    switch (a) {
    case FITLM_ARCH_LLAMA: return "llama";
    case FITLM_ARCH_MISTRAL: return "mistral";
    case FITLM_ARCH_QWEN2: return "qwen2";
    case FITLM_ARCH_QWEN3: return "qwen3";
    default: return "unknown";
    }
}

fitlm_arch fitlm_arch_from_name(const char *s) {
    if (!s) return FITLM_ARCH_UNKNOWN;
    if (!strcmp(s, "llama")) return FITLM_ARCH_LLAMA;
    if (!strcmp(s, "mistral")) return FITLM_ARCH_MISTRAL;
    if (!strcmp(s, "qwen2")) return FITLM_ARCH_QWEN2;
    if (!strcmp(s, "qwen3")) return FITLM_ARCH_QWEN3;
    return FITLM_ARCH_UNKNOWN;
}

const char *fitlm_format_name(fitlm_format f) {
    switch (f) {
    case FITLM_FORMAT_GGUF: return "gguf";
    case FITLM_FORMAT_SAFETENSORS: return "safetensors";
    case FITLM_FORMAT_LLAMA2C: return "llama2c";
    default: return "none";
    }
}

const char *fitlm_rope_layout_name(fitlm_rope_layout l) { return l == FITLM_ROPE_HALF ? "half" : "adjacent"; }

const char *fitlm_rope_scaling_name(fitlm_rope_scaling s) {
    switch (s) {
    case FITLM_ROPE_SCALING_LINEAR: return "linear";
    case FITLM_ROPE_SCALING_LLAMA3: return "llama3";
    case FITLM_ROPE_SCALING_YARN: return "yarn";
    default: return "none";
    }
}

/* ---- hyperparameters ---- */

#define MAX_LAYERS 1024u
#define MAX_DIM 65536u
#define MAX_HEADS 1024u
#define MAX_HEAD_DIM 1024u
#define MAX_FFN (1u << 20)
#define MAX_VOCAB (1u << 22)
#define MAX_CTX (1u << 24)

static int check_range(fitlm_error *err, const char *what, uint32_t v, uint32_t max) {
    if (v == 0) return fitlm_fail(err, "%s is 0 (must be positive)", what);
    if (v > max) return fitlm_fail(err, "%s %u is too large (limit %u)", what, v, max);
    return 0;
}

static bool finite_pos(float f) { return isfinite(f) && f > 0.0f; }

int fitlm_hparams_validate(fitlm_hparams *hp, fitlm_error *err) {
    if (hp->arch == FITLM_ARCH_UNKNOWN) return fitlm_fail(err, "unknown architecture");
    if (check_range(err, "n_layers", hp->n_layers, MAX_LAYERS) || check_range(err, "dim", hp->dim, MAX_DIM) ||
        check_range(err, "n_heads", hp->n_heads, MAX_HEADS) || check_range(err, "ffn_dim", hp->ffn_dim, MAX_FFN) ||
        check_range(err, "vocab_size", hp->vocab_size, MAX_VOCAB) || check_range(err, "ctx_len", hp->ctx_len, MAX_CTX))
        return -1;
    if (hp->n_kv_heads == 0) hp->n_kv_heads = hp->n_heads;
    if (check_range(err, "n_kv_heads", hp->n_kv_heads, MAX_HEADS)) return -1;
    if (hp->n_heads % hp->n_kv_heads != 0)
        return fitlm_fail(err, "n_kv_heads %u does not divide n_heads %u", hp->n_kv_heads, hp->n_heads);
    if (hp->head_dim == 0) {
        if (hp->dim % hp->n_heads != 0)
            return fitlm_fail(err, "n_heads %u does not divide dim %u (and no head_dim is given)", hp->n_heads, hp->dim);
        hp->head_dim = hp->dim / hp->n_heads;
    }
    if (hp->head_dim > MAX_HEAD_DIM) return fitlm_fail(err, "head_dim %u is too large (limit %u)", hp->head_dim, MAX_HEAD_DIM);
    if (hp->head_dim % 2 != 0) return fitlm_fail(err, "head_dim %u is odd (RoPE rotates pairs)", hp->head_dim);
    if (!finite_pos(hp->norm_eps) || hp->norm_eps >= 1.0f)
        return fitlm_fail(err, "norm_eps %g must be finite and in (0, 1)", (double)hp->norm_eps);
    if (!finite_pos(hp->rope_theta)) return fitlm_fail(err, "rope_theta %g must be finite and positive", (double)hp->rope_theta);
    if ((unsigned)hp->rope_layout > FITLM_ROPE_HALF) return fitlm_fail(err, "invalid rope layout");
    switch (hp->rope_scaling) {
    case FITLM_ROPE_SCALING_NONE: break;
    case FITLM_ROPE_SCALING_LINEAR:
    case FITLM_ROPE_SCALING_YARN:
        if (!finite_pos(hp->rope_factor) || hp->rope_factor > 1e6f)
            return fitlm_fail(err, "rope scaling factor %g must be finite and positive", (double)hp->rope_factor);
        break;
    case FITLM_ROPE_SCALING_LLAMA3:
        /* factor 0 = factors unknown (GGUF): the rope_freqs tensor carries them */
        if (hp->rope_factor != 0.0f) {
            if (!finite_pos(hp->rope_factor) || hp->rope_factor > 1e6f)
                return fitlm_fail(err, "rope scaling factor %g must be finite and positive", (double)hp->rope_factor);
            if (!finite_pos(hp->rope_low_freq_factor) || !finite_pos(hp->rope_high_freq_factor) ||
                !(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
                return fitlm_fail(err, "llama3 rope scaling needs 0 < low_freq_factor (%g) < high_freq_factor (%g)",
                                  (double)hp->rope_low_freq_factor, (double)hp->rope_high_freq_factor);
            if (hp->rope_orig_ctx == 0 || hp->rope_orig_ctx > MAX_CTX)
                return fitlm_fail(err, "llama3 rope scaling needs original_max_position_embeddings in 1..%u", MAX_CTX);
        }
        break;
    default: return fitlm_fail(err, "invalid rope scaling type");
    }
    if (hp->rope_orig_ctx > MAX_CTX) return fitlm_fail(err, "rope original context %u is too large", hp->rope_orig_ctx);
    if (hp->sliding_window > MAX_CTX) return fitlm_fail(err, "sliding_window %u is too large (limit %u)", hp->sliding_window, MAX_CTX);
    return 0;
}

uint64_t fitlm_hparams_param_count(const fitlm_hparams *hp) {
    uint64_t dim = hp->dim, q = (uint64_t)hp->n_heads * hp->head_dim, kv = (uint64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t ffn = hp->ffn_dim, vocab = hp->vocab_size;
    uint64_t layer = 2 * dim                 /* attn_norm, ffn_norm */
                     + dim * q + 2 * dim * kv /* q, k, v */
                     + q * dim                /* o */
                     + 3 * dim * ffn;         /* gate, up, down */
    if (hp->qkv_bias) layer += q + 2 * kv;
    if (hp->qk_norm) layer += 2 * (uint64_t)hp->head_dim;
    uint64_t total = (uint64_t)hp->n_layers * layer + vocab * dim /* token_embd */ + dim /* output_norm */;
    if (!hp->tied_embeddings) total += vocab * dim;
    return total;
}

int fitlm_llama3_rope_freqs(const fitlm_hparams *hp, float *out, fitlm_error *err) {
    if (hp->rope_scaling != FITLM_ROPE_SCALING_LLAMA3 || hp->rope_factor == 0.0f || hp->head_dim < 2)
        return fitlm_fail(err, "llama3 rope frequencies need llama3 rope scaling with known factors");
    double orig = hp->rope_orig_ctx, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
    double factor = hp->rope_factor;
    double low_wavelen = orig / lo, high_wavelen = orig / hi;
    uint32_t half = hp->head_dim / 2;
    for (uint32_t i = 0; i < half; i++) {
        double freq = 1.0 / pow((double)hp->rope_theta, (2.0 * i) / (double)hp->head_dim);
        double wavelen = 2.0 * M_PI / freq;
        double div; /* the frequency is divided by this */
        if (wavelen < high_wavelen) {
            div = 1.0;
        } else if (wavelen > low_wavelen) {
            div = factor;
        } else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            div = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[i] = (float)div;
    }
    return 0;
}

/* ---- tensors ---- */

fitlm_tensor *fitlm_model_add_tensor(fitlm_model *m, const char *name, const char *src_name, fitlm_error *err) {
    if ((m->n_tensors & (m->n_tensors - 1)) == 0) { /* grow at powers of two */
        size_t cap = m->n_tensors ? m->n_tensors * 2 : 1; /* capacity: next power of two */
        fitlm_tensor *t = realloc(m->tensors, cap * sizeof *t);
        if (!t) {
            fitlm_fail(err, "out of memory");
            return NULL;
        }
        m->tensors = t;
    }
    fitlm_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->src_name = strdup(src_name ? src_name : name);
    if (!t->name || !t->src_name) {
        free(t->name);
        free(t->src_name);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    m->n_tensors++;
    t->file_index = -1;
    t->type = FITLM_TYPE_F32;
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    if (fitlm_tensor_parse_gguf_name(name, &t->kind, &t->layer) != 0) {
        t->kind = FITLM_T_COUNT;
        t->layer = -1;
    }
    return t;
}

uint64_t fitlm_model_tensor_elements(const fitlm_model *m) {
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) n += m->tensors[i].n_elements;
    return n;
}

void fitlm_tensor_drop_pages(const fitlm_tensor *t) {
    if (t->file_index < 0 || !t->data) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)t->data + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)t->data + (uintptr_t)t->nbytes) & ~((uintptr_t)pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

uint64_t fitlm_model_tensor_bytes(const fitlm_model *m) {
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) n += m->tensors[i].nbytes;
    return n;
}

static void expected_shape(const fitlm_hparams *hp, fitlm_tensor_kind k, uint64_t ne[4]) {
    uint64_t dim = hp->dim, q = (uint64_t)hp->n_heads * hp->head_dim, kv = (uint64_t)hp->n_kv_heads * hp->head_dim;
    ne[0] = ne[1] = ne[2] = ne[3] = 1;
    switch (k) {
    case FITLM_T_TOKEN_EMBD:
    case FITLM_T_OUTPUT: ne[0] = dim, ne[1] = hp->vocab_size; break;
    case FITLM_T_OUTPUT_NORM:
    case FITLM_T_ATTN_NORM:
    case FITLM_T_FFN_NORM: ne[0] = dim; break;
    case FITLM_T_ATTN_Q: ne[0] = dim, ne[1] = q; break;
    case FITLM_T_ATTN_K:
    case FITLM_T_ATTN_V: ne[0] = dim, ne[1] = kv; break;
    case FITLM_T_ATTN_Q_BIAS: ne[0] = q; break;
    case FITLM_T_ATTN_K_BIAS:
    case FITLM_T_ATTN_V_BIAS: ne[0] = kv; break;
    case FITLM_T_ATTN_OUT: ne[0] = q, ne[1] = dim; break;
    case FITLM_T_FFN_GATE:
    case FITLM_T_FFN_UP: ne[0] = dim, ne[1] = hp->ffn_dim; break;
    case FITLM_T_FFN_DOWN: ne[0] = hp->ffn_dim, ne[1] = dim; break;
    case FITLM_T_ROPE_FREQS: ne[0] = hp->head_dim / 2; break;
    case FITLM_T_ATTN_Q_NORM:
    case FITLM_T_ATTN_K_NORM: ne[0] = hp->head_dim; break;
    default: break;
    }
}

static void shape_str(const uint64_t ne[4], char *buf, size_t n) {
    int d = 4;
    while (d > 1 && ne[d - 1] == 1) d--;
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < d && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static bool is_packed_quant_name(const char *n) {
    size_t l = strlen(n);
    static const char *suffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t s = strlen(suffixes[i]);
        if (l > s && strcmp(n + l - s, suffixes[i]) == 0) return true;
    }
    return false;
}

int fitlm_model_index(fitlm_model *m, fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    if (hp->n_layers == 0 || hp->n_layers > MAX_LAYERS) return fitlm_fail(err, "invalid layer count %u", hp->n_layers);
    free(m->layer_tensors);
    memset(m->global_tensors, 0, sizeof m->global_tensors);
    m->layer_tensors = calloc(hp->n_layers, sizeof *m->layer_tensors);
    if (!m->layer_tensors) return fitlm_fail(err, "out of memory");
    for (size_t i = 0; i < m->n_tensors; i++) {
        fitlm_tensor *t = &m->tensors[i];
        if (t->kind >= FITLM_T_COUNT) {
            if (is_packed_quant_name(t->src_name))
                return fitlm_fail(err, "tensor '%s' is a GPTQ/AWQ packed weight: fitlm cannot run these "
                                       "(inspect works; convert the model to GGUF first)", t->src_name);
            continue; /* unused extra tensor (e.g. rotary_emb.inv_freq) */
        }
        fitlm_tensor **slot;
        if (k_names[t->kind].per_layer) {
            if (t->layer < 0 || (uint32_t)t->layer >= hp->n_layers)
                return fitlm_fail(err, "tensor '%s': layer %d is out of range (the model has %u layers)", t->src_name,
                                  t->layer, hp->n_layers);
            slot = &m->layer_tensors[t->layer][t->kind];
        } else {
            slot = &m->global_tensors[t->kind];
        }
        if (*slot) return fitlm_fail(err, "tensor '%s' appears twice", t->name);
        uint64_t ne[4];
        expected_shape(hp, t->kind, ne);
        if (memcmp(ne, t->ne, sizeof ne) != 0) {
            char want[96], got[96];
            shape_str(ne, want, sizeof want);
            shape_str(t->ne, got, sizeof got);
            return fitlm_fail(err, "tensor '%s' has shape %s but the hyperparameters imply %s", t->src_name, got, want);
        }
        *slot = t;
    }
    static const fitlm_tensor_kind need_global[] = {FITLM_T_TOKEN_EMBD, FITLM_T_OUTPUT_NORM};
    static const fitlm_tensor_kind need_layer[] = {FITLM_T_ATTN_NORM, FITLM_T_ATTN_Q,   FITLM_T_ATTN_K,
                                                   FITLM_T_ATTN_V,    FITLM_T_ATTN_OUT, FITLM_T_FFN_NORM,
                                                   FITLM_T_FFN_GATE,  FITLM_T_FFN_UP,   FITLM_T_FFN_DOWN};
    static const fitlm_tensor_kind need_bias[] = {FITLM_T_ATTN_Q_BIAS, FITLM_T_ATTN_K_BIAS, FITLM_T_ATTN_V_BIAS};
    char nm[96];
    for (size_t i = 0; i < sizeof need_global / sizeof need_global[0]; i++)
        if (!m->global_tensors[need_global[i]]) {
            fitlm_tensor_name(need_global[i], -1, nm, sizeof nm);
            return fitlm_fail(err, "missing tensor '%s'", nm);
        }
    if (!hp->tied_embeddings && !m->global_tensors[FITLM_T_OUTPUT])
        return fitlm_fail(err, "missing tensor 'output.weight' (and the embeddings are not tied)");
    for (uint32_t l = 0; l < hp->n_layers; l++) {
        for (size_t i = 0; i < sizeof need_layer / sizeof need_layer[0]; i++)
            if (!m->layer_tensors[l][need_layer[i]]) {
                fitlm_tensor_name(need_layer[i], (int)l, nm, sizeof nm);
                return fitlm_fail(err, "missing tensor '%s'", nm);
            }
        if (hp->qkv_bias)
            for (size_t i = 0; i < 3; i++)
                if (!m->layer_tensors[l][need_bias[i]]) {
                    fitlm_tensor_name(need_bias[i], (int)l, nm, sizeof nm);
                    return fitlm_fail(err, "missing tensor '%s' (the architecture has QKV biases)", nm);
                }
        if (hp->qk_norm)
            for (int k = FITLM_T_ATTN_Q_NORM; k <= FITLM_T_ATTN_K_NORM; k++)
                if (!m->layer_tensors[l][k]) {
                    fitlm_tensor_name((fitlm_tensor_kind)k, (int)l, nm, sizeof nm);
                    return fitlm_fail(err, "missing tensor '%s' (the architecture normalizes Q and K per head)", nm);
                }
    }
    return 0;
}

/* Element i of a float tensor (F32, F16, BF16); the data is read byte-wise,
 * so any alignment is fine. */
static float float_at(const fitlm_tensor *t, uint64_t i) {
    const uint8_t *p = t->data;
    if (t->type == FITLM_TYPE_F32) {
        uint32_t w;
        memcpy(&w, p + 4 * i, 4);
        return fitlm_fp32_from_bits(w);
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->type == FITLM_TYPE_F16 ? fitlm_fp16_to_fp32(h) : fitlm_bf16_to_fp32(h);
}

/* First element of a float tensor that is not finite (or, positive_only, not
 * > 0); -1 if none or if the tensor is not F32/F16/BF16 or has no data. */
static int64_t first_bad_value(const fitlm_tensor *t, bool positive_only, float *bad) {
    if (!t->data || (t->type != FITLM_TYPE_F32 && t->type != FITLM_TYPE_F16 && t->type != FITLM_TYPE_BF16)) return -1;
    uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    for (uint64_t i = 0; i < n; i++) {
        float f = float_at(t, i);
        if (!isfinite(f) || (positive_only && !(f > 0.0f))) {
            *bad = f;
            return (int64_t)i;
        }
    }
    return -1;
}

int fitlm_model_check_values(const fitlm_model *m, bool all, fitlm_error *err) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        if (t->kind >= FITLM_T_COUNT) continue;
        bool small = t->kind == FITLM_T_ATTN_NORM || t->kind == FITLM_T_FFN_NORM || t->kind == FITLM_T_OUTPUT_NORM ||
                     t->kind == FITLM_T_ATTN_Q_BIAS || t->kind == FITLM_T_ATTN_K_BIAS ||
                     t->kind == FITLM_T_ATTN_V_BIAS || t->kind == FITLM_T_ROPE_FREQS;
        if (!small && !all) continue;
        bool freqs = t->kind == FITLM_T_ROPE_FREQS; /* RoPE divides by these */
        float bad = 0;
        int64_t at = first_bad_value(t, freqs, &bad);
        if (at >= 0)
            return fitlm_fail(err, "tensor '%s' holds %s %g at element %lld", t->src_name,
                              freqs && isfinite(bad) ? "the non-positive frequency factor" : "the non-finite value",
                              (double)bad, (long long)at);
        if (all && !small && t->data && !(t->type == FITLM_TYPE_F32 || t->type == FITLM_TYPE_F16 ||
                                          t->type == FITLM_TYPE_BF16)) {
            int64_t bi = fitlm_type_first_nonfinite_scale(t->type, t->data, t->nbytes);
            if (bi >= 0)
                return fitlm_fail(err, "tensor '%s' (%s) has a non-finite scale in block %lld", t->src_name,
                                  fitlm_type_name(t->type), (long long)bi);
        }
    }
    return 0;
}

int fitlm_model_check_runnable(const fitlm_model *m, fitlm_error *err) {
    if (m->packed_quant)
        return fitlm_fail(err, "GPTQ/AWQ packed weights cannot be run by fitlm (inspect works; convert to GGUF first)");
    if (!m->hp_valid || !m->layer_tensors) return fitlm_fail(err, "the model has no usable weights");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        if (t->kind >= FITLM_T_COUNT) continue;
        if (t->type == FITLM_TYPE_U8 || t->type == FITLM_TYPE_I8 || t->type == FITLM_TYPE_I16 ||
            t->type == FITLM_TYPE_I32 || t->type == FITLM_TYPE_I64 || !fitlm_type_get(t->type))
            return fitlm_fail(err, "tensor '%s' has type %s, which is not a weight type fitlm can compute with",
                              t->src_name, fitlm_type_name(t->type));
    }
    return fitlm_model_check_values(m, false, err);
}

/* ---- lifetime and loading ---- */

void fitlm_model_free(fitlm_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].src_name);
        free(m->tensors[i].owned_data);
    }
    free(m->tensors);
    if (!m->gguf) /* GGUF maps belong to their readers */
        for (size_t i = 0; i < m->n_files; i++) fitlm_file_unmap(m->files[i]);
    free(m->files);
    if (m->gguf) fitlm_gguf_close((fitlm_gguf *)m->gguf);
    for (size_t i = 0; i < m->n_gguf_splits; i++) fitlm_gguf_close((fitlm_gguf *)m->gguf_splits[i]);
    free(m->gguf_splits);
    free(m->layer_tensors);
    free(m->name);
    free(m->path);
    free(m->hf_dir);
    free(m->arch_str);
    free(m);
}

/* Internal constructors with a mode (declared in model/model_internal.h). */
#include "model/model_internal.h"

fitlm_model *fitlm_model_load_gguf(const char *path, fitlm_error *err) {
    return fitlm_model_open_gguf(path, FITLM_LOAD_RUN, err);
}
fitlm_model *fitlm_model_load_hf(const char *dir_or_config, fitlm_error *err) {
    return fitlm_model_open_hf(dir_or_config, FITLM_LOAD_RUN, err);
}
fitlm_model *fitlm_model_load_llama2c(const char *path, fitlm_error *err) {
    return fitlm_model_open_llama2c(path, FITLM_LOAD_RUN, err);
}

fitlm_model *fitlm_model_load(const char *path, fitlm_error *err) {
    return fitlm_model_open(path, FITLM_LOAD_RUN, err);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

fitlm_model *fitlm_model_open(const char *path, int mode, fitlm_error *err) {
    if (!path || !*path) {
        fitlm_fail(err, "no model path given");
        return NULL;
    }
    if (fitlm_is_dir(path) || ends_with(path, ".json")) return fitlm_model_open_hf(path, mode, err);
    FILE *fp = fitlm_file_fopen_regular(path, err);
    if (!fp) return NULL;
    unsigned char head[32];
    size_t n = fread(head, 1, sizeof head, fp);
    fclose(fp);
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) return fitlm_model_open_gguf(path, mode, err);
    if (n >= 9 && head[8] == '{') /* u64 header length, then a JSON object: safetensors */
        return fitlm_model_open_hf(path, mode, err);
    if (ends_with(path, ".safetensors")) return fitlm_model_open_hf(path, mode, err);
    if (ends_with(path, ".bin") || (n >= 28 && fitlm_llama2c_header_plausible(head)))
        return fitlm_model_open_llama2c(path, mode, err);
    fitlm_fail(err, "%s: unrecognized model file (not GGUF, a Hugging Face folder/safetensors, or llama2.c)", path);
    return NULL;
}

/* Shared tail of every loader: validates hparams, indexes tensors as the mode
 * asks. Returns 0 or -1 with err (without the path prefix). */
int fitlm_model_finish(fitlm_model *m, int mode, fitlm_error *err) {
    bool has_weights = m->n_tensors > 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (is_packed_quant_name(m->tensors[i].src_name)) m->packed_quant = true;
    /* Weights are only meaningful for an architecture we know; a metadata-only
     * file (vocabulary GGUF) of any architecture can still be inspected. */
    if (m->hp.arch == FITLM_ARCH_UNKNOWN && (mode == FITLM_LOAD_RUN || has_weights)) {
        if (!m->arch_str) return fitlm_fail(err, "no architecture given (general.architecture is missing)");
        return fitlm_fail(err, "unsupported architecture '%s' (fitlm knows llama, mistral, qwen2 and qwen3)", m->arch_str);
    }
    if (mode == FITLM_LOAD_RUN && !has_weights)
        return fitlm_fail(err, "the file has no tensors (a vocabulary-only file?)");
    if (m->hp.arch == FITLM_ARCH_UNKNOWN) return 0; /* inspect: describe what is there */
    if (fitlm_hparams_validate(&m->hp, err) != 0) return -1;
    m->hp_valid = true;
    if (!has_weights) return 0;
    if (m->packed_quant) {
        if (mode == FITLM_LOAD_RUN) return fitlm_model_check_runnable(m, err);
        return 0;
    }
    if (fitlm_model_index(m, err) != 0) return -1;
    if (mode == FITLM_LOAD_RUN) return fitlm_model_check_runnable(m, err);
    return 0;
}
