/* The published formulas the planner is built on, each as a small function
 * (sources in docs/planner.md and next to each function). */
#include <math.h>
#include <string.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

double fitlm_kv_type_bytes(int kv_type) {
    if (kv_type == FITLM_TYPE_F8_E4M3 || kv_type == FITLM_TYPE_F8_E5M2) return 1.0;
    const fitlm_type_info *ti = fitlm_type_get(kv_type);
    if (!ti) return 0;
    return (double)ti->block_bytes / ti->block_size;
}

/* 2 (K and V) x layers x KV heads x head_dim x bytes per element. */
double fitlm_kv_bytes_per_token(const fitlm_hparams *hp, int kv_type) {
    return 2.0 * hp->n_layers * hp->n_kv_heads * hp->head_dim * fitlm_kv_type_bytes(kv_type);
}

/* Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
 * Parameter Models" (SC 2020), Section 5 / Figure 1: mixed-precision training
 * keeps 2Psi fp16 weights + 2Psi fp16 gradients + K*Psi optimizer states
 * (K = 12 for Adam: fp32 weights, momentum, variance). P_os partitions the K
 * term, P_os+g also the gradients, P_os+g+p everything, over N devices. */
double fitlm_zero_model_states(double psi, double k, int stage, int n) {
    if (n < 1) n = 1;
    switch (stage) {
    case 0: return (2 + 2 + k) * psi;
    case 1: return 4 * psi + k * psi / n;
    case 2: return 2 * psi + (2 + k) * psi / n;
    default: return (2 + 2 + k) * psi / n;
    }
}

/* DeepSpeed, deepspeed/runtime/zero/stage_1_and_2.py
 * estimate_zero2_model_states_mem_needs (as documented on the "Memory
 * Requirements" page of the DeepSpeed docs). */
void fitlm_deepspeed_zero2_estimate(double params, int gpus_per_node, int nodes, bool cpu_offload,
                                    double buffer_factor, double *gpu_bytes, double *cpu_bytes) {
    double total_gpus = (double)gpus_per_node * nodes;
    if (cpu_offload) {
        *gpu_bytes = 2 * params;
        *cpu_bytes = params * fmax(4 * total_gpus, 16) * buffer_factor;
    } else {
        *gpu_bytes = 4 * params + floor(16 * params / total_gpus);
        *cpu_bytes = params * 4 * gpus_per_node * buffer_factor;
    }
}

/* DeepSpeed, deepspeed/runtime/zero/stage3.py estimate_zero3_model_states_mem_needs. */
void fitlm_deepspeed_zero3_estimate(double params, double largest_layer_params, int gpus_per_node, int nodes,
                                    bool cpu_offload, bool cpu_offload_params, bool zero_init, double buffer_factor,
                                    double *gpu_bytes, double *cpu_bytes) {
    double total_gpus = (double)gpus_per_node * nodes;
    double gpus_factor = 1.0 / nodes;
    double largest = 4 * largest_layer_params;
    if (cpu_offload) {
        if (cpu_offload_params) {
            *gpu_bytes = largest;
            *cpu_bytes = zero_init ? params * 18 * gpus_factor * buffer_factor
                                   : params * fmax(4.0 * gpus_per_node, 18 * gpus_factor) * buffer_factor;
        } else {
            *gpu_bytes = largest + floor(2 * params / total_gpus);
            *cpu_bytes = zero_init ? params * 16 * gpus_factor * buffer_factor
                                   : params * fmax(4.0 * gpus_per_node, 16 * gpus_factor) * buffer_factor;
        }
    } else {
        *gpu_bytes = largest + floor(18 * params / total_gpus);
        *cpu_bytes = zero_init ? largest_layer_params * 4 * gpus_per_node * buffer_factor
                               : params * 4 * gpus_per_node * buffer_factor;
    }
}

/* Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
 * Models" (MLSys 2023, arXiv:2205.05198), Section 4. Bytes per layer with
 * 16-bit activations, split into the part outside the tensor-parallel region
 * (replicated unless sequence parallelism splits it), the part inside it, and
 * the attention-core part that grows with s^2 (dropped by selective
 * recomputation and by FlashAttention).
 *
 * GPT layer (the paper's): outside = LayerNorm inputs 4sbh + QKV input 2sbh +
 * MLP input 2sbh + two dropout masks 2sbh = 10sbh; inside = Q,K 4sbh + V 2sbh +
 * projection input 2sbh + GeLU input 8sbh + fc2 input 8sbh = 24sbh; core =
 * softmax 2as^2b + dropout mask as^2b + dropout output 2as^2b = 5as^2b.
 * Sum: sbh(34 + 5as/h), the paper's equation (1).
 *
 * Llama layer (same accounting): outside = RMSNorm inputs 4sbh + QKV input 2sbh
 * + MLP input 2sbh = 8sbh; inside = Q 2sbh + K,V 2*2sb*kv*d_head + attention
 * output 2sbh + gate out, up out, down input 3*2sb*ffn; core = softmax 2as^2b
 * (no dropout); FlashAttention keeps a fp32 log-sum-exp 4asb instead. */
double fitlm_activation_bytes_per_layer(const fitlm_act_layer *p) {
    double s = p->s, b = p->b, h = p->h, a = p->a, t = p->t > 0 ? p->t : 1;
    if (p->recompute == FITLM_RECOMPUTE_FULL) return 2 * s * b * h / (p->sp ? t : 1);
    double outside, inside, core;
    if (p->gpt_style) {
        outside = 10 * s * b * h;
        inside = 24 * s * b * h;
        core = 5 * a * s * s * b;
    } else {
        double kv_dev = p->kv_heads / t; /* KV heads per device; replicated when t > kv_heads */
        if (kv_dev < 1) kv_dev = 1;
        outside = 8 * s * b * h;
        inside = (4 * s * b * h + 3 * 2 * s * b * p->ffn) / t + 2 * 2 * s * b * kv_dev * p->head_dim;
        inside *= t; /* expressed before the /t below */
        core = 2 * a * s * s * b;
    }
    if (p->flash) core = 4 * a * s * b; /* only the fp32 log-sum-exp per row */
    if (p->recompute == FITLM_RECOMPUTE_SELECTIVE && !p->flash) core = 0;
    return (p->sp ? outside / t : outside) + inside / t + core / t;
}

/* Ring all-reduce (Patarasuk & Yuan 2009; NCCL's performance notes): 2(n-1)
 * steps, each moving bytes/n, so 2(n-1)/n * bytes per device, plus the
 * per-step latency alpha. */
double fitlm_allreduce_time(double bytes, int n, double alpha_s, double bw) {
    if (n <= 1 || bytes <= 0) return 0;
    return 2.0 * (n - 1) * alpha_s + 2.0 * (n - 1) / n * bytes / bw;
}

/* GPipe / Megatron-LM (Narayanan et al. 2021): with p stages and m
 * micro-batches the bubble is (p-1)/(m+p-1) of the time. */
double fitlm_pipeline_bubble_interleaved(int p, int m, int v) {
    if (p <= 1) return 0;
    if (m < 1) m = 1;
    if (v < 1) v = 1;
    return (double)(p - 1) / ((double)v * m + p - 1);
}

double fitlm_pipeline_inflight(int p, int stage, int m, int v) {
    if (p < 1) p = 1;
    if (m < 1) m = 1;
    if (v < 1) v = 1;
    if (stage < 0) stage = 0;
    if (stage > p - 1) stage = p - 1;
    if (v == 1 || p == 1) return (double)(m < p - stage ? m : p - stage);
    double chunks = 2.0 * (p - stage - 1) + (double)(v - 1) * p + 1;
    if (chunks > (double)v * m) chunks = (double)v * m;
    return chunks / v;
}

double fitlm_pipeline_bubble(int p, int m) {
    if (p <= 1) return 0;
    if (m < 1) m = 1;
    return (double)(p - 1) / (double)(m + p - 1);
}

/* vLLM's profile run (vLLM 0.6-0.8, V0 worker; "PyTorch activation peak
 * memory" in its start-up log) has two phases whose peaks do not add up:
 *
 * forward: the MLP of all n tokens at once, 16-bit: residual, norm output and
 *   MLP input (3 x d), gate/up output (2 x ffn/t) and the activated product
 *   (ffn/t) -- the only phase that shrinks with TP;
 * sampler: after the forward pass (its final hidden states, n x d 16-bit, still
 *   held) the driver rank -- the one whose KV budget vLLM takes -- gathers the
 *   full-vocabulary logits of the last token of min(n, max_num_seqs = 256)
 *   dummy sequences and samples them with top_k = vocab - 1, top_p = 0.99 "to
 *   reflect the accurate memory usage" (worker/model_runner.py profile_run).
 *   Sampler._apply_top_k_top_p starts with logits.sort(): with U = rows x
 *   vocab x 4 bytes, alive at that moment are the caller's 16-bit logits (U/2),
 *   their fp32 copy (U), the sorted values (U) and int64 indices (2U),
 *   PyTorch's int64 reverse indices (2U, SortStable.cu segmented_sort_pairs)
 *   and CUB's alternate key and value buffers of the non-DoubleBuffer
 *   SortPairs (3U): 9.5 U, independent of TP.
 *
 * Llama-3-8B, 8192 tokens: forward 0.84 GiB at TP 1 (0.52 at TP 2), sampler
 * 1.22 GiB at both: vLLM logged 1.26 GiB at TP 1 and TP 2 (PR #10511). */
double fitlm_vllm_forward_peak(const fitlm_hparams *hp, uint32_t n_tokens, int tp) {
    if (tp < 1) tp = 1;
    double n = n_tokens, d = hp->dim, f = (double)hp->ffn_dim / tp;
    return n * 2.0 * (3.0 * d + 3.0 * f);
}

double fitlm_vllm_sampler_peak(const fitlm_hparams *hp, uint32_t n_tokens, uint32_t max_num_seqs) {
    double n = n_tokens, rows = n < max_num_seqs ? n : max_num_seqs;
    double u = rows * (double)hp->vocab_size * 4.0;
    return n * (double)hp->dim * 2.0 + FITLM_VLLM_SORT_UNITS * u;
}

double fitlm_vllm_activation_peak(const fitlm_hparams *hp, uint32_t max_num_batched_tokens, int tp, bool with_logits) {
    double fwd = fitlm_vllm_forward_peak(hp, max_num_batched_tokens, tp);
    if (!with_logits) return fwd;
    return fmax(fwd, fitlm_vllm_sampler_peak(hp, max_num_batched_tokens, FITLM_VLLM_MAX_NUM_SEQS));
}

void fitlm_vllm_capacity_compute(const fitlm_hparams *hp, double weights_per_gpu, double total_gpu_memory, int tp,
                                 int kv_type, uint32_t max_num_batched_tokens, uint32_t request_len, double util,
                                 fitlm_vllm_capacity *out) {
    memset(out, 0, sizeof *out);
    if (tp < 1) tp = 1;
    out->total_gpu_memory = total_gpu_memory;
    out->budget = total_gpu_memory * util;
    out->weights = weights_per_gpu;
    out->non_torch = tp > 1 ? FITLM_VLLM_NON_TORCH_TPN : FITLM_VLLM_NON_TORCH_TP1;
    out->activation_peak = fitlm_vllm_activation_peak(hp, max_num_batched_tokens, tp, true);
    out->kv_memory = out->budget - out->weights - out->non_torch - out->activation_peak;
    if (out->kv_memory < 0) out->kv_memory = 0;
    double kv_heads = (double)hp->n_kv_heads / tp;
    if (kv_heads < 1) kv_heads = 1;
    double per_token = 2.0 * hp->n_layers * kv_heads * hp->head_dim * fitlm_kv_type_bytes(kv_type);
    out->kv_blocks = per_token > 0 ? floor(out->kv_memory / (per_token * 16)) : 0;
    out->kv_tokens = out->kv_blocks * 16;
    out->max_concurrency = request_len ? out->kv_tokens / request_len : 0;
}
