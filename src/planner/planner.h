/* fitlm's planner: memory, time and cost of running or training a model on a
 * layout of accelerators, and the search for the best layout.
 *
 * Everything is computed from the shared model description (fitlm_hparams) plus,
 * when the model came from a file, its exact tensor bytes. Every formula is
 * documented with its source in docs/planner.md.
 *
 * Pieces (one file each):
 *   catalog.c   GPU catalog (data/gpus.json compiled in, --gpus-file, host CPU)
 *   presets.c   built-in model presets (data/models.json compiled in) and the
 *               HF config.json -> fitlm_hparams reader they use
 *   weights.c   weight formats (F16 ... GPTQ/AWQ ... GGUF types and mixes) and
 *               the bytes of every tensor under each
 *   formulas.c  the published formulas (KV cache, ZeRO, DeepSpeed estimators,
 *               Korthikanti activations, ring all-reduce, pipeline bubble)
 *   estimate.c  one layout -> memory per device, time, cost
 *   search.c    enumerate layouts, drop infeasible ones, rank, explain failures
 *   report.c    text table, JSON (stable schema) and SVG
 */
#ifndef FITLM_PLANNER_PLANNER_H
#define FITLM_PLANNER_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "util/error.h"

#define FITLM_GIB 1073741824.0

/* ------------------------------------------------------------------ catalog */

typedef struct fitlm_gpu {
    char name[48];
    char aliases[8][48];
    int n_aliases;
    char vendor[24];
    char arch[96];
    char link[48];          /* "NVLink 4", "Infinity Fabric", "PCIe", ... */
    double memory_bytes;    /* device memory */
    double usable_memory_bytes; /* what the driver leaves a process (ECC, reserved); = memory_bytes when unknown */
    double mem_bw;          /* bytes/s */
    double fp16_flops;      /* dense tensor FLOP/s, FP16 (FP32 accumulate) */
    double bf16_flops;
    double fp8_flops;       /* 0 = no FP8 tensor cores */
    double fp16_acc16_flops; /* dense FP16 with FP16 accumulate (GeForce: 2x fp16_flops); 0 = same as fp16_flops */
    double int8_ops;
    double link_bw;         /* peer link bytes/s, both directions together; 0 = PCIe only */
    int link_max_gpus;      /* GPUs joined by that link */
    double internode_bw;    /* bytes/s per GPU between nodes (catalog internode_gbs; default by class) */
    int pcie_gen;
    int max_per_node;
    double tdp_w;
    double purchase_usd;    /* 0 = unknown */
    double cloud_usd_per_hour; /* 0 = unknown / not rentable */
    bool purchase_estimate, cloud_estimate;
    bool is_cpu;            /* the host CPU entry */
    bool bw_measured;       /* CPU: bandwidth measured rather than estimated */
    int cpu_cores;
    char spec_source[320];
    char spec_date[24];
    char purchase_source[200];
    char cloud_source[200];
    char price_date[24];
    char origin[160];       /* "built-in catalog", a --gpus-file path, "detected" */
    /* measured by `fitlm calibrate --device` through fitlm's own GPU backend
     * (planner/gpu_cost.h): mem_bw and the 16-bit FLOP/s are what its kernels
     * reach on one model's weight types, so the planner takes them at 100 %
     * (not its assumed efficiencies), and with --engine fitlm its fixed costs */
    bool measured;
    double measured_per_layer_s, measured_per_step_s;
} fitlm_gpu;

struct fitlm_host_profile;

typedef struct fitlm_catalog {
    fitlm_gpu *gpus; /* owned */
    size_t n, cap;
    /* the measured host (planner/cpu_cost.h) the CPU entry and its cost model
     * use; owned, NULL = assumed figures */
    struct fitlm_host_profile *host_profile;
    char host_profile_path[512];
} fitlm_catalog;

/* Loads the built-in catalog (data/gpus.json compiled into the binary) into an
 * empty catalog. 0 ok, -1 with err. Free with fitlm_catalog_free(). */
int fitlm_catalog_load_builtin(fitlm_catalog *cat, fitlm_error *err);
/* Adds (or replaces, by name) the entries of a catalog JSON text. origin names
 * the source in messages. Every field is range-checked. 0 ok, -1 with err. */
int fitlm_catalog_add_json(fitlm_catalog *cat, const char *json_text, const char *origin, fitlm_error *err);
/* Adds the CPU of this machine (cores and memory from /proc, bandwidth and
 * FLOP/s estimated). Always succeeds (falls back to conservative figures). */
void fitlm_catalog_add_host_cpu(fitlm_catalog *cat);
/* The GPU `d` measured by `fitlm calibrate --device` (planner/gpu_cost.h), at
 * the rates its kernels reach on one model's weight types (bw bytes/s, flops
 * FLOP/s): the catalog entry `matched` (>= 0: the card its name matched) turns
 * into it, else a new entry named after the device is added. Returns its
 * index, -1 when out of memory. */
struct fitlm_device_rates;
int fitlm_catalog_use_device(fitlm_catalog *cat, int matched, const struct fitlm_device_rates *d, double bw,
                             double flops);
/* Takes a host profile (fitlm calibrate) for the CPU entry: bandwidth and
 * FLOP/s from it, and the cost model's measured rates. The catalog takes
 * ownership of p (freed by fitlm_catalog_free). path names it in reports. */
void fitlm_catalog_use_profile(fitlm_catalog *cat, struct fitlm_host_profile *p, const char *path);
/* Replaces the host CPU's estimated memory bandwidth by a measurement (about
 * 0.1 s: a 256 MiB read on n_threads threads, <= 0 = physical cores). */
void fitlm_catalog_measure_host(fitlm_catalog *cat, int n_threads);
/* Finds by name or alias (case-insensitive, '_' and ' ' count as '-'); -1 if none. */
int fitlm_catalog_find(const fitlm_catalog *cat, const char *name);
/* The catalog entry of a device as its driver names it ("NVIDIA H100 80GB
 * HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090", "Tesla T4", "AMD
 * Instinct MI300X"), by the words of the name; -1 when no entry is that card
 * (a variant the catalog lacks, such as an RTX 3090 Ti or an H200 NVL, or a
 * CPU driver such as llvmpipe). */
int fitlm_catalog_match_device(const fitlm_catalog *cat, const char *device_name);
void fitlm_catalog_free(fitlm_catalog *cat);

/* ------------------------------------------------------------------ presets */

typedef struct fitlm_preset_info {
    char name[64];
    char source[200];
    uint64_t published_params;
    fitlm_hparams hp;
    int native_type; /* FITLM_TYPE_BF16 / F16 / F32 from torch_dtype */
} fitlm_preset_info;

/* Number of built-in presets, and preset i (0 <= i < count). The embedded data
 * is parsed once on first use; returns -1 with err if it is broken. */
int fitlm_preset_count(fitlm_error *err);
const fitlm_preset_info *fitlm_preset_at(int i);
/* Finds a preset by name or alias (case-insensitive). NULL if none. */
const fitlm_preset_info *fitlm_preset_find(const char *name);

/* ------------------------------------------------------------------ model */

/* What the planner knows about the model. */
typedef struct fitlm_plan_model {
    char name[128];
    char source[256];   /* preset source URL or file path */
    fitlm_hparams hp;
    uint64_t params;    /* parameter count from the hyperparameters */
    int native_type;
    /* Exact bytes when the model came from a file with weights (GGUF / safetensors). */
    bool from_file;
    uint64_t file_weight_bytes;
    char file_format[24];
    char file_type_name[32]; /* "file:Q4_K", "file:BF16", ... (dominant tensor type) */
    double *file_layer_bytes; /* n_layers entries, owned (NULL if not from a file) */
    double file_embd_bytes, file_output_bytes, file_other_bytes;
} fitlm_plan_model;

/* Fills m from a preset name, a GGUF file, an HF folder or a config.json (files go
 * through the shared model loader, fitlm_model_open in inspect mode). 0 ok, -1 with
 * err ("unknown model 'x' ..."). The caller frees m's buffers with fitlm_plan_model_free(). */
int fitlm_plan_model_open(fitlm_plan_model *m, const char *spec, fitlm_error *err);
void fitlm_plan_model_free(fitlm_plan_model *m);

/* Parameters by component (from hyperparameters). */
typedef struct fitlm_param_counts {
    uint64_t embedding, output, per_layer, per_layer_linear, norms_final, total;
    uint64_t largest_layer; /* largest single weight tensor (for ZeRO-3 gather, DeepSpeed) */
} fitlm_param_counts;
void fitlm_plan_param_counts(const fitlm_hparams *hp, fitlm_param_counts *pc);

/* ------------------------------------------------------------------ weights */

typedef enum fitlm_wkind {
    FITLM_W_PLAIN = 0, /* F32 / F16 / BF16 / FP8 for every tensor (norms 16-bit or F32) */
    FITLM_W_INT8,      /* INT8 weight-only, per-output-channel 16-bit scale; embeddings/output 16-bit */
    FITLM_W_GPTQ,      /* 4-bit, group g: 16-bit scale + 4-bit zero per group, int32 g_idx; emb/output 16-bit */
    FITLM_W_AWQ,       /* 4-bit, group g: 16-bit scale + 4-bit zero per group; emb/output 16-bit */
    FITLM_W_GGUF,      /* one GGUF type for all 2-D tensors; norms F32 */
    FITLM_W_GGUF_MIX,  /* llama.cpp-style file types (Q4_K_M, ...) */
    FITLM_W_FILE,      /* exact bytes of the loaded file */
} fitlm_wkind;

typedef enum fitlm_gguf_mix { FITLM_MIX_Q2_K, FITLM_MIX_Q3_K_M, FITLM_MIX_Q4_K_S, FITLM_MIX_Q4_K_M, FITLM_MIX_Q5_K_M } fitlm_gguf_mix;

typedef enum fitlm_compute_path { FITLM_COMPUTE_16 = 0, FITLM_COMPUTE_FP8, FITLM_COMPUTE_F32 } fitlm_compute_path;

typedef struct fitlm_wformat {
    char name[32];
    fitlm_wkind kind;
    int type;      /* fitlm_type for PLAIN / GGUF */
    int group;     /* GPTQ/AWQ group size */
    fitlm_gguf_mix mix;
    bool is_4bit_or_less;
} fitlm_wformat;

/* Parses "bf16", "f16", "f32", "fp8", "int8", "gptq", "gptq-g64", "awq", "awq-g128",
 * "q4_k_m", "q8_0", any GGUF type name, ... 0 ok, -1 with err. */
int fitlm_wformat_parse(const char *s, fitlm_wformat *f, fitlm_error *err);

/* Weight bytes of a model under a format: per layer, embedding, output and the rest. */
typedef struct fitlm_weight_bytes {
    double *layer;       /* n_layers entries, owned */
    uint32_t n_layers;
    double embedding, output, other; /* other: final norm */
    double total;
    double largest_layer_bytes;
} fitlm_weight_bytes;
/* 0 with wb filled (free wb->layer with fitlm_weight_bytes_free()), -1 with err. */
int fitlm_weight_bytes_compute(const fitlm_plan_model *m, const fitlm_wformat *f, fitlm_weight_bytes *wb, fitlm_error *err);
void fitlm_weight_bytes_free(fitlm_weight_bytes *wb);
/* Bits per weight of a format on the model's linear layers (for display). */
double fitlm_wformat_bits_per_weight(const fitlm_plan_model *m, const fitlm_wformat *f);

/* ------------------------------------------------------------------ formulas */

/* KV cache bytes for one token over all layers: 2 * layers * kv_heads * head_dim * bytes(kv_type). */
double fitlm_kv_bytes_per_token(const fitlm_hparams *hp, int kv_type);
/* Bytes per element of a KV cache type (block types: block_bytes / block_size). */
double fitlm_kv_type_bytes(int kv_type);

/* Rajbhandari et al. 2020 (ZeRO), model states per device for Psi parameters,
 * optimizer bytes K per parameter (12 for mixed-precision Adam), stage 0..3, N
 * data-parallel devices: (2+2+K)Psi, 4Psi+KPsi/N, 2Psi+(2+K)Psi/N, (4+K)Psi/N. */
double fitlm_zero_model_states(double psi, double k, int stage, int n);

/* DeepSpeed's estimate_zero2_model_states_mem_needs / estimate_zero3_... formulas
 * (bytes; gpu and cpu per device/node as DeepSpeed prints them). */
void fitlm_deepspeed_zero2_estimate(double params, int gpus_per_node, int nodes, bool cpu_offload,
                                    double buffer_factor, double *gpu_bytes, double *cpu_bytes);
void fitlm_deepspeed_zero3_estimate(double params, double largest_layer_params, int gpus_per_node, int nodes,
                                    bool cpu_offload, bool cpu_offload_params, bool zero_init, double buffer_factor,
                                    double *gpu_bytes, double *cpu_bytes);

typedef enum fitlm_recompute { FITLM_RECOMPUTE_NONE = 0, FITLM_RECOMPUTE_SELECTIVE, FITLM_RECOMPUTE_FULL } fitlm_recompute;

/* Korthikanti et al. 2022 per-layer activation bytes (16-bit activations).
 * gpt_style: GPT layer as in the paper (LayerNorm, 4h GeLU MLP, dropout) — then
 * ffn and kv_heads are ignored and the result is exactly the paper's
 * sbh(34 + 5as/h) family. Otherwise a Llama layer (RMSNorm, SwiGLU with ffn, GQA,
 * no dropout) by the same accounting (docs/planner.md). */
typedef struct fitlm_act_layer {
    double s, b, h, a; /* sequence, micro-batch, hidden, attention heads */
    double ffn, kv_heads, head_dim;
    int t;             /* tensor-parallel size */
    bool sp;           /* sequence parallelism */
    bool flash;        /* FlashAttention: no s^2 tensors stored */
    fitlm_recompute recompute;
    bool gpt_style;
} fitlm_act_layer;
double fitlm_activation_bytes_per_layer(const fitlm_act_layer *p);

/* Ring all-reduce time: 2(n-1) * alpha + 2(n-1)/n * bytes / bw. */
double fitlm_allreduce_time(double bytes, int n, double alpha_s, double bw_bytes_per_s);
/* vLLM's start-up memory profile and the KV capacity it prints (worker log
 * "Memory profiling results", vLLM 0.6-0.8): budget = total_gpu_memory x
 * gpu_memory_utilization; KV memory = budget - weights - non-torch memory
 * (CUDA context, cuBLAS, NCCL: FITLM_VLLM_NON_TORCH_TP1 / _TPN) - the
 * activation peak of a profile run of max_num_batched_tokens tokens; KV
 * tokens in 16-token blocks; maximum concurrency for requests of
 * request_len tokens. All per GPU (weights_per_gpu, KV sharded by TP). */
#define FITLM_VLLM_NON_TORCH_TP1 (1.79 * FITLM_GIB)
#define FITLM_VLLM_NON_TORCH_TPN (3.58 * FITLM_GIB)
typedef struct fitlm_vllm_capacity {
    double total_gpu_memory, budget, weights, non_torch, activation_peak, kv_memory;
    double kv_tokens, kv_blocks, max_concurrency;
} fitlm_vllm_capacity;
void fitlm_vllm_capacity_compute(const fitlm_hparams *hp, double weights_per_gpu, double total_gpu_memory, int tp,
                                 int kv_type, uint32_t max_num_batched_tokens, uint32_t request_len, double util,
                                 fitlm_vllm_capacity *out);

/* Pipeline bubble fraction (p-1)/(m+p-1). */
double fitlm_pipeline_bubble(int p, int m);
/* Interleaved 1F1B (Narayanan et al. 2021, section 2.2.2): each device holds v
 * model chunks, the bubble shrinks v-fold: (p-1)/(v*m + p-1) of the step. */
double fitlm_pipeline_bubble_interleaved(int p, int m, int v);
/* Micro-batches' worth of a stage's activations in flight on pipeline stage
 * `stage` of p (0 = first) with m micro-batches per step and v model chunks per
 * device, in units of the stage's full layer set. 1F1B (v = 1): min(m, p -
 * stage). Interleaved 1F1B (Megatron-LM's schedule: (p - stage - 1) * 2 + (v -
 * 1) * p warm-up chunk forwards, + 1 in the steady state, at most v * m; each
 * chunk 1/v of the stage): stage 0 holds p + (p - 1)/v, Korthikanti et al.
 * 2022 section 4.2.3's p (1 + (p - 1)/(p v)). */
double fitlm_pipeline_inflight(int p, int stage, int m, int v);

/* ------------------------------------------------------------------ engines */

/* The serving engine a GPU plan is for (`fitlm plan --engine`): what it
 * allocates besides the weights, how it holds the KV cache, which GEMMs it
 * runs. GENERIC is the engine-neutral model (the defaults documented in
 * docs/planner.md); the others change only what is listed in their profile. */
typedef enum fitlm_engine {
    FITLM_ENGINE_GENERIC = 0, FITLM_ENGINE_VLLM, FITLM_ENGINE_LLAMACPP, FITLM_ENGINE_TRTLLM, FITLM_ENGINE_FITLM,
    FITLM_ENGINE_EXLLAMA, FITLM_ENGINE_COUNT
} fitlm_engine;

typedef struct fitlm_engine_profile {
    const char *name;          /* as --engine takes it */
    const char *label;         /* for reports */
    /* memory: runtime memory per GPU besides weights, KV and activations.
     * vllm_memory: vLLM's start-up profile (non-torch memory FITLM_VLLM_NON_TORCH_*,
     * activation peak of a profile run of max_num_batched_tokens); else the
     * backend overhead constants (fitlm_backend_overhead_for) and the
     * activation buffers of one prefill chunk */
    bool vllm_memory;
    double default_margin;     /* memory kept free unless --margin (vLLM: 1 - gpu_memory_utilization) */
    uint32_t default_chunk;    /* prefill micro-batch unless --chunk (llama.cpp n_ubatch 512); 0 = 2048 */
    /* KV cache: paged = blocks for the tokens in use (at least one request of the
     * full context); else contiguous for the full context of every sequence.
     * window_frees: a sliding window bounds what is held */
    bool kv_paged, window_frees;
    /* compute path: 16-bit GEMMs accumulate in FP16 (GeForce: the catalog's
     * fp16_acc16 rate, twice the FP32-accumulate rate); quantized prefill on
     * INT8 tensor cores at int8_eff of the catalog's INT8 peak; dequant_acc16:
     * 4-bit weight-only formats (GPTQ, AWQ) are dequantized to FP16 for the
     * prefill GEMMs, which accumulate in FP16 too (ExLlama's cublasHgemm) */
    bool fp16_acc16, int8_prefill, dequant_acc16;
    double int8_eff;
    double per_layer_s, per_step_s; /* fixed GPU costs per layer and per forward step; 0 = fitlm_plan_k's */
    /* shortest time of one weight-only quantized (INT8 / GPTQ / AWQ) GEMM of a
     * decode step: a small matrix takes this long however few bytes it reads
     * (vLLM's Marlin kernels); 0 = none */
    double wo_gemm_min_s;
    /* layers kept in host memory (-ngl below the layer count) run on the host
     * CPU for the prompt too, at the calibrated CPU cost model's rates
     * (fitlm's split backend); false: a decode step runs them on the host at
     * its bandwidth and a prompt streams them to the GPU over PCIe (llama.cpp
     * offloads large batches' matmuls to the GPU) */
    bool host_layers_on_cpu;
    /* the KV cache of a layer kept on the host is in host memory (llama.cpp:
     * each layer's cache on its layer's device; fitlm's split backend); false:
     * all of it on the GPU (vLLM's cpu_offload_gb moves weights only) */
    bool kv_with_layer;
} fitlm_engine_profile;

/* The profile of an engine (GENERIC for an out-of-range value); never NULL, static. */
const fitlm_engine_profile *fitlm_engine_profile_get(fitlm_engine e);

/* The fitlm kernel type (fitlm_type) a weight format runs at on fitlm's own
 * backends: the file's type, the GGUF type, Q8_0 for INT8, Q4_0 for GPTQ/AWQ. */
int fitlm_plan_format_type(const fitlm_plan_model *m, const fitlm_wformat *f);
/* Parses an --engine name ("vllm", "llama.cpp"/"llamacpp", "trt-llm"/"tensorrt-llm",
 * "exllama", "fitlm", "generic"). 0 ok, -1 unknown. */
int fitlm_engine_parse(const char *s, fitlm_engine *e);
/* vLLM's profile-run activation peak per GPU (the driver rank's):
 * max(forward, sampler) when with_logits (the last pipeline stage), else the
 * forward. forward: the MLP of n batched tokens (16-bit residual, norm output,
 * input, gate/up and product; the FFN part split by TP). sampler: the final
 * hidden states of n tokens + FITLM_VLLM_SORT_UNITS x the fp32 logits of
 * min(n, max_num_seqs) sequences (the top-k/top-p sort's buffers; TP does not
 * split them: the driver gathers the full vocabulary). Derivation in
 * formulas.c and docs/planner.md. */
#define FITLM_VLLM_MAX_NUM_SEQS 256
#define FITLM_VLLM_SORT_UNITS 9.5
double fitlm_vllm_forward_peak(const fitlm_hparams *hp, uint32_t n_tokens, int tp);
double fitlm_vllm_sampler_peak(const fitlm_hparams *hp, uint32_t n_tokens, uint32_t max_num_seqs);
double fitlm_vllm_activation_peak(const fitlm_hparams *hp, uint32_t max_num_batched_tokens, int tp, bool with_logits);

/* ------------------------------------------------------------------ workload */

typedef enum fitlm_plan_mode { FITLM_PLAN_INFER = 0, FITLM_PLAN_TRAIN } fitlm_plan_mode;
typedef enum fitlm_objective { FITLM_OBJ_COST = 0, FITLM_OBJ_LATENCY, FITLM_OBJ_THROUGHPUT } fitlm_objective;
typedef enum fitlm_optimizer { FITLM_OPT_ADAMW = 0, FITLM_OPT_ADAM8BIT, FITLM_OPT_SGD } fitlm_optimizer;
typedef enum fitlm_offload { FITLM_OFFLOAD_NONE = 0, FITLM_OFFLOAD_CPU, FITLM_OFFLOAD_NVME } fitlm_offload;

#define FITLM_PLAN_MAX_FORMATS 24
#define FITLM_PLAN_MAX_KV 8
#define FITLM_PLAN_MAX_GPUSEL 32
#define FITLM_PLAN_MAX_STAGES 128

typedef struct fitlm_plan_request {
    fitlm_plan_mode mode;
    /* inference workload */
    uint32_t ctx, batch, prompt, output, chunk, kv_block;
    bool flash;
    /* candidate weight formats and KV types (the first is the "requested" one) */
    fitlm_wformat formats[FITLM_PLAN_MAX_FORMATS];
    int n_formats;
    bool formats_compete;     /* all formats rank together (--quant any / a list) */
    int kv_types[FITLM_PLAN_MAX_KV];
    int n_kv_types;
    /* training */
    uint32_t seq, micro_batch, grad_accum, global_batch;
    fitlm_optimizer optimizer;
    int zero;                 /* -1 = search 0..3 */
    fitlm_offload offload_opt, offload_param;
    int recompute;            /* -1 = search */
    int pp_interleave;        /* model chunks per pipeline device (interleaved 1F1B); 0 = search 1, 2, 4 .. */
    int pp_embed_split;       /* embedding and output+loss as one pipeline layer each: -1 search, 0 no, 1 yes */
    bool sequence_parallel;
    bool fp32_grads;          /* gradients kept in fp32 (18 B/param Adam) */
    bool pure_fp32;           /* --dtype f32 training: no mixed precision */
    uint32_t lora_rank;       /* 0 = full fine-tune */
    unsigned lora_targets;    /* bit mask of FITLM_T_ATTN_Q ... */
    bool qlora;
    double train_tokens;      /* optional: total tokens to train (for total time/cost) */
    bool pretrain;            /* label only: pre-training has the memory model of a full fine-tune */
    /* layout search */
    struct { int gpu; int count; } gpusel[FITLM_PLAN_MAX_GPUSEL];
    int n_gpusel;             /* 0 = every catalog GPU (not the CPU) */
    int tp, pp, dp;           /* 0 = search */
    int max_gpus;
    bool offload_allowed;     /* inference: allow layers on the host (--offload cpu) */
    int gpu_layers;           /* inference: layers on the GPU, the rest in host memory (-ngl N, one
                               * pipeline stage; N >= the layer count: all); -1 = searched with
                               * --offload cpu, else none */
    int host_threads;         /* threads of the host CPU's share (the layers fitlm's engine runs there);
                               * 0 = the host profile's, else the CPU entry's cores */
    fitlm_objective objective;
    fitlm_engine engine;      /* GPU serving engine (--engine); GENERIC by default */
    bool batch_auto;          /* search the batch (concurrency) per layout, 1, 2, 4 .. max_batch */
    uint32_t max_batch;       /* largest batch searched (default 256, vLLM's max_num_seqs) */
    double max_cost;          /* $/hour, 0 = none */
    double min_tokens_per_s;  /* 0 = none */
    double max_ttft;          /* seconds, 0 = none */
    double margin;            /* fraction of device memory kept free */
    double fragmentation;     /* allocator fragmentation, fraction of the dynamic buffers (activations,
                               * + gradients in training); < 0 = the backend's (5 % inference, 10 % training) */
    double host_mem;          /* host memory per node for offload, bytes; 0 = not checked */
    /* --nodes-link: the host CPU's T x P MPI ranks each on its own node of
     * this host's kind, linked by this network (all-reduce latency of 2 ranks
     * and bytes/s); link_bw 0 = the ranks share this one host */
    double link_alpha_s, link_bw;
    char link_name[24];
    int top;                  /* alternatives to show */
} fitlm_plan_request;

/* Defaults for a model (context 8192 or the model's maximum, batch 1, ...). */
void fitlm_plan_request_defaults(fitlm_plan_request *r, const fitlm_plan_model *m);
/* Checks the request against the model and itself. 0 ok, -1 with err. */
int fitlm_plan_request_validate(fitlm_plan_request *r, const fitlm_plan_model *m, const fitlm_catalog *cat,
                                fitlm_error *err);

/* ------------------------------------------------------------------ results */

enum {
    FITLM_MEM_WEIGHTS = 0, FITLM_MEM_KV, FITLM_MEM_ACT, FITLM_MEM_GRAD, FITLM_MEM_OPT, FITLM_MEM_LORA,
    FITLM_MEM_OVERHEAD, FITLM_MEM_COUNT
};
extern const char *const fitlm_mem_names[FITLM_MEM_COUNT];

typedef struct fitlm_plan_result {
    bool valid;   /* layout evaluated */
    bool fits;    /* memory fits with the margin on every device (and host) */
    char why[200]; /* why it does not fit / violates a constraint */
    int gpu;
    int count, tp, pp, dp;
    int format;   /* index into request formats */
    uint32_t batch; /* inference: concurrent sequences per replica (the request's, or the searched one) */
    int kv_type;
    int zero, recompute;
    fitlm_offload offload_opt, offload_param;
    uint32_t grad_accum;
    int interleave;          /* training: model chunks per pipeline device (1 = plain 1F1B) */
    bool pp_embed_split;     /* training: the pipeline split counts the embedding and the output layer + loss
                              * as one layer each (Megatron-core's account_for_embedding_in_pipeline_split /
                              * account_for_loss_in_pipeline_split; Llama 3, section 3.3.2): the first and the
                              * last stage hold one transformer layer fewer */
    uint32_t offload_layers; /* inference: layers kept in host memory */
    /* replica components (before sharding), bytes */
    double comp[FITLM_MEM_COUNT];
    double kv_bytes_per_token;
    /* per device (most loaded), bytes */
    double dev[FITLM_MEM_COUNT];
    double per_device_bytes, total_bytes, capacity_bytes, usable_bytes;
    double host_bytes, nvme_bytes;
    double zero3_gather_bytes;
    int n_stages;
    double stage[FITLM_PLAN_MAX_STAGES][FITLM_MEM_COUNT]; /* per-device bytes of each PP stage */
    /* compute and time */
    double flops_per_token;
    double prefill_tps, decode_tps, ttft_s, tpot_s;
    const char *prefill_bound, *decode_bound;
    double step_time_s, mfu, train_tps, comm_s, bubble;
    double offload_s; /* PCIe time per step for offloaded weights/states */
    /* cost */
    double usd_per_hour, usd_per_million, purchase_usd;
    double score; /* lower is better */
} fitlm_plan_result;

/* Evaluates one layout. */
void fitlm_plan_evaluate(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                         const fitlm_weight_bytes *wb, fitlm_plan_result *res);

typedef struct fitlm_plan_output {
    fitlm_plan_result *results; /* ranked, best first; owned */
    size_t n;
    fitlm_plan_result *quant_alts; /* best layout for each other weight format; owned */
    size_t n_quant_alts;
    fitlm_plan_result here[2]; /* inference on this machine's CPU: requested format, Q4_K_M */
    size_t n_here;
    fitlm_plan_result fewest; /* the feasible layout with the fewest devices */
    bool have_fewest;
    size_t evaluated;
    double search_seconds;     /* wall clock */
    double search_cpu_seconds; /* CPU time of this process (what the search itself costs) */
    char hint[1024]; /* when nothing fits: why, and what would */
} fitlm_plan_output;

/* Runs the search. 0 with out filled (out->n may be 0: then out->hint says why),
 * -1 with err on internal failure. Free with fitlm_plan_output_free(). */
int fitlm_plan_search(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                      fitlm_plan_output *out, fitlm_error *err);
void fitlm_plan_output_free(fitlm_plan_output *out);
/* Name of the weight format of a result (the plan's, or a quantized alternative's).
 * Points into the request or into a small static ring: do not free, not thread-safe. */
const char *fitlm_plan_format_name(const fitlm_plan_request *r, const fitlm_plan_result *x);

/* ------------------------------------------------------------------ report */

void fitlm_plan_print_text(FILE *fp, const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                           const fitlm_plan_output *out);
/* Returns a malloc'd JSON text (caller frees) or NULL with err. */
char *fitlm_plan_json(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                      const fitlm_plan_output *out, fitlm_error *err);
/* Writes the SVG of the best layout's memory per device (temp file + rename). */
int fitlm_plan_write_svg(const char *path, const fitlm_plan_model *m, const fitlm_plan_request *r,
                         const fitlm_catalog *cat, const fitlm_plan_output *out, fitlm_error *err);

/* The named constants of the model (efficiencies, overheads), for docs and JSON. */
typedef struct fitlm_plan_constants {
    double eff_prefill;       /* fraction of peak FLOP/s reached by prefill GEMMs */
    double eff_decode_bw;     /* fraction of peak memory bandwidth reached by decode */
    double eff_decode_flops;
    double eff_train;         /* fraction of peak FLOP/s reached by training GEMMs */
    double eff_link;          /* fraction of link bandwidth reached by collectives */
    double alpha_link_s, alpha_pcie_s, alpha_internode_s;
    double internode_bw;      /* bytes/s per GPU between nodes */
    double host_bw_per_gpu;   /* host DRAM bytes/s available per GPU (CPU optimizer) */
    double nvme_bw_per_gpu;
    double kv_block_tokens;
    double gpu_per_layer_s;   /* fixed time per layer and forward step on a GPU (kernel launches) */
    double gpu_per_step_s;    /* fixed time per forward step on a GPU (embedding, head, sampling, scheduling) */
} fitlm_plan_constants;
extern const fitlm_plan_constants fitlm_plan_k;

/* Runtime overhead per backend (named constants the runtime will calibrate). */
typedef struct fitlm_backend_overhead {
    const char *backend;        /* "cuda", "rocm", "cpu" */
    double context_bytes;       /* driver context (CUDA / HIP) or runtime buffers (CPU) */
    double blas_workspace_bytes;/* cuBLAS / hipBLASLt workspace */
    double collective_bytes;    /* NCCL / RCCL buffers, only with more than one device */
    double frag_infer, frag_train; /* allocator fragmentation, fraction of dynamic buffers */
} fitlm_backend_overhead;
/* The overhead constants for a device (CPU entry -> cpu, AMD -> rocm, else cuda). */
const fitlm_backend_overhead *fitlm_backend_overhead_for(const fitlm_gpu *g);

/* PCIe x16 bandwidth per direction, bytes/s, for a generation (3..6). */
double fitlm_pcie_bw(int gen);

#endif
