/* Serving-engine profiles for GPU plans (`fitlm plan --engine`). What each
 * figure is and where it comes from: docs/planner.md, "Engine profiles". */
#include <string.h>
#include <strings.h>

#include "planner/planner.h"

/* llama.cpp's quantized matrix multiplication (MMQ, int8 tensor cores) reaches
 * about 21 % of the dense INT8 peak on GeForce cards: fitted to two published
 * llama-bench prefill figures (Llama-3-8B Q4_0 pp512 on an RTX 4090, 23.7 %;
 * Q6_K pp2048 on an RTX 3090, 19.1 %; tests/test_plan_validation.py rows
 * marked as calibration). */
#define LLAMACPP_MMQ_EFF 0.21

/* vLLM's fixed time per layer and decode step (V0, CUDA graphs on, batch 1):
 * small models expose it, their weights stream in well under a millisecond.
 * Qwen's own speed benchmark (vLLM 0.6.3 and 0.4.2 on an A100 80GB, BF16,
 * 2048 tokens from a 1-token prompt) measured Qwen2.5-0.5B / Qwen2-0.5B at
 * 3.21 / 3.70 ms per token where the weight stream takes 0.6 ms: about
 * 100-120 us for each of its 24 layers (a dozen kernels, each a few us at
 * this size). Fitted to those two rows (the mean of their per-layer excess);
 * the 1.5B, 3B and 7B rows of the same benchmarks check it
 * (tests/test_plan_validation.py). A fit of time = a + b x layers + bytes /
 * bandwidth over all of them leaves no per-step term (a < 0.1 ms). */
#define VLLM_PER_LAYER_S 117e-6

/* vLLM's weight-only quantized GEMMs (GPTQ and AWQ 4-bit, GPTQ 8-bit: the
 * Marlin kernels on an A100) at batch 1 take at least about this long each,
 * however small the matrix. Qwen's benchmark above measured Qwen2.5-0.5B
 * GPTQ-Int4 / AWQ / GPTQ-Int8 at 3.83 / 3.82 / 3.89 ms per token against
 * BF16's 3.21 while reading a quarter to half of BF16's layer bytes: with
 * bytes alone the plan was 20-23 % fast. Fitted to those three rows (each
 * layer's four GEMMs, merged QKV, output, merged gate/up and down, all below
 * the floor at hidden 896: 34 us per layer where their bytes take about 5).
 * Qwen2.5-7B's rows check it: its QKV and output GEMMs are below the floor,
 * which adds 0.22 ms to the Int4 step, where the measurement is 0.40 ms above
 * the bytes-only figure; at 14B only the output GEMM is below it
 * (tests/test_plan_validation.py). */
#define VLLM_WO_GEMM_MIN_S 8.5e-6

/* ExLlama's fixed time per decode step (Python drives each layer's kernels,
 * no CUDA graphs): 0.98 ms on an RTX 4090, fitted to its author's LLaMA-7B
 * "Best" row (173 tok/s); the 13B and 33B rows and MLC's two ExLlama rows
 * check it. ExLlamaV2's README shows the same order on a 4090 (TinyLlama-1.1B
 * at 4.0 bpw: 643 tok/s, 1.55 ms per token for 0.53 GB of weights). */
#define EXLLAMA_PER_STEP_S 0.98e-3

static const fitlm_engine_profile k_engines[FITLM_ENGINE_COUNT] = {
    [FITLM_ENGINE_GENERIC] = {.name = "generic", .label = "engine-neutral model", .vllm_memory = false,
                              .default_margin = 0.05, .default_chunk = 0, .kv_paged = false, .window_frees = true,
                              .fp16_acc16 = false, .int8_prefill = false, .int8_eff = 0, .per_layer_s = 0,
                              .per_step_s = 0},
    /* vLLM: start-up memory profile, paged KV (16-token blocks), v1's sliding-window
     * manager frees blocks outside the window; PyTorch GEMMs accumulate in FP32 */
    [FITLM_ENGINE_VLLM] = {.name = "vllm", .label = "vLLM", .vllm_memory = true, .default_margin = 0.10,
                           .default_chunk = 0, .kv_paged = true, .window_frees = true, .fp16_acc16 = false,
                           .int8_prefill = false, .int8_eff = 0, .per_layer_s = VLLM_PER_LAYER_S, .per_step_s = 0,
                           .wo_gemm_min_s = VLLM_WO_GEMM_MIN_S},
    /* llama.cpp: one contiguous KV cache for the full context of every sequence
     * (no sliding-window cache for the Llama/Mistral/Qwen2 architectures), n_ubatch
     * 512, cuBLAS F16 GEMMs with FP16 accumulation, quantized prefill on MMQ */
    [FITLM_ENGINE_LLAMACPP] = {.name = "llama.cpp", .label = "llama.cpp", .vllm_memory = false,
                               .default_margin = 0.05, .default_chunk = 512, .kv_paged = false,
                               .window_frees = false, .fp16_acc16 = true, .int8_prefill = true,
                               .int8_eff = LLAMACPP_MMQ_EFF, .per_layer_s = 0, .per_step_s = 0,
                               .kv_with_layer = true},
    /* TensorRT-LLM: paged KV (blocks for the tokens in use), cyclic KV for a
     * sliding window; weight-only INT8/INT4 dequantize into FP16 GEMMs */
    [FITLM_ENGINE_TRTLLM] = {.name = "trt-llm", .label = "TensorRT-LLM", .vllm_memory = false,
                             .default_margin = 0.05, .default_chunk = 0, .kv_paged = true, .window_frees = true,
                             .fp16_acc16 = false, .int8_prefill = false, .int8_eff = 0, .per_layer_s = 0,
                             .per_step_s = 0},
    /* fitlm's own GPU backend: contiguous KV of round16(context) per sequence,
     * full attention; layers left on the host run there (backend/split.h) */
    [FITLM_ENGINE_FITLM] = {.name = "fitlm", .label = "fitlm", .vllm_memory = false, .default_margin = 0.05,
                            .default_chunk = 512, .kv_paged = false, .window_frees = false, .fp16_acc16 = false,
                            .int8_prefill = false, .int8_eff = 0, .per_layer_s = 0, .per_step_s = 0,
                            .host_layers_on_cpu = true, .kv_with_layer = true},
    /* ExLlama (v1, turboderp/exllama): one contiguous cache of max_seq_len per
     * sequence, the prompt in one forward of up to max_input_len (2048) tokens,
     * decode on its own 4-bit kernels; a prompt's GEMMs reconstruct the GPTQ
     * matrix to FP16 and call cublasHgemm (FP16 accumulate) on sm_70 and later
     * (exllama_ext/cuda_func/q4_matmul.cu, q4_matmul_recons_cuda) */
    [FITLM_ENGINE_EXLLAMA] = {.name = "exllama", .label = "ExLlama", .vllm_memory = false, .default_margin = 0.05,
                              .default_chunk = 2048, .kv_paged = false, .window_frees = false, .fp16_acc16 = true,
                              .int8_prefill = false, .dequant_acc16 = true, .int8_eff = 0, .per_layer_s = 0,
                              .per_step_s = EXLLAMA_PER_STEP_S},
};

const fitlm_engine_profile *fitlm_engine_profile_get(fitlm_engine e) {
    if ((int)e < 0 || e >= FITLM_ENGINE_COUNT) e = FITLM_ENGINE_GENERIC;
    return &k_engines[e];
}

int fitlm_engine_parse(const char *s, fitlm_engine *e) {
    static const struct { const char *name; fitlm_engine e; } names[] = {
        {"generic", FITLM_ENGINE_GENERIC}, {"vllm", FITLM_ENGINE_VLLM},          {"llama.cpp", FITLM_ENGINE_LLAMACPP},
        {"llamacpp", FITLM_ENGINE_LLAMACPP}, {"llama-cpp", FITLM_ENGINE_LLAMACPP}, {"trt-llm", FITLM_ENGINE_TRTLLM},
        {"trtllm", FITLM_ENGINE_TRTLLM},   {"tensorrt-llm", FITLM_ENGINE_TRTLLM}, {"fitlm", FITLM_ENGINE_FITLM},
        {"exllama", FITLM_ENGINE_EXLLAMA},
    };
    if (!s) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name)) {
            *e = names[i].e;
            return 0;
        }
    return -1;
}
