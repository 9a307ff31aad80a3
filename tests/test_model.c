/* The model description: the llama2.c loader against the shared stories260K
 * checkpoint (documented header and layout), hyperparameter checks, tensor name
 * maps, the RoPE row permutation, and parameter counts from published
 * config.json values against the published parameter counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "model/convert.h"
#include "model/model.h"

static void test_stories260k(const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", shared);
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_load(path, &err);
    CHECK(m != NULL, "load stories260K: %s", err.msg);
    if (!m) return;
    const fitlm_hparams *hp = &m->hp;
    /* the values the shared README documents */
    CHECK(m->format == FITLM_FORMAT_LLAMA2C, "format %d", m->format);
    CHECK(hp->arch == FITLM_ARCH_LLAMA, "arch");
    CHECK(hp->dim == 64 && hp->ffn_dim == 172 && hp->n_layers == 5 && hp->n_heads == 8 && hp->n_kv_heads == 4,
          "sizes %u %u %u %u %u", hp->dim, hp->ffn_dim, hp->n_layers, hp->n_heads, hp->n_kv_heads);
    CHECK(hp->vocab_size == 512 && hp->ctx_len == 512 && hp->head_dim == 8, "vocab %u ctx %u hd %u", hp->vocab_size,
          hp->ctx_len, hp->head_dim);
    CHECK(hp->tied_embeddings, "positive vocab_size means a shared classifier");
    CHECK(hp->rope_layout == FITLM_ROPE_ADJACENT, "llama2.c rotates adjacent pairs");
    CHECK(fabsf(hp->norm_eps - 1e-5f) == 0.0f && hp->rope_theta == 10000.0f, "eps %g theta %g", (double)hp->norm_eps,
          (double)hp->rope_theta);
    CHECK(m->n_tensors == 5 * 9 + 2, "tensor count %zu", m->n_tensors);
    CHECK(fitlm_model_tensor_elements(m) == fitlm_hparams_param_count(hp), "elements %llu vs hparams %llu",
          (unsigned long long)fitlm_model_tensor_elements(m), (unsigned long long)fitlm_hparams_param_count(hp));
    /* 4-byte floats + 28-byte header + unused freq_cis (512 * 8 floats) = file size */
    CHECK(fitlm_model_tensor_bytes(m) + 28 + 512 * 8 * 4 == m->files[0]->size, "bytes %llu",
          (unsigned long long)fitlm_model_tensor_bytes(m));
    const fitlm_tensor *e = m->global_tensors[FITLM_T_TOKEN_EMBD];
    CHECK(e && e->offset == 28 && e->ne[0] == 64 && e->ne[1] == 512, "token_embd placement");
    /* layout order of the format: after token_embd (512*64) come rms_att (5*64), then wq for all layers */
    const fitlm_tensor *q1 = m->layer_tensors[1][FITLM_T_ATTN_Q];
    CHECK(q1 && q1->offset == 28 + 4ull * (512 * 64 + 5 * 64 + 64 * 64), "blk.1.attn_q offset %llu",
          q1 ? (unsigned long long)q1->offset : 0ull);
    const fitlm_tensor *k4 = m->layer_tensors[4][FITLM_T_ATTN_K];
    CHECK(k4 && k4->ne[0] == 64 && k4->ne[1] == 32, "k shape (in=dim, out=kv_dim)");
    const fitlm_tensor *down = m->layer_tensors[0][FITLM_T_FFN_DOWN];
    CHECK(down && down->ne[0] == 172 && down->ne[1] == 64, "w2 shape (in=hidden, out=dim)");
    const fitlm_tensor *on = m->global_tensors[FITLM_T_OUTPUT_NORM];
    CHECK(on && on->offset + on->nbytes + 512 * 8 * 4 == m->files[0]->size, "rms_final sits before freq_cis");
    /* the RMSNorm weights of a trained model are positive-ish, not garbage */
    const float *w = on->data;
    double s = 0;
    for (int i = 0; i < 64; i++) s += w[i];
    CHECK(s / 64 > 0.1 && s / 64 < 10, "rms_final mean %g", s / 64);
    CHECK(fitlm_model_check_runnable(m, &err) == 0, "runnable: %s", err.msg);
    fitlm_model_free(m);
}

static fitlm_hparams base_hp(void) {
    fitlm_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = FITLM_ARCH_LLAMA;
    hp.n_layers = 2;
    hp.dim = 64;
    hp.n_heads = 8;
    hp.n_kv_heads = 4;
    hp.ffn_dim = 128;
    hp.vocab_size = 100;
    hp.ctx_len = 256;
    hp.norm_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    return hp;
}

static void test_validate(void) {
    fitlm_error err = {{0}};
    fitlm_hparams hp = base_hp();
    CHECK(fitlm_hparams_validate(&hp, &err) == 0 && hp.head_dim == 8, "base valid: %s", err.msg);
    hp = base_hp();
    hp.n_heads = 6; /* 64 % 6 != 0 */
    hp.n_kv_heads = 3;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "divide"), "heads not dividing dim: %s", err.msg);
    hp.head_dim = 16; /* explicit head_dim lifts the restriction */
    CHECK(fitlm_hparams_validate(&hp, &err) == 0, "explicit head_dim: %s", err.msg);
    hp = base_hp();
    hp.n_kv_heads = 3;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "n_kv_heads"), "kv not dividing: %s", err.msg);
    hp = base_hp();
    hp.n_layers = 0;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "n_layers"), "zero layers: %s", err.msg);
    hp = base_hp();
    hp.vocab_size = 1u << 30;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "vocab"), "huge vocab: %s", err.msg);
    hp = base_hp();
    hp.dim = 1u << 20;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1, "huge dim");
    hp = base_hp();
    hp.norm_eps = NAN;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "norm_eps"), "nan eps: %s", err.msg);
    hp = base_hp();
    hp.rope_theta = -1;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1, "negative theta");
    hp = base_hp();
    hp.dim = 72; /* head_dim 9: odd */
    hp.n_heads = 8;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1 && strstr(err.msg, "odd"), "odd head_dim: %s", err.msg);
    hp = base_hp();
    hp.arch = FITLM_ARCH_UNKNOWN;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1, "unknown arch");
    hp = base_hp();
    hp.rope_scaling = FITLM_ROPE_SCALING_LLAMA3;
    hp.rope_factor = 8;
    hp.rope_low_freq_factor = 4;
    hp.rope_high_freq_factor = 1; /* reversed */
    hp.rope_orig_ctx = 8192;
    CHECK(fitlm_hparams_validate(&hp, &err) == -1, "llama3 low >= high");
}

static void test_names(void) {
    char buf[128];
    fitlm_tensor_kind k;
    int l;
    for (int kind = 0; kind < FITLM_T_COUNT; kind++) {
        int layer = (kind >= FITLM_T_ATTN_NORM && kind <= FITLM_T_FFN_DOWN) || kind == FITLM_T_ATTN_Q_NORM ||
                            kind == FITLM_T_ATTN_K_NORM
                        ? 17
                        : -1;
        CHECK(fitlm_tensor_name((fitlm_tensor_kind)kind, layer, buf, sizeof buf) == 0, "name %d", kind);
        CHECK(fitlm_tensor_parse_gguf_name(buf, &k, &l) == 0 && (int)k == kind && l == layer, "gguf round trip %s", buf);
        if (fitlm_tensor_hf_name((fitlm_tensor_kind)kind, layer, buf, sizeof buf) == 0)
            CHECK(fitlm_tensor_parse_hf_name(buf, &k, &l) == 0 && (int)k == kind && l == layer, "hf round trip %s", buf);
    }
    CHECK(fitlm_tensor_parse_hf_name("model.layers.3.self_attn.q_proj.weight", &k, &l) == 0 && k == FITLM_T_ATTN_Q && l == 3,
          "hf q");
    CHECK(fitlm_tensor_parse_hf_name("model.layers.0.mlp.down_proj.weight", &k, &l) == 0 && k == FITLM_T_FFN_DOWN, "hf down");
    CHECK(fitlm_tensor_parse_hf_name("lm_head.weight", &k, &l) == 0 && k == FITLM_T_OUTPUT && l == -1, "hf lm_head");
    CHECK(fitlm_tensor_parse_hf_name("model.layers.2.self_attn.k_norm.weight", &k, &l) == 0 && k == FITLM_T_ATTN_K_NORM &&
              l == 2,
          "hf qwen3 k_norm");
    CHECK(fitlm_tensor_parse_gguf_name("blk.5.attn_q_norm.weight", &k, &l) == 0 && k == FITLM_T_ATTN_Q_NORM && l == 5,
          "gguf qwen3 attn_q_norm");
    CHECK(fitlm_arch_from_name("qwen3") == FITLM_ARCH_QWEN3 && !strcmp(fitlm_arch_name(FITLM_ARCH_QWEN3), "qwen3"),
          "qwen3 arch name");
    CHECK(fitlm_tensor_parse_hf_name("model.layers.0.self_attn.q_proj.qweight", &k, &l) != 0, "GPTQ names are not canonical");
    CHECK(fitlm_tensor_parse_gguf_name("blk.01.attn_q.weight", &k, &l) != 0, "leading zero");
    CHECK(fitlm_tensor_parse_gguf_name("blk.x.attn_q.weight", &k, &l) != 0, "no number");
    CHECK(fitlm_tensor_parse_gguf_name("blk.99999999999.attn_q.weight", &k, &l) != 0, "huge layer");
    CHECK(fitlm_tensor_parse_gguf_name("token_embd.weight", &k, &l) == 0 && k == FITLM_T_TOKEN_EMBD, "embd");
    CHECK(fitlm_arch_from_name("qwen2") == FITLM_ARCH_QWEN2 && fitlm_arch_from_name("gpt2") == FITLM_ARCH_UNKNOWN, "arch");
}

static void test_permutation(void) {
    /* per head of 8 rows, rotate-half order takes adjacent rows 0,2,4,6,1,3,5,7 */
    static const uint64_t want[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
    for (uint64_t r = 0; r < 16; r++)
        CHECK(fitlm_rope_perm_src_row(r, 8, true) == want[r], "to_half row %llu", (unsigned long long)r);
    for (uint64_t r = 0; r < 384; r++) {
        uint64_t s = fitlm_rope_perm_src_row(r, 128, true);
        CHECK(fitlm_rope_perm_src_row(s, 128, false) == r, "inverse at %llu", (unsigned long long)r);
    }
}

static uint64_t count_config(const char *json) {
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_from_hf_config_json(json, "t", &err);
    CHECK(m != NULL, "config: %s", err.msg);
    if (!m) return 0;
    uint64_t n = fitlm_hparams_param_count(&m->hp);
    fitlm_model_free(m);
    return n;
}

/* The hyperparameters below are copied from the models' published config.json
 * files; the expected counts are the published parameter counts. */
static const char LLAMA31_8B_CONFIG[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4096,\"intermediate_size\":14336,"
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
    "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,"
    "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
    "\"vocab_size\":128256,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\"}";
static const char MISTRAL_7B_CONFIG[] =
    "{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":4096,\"intermediate_size\":14336,"
    "\"max_position_embeddings\":32768,\"num_attention_heads\":32,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
    "\"sliding_window\":4096,\"tie_word_embeddings\":false,\"vocab_size\":32000}";
static const struct {
    const char *name;
    const char *config;
    uint64_t params;
} PUBLISHED[] = {
    {"Llama-2-7B",
     "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4096,\"intermediate_size\":11008,"
     "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":32,"
     "\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-05,\"vocab_size\":32000,"
     "\"tie_word_embeddings\":false,\"torch_dtype\":\"float16\",\"hidden_act\":\"silu\"}",
     6738415616ull},
    {"Llama-3-8B",
     "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4096,\"intermediate_size\":14336,"
     "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
     "\"max_position_embeddings\":8192,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,"
     "\"vocab_size\":128256,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\"}",
     8030261248ull},
    {"Llama-3.1-8B", LLAMA31_8B_CONFIG, 8030261248ull},
    {"Qwen2.5-0.5B",
     "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":896,\"intermediate_size\":4864,"
     "\"max_position_embeddings\":32768,\"max_window_layers\":24,\"num_attention_heads\":14,"
     "\"num_hidden_layers\":24,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-06,"
     "\"rope_theta\":1000000.0,\"sliding_window\":32768,\"tie_word_embeddings\":true,"
     "\"torch_dtype\":\"bfloat16\",\"use_sliding_window\":false,\"vocab_size\":151936}",
     494032768ull},
    {"Qwen2.5-7B",
     "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":3584,\"intermediate_size\":18944,"
     "\"max_position_embeddings\":131072,\"num_attention_heads\":28,\"num_hidden_layers\":28,"
     "\"num_key_value_heads\":4,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
     "\"sliding_window\":131072,\"tie_word_embeddings\":false,\"use_sliding_window\":false,"
     "\"vocab_size\":152064}",
     7615616512ull},
    {"Mistral-7B-v0.1", MISTRAL_7B_CONFIG, 7241732096ull},
};

static void test_param_counts(void) {
    for (size_t i = 0; i < sizeof PUBLISHED / sizeof PUBLISHED[0]; i++) {
        uint64_t n = count_config(PUBLISHED[i].config);
        CHECK(n == PUBLISHED[i].params, "%s %llu", PUBLISHED[i].name, (unsigned long long)n);
    }
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_from_hf_config_json(LLAMA31_8B_CONFIG, "l31", &err);
    if (m) {
        CHECK(m->hp.rope_scaling == FITLM_ROPE_SCALING_LLAMA3 && m->hp.rope_factor == 8.0f &&
                  m->hp.rope_low_freq_factor == 1.0f && m->hp.rope_high_freq_factor == 4.0f && m->hp.rope_orig_ctx == 8192,
              "llama3 scaling parsed");
        CHECK(m->hp.ctx_len == 131072 && m->hp.rope_layout == FITLM_ROPE_HALF && m->dtype == FITLM_TYPE_BF16, "l31 fields");
        float f[64];
        CHECK(fitlm_llama3_rope_freqs(&m->hp, f, &err) == 0, "freqs");
        /* highest frequencies untouched, lowest divided by the full factor */
        CHECK(f[0] == 1.0f && f[63] == 8.0f, "freq factors %g %g", (double)f[0], (double)f[63]);
        fitlm_model_free(m);
    }
    m = fitlm_model_from_hf_config_json(MISTRAL_7B_CONFIG, "mistral", &err);
    if (m) {
        CHECK(m->hp.sliding_window == 4096 && m->hp.arch == FITLM_ARCH_MISTRAL, "sliding window");
        fitlm_model_free(m);
    }
    m = fitlm_model_from_hf_config_json("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":896,"
                                        "\"intermediate_size\":4864,\"max_position_embeddings\":32768,"
                                        "\"num_attention_heads\":14,\"num_hidden_layers\":24,\"num_key_value_heads\":2,"
                                        "\"sliding_window\":32768,\"use_sliding_window\":false,\"vocab_size\":151936,"
                                        "\"tie_word_embeddings\":true}",
                                        "q", &err);
    if (m) {
        CHECK(m->hp.qkv_bias && m->hp.tied_embeddings && m->hp.sliding_window == 0 && m->hp.head_dim == 64, "qwen2 flags");
        fitlm_model_free(m);
    }
    /* bad configs */
    static const char *bad[] = {
        "{\"architectures\":[\"GPT2LMHeadModel\"],\"hidden_size\":8}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-8,\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8.5,\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"8\",\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8,\"num_key_value_heads\":0}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8,\"num_attention_heads\":2,"
        "\"num_hidden_layers\":1,\"vocab_size\":10,\"max_position_embeddings\":8,\"rope_scaling\":{\"type\":\"weird\"}}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = fitlm_model_from_hf_config_json(bad[i], "bad", &err);
        CHECK(m == NULL && err.msg[0], "bad config %zu accepted", i);
        fitlm_model_free(m);
    }
}

int main(void) {
    const char *shared = check_env_or_skip("FITLM_SHARED");
    test_stories260k(shared);
    test_validate();
    test_names();
    test_permutation();
    test_param_counts();
    return check_report();
}
