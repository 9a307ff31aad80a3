/* Planner formulas against published numbers: parameter counts from the model
 * releases, KV bytes per token, GGUF file sizes of public quantizations, the ZeRO
 * paper's Figure 1, DeepSpeed's estimator output, and Korthikanti et al.'s
 * activation-memory equations and reported reduction. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "planner/planner.h"

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

static const fitlm_preset_info *preset(const char *name) {
    const fitlm_preset_info *p = fitlm_preset_find(name);
    CHECK(p != NULL, "preset %s missing", name);
    return p;
}

static double weights_of(const char *model, const char *fmt) {
    fitlm_plan_model m;
    fitlm_error err = {{0}};
    if (fitlm_plan_model_open(&m, model, &err)) {
        CHECK(0, "%s", err.msg);
        return 0;
    }
    fitlm_wformat f;
    CHECK(fitlm_wformat_parse(fmt, &f, &err) == 0, "%s", err.msg);
    fitlm_weight_bytes wb;
    CHECK(fitlm_weight_bytes_compute(&m, &f, &wb, &err) == 0, "%s", err.msg);
    double t = wb.total;
    fitlm_weight_bytes_free(&wb);
    fitlm_plan_model_free(&m);
    return t;
}

static void test_params(void) {
    /* published parameter counts (sum of the released checkpoints' tensors) */
    static const struct {
        const char *name;
        uint64_t params;
    } pub[] = {
        {"llama-2-7b", 6738415616ull},   {"Llama-2-13B", 13015864320ull},    {"llama-2-70b", 68976648192ull},
        {"llama-3-8b", 8030261248ull},   {"llama-3-70b", 70553706496ull},    {"llama-3.1-405b", 405853388800ull},
        {"llama-3.2-1b", 1235814400ull}, {"llama-3.2-3b", 3212749824ull},    {"qwen2.5-0.5b", 494032768ull},
        {"qwen2.5-7b", 7615616512ull},   {"qwen2.5-72b", 72706203648ull},    {"mistral-7b", 7241732096ull},
        {"deepseek-r1-distill-qwen-7b", 7615616512ull}, {"deepseek-r1-distill-llama-8b", 8030261248ull},
    };
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++) {
        const fitlm_preset_info *p = preset(pub[i].name);
        if (!p) continue;
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&p->hp, &pc);
        CHECK(pc.total == pub[i].params, "%s: %llu params, published %llu", pub[i].name,
              (unsigned long long)pc.total, (unsigned long long)pub[i].params);
    }
    /* every preset agrees with the count recorded next to its config */
    int n = fitlm_preset_count(NULL);
    CHECK(n >= 24, "only %d presets", n);
    for (int i = 0; i < n; i++) {
        const fitlm_preset_info *p = fitlm_preset_at(i);
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&p->hp, &pc);
        CHECK(pc.total == p->published_params, "%s: %llu vs %llu", p->name, (unsigned long long)pc.total,
              (unsigned long long)p->published_params);
        /* the model module's own count agrees */
        CHECK(fitlm_hparams_param_count(&p->hp) == pc.total, "%s: model module counts %llu", p->name,
              (unsigned long long)fitlm_hparams_param_count(&p->hp));
    }
    /* the presets the issue names */
    static const char *const need[] = {"llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b",
                                       "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-3.2-1b",
                                       "llama-3.2-3b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b",
                                       "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "mistral-7b",
                                       "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b",
                                       "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-32b"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) preset(need[i]);
    /* Qwen2.5 model cards: 0.49B total, 0.36B non-embedding */
    const fitlm_preset_info *q = preset("qwen2.5-0.5b");
    if (q) {
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&q->hp, &pc);
        CHECK(fabs((pc.total - pc.embedding) / 1e9 - 0.36) < 0.005, "qwen2.5-0.5b non-embedding %llu",
              (unsigned long long)(pc.total - pc.embedding));
    }
}

static void test_kv(void) {
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-2-7b")->hp, FITLM_TYPE_F16) == 524288, "llama-2-7b kv");
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-3-8b")->hp, FITLM_TYPE_F16) == 131072, "llama-3-8b kv");
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-3-70b")->hp, FITLM_TYPE_F16) == 327680, "llama-3-70b kv");
    /* Q8_0: 34 bytes per 32 values; FP8: 1 byte */
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-3-8b")->hp, FITLM_TYPE_Q8_0) == 131072 / 2.0 * 34 / 32, "q8_0 kv");
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-3-8b")->hp, FITLM_TYPE_F8_E4M3) == 65536, "fp8 kv");
    /* head_dim from the config: Llama-3.2-1B has 32 heads of 64 */
    CHECK(fitlm_kv_bytes_per_token(&preset("llama-3.2-1b")->hp, FITLM_TYPE_F16) == 2.0 * 16 * 8 * 64 * 2,
          "llama-3.2-1b kv");
    CHECK(preset("mistral-7b")->hp.sliding_window == 4096, "mistral sliding window");
}

static void test_weights(void) {
    /* GGUF bits per weight from the block layouts */
    CHECK(fitlm_type_bpw(FITLM_TYPE_Q4_K) == 4.5, "Q4_K bpw");
    CHECK(fitlm_type_bpw(FITLM_TYPE_Q6_K) == 6.5625, "Q6_K bpw");
    CHECK(fitlm_type_bpw(FITLM_TYPE_Q8_0) == 8.5, "Q8_0 bpw");
    double f16 = weights_of("llama-3-70b", "bf16");
    CHECK(near(f16, 141.1e9, 0.005), "llama-3-70b bf16 %.4g", f16);
    CHECK(f16 > 80 * FITLM_GIB, "70B F16 fits 80 GiB?");
    double awq = weights_of("llama-3-70b", "awq");
    CHECK(awq > 35e9 && awq < 40e9, "70B AWQ %.4g", awq);
    double gptq = weights_of("llama-3-70b", "gptq");
    CHECK(gptq > awq && gptq < 40e9, "70B GPTQ %.4g", gptq);
    /* Published GGUF file sizes of Meta-Llama-3-8B-Instruct quantizations by llama.cpp
     * (Hugging Face model pages of the common GGUF re-uploads; the files also hold ~8 MB
     * of tokenizer metadata): Q8_0 8.54 GB, Q6_K 6.60 GB, Q5_K_M 5.73 GB, Q4_K_M 4.92 GB,
     * Q3_K_M 4.02 GB, Q2_K 3.18 GB; Meta-Llama-3-70B-Instruct Q4_K_M 42.52 GB. */
    static const struct {
        const char *m, *q;
        double gb;
    } gg[] = {{"llama-3-8b", "q8_0", 8.54},   {"llama-3-8b", "q6_k", 6.60},   {"llama-3-8b", "q5_k_m", 5.73},
              {"llama-3-8b", "q4_k_m", 4.92}, {"llama-3-8b", "q3_k_m", 4.02}, {"llama-3-8b", "q2_k", 3.18},
              {"llama-3-70b", "q4_k_m", 42.52}};
    for (size_t i = 0; i < sizeof gg / sizeof gg[0]; i++) {
        double b = weights_of(gg[i].m, gg[i].q) + 8e6;
        CHECK(fabs(b / 1e9 - gg[i].gb) <= 0.015, "%s %s: %.3f GB vs published %.2f", gg[i].m, gg[i].q, b / 1e9,
              gg[i].gb);
    }
    /* More llama.cpp quantizations (Hugging Face listings of the common GGUF uploads): Qwen2.5-72B-Instruct
     * Q4_K_M 47.42 GB (its ffn_down rows of 29568 are not whole 256-blocks: the Q5_0/Q8_0 fallback), Qwen2.5-7B-
     * Instruct Q4_K_M 4.68 GB and Q8_0 8.10 GB, Mistral-7B-v0.1 Q4_K_M 4.37 GB and Q8_0 7.70 GB. */
    static const struct {
        const char *m, *q;
        double gb;
    } gg2[] = {{"qwen2.5-72b", "q4_k_m", 47.42}, {"qwen2.5-7b", "q4_k_m", 4.68}, {"qwen2.5-7b", "q8_0", 8.10},
               {"mistral-7b", "q4_k_m", 4.37}, {"mistral-7b", "q8_0", 7.70}};
    for (size_t i = 0; i < sizeof gg2 / sizeof gg2[0]; i++) {
        double b = weights_of(gg2[i].m, gg2[i].q) + 8e6;
        CHECK(fabs(b / 1e9 - gg2[i].gb) <= 0.02, "%s %s: %.3f GB vs published %.2f", gg2[i].m, gg2[i].q, b / 1e9,
              gg2[i].gb);
    }
    /* Published 4-bit checkpoints (Hugging Face file listings, safetensors, group 128):
     * TheBloke/Llama-2-7B-GPTQ 3.90 GB, TheBloke/Llama-2-7B-AWQ 3.89 GB, TheBloke/Llama-2-13B-GPTQ 7.26 GB. */
    CHECK(fabs(weights_of("llama-2-7b", "gptq") / 1e9 - 3.90) < 0.015, "llama-2-7b gptq");
    CHECK(fabs(weights_of("llama-2-7b", "awq") / 1e9 - 3.89) < 0.015, "llama-2-7b awq");
    CHECK(fabs(weights_of("llama-2-13b", "gptq") / 1e9 - 7.26) < 0.015, "llama-2-13b gptq");
    double q8 = weights_of("llama-3-8b", "int8");
    CHECK(q8 > 8.0e9 && q8 < 9.2e9, "int8 %.4g", q8);
}

static void test_zero(void) {
    /* Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N = 64, K = 12 */
    double psi = 7.5e9;
    CHECK(near(fitlm_zero_model_states(psi, 12, 0, 64), 120e9, 1e-12), "baseline");
    CHECK(fabs(fitlm_zero_model_states(psi, 12, 1, 64) / 1e9 - 31.4) < 0.05, "P_os");
    CHECK(fabs(fitlm_zero_model_states(psi, 12, 2, 64) / 1e9 - 16.6) < 0.05, "P_os+g");
    CHECK(fabs(fitlm_zero_model_states(psi, 12, 3, 64) / 1e9 - 1.9) < 0.05, "P_os+g+p");
    /* mixed-precision AdamW: 16 bytes per parameter without partitioning */
    CHECK(fitlm_zero_model_states(1, 12, 0, 1) == 16, "16 B/param");
    for (int n = 1; n <= 1024; n *= 4) {
        CHECK(near(fitlm_zero_model_states(psi, 12, 1, n), 4 * psi + 12 * psi / n, 1e-12), "zero1 n=%d", n);
        CHECK(near(fitlm_zero_model_states(psi, 12, 2, n), 2 * psi + 14 * psi / n, 1e-12), "zero2 n=%d", n);
        CHECK(near(fitlm_zero_model_states(psi, 12, 3, n), 16 * psi / n, 1e-12), "zero3 n=%d", n);
    }
    /* DeepSpeed estimate_zero3_model_states_mem_needs_all_live for t5-small on 1 node x 1 GPU, as
     * printed (GiB, 2 decimals): 60M total params, 16M largest layer:
     *   1.52 | 0.06  offload_param=cpu, offload_optimizer=cpu, zero_init=1
     *   1.35 | 0.17  offload_param=none, offload_optimizer=cpu, zero_init=1
     *   0.09 | 1.08  offload_param=none, offload_optimizer=none, zero_init=1
     *   0.34 | 1.08  offload_param=none, offload_optimizer=none, zero_init=0 */
    double tot = 60506624, big = 16449536, g, c;
    fitlm_deepspeed_zero3_estimate(tot, big, 1, 1, true, true, true, 1.5, &g, &c);
    CHECK(fabs(c / FITLM_GIB - 1.52) < 0.006 && fabs(g / FITLM_GIB - 0.06) < 0.006, "ds z3 offload all %.3f %.3f",
          c / FITLM_GIB, g / FITLM_GIB);
    fitlm_deepspeed_zero3_estimate(tot, big, 1, 1, true, false, true, 1.5, &g, &c);
    CHECK(fabs(c / FITLM_GIB - 1.35) < 0.006 && fabs(g / FITLM_GIB - 0.17) < 0.006, "ds z3 offload opt %.3f %.3f",
          c / FITLM_GIB, g / FITLM_GIB);
    fitlm_deepspeed_zero3_estimate(tot, big, 1, 1, false, false, true, 1.5, &g, &c);
    CHECK(fabs(c / FITLM_GIB - 0.09) < 0.006 && fabs(g / FITLM_GIB - 1.08) < 0.006, "ds z3 %.3f %.3f", c / FITLM_GIB,
          g / FITLM_GIB);
    fitlm_deepspeed_zero3_estimate(tot, big, 1, 1, false, false, false, 1.5, &g, &c);
    CHECK(fabs(c / FITLM_GIB - 0.34) < 0.006, "ds z3 cold %.3f", c / FITLM_GIB);
    /* ZeRO-2 estimator: 4 Psi + 16 Psi / N on the GPU, and the paper's 2 Psi + 14 Psi / N is below it */
    fitlm_deepspeed_zero2_estimate(7.5e9, 8, 8, false, 1.5, &g, &c);
    CHECK(near(g, 4 * 7.5e9 + 16 * 7.5e9 / 64, 1e-9), "ds z2 %.4g", g);
    CHECK(fitlm_zero_model_states(7.5e9, 12, 2, 64) < g, "paper zero2 below DeepSpeed's estimate");
    fitlm_deepspeed_zero2_estimate(7.5e9, 8, 1, true, 1.5, &g, &c);
    CHECK(g == 2 * 7.5e9 && c == 7.5e9 * 32 * 1.5, "ds z2 offload");
}

static double act(double s, double b, double h, double a, int t, bool sp, fitlm_recompute rc) {
    fitlm_act_layer p = {.s = s, .b = b, .h = h, .a = a, .t = t, .sp = sp, .recompute = rc, .gpt_style = true};
    return fitlm_activation_bytes_per_layer(&p);
}

static void test_korthikanti(void) {
    /* Korthikanti et al. 2022 equations (1)-(6) for the paper's configurations (Table 3):
     * 22B (a=64, h=6144), 175B (96, 12288), 530B (128, 20480), 1T (160, 25600); s=2048, t=8. */
    static const double cfg[4][2] = {{64, 6144}, {96, 12288}, {128, 20480}, {160, 25600}};
    double s = 2048, b = 1;
    for (int i = 0; i < 4; i++) {
        double a = cfg[i][0], h = cfg[i][1], t = 8, sbh = s * b * h;
        CHECK(near(act(s, b, h, a, 1, false, FITLM_RECOMPUTE_NONE), sbh * (34 + 5 * a * s / h), 1e-12), "eq1");
        CHECK(near(act(s, b, h, a, 8, false, FITLM_RECOMPUTE_NONE), sbh * (10 + 24 / t + 5 * a * s / (h * t)), 1e-12),
              "eq2 (TP)");
        CHECK(near(act(s, b, h, a, 8, true, FITLM_RECOMPUTE_NONE), sbh / t * (34 + 5 * a * s / h), 1e-12), "eq4 (TP+SP)");
        CHECK(near(act(s, b, h, a, 8, false, FITLM_RECOMPUTE_SELECTIVE), sbh * (10 + 24 / t), 1e-12), "eq5 selective");
        CHECK(near(act(s, b, h, a, 8, true, FITLM_RECOMPUTE_SELECTIVE), sbh * 34 / t, 1e-12), "eq6 TP+SP+selective");
        CHECK(near(act(s, b, h, a, 1, false, FITLM_RECOMPUTE_FULL), 2 * sbh, 1e-12), "full recompute");
    }
    /* The paper's headline: sequence parallelism + selective recomputation cut activation memory
     * about 5x against tensor parallelism alone; Figure 7 puts the combination near 20% of the
     * tensor-parallel baseline for the 530B and 1T models. */
    for (int i = 2; i < 4; i++) {
        double a = cfg[i][0], h = cfg[i][1];
        double base = act(s, b, h, a, 8, false, FITLM_RECOMPUTE_NONE);
        double both = act(s, b, h, a, 8, true, FITLM_RECOMPUTE_SELECTIVE);
        CHECK(fabs(base / both - 5) < 0.1, "%.0fB reduction %.2fx", i == 2 ? 530.0 : 1000.0, base / both);
    }
    /* GPT-3 175B per layer without parallelism: 2048 * 12288 * (34 + 80) bytes = 2.87 GB */
    CHECK(near(act(2048, 1, 12288, 96, 1, false, FITLM_RECOMPUTE_NONE), 2868903936.0, 1e-12), "175B layer");
    /* Llama layer by the same accounting, hand-expanded for Llama-3-8B, s=4096, b=1, t=1:
     * 8sbh + (4sbh + 6 s b ffn) + 4 s b kv d_head + 2 a s^2 b */
    fitlm_act_layer p = {.s = 4096, .b = 1, .h = 4096, .a = 32, .ffn = 14336, .kv_heads = 8, .head_dim = 128, .t = 1};
    double S = 4096, H = 4096;
    double want = 8 * S * H + 4 * S * H + 6 * S * 14336 + 4 * S * 8 * 128 + 2 * 32 * S * S;
    CHECK(near(fitlm_activation_bytes_per_layer(&p), want, 1e-12), "llama layer");
    p.flash = true;
    CHECK(near(fitlm_activation_bytes_per_layer(&p), want - 2 * 32 * S * S + 4 * 32 * S, 1e-12), "llama flash");
}

/* vLLM's profile-run peak (V0 worker): max(forward, sampler), the sampler's part
 * TP-independent; hand-expanded for Llama-3-8B (d 4096, ffn 14336, vocab 128256). */
static void test_vllm_peak(void) {
    fitlm_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.dim = 4096, hp.ffn_dim = 14336, hp.vocab_size = 128256;
    double n = 8192, u = 256.0 * 128256 * 4;
    double fwd1 = n * 2 * (3 * 4096 + 3 * 14336), fwd2 = n * 2 * (3 * 4096 + 3 * 14336 / 2.0);
    double smp = n * 4096 * 2 + (0.5 + 1 + 1 + 2 + 2 + 3) * u; /* 16-bit + fp32 logits, sort values + int64 indices,
                                                               * reverse indices, CUB's alternate buffers */
    CHECK(near(fitlm_vllm_forward_peak(&hp, 8192, 1), fwd1, 1e-12), "forward TP 1");
    CHECK(near(fitlm_vllm_forward_peak(&hp, 8192, 2), fwd2, 1e-12), "forward TP 2");
    CHECK(near(fitlm_vllm_sampler_peak(&hp, 8192, 256), smp, 1e-12), "sampler");
    CHECK(near(fitlm_vllm_activation_peak(&hp, 8192, 1, true), smp, 1e-12), "TP 1: the sampler dominates");
    CHECK(near(fitlm_vllm_activation_peak(&hp, 8192, 2, true), smp, 1e-12), "TP 2: the same peak");
    CHECK(fabs(smp / FITLM_GIB - 1.26) / 1.26 < 0.05, "PR #10511 logged 1.26 GiB: %.3f", smp / FITLM_GIB);
    CHECK(near(fitlm_vllm_activation_peak(&hp, 8192, 1, false), fwd1, 1e-12), "no logits: the forward");
    /* issue #10517: max_model_len 20000 logged 2.07 GiB: the forward phase dominates */
    CHECK(near(fitlm_vllm_activation_peak(&hp, 20000, 1, true), 20000 * 2.0 * (3 * 4096 + 3 * 14336), 1e-12),
          "forward dominates at 20000 tokens");
    /* fewer tokens than max_num_seqs: one row per token */
    CHECK(near(fitlm_vllm_sampler_peak(&hp, 100, 256), 100 * 4096 * 2 + 9.5 * 100 * 128256 * 4, 1e-12), "rows");
}

static void test_comm(void) {
    CHECK(fitlm_allreduce_time(1e9, 1, 1e-5, 1e9) == 0, "n=1");
    CHECK(near(fitlm_allreduce_time(8e9, 8, 0, 100e9), 2.0 * 7 / 8 * 8e9 / 100e9, 1e-12), "ring volume");
    CHECK(near(fitlm_allreduce_time(0.0001, 4, 1e-5, 1e12), 6e-5, 1e-3), "latency term");
    CHECK(fitlm_pipeline_bubble(1, 8) == 0, "no bubble");
    CHECK(near(fitlm_pipeline_bubble(4, 8), 3.0 / 11, 1e-12), "bubble (p-1)/(m+p-1)");
    CHECK(near(fitlm_pipeline_bubble_interleaved(4, 8, 1), 3.0 / 11, 1e-12), "interleaved x1 = plain 1F1B");
    CHECK(near(fitlm_pipeline_bubble_interleaved(16, 16, 4), 15.0 / 79, 1e-12), "interleaved: (p-1)/(v m + p-1)");
    CHECK(fitlm_pipeline_bubble_interleaved(1, 16, 4) == 0, "no pipeline, no bubble");
    /* micro-batches in flight: 1F1B stage s holds min(m, p - s) */
    CHECK(fitlm_pipeline_inflight(16, 0, 32, 1) == 16 && fitlm_pipeline_inflight(16, 15, 32, 1) == 1, "1F1B");
    CHECK(fitlm_pipeline_inflight(16, 0, 8, 1) == 8, "1F1B, fewer micro-batches than stages");
    /* interleaved, first device: Korthikanti 4.2.3's p (1 + (p-1)/(p v)) */
    for (int v = 2; v <= 8; v *= 2)
        CHECK(near(fitlm_pipeline_inflight(16, 0, 32, v), 16 * (1 + 15.0 / (16 * v)), 1e-12), "interleaved x%d", v);
    /* a later device: Megatron-LM's warm-up (p - s - 1) 2 + (v - 1) p chunks + 1, chunks of 1/v of the stage */
    CHECK(near(fitlm_pipeline_inflight(16, 1, 32, 8), (28 + 7 * 16 + 1) / 8.0, 1e-12), "interleaved, stage 1");
    /* m = p: the warm-up reaches every micro-batch (Megatron: all_warmup_microbatches): all m in flight */
    CHECK(fitlm_pipeline_inflight(16, 0, 16, 4) == 16 && fitlm_pipeline_inflight(16, 1, 16, 8) == 16, "m = p");
}

static void test_catalog(void) {
    fitlm_catalog cat;
    fitlm_error err = {{0}};
    CHECK(fitlm_catalog_load_builtin(&cat, &err) == 0, "%s", err.msg);
    static const char *const need[] = {"RTX-3090", "RTX-4090", "RTX-5090", "A10G", "L4", "L40S", "RTX-A6000",
                                       "A100-40GB", "A100-80GB", "H100-PCIe", "H100-SXM", "H200", "B200", "MI300X"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        int g = fitlm_catalog_find(&cat, need[i]);
        CHECK(g >= 0, "catalog lacks %s", need[i]);
        if (g < 0) continue;
        const fitlm_gpu *x = &cat.gpus[g];
        CHECK(x->memory_bytes > 0 && x->mem_bw > 0 && x->bf16_flops > 0 && x->spec_source[0] && x->spec_date[0] &&
                  x->cloud_source[0] && x->price_date[0],
              "%s incomplete", need[i]);
    }
    CHECK(fitlm_catalog_find(&cat, "h100") == fitlm_catalog_find(&cat, "H100-SXM"), "alias");
    CHECK(fitlm_catalog_find(&cat, "no-such-gpu") < 0, "unknown");
    /* device names as drivers report them (nvidia-smi, Vulkan's deviceName)
     * to the catalog card, or none for a variant the catalog lacks */
    static const struct { const char *device, *entry; } dev[] = {
        {"NVIDIA H100 80GB HBM3", "H100-SXM"},       {"NVIDIA H100 PCIe", "H100-PCIe"},
        {"NVIDIA H100 NVL", "H100-NVL"},             {"NVIDIA H200", "H200"},
        {"NVIDIA H200 NVL", NULL},                   {"NVIDIA B200", "B200"},
        {"NVIDIA A100-SXM4-80GB", "A100-80GB"},      {"NVIDIA A100-SXM4-40GB", "A100-40GB"},
        {"NVIDIA A100 80GB PCIe", "A100-PCIe-80GB"}, {"NVIDIA A100-PCIE-40GB", NULL},
        {"NVIDIA L40S", "L40S"},                     {"NVIDIA L40", "L40"},
        {"NVIDIA L4", "L4"},                         {"NVIDIA A10G", "A10G"},
        {"Tesla T4", "T4"},                          {"NVIDIA RTX A6000", "RTX-A6000"},
        {"NVIDIA RTX 6000 Ada Generation", NULL},    {"NVIDIA GeForce RTX 3090", "RTX-3090"},
        {"NVIDIA GeForce RTX 3090 Ti", NULL},        {"NVIDIA GeForce RTX 4090", "RTX-4090"},
        {"NVIDIA GeForce RTX 4090 D", NULL},         {"NVIDIA GeForce RTX 4090 Laptop GPU", NULL},
        {"NVIDIA GeForce RTX 5090", "RTX-5090"},     {"AMD Instinct MI300X", "MI300X"},
        {"AMD Instinct MI325X", "MI325X"},           {"llvmpipe (LLVM 15.0.6, 256 bits)", NULL},
        {"AMD Radeon PRO W7900", NULL},              {"", NULL},
    };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) {
        int got = fitlm_catalog_match_device(&cat, dev[i].device);
        int want = dev[i].entry ? fitlm_catalog_find(&cat, dev[i].entry) : -1;
        CHECK(got == want && (!dev[i].entry || want >= 0), "device '%s': entry %d, want %s (%d)", dev[i].device, got,
              dev[i].entry ? dev[i].entry : "none", want);
    }
    /* datasheet figures, dense */
    int h = fitlm_catalog_find(&cat, "H100-SXM");
    CHECK(cat.gpus[h].bf16_flops == 989e12 && cat.gpus[h].mem_bw == 3350e9, "H100 SXM datasheet");
    fitlm_catalog_add_host_cpu(&cat);
    int c = fitlm_catalog_find(&cat, "cpu");
    CHECK(c >= 0 && cat.gpus[c].is_cpu && cat.gpus[c].memory_bytes > 0, "host cpu");
    CHECK(fitlm_catalog_add_json(&cat, "{\"gpus\":[{\"name\":\"X\",\"memory_gib\":-1}]}", "t", &err) == -1,
          "negative memory accepted");
    CHECK(fitlm_catalog_add_json(&cat, "[", "t", &err) == -1, "bad json accepted");
    fitlm_catalog_free(&cat);
}

int main(void) {
    fitlm_error err = {{0}};
    CHECK(fitlm_preset_count(&err) > 0, "%s", err.msg);
    test_params();
    test_kv();
    test_weights();
    test_zero();
    test_korthikanti();
    test_vllm_peak();
    test_comm();
    test_catalog();
    return check_report();
}
