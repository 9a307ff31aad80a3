#include "model/convert.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/ggml_type.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "util/file.h"
#include "util/fp16.h"

uint64_t fitlm_rope_perm_src_row(uint64_t row, uint32_t head_dim, bool to_half) {
    uint64_t d = head_dim, half = d / 2, h = row / d, r = row % d;
    if (to_half) { /* r = j*half + i  <-  2i + j */
        uint64_t j = r / half, i = r % half;
        return h * d + 2 * i + j;
    }
    /* r = 2i + j  <-  j*half + i */
    uint64_t i = r / 2, j = r % 2;
    return h * d + j * half + i;
}

/* The export plan types are public (model/convert.h) so that fitlm quantize
 * writes the same tensors and metadata; short local names: */
typedef fitlm_export_tensor out_tensor;
typedef fitlm_export_plan plan;

static bool is_float_type(int t) { return t == FITLM_TYPE_F32 || t == FITLM_TYPE_F16 || t == FITLM_TYPE_BF16; }

static float load_elem(int type, const uint8_t *p, uint64_t i) {
    if (type == FITLM_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return type == FITLM_TYPE_F16 ? fitlm_fp16_to_fp32(h) : fitlm_bf16_to_fp32(h);
}

static void store_elem(int type, uint8_t *p, uint64_t i, float f) {
    if (type == FITLM_TYPE_F32) {
        memcpy(p + 4 * i, &f, 4);
        return;
    }
    uint16_t h = type == FITLM_TYPE_F16 ? fitlm_fp32_to_fp16(f) : fitlm_fp32_to_bf16(f);
    memcpy(p + 2 * i, &h, 2);
}

/* Produces the bytes of output tensor i. */
static int fill_tensor(const plan *p, uint64_t index, void *buf, uint64_t nbytes, fitlm_error *err) {
    const out_tensor *o = &p->t[index];
    uint8_t *dst = buf;
    if (!o->src) {
        for (uint64_t e = 0; e < o->n_elements; e++) store_elem(o->type, dst, e, o->gen[e]);
        return 0;
    }
    const fitlm_tensor *s = o->src;
    if (!s->data) return fitlm_fail(err, "tensor '%s' has no data", s->name);
    /* A permuted 1-D tensor (bias) is a column of one-element rows. */
    uint64_t row_len = (o->permute && o->n_dims == 1) ? 1 : o->ne[0];
    uint64_t rows = o->n_elements / row_len;
    bool ok1, ok2;
    uint64_t in_row = fitlm_type_row_bytes(s->type, row_len, &ok1), out_row = fitlm_type_row_bytes(o->type, row_len, &ok2);
    if (!ok1 || !ok2 || out_row * rows != nbytes || in_row * rows != s->nbytes)
        return fitlm_fail(err, "tensor '%s': inconsistent sizes", s->name);
    const uint8_t *src = s->data;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t sr = o->permute ? fitlm_rope_perm_src_row(r, p->m->hp.head_dim, p->dst_layout == FITLM_ROPE_HALF) : r;
        const uint8_t *in = src + sr * in_row;
        uint8_t *out = dst + r * out_row;
        bool is_float = s->type == FITLM_TYPE_F32 || s->type == FITLM_TYPE_F16 || s->type == FITLM_TYPE_BF16;
        if (is_float) /* as quantize does: a NaN or Inf is refused, never copied into a new file */
            for (uint64_t e = 0; e < row_len; e++)
                if (!isfinite(load_elem(s->type, in, e)))
                    return fitlm_fail(err, "tensor '%s': row %llu has a NaN or infinite value", s->name,
                                      (unsigned long long)sr);
        if (s->type == o->type) memcpy(out, in, (size_t)in_row);
        else
            for (uint64_t e = 0; e < row_len; e++) store_elem(o->type, out, e, load_elem(s->type, in, e));
    }
    return 0;
}

static int gguf_fill(void *user, uint64_t index, void *buf, uint64_t nbytes, fitlm_error *err) {
    return fill_tensor(user, index, buf, nbytes, err);
}

static int st_fill(void *user, size_t index, void *buf, uint64_t nbytes, fitlm_error *err) {
    return fill_tensor(user, index, buf, nbytes, err);
}

void fitlm_export_plan_free(fitlm_export_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->t[i].gen);
    free(p->t);
    p->t = NULL;
    p->n = 0;
}

uint64_t fitlm_export_src_row(const fitlm_export_plan *p, const fitlm_export_tensor *t, uint64_t row) {
    return t->permute ? fitlm_rope_perm_src_row(row, p->m->hp.head_dim, p->dst_layout == FITLM_ROPE_HALF) : row;
}

static int plan_add(plan *p, const fitlm_tensor *s, fitlm_tensor_kind kind, int layer, const fitlm_convert_opts *o,
                    fitlm_error *err) {
    out_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    t->src = s;
    t->kind = kind;
    t->layer = layer;
    t->n_dims = s->n_dims ? s->n_dims : 1;
    memcpy(t->ne, s->ne, sizeof t->ne);
    t->n_elements = s->n_elements;
    int want = o->type == FITLM_TYPE_INVALID ? s->type : o->type;
    if (o->to == FITLM_FORMAT_GGUF && t->n_dims == 1) want = FITLM_TYPE_F32;
    if (want != s->type && !(is_float_type(s->type) && is_float_type(want)))
        return fitlm_fail(err, "tensor '%s' is %s: only F32/F16/BF16 tensors can be converted to %s", s->name,
                          fitlm_type_name(s->type), fitlm_type_name(want));
    if (o->to == FITLM_FORMAT_SAFETENSORS && !fitlm_safetensors_dtype_name(want))
        return fitlm_fail(err, "tensor '%s' is %s, which safetensors cannot hold (use --type f16/bf16/f32 from a "
                               "float model)", s->name, fitlm_type_name(want));
    t->type = want;
    bool qk = kind == FITLM_T_ATTN_Q || kind == FITLM_T_ATTN_K || kind == FITLM_T_ATTN_Q_BIAS || kind == FITLM_T_ATTN_K_BIAS;
    t->permute = qk && p->m->hp.rope_layout != p->dst_layout;
    if (t->permute && t->n_dims == 1 && !is_float_type(s->type))
        return fitlm_fail(err, "tensor '%s': cannot permute a %s bias", s->name, fitlm_type_name(s->type));
    int r = o->to == FITLM_FORMAT_GGUF ? fitlm_tensor_name(kind, layer, t->name, sizeof t->name)
                                       : fitlm_tensor_hf_name(kind, layer, t->name, sizeof t->name);
    if (r != 0) return fitlm_fail(err, "tensor '%s' has no name in the target format", s->name);
    p->n++;
    return 0;
}

int fitlm_export_plan_build(fitlm_export_plan *p, const fitlm_model *m, const fitlm_convert_opts *o, fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    memset(p, 0, sizeof *p);
    p->m = m;
    p->dst_layout = (o->to == FITLM_FORMAT_SAFETENSORS || hp->arch == FITLM_ARCH_QWEN2 || hp->arch == FITLM_ARCH_QWEN3)
                        ? FITLM_ROPE_HALF
                        : FITLM_ROPE_ADJACENT;
    if (!m->layer_tensors) return fitlm_fail(err, "the model has no indexed tensors to convert");
    p->t = calloc((size_t)hp->n_layers * FITLM_T_COUNT + FITLM_T_COUNT, sizeof *p->t);
    if (!p->t) return fitlm_fail(err, "out of memory");
    const fitlm_tensor *g;
    if ((g = m->global_tensors[FITLM_T_TOKEN_EMBD]) && plan_add(p, g, FITLM_T_TOKEN_EMBD, -1, o, err)) return -1;
    if (o->to == FITLM_FORMAT_GGUF && hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3) {
        if ((g = m->global_tensors[FITLM_T_ROPE_FREQS])) {
            if (plan_add(p, g, FITLM_T_ROPE_FREQS, -1, o, err)) return -1;
        } else {
            out_tensor *t = &p->t[p->n];
            memset(t, 0, sizeof *t);
            t->kind = FITLM_T_ROPE_FREQS;
            t->layer = -1;
            snprintf(t->name, sizeof t->name, "rope_freqs.weight");
            t->type = FITLM_TYPE_F32;
            t->n_dims = 1;
            t->ne[0] = hp->head_dim / 2;
            t->ne[1] = t->ne[2] = t->ne[3] = 1;
            t->n_elements = t->ne[0];
            if (!(t->gen = malloc(t->ne[0] * sizeof(float)))) return fitlm_fail(err, "out of memory");
            p->n++;
            if (fitlm_llama3_rope_freqs(hp, t->gen, err) != 0) return -1;
        }
    }
    if (o->to == FITLM_FORMAT_SAFETENSORS && hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3 && hp->rope_factor == 0.0f)
        return fitlm_fail(err, "llama3 rope scaling factors are unknown (only rope_freqs.weight is stored); "
                               "config.json cannot express them");
    static const fitlm_tensor_kind layer_order[] = {
        FITLM_T_ATTN_NORM,   FITLM_T_ATTN_Q,   FITLM_T_ATTN_K,   FITLM_T_ATTN_V,    FITLM_T_ATTN_Q_BIAS,
        FITLM_T_ATTN_K_BIAS, FITLM_T_ATTN_V_BIAS, FITLM_T_ATTN_Q_NORM, FITLM_T_ATTN_K_NORM, FITLM_T_ATTN_OUT,
        FITLM_T_FFN_NORM,    FITLM_T_FFN_GATE,    FITLM_T_FFN_UP,      FITLM_T_FFN_DOWN};
    for (uint32_t l = 0; l < hp->n_layers; l++)
        for (size_t k = 0; k < sizeof layer_order / sizeof layer_order[0]; k++)
            if ((g = m->layer_tensors[l][layer_order[k]]) && plan_add(p, g, layer_order[k], (int)l, o, err)) return -1;
    if ((g = m->global_tensors[FITLM_T_OUTPUT_NORM]) && plan_add(p, g, FITLM_T_OUTPUT_NORM, -1, o, err)) return -1;
    if (!hp->tied_embeddings && (g = m->global_tensors[FITLM_T_OUTPUT]) && plan_add(p, g, FITLM_T_OUTPUT, -1, o, err))
        return -1;
    return 0;
}

/* ---- GGUF ---- */

int fitlm_export_gguf_metadata(const fitlm_model *m, fitlm_gguf_writer *w, int file_type, fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    const char *arch = (hp->arch == FITLM_ARCH_QWEN2 || hp->arch == FITLM_ARCH_QWEN3) ? fitlm_arch_name(hp->arch) : "llama";
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    int rc = 0;
    rc |= fitlm_gguf_writer_add_str(w, "general.architecture", arch, err);
    rc |= fitlm_gguf_writer_add_str(w, "general.name", m->name ? m->name : "model", err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("context_length"), hp->ctx_len, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("embedding_length"), hp->dim, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("block_count"), hp->n_layers, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("feed_forward_length"), hp->ffn_dim, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("attention.head_count"), hp->n_heads, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), hp->n_kv_heads, err);
    rc |= fitlm_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), hp->norm_eps, err);
    rc |= fitlm_gguf_writer_add_f32(w, KEY("rope.freq_base"), hp->rope_theta, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("rope.dimension_count"), hp->head_dim, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("attention.key_length"), hp->head_dim, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("attention.value_length"), hp->head_dim, err);
    rc |= fitlm_gguf_writer_add_u32(w, KEY("vocab_size"), hp->vocab_size, err);
    if (hp->sliding_window) rc |= fitlm_gguf_writer_add_u32(w, KEY("attention.sliding_window"), hp->sliding_window, err);
    if (hp->rope_scaling != FITLM_ROPE_SCALING_NONE) {
        rc |= fitlm_gguf_writer_add_str(w, KEY("rope.scaling.type"), fitlm_rope_scaling_name(hp->rope_scaling), err);
        if (hp->rope_factor != 0.0f) rc |= fitlm_gguf_writer_add_f32(w, KEY("rope.scaling.factor"), hp->rope_factor, err);
        if (hp->rope_orig_ctx)
            rc |= fitlm_gguf_writer_add_u32(w, KEY("rope.scaling.original_context_length"), hp->rope_orig_ctx, err);
        if (hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3 && hp->rope_low_freq_factor != 0.0f) {
            rc |= fitlm_gguf_writer_add_f32(w, KEY("rope.scaling.low_freq_factor"), hp->rope_low_freq_factor, err);
            rc |= fitlm_gguf_writer_add_f32(w, KEY("rope.scaling.high_freq_factor"), hp->rope_high_freq_factor, err);
        }
    }
#undef KEY
    if (file_type >= 0) rc |= fitlm_gguf_writer_add_u32(w, "general.file_type", (uint32_t)file_type, err);
    if (m->gguf) { /* carry the tokenizer over */
        const fitlm_gguf *g = m->gguf;
        for (uint64_t i = 0; i < g->n_kv && rc == 0; i++)
            if (g->kv[i].key.s && strncmp(g->kv[i].key.s, "tokenizer.", 10) == 0)
                rc |= fitlm_gguf_writer_add_value(w, g->kv[i].key.s, &g->kv[i].value, err);
    }
    return rc ? -1 : 0;
}

static int write_gguf(const fitlm_model *m, const char *out, const plan *p, fitlm_error *err) {
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(3, err);
    if (!w) return -1;
    /* general.file_type: 0 all F32, 1 mostly F16, 32 mostly BF16 (by the first weight matrix) */
    int ft = -1;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].n_dims == 2) {
            ft = p->t[i].type == FITLM_TYPE_F32 ? 0 : p->t[i].type == FITLM_TYPE_F16 ? 1 : p->t[i].type == FITLM_TYPE_BF16 ? 32 : -1;
            break;
        }
    int rc = fitlm_export_gguf_metadata(m, w, ft, err);
    for (size_t i = 0; i < p->n && rc == 0; i++)
        rc |= fitlm_gguf_writer_add_tensor(w, p->t[i].name, p->t[i].type, p->t[i].n_dims, p->t[i].ne, NULL, err);
    if (rc == 0) rc = fitlm_gguf_writer_write(w, out, gguf_fill, (void *)p, err);
    fitlm_gguf_writer_free(w);
    return rc ? -1 : 0;
}

/* ---- Hugging Face folder ---- */

/* The shortest decimal that reads back as the same float (so 1e-5f prints as 1e-05). */
static double float_for_json(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static char *hf_config_json(const fitlm_model *m, int weight_type) {
    const fitlm_hparams *hp = &m->hp;
    cJSON *o = cJSON_CreateObject();
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    const char *cls = hp->arch == FITLM_ARCH_QWEN2 ? "Qwen2ForCausalLM"
                      : hp->arch == FITLM_ARCH_QWEN3 ? "Qwen3ForCausalLM"
                      : hp->arch == FITLM_ARCH_MISTRAL ? "MistralForCausalLM"
                                                       : "LlamaForCausalLM";
    cJSON_AddItemToArray(archs, cJSON_CreateString(cls));
    cJSON_AddStringToObject(o, "model_type", fitlm_arch_name(hp->arch));
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", hp->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", hp->ffn_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", hp->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", hp->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", hp->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", hp->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", hp->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", hp->ctx_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", float_for_json(hp->norm_eps));
    cJSON_AddNumberToObject(o, "rope_theta", float_for_json(hp->rope_theta));
    if (hp->rope_scaling == FITLM_ROPE_SCALING_NONE) {
        cJSON_AddNullToObject(o, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", fitlm_rope_scaling_name(hp->rope_scaling));
        cJSON_AddNumberToObject(rs, "factor", float_for_json(hp->rope_factor));
        if (hp->rope_scaling == FITLM_ROPE_SCALING_LLAMA3) {
            cJSON_AddNumberToObject(rs, "low_freq_factor", float_for_json(hp->rope_low_freq_factor));
            cJSON_AddNumberToObject(rs, "high_freq_factor", float_for_json(hp->rope_high_freq_factor));
        }
        if (hp->rope_orig_ctx) cJSON_AddNumberToObject(rs, "original_max_position_embeddings", hp->rope_orig_ctx);
    }
    if (hp->arch == FITLM_ARCH_MISTRAL) {
        if (hp->sliding_window) cJSON_AddNumberToObject(o, "sliding_window", hp->sliding_window);
        else cJSON_AddNullToObject(o, "sliding_window");
    } else if (hp->arch == FITLM_ARCH_QWEN2 || hp->arch == FITLM_ARCH_QWEN3) {
        cJSON_AddBoolToObject(o, "use_sliding_window", hp->sliding_window != 0);
        if (hp->sliding_window) cJSON_AddNumberToObject(o, "sliding_window", hp->sliding_window);
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", hp->tied_embeddings);
    cJSON_AddStringToObject(o, "torch_dtype", weight_type == FITLM_TYPE_F32 ? "float32" : weight_type == FITLM_TYPE_F16 ? "float16" : "bfloat16");
    if (m->gguf) {
        uint64_t id;
        if (fitlm_gguf_get_u64(m->gguf, "tokenizer.ggml.bos_token_id", &id, NULL) == 1) cJSON_AddNumberToObject(o, "bos_token_id", (double)id);
        if (fitlm_gguf_get_u64(m->gguf, "tokenizer.ggml.eos_token_id", &id, NULL) == 1) cJSON_AddNumberToObject(o, "eos_token_id", (double)id);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

static void remove_tree_shallow(const char *dir) {
    static const char *names[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        char *p = fitlm_path_join(dir, names[i]);
        if (p) {
            unlink(p);
            /* leftover temp files from the atomic writers */
            size_t n = strlen(p) + 32;
            char *t = malloc(n);
            if (t) {
                snprintf(t, n, "%s.tmp.%ld", p, (long)getpid());
                unlink(t);
                free(t);
            }
        }
        free(p);
    }
    rmdir(dir);
}

static int write_hf(const fitlm_model *m, const char *out, const plan *p, fitlm_error *err) {
    struct stat st;
    if (stat(out, &st) == 0) return fitlm_fail(err, "%s already exists (convert --to hf writes a new folder)", out);
    size_t n = strlen(out) + 32;
    char *tmp = malloc(n);
    char *cfg_path = NULL, *st_path = NULL, *cfg = NULL;
    fitlm_st_out_tensor *ts = NULL;
    if (!tmp) return fitlm_fail(err, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", out, (long)getpid());
    if (mkdir(tmp, 0777) != 0) {
        fitlm_fail(err, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int weight_type = FITLM_TYPE_F32;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].n_dims == 2) {
            weight_type = p->t[i].type;
            break;
        }
    cfg_path = fitlm_path_join(tmp, "config.json");
    st_path = fitlm_path_join(tmp, "model.safetensors");
    cfg = hf_config_json(m, weight_type);
    ts = calloc(p->n ? p->n : 1, sizeof *ts);
    if (!cfg_path || !st_path || !cfg || !ts) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    fitlm_atomic_file *af = fitlm_atomic_open(cfg_path, err);
    if (!af) goto fail;
    fputs(cfg, af->fp);
    fputc('\n', af->fp);
    if (fitlm_atomic_commit(af, err) != 0) goto fail;
    for (size_t i = 0; i < p->n; i++) {
        const out_tensor *o = &p->t[i];
        ts[i].name = o->name;
        ts[i].type = o->type;
        ts[i].n_dims = o->n_dims;
        for (uint32_t d = 0; d < o->n_dims; d++) ts[i].shape[d] = o->ne[o->n_dims - 1 - d];
        ts[i].data = NULL;
    }
    if (fitlm_safetensors_write(st_path, ts, p->n, st_fill, (void *)p, err) != 0) goto fail;
    if (rename(tmp, out) != 0) {
        fitlm_fail(err, "%s: rename: %s", out, strerror(errno));
        goto fail;
    }
    free(tmp);
    free(cfg_path);
    free(st_path);
    free(cfg);
    free(ts);
    return 0;
fail:
    remove_tree_shallow(tmp);
    free(tmp);
    free(cfg_path);
    free(st_path);
    free(cfg);
    free(ts);
    return -1;
}

int fitlm_model_convert(const fitlm_model *m, const char *out_arg, const fitlm_convert_opts *opts, fitlm_error *err) {
    char out[4096];
    size_t ol = strlen(out_arg);
    while (ol > 1 && out_arg[ol - 1] == '/') ol--; /* "dir/" names the folder "dir" */
    if (ol == 0 || ol >= sizeof out) return fitlm_fail(err, "convert: invalid output path");
    memcpy(out, out_arg, ol);
    out[ol] = 0;
    if (opts->to != FITLM_FORMAT_GGUF && opts->to != FITLM_FORMAT_SAFETENSORS)
        return fitlm_fail(err, "convert: the target must be gguf or hf");
    if (opts->type != FITLM_TYPE_INVALID && !is_float_type(opts->type))
        return fitlm_fail(err, "convert: --type must be f32, f16 or bf16 (use 'fitlm quantize' for quantized types)");
    if (!m->hp_valid) return fitlm_fail(err, "convert: the model has no valid hyperparameters");
    plan p;
    int rc = fitlm_export_plan_build(&p, m, opts, err);
    if (rc == 0) rc = opts->to == FITLM_FORMAT_GGUF ? write_gguf(m, out, &p, err) : write_hf(m, out, &p, err);
    fitlm_export_plan_free(&p);
    return rc;
}
