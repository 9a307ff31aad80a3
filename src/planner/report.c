/* The planner's outputs: a readable table, JSON with a stable schema
 * (docs/planner.md), and an SVG of the memory per device. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "planner/host_comm.h"
#include "planner/cpu_cost.h"
#include "planner/planner.h"

static const char *const k_mem_labels[FITLM_MEM_COUNT] = {"weights", "KV cache", "activations/buffers",
                                                          "gradients", "optimizer states", "LoRA adapters+optim",
                                                          "runtime overhead"};
static const char *const k_colors[FITLM_MEM_COUNT] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                                      "#b07aa1", "#edc948", "#9c9c9c"};

static const char *arch_str(fitlm_arch a) {
    return a == FITLM_ARCH_LLAMA ? "llama" : a == FITLM_ARCH_MISTRAL ? "mistral" : a == FITLM_ARCH_QWEN2 ? "qwen2" : a == FITLM_ARCH_QWEN3 ? "qwen3" : "?";
}
static const char *recompute_name(int r) {
    return r == FITLM_RECOMPUTE_FULL ? "full" : r == FITLM_RECOMPUTE_SELECTIVE ? "selective" : "none";
}
static const char *offload_name(fitlm_offload o) {
    return o == FITLM_OFFLOAD_CPU ? "cpu" : o == FITLM_OFFLOAD_NVME ? "nvme" : "none";
}
static const char *objective_name(fitlm_objective o) {
    return o == FITLM_OBJ_LATENCY ? "latency" : o == FITLM_OBJ_THROUGHPUT ? "throughput" : "cost";
}
static const char *optimizer_name(fitlm_optimizer o) {
    return o == FITLM_OPT_ADAM8BIT ? "adam8bit" : o == FITLM_OPT_SGD ? "sgd" : "adamw";
}

/* 1234567 -> "1,234,567" */
static const char *commas(double v, char *buf, size_t cap) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.0f", v);
    size_t n = strlen(tmp), j = 0, lead = (tmp[0] == '-');
    for (size_t i = 0; i < n && j + 2 < cap; i++) {
        buf[j++] = tmp[i];
        size_t rest = n - 1 - i;
        if (i >= lead && rest > 0 && rest % 3 == 0) buf[j++] = ',';
    }
    buf[j] = 0;
    return buf;
}

static const char *human_rate(double v, char *buf, size_t cap) {
    if (v >= 100) snprintf(buf, cap, "%.0f", v);
    else if (v >= 10) snprintf(buf, cap, "%.1f", v);
    else snprintf(buf, cap, "%.2f", v);
    return buf;
}


/* DeepSpeed's estimator for the same layout (ZeRO-2/3 data parallelism over the
 * GPUs of one replica slot), as a cross-check printed next to fitlm's figure. */
/* Whether vLLM's CUDA graphs of a TP group span GPUs that talk over PCIe (no
 * NVLink for a group this size): there the graphs have been logged at 1.1-6.6
 * GiB per GPU (NCCL's buffers captured with them; vLLM issues 5517, 7553,
 * 11452), more than the 10 % gpu_memory_utilization 0.90 leaves free on a
 * 24 GB card; on one GPU 0.1-0.6 GiB (docs/planner.md, "Engine profiles"). */
static bool vllm_graphs_over_pcie(const fitlm_gpu *g, int tp) {
    return tp > 1 && !(g->link_bw > 0 && tp <= g->link_max_gpus);
}

static bool deepspeed_check(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                            const fitlm_plan_result *x, double *gpu, double *cpu) {
    if (r->mode != FITLM_PLAN_TRAIN || r->lora_rank || x->zero < 2 || x->tp != 1 || x->pp != 1) return false;
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    int per_node = x->count < g->max_per_node ? x->count : g->max_per_node;
    int nodes = (x->count + per_node - 1) / per_node;
    fitlm_param_counts pc;
    fitlm_plan_param_counts(&m->hp, &pc);
    bool off = x->offload_opt != FITLM_OFFLOAD_NONE;
    if (x->zero == 2)
        fitlm_deepspeed_zero2_estimate((double)pc.total, per_node, nodes, off, 1.5, gpu, cpu);
    else
        fitlm_deepspeed_zero3_estimate((double)pc.total, (double)pc.largest_layer, per_node, nodes, off,
                                       x->offload_param != FITLM_OFFLOAD_NONE, true, 1.5, gpu, cpu);
    return true;
}

static void print_layout_line(FILE *fp, const fitlm_plan_model *m, const fitlm_plan_request *r,
                              const fitlm_catalog *cat, const fitlm_plan_result *x) {
    (void)m;
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    fprintf(fp, "%d x %s (TP %d, PP %d, DP %d", x->count, g->name, x->tp, x->pp, x->dp);
    if (r->mode == FITLM_PLAN_TRAIN) {
        fprintf(fp, ", ZeRO-%d, recompute %s, grad-accum %u", x->zero, recompute_name(x->recompute), x->grad_accum);
        if (x->interleave > 1) fprintf(fp, ", interleaved 1F1B x%d", x->interleave);
        if (x->pp_embed_split) fprintf(fp, ", embedding/loss as pipeline layers");
        if (x->offload_opt) fprintf(fp, ", optimizer on %s", offload_name(x->offload_opt));
        if (x->offload_param) fprintf(fp, ", parameters on %s", offload_name(x->offload_param));
    } else {
        fprintf(fp, ", weights %s, KV %s", fitlm_plan_format_name(r, x), fitlm_type_name(x->kv_type));
        if (r->batch_auto) fprintf(fp, ", batch %u", x->batch);
        if (x->offload_layers) fprintf(fp, ", %u layers offloaded to host", x->offload_layers);
    }
    fprintf(fp, ")");
}

static void print_table_header(FILE *fp, const fitlm_plan_request *r) {
    if (r->mode == FITLM_PLAN_INFER)
        fprintf(fp, "  %-3s %-11s %4s %3s %3s %3s %-15s %-5s %8s %5s %11s %10s %8s %8s %9s\n", "#", "GPU", "N", "TP",
                "PP", "DP", "weights", "KV", "GiB/dev", "used", "prefill t/s", "decode t/s", "TTFT s", "$/h",
                "$/1M tok");
    else
        fprintf(fp, "  %-3s %-11s %4s %3s %3s %3s %4s %-9s %8s %5s %10s %6s %8s %8s %9s\n", "#", "GPU", "N", "TP", "PP",
                "DP", "ZeRO", "recompute", "GiB/dev", "used", "tokens/s", "MFU", "step s", "$/h", "$/1M tok");
}

static void print_table_row(FILE *fp, const fitlm_plan_request *r, const fitlm_catalog *cat, int idx,
                            const fitlm_plan_result *x) {
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    char a[32], b[32], cost[32], per[32];
    if (x->usd_per_hour > 0) {
        snprintf(cost, sizeof cost, "%.2f", x->usd_per_hour);
        snprintf(per, sizeof per, "%.3g", x->usd_per_million);
    } else {
        snprintf(cost, sizeof cost, "n/a");
        snprintf(per, sizeof per, "n/a");
    }
    if (r->mode == FITLM_PLAN_INFER) {
        char wname[40];
        snprintf(wname, sizeof wname, "%s%s", fitlm_plan_format_name(r, x), x->offload_layers ? "+off" : "");
        fprintf(fp, "  %-3d %-11s %4d %3d %3d %3d %-15s %-5s %8.1f %4.0f%% %11s %10s %8.3f %8s %9s\n", idx, g->name,
                x->count, x->tp, x->pp, x->dp, wname, fitlm_type_name(x->kv_type), x->per_device_bytes / FITLM_GIB,
                100 * x->per_device_bytes / x->capacity_bytes, human_rate(x->prefill_tps, a, sizeof a),
                human_rate(x->decode_tps, b, sizeof b), x->ttft_s, cost, per);
    } else {
        fprintf(fp, "  %-3d %-11s %4d %3d %3d %3d %4d %-9s %8.1f %4.0f%% %10s %5.1f%% %8.2f %8s %9s\n", idx, g->name,
                x->count, x->tp, x->pp, x->dp, x->zero, recompute_name(x->recompute), x->per_device_bytes / FITLM_GIB,
                100 * x->per_device_bytes / x->capacity_bytes, human_rate(x->train_tps, a, sizeof a), 100 * x->mfu,
                x->step_time_s, cost, per);
    }
}

void fitlm_plan_print_text(FILE *fp, const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                           const fitlm_plan_output *out) {
    const fitlm_hparams *hp = &m->hp;
    char c1[64], c2[64];
    if (m->params >= 1e9)
        fprintf(fp, "fitlm plan: %s, %.2f B parameters (%s)\n", m->name, m->params / 1e9,
                commas((double)m->params, c1, sizeof c1));
    else
        fprintf(fp, "fitlm plan: %s, %.2f M parameters (%s)\n", m->name, m->params / 1e6,
                commas((double)m->params, c1, sizeof c1));
    if (m->from_file)
        fprintf(fp, "  from %s (%s): %s bytes of weights\n", m->source, m->file_format,
                commas((double)m->file_weight_bytes, c2, sizeof c2));
    fprintf(fp, "  %s, %u layers, hidden %u, %u heads / %u KV heads, head_dim %u, MLP %u, vocab %u, context %u%s\n",
            arch_str(hp->arch), hp->n_layers, hp->dim, hp->n_heads, hp->n_kv_heads, hp->head_dim, hp->ffn_dim,
            hp->vocab_size, hp->ctx_len, hp->sliding_window ? " (sliding window)" : "");
    if (r->mode == FITLM_PLAN_INFER) {
        char bs[48];
        if (r->batch_auto) snprintf(bs, sizeof bs, "batch searched 1..%u", r->max_batch);
        else snprintf(bs, sizeof bs, "batch %u", r->batch);
        fprintf(fp, "  inference: context %u, %s, prompt %u + output %u tokens, weights %s%s, KV cache %s "
                    "(%s bytes/token), FlashAttention %s\n",
                r->ctx, bs, r->prompt, r->output, r->formats[0].name,
                r->formats_compete ? " (and the other formats listed)" : "", fitlm_type_name(r->kv_types[0]),
                commas(fitlm_kv_bytes_per_token(hp, r->kv_types[0]), c2, sizeof c2), r->flash ? "on" : "off");
    } else {
        if (r->lora_rank)
            fprintf(fp, "  training: %s rank %u, frozen base %s, ", r->qlora ? "QLoRA" : "LoRA", r->lora_rank,
                    r->qlora ? "NF4" : "BF16");
        else
            fprintf(fp, "  training: %s, ", r->pretrain ? "pre-training" : "full fine-tune");
        fprintf(fp, "%s%s, sequence %u, micro-batch %u, ", optimizer_name(r->optimizer),
                r->pure_fp32 ? " (pure fp32)" : " (bf16 mixed precision, fp32 master)", r->seq, r->micro_batch);
        if (r->grad_accum) fprintf(fp, "gradient accumulation %u", r->grad_accum);
        else fprintf(fp, "global batch %u sequences", r->global_batch);
        fprintf(fp, ", FlashAttention %s, sequence parallel %s\n", r->flash ? "on" : "off",
                r->sequence_parallel ? "on" : "off");
    }
    if (r->mode == FITLM_PLAN_INFER && r->engine != FITLM_ENGINE_GENERIC) {
        const fitlm_engine_profile *e = fitlm_engine_profile_get(r->engine);
        fprintf(fp, "  engine: %s (%s KV cache%s; %s; prefill GEMMs %s; fixed %.0f us per layer and %.0f us per step)\n",
                e->label, e->kv_paged ? "paged" : "contiguous",
                e->window_frees ? "" : ", full context also for a sliding window",
                e->vllm_memory ? "vLLM's start-up memory profile" : "runtime memory from the backend constants",
                e->int8_prefill    ? "of quantized weights on INT8 tensor cores"
                : e->dequant_acc16 ? "F16 (GPTQ/AWQ reconstructed to F16) with FP16 accumulate"
                : e->fp16_acc16    ? "F16 with FP16 accumulate"
                                   : "16-bit with FP32 accumulate",
                (e->per_layer_s > 0 ? e->per_layer_s : fitlm_plan_k.gpu_per_layer_s) * 1e6,
                (e->per_step_s > 0 ? e->per_step_s : fitlm_plan_k.gpu_per_step_s) * 1e6);
        if (r->engine == FITLM_ENGINE_FITLM && out->n > 0 && cat->gpus[out->results[0].gpu].measured)
            fprintf(fp, "  engine: on %s its measured fixed costs instead (below)\n", cat->gpus[out->results[0].gpu].name);
        if (e->wo_gemm_min_s > 0)
            fprintf(fp, "  engine: a weight-only quantized (INT8/GPTQ/AWQ) GEMM of a decode step takes at least %.1f us\n",
                    e->wo_gemm_min_s * 1e6);
    }
    fprintf(fp, "  searched %zu layouts in %.1f ms CPU; objective: %s; memory margin %.0f%%\n\n", out->evaluated,
            out->search_cpu_seconds * 1e3, objective_name(r->objective), r->margin * 100);
    if (out->n == 0) return;
    const fitlm_plan_result *x = &out->results[0];
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    fprintf(fp, "PLAN: ");
    print_layout_line(fp, m, r, cat, x);
    if (g->is_cpu)
        fprintf(fp, "\n  %s: %s, %d cores, %.1f GiB, ~%.0f GB/s (%s), ~%.2f TFLOP/s fp32 SIMD\n\n", g->name, g->arch,
                g->cpu_cores, g->memory_bytes / FITLM_GIB, g->mem_bw / 1e9, g->bw_measured ? "measured" : "estimated",
                g->fp16_flops / 1e12);
    else if (g->measured)
        fprintf(fp, "\n  %s: %.1f GiB, %.2f GB/s decode and %.2f GFLOP/s prompt matmuls on these weights, %.1f us per "
                    "layer and %.1f us per step (%s%s)\n\n",
                g->name, g->memory_bytes / FITLM_GIB, g->mem_bw / 1e9, g->bf16_flops / 1e9,
                g->measured_per_layer_s * 1e6, g->measured_per_step_s * 1e6, g->spec_source,
                r->engine == FITLM_ENGINE_FITLM ? "" : "; the fixed costs are fitlm's, used with --engine fitlm");
    else
        fprintf(fp, "\n  %s: %.0f GiB, %.0f GB/s, %.0f TFLOP/s BF16 dense, link %s\n\n", g->name,
                g->memory_bytes / FITLM_GIB, g->mem_bw / 1e9, g->bf16_flops / 1e12, g->link);
    if (g->is_cpu && x->tp * x->pp > 1 && r->link_bw > 0) { /* one rank per node (--nodes-link) */
        fprintf(fp, "  MPI: %d nodes like this host, one rank each, over %s; all-reduce alpha %.2f us, %.2f GB/s "
                    "(assumed link figures: docs/parallel.md); %.3f ms of communication per decode step\n\n",
                x->tp * x->pp, r->link_name, r->link_alpha_s * 1e6, r->link_bw / 1e9, x->comm_s * 1e3);
    } else if (g->is_cpu && x->tp * x->pp > 1) { /* MPI ranks of fitlm on this host (host_comm.h) */
        fitlm_host_comm hc;
        fitlm_host_comm_of(cat->host_profile, &hc);
        fprintf(fp, "  MPI: %d ranks sharing these cores; all-reduce alpha %.2f us, %.2f GB/s (%s); %.3f ms of "
                    "communication per decode step\n\n",
                x->tp * x->pp, hc.alpha_s * 1e6, hc.bw / 1e9,
                hc.measured ? "measured by comm_bench, host profile"
                            : "assumed: run mpirun -np 2 comm_bench --write-profile",
                x->comm_s * 1e3);
    }

    fprintf(fp, "Memory                        per device GiB   model replica GiB\n");
    for (int c = 0; c < FITLM_MEM_COUNT; c++) {
        if (x->dev[c] == 0 && x->comp[c] == 0) continue;
        fprintf(fp, "  %-28s %12.2f %17.2f\n", k_mem_labels[c], x->dev[c] / FITLM_GIB, x->comp[c] / FITLM_GIB);
    }
    fprintf(fp, "  %-28s %12.2f   of %.1f GiB (%.0f%%; %.1f GiB usable with the margin)\n", "total (most loaded device)",
            x->per_device_bytes / FITLM_GIB, x->capacity_bytes / FITLM_GIB,
            100 * x->per_device_bytes / x->capacity_bytes, x->usable_bytes / FITLM_GIB);
    fprintf(fp, "  %-28s %12.2f GiB over %d devices\n", "all devices", x->total_bytes / FITLM_GIB, x->count);
    double dsg, dsc;
    if (deepspeed_check(m, r, cat, x, &dsg, &dsc))
        fprintf(fp, "  %-28s %12.2f GiB model states per GPU, %.2f GiB CPU per node (fitlm: %.2f GiB)\n",
                "DeepSpeed's estimator", dsg / FITLM_GIB, dsc / FITLM_GIB,
                (x->dev[FITLM_MEM_WEIGHTS] + x->dev[FITLM_MEM_GRAD] + x->dev[FITLM_MEM_OPT] + x->zero3_gather_bytes) /
                    FITLM_GIB);
    if (x->host_bytes > 0) fprintf(fp, "  %-28s %12.2f GiB (per node)\n", "host memory", x->host_bytes / FITLM_GIB);
    if (x->nvme_bytes > 0) fprintf(fp, "  %-28s %12.2f GiB (per node)\n", "NVMe", x->nvme_bytes / FITLM_GIB);
    fprintf(fp, "\n");

    fprintf(fp, "Time\n");
    if (r->mode == FITLM_PLAN_INFER) {
        /* the CPU's figures come from its cost model (calibrated or assumed
         * kernel rates), not from shares of a datasheet peak */
        char eff_pf[48], eff_dec[48];
        if (g->is_cpu) {
            snprintf(eff_pf, sizeof eff_pf, "the CPU kernels' rates");
            snprintf(eff_dec, sizeof eff_dec, "the CPU kernels' rates");
        } else if (g->measured) {
            snprintf(eff_pf, sizeof eff_pf, "the GPU kernels' measured rates");
            snprintf(eff_dec, sizeof eff_dec, "the GPU kernels' measured rates");
        } else {
            snprintf(eff_pf, sizeof eff_pf, "%.0f%% of peak FLOP/s", fitlm_plan_k.eff_prefill * 100);
            snprintf(eff_dec, sizeof eff_dec, "%.0f%% of peak bandwidth", fitlm_plan_k.eff_decode_bw * 100);
        }
        fprintf(fp, "  prefill     %10s tokens/s  %s-bound (%s)   TTFT %.3f s for %u x %u tokens\n",
                human_rate(x->prefill_tps, c1, sizeof c1), x->prefill_bound, eff_pf, x->ttft_s, x->batch, r->prompt);
        fprintf(fp, "  decode      %10s tokens/s  %s-bound (%s)   TPOT %.1f ms per token%s\n",
                human_rate(x->decode_tps, c2, sizeof c2), x->decode_bound, eff_dec, x->tpot_s * 1e3,
                x->batch > 1 ? " (per sequence)" : "");
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&m->hp, &pc);
        double p_mm = (double)pc.per_layer_linear * m->hp.n_layers + (double)m->hp.vocab_size * m->hp.dim;
        fprintf(fp, "  FLOPs/token %10.1f GFLOP (2 x %s matmul parameters + %.1f GFLOP attention at mean context)\n",
                x->flops_per_token / 1e9, commas(p_mm, c1, sizeof c1), (x->flops_per_token - 2 * p_mm) / 1e9);
        if (x->offload_layers && fitlm_engine_profile_get(r->engine)->host_layers_on_cpu)
            fprintf(fp, "  offload     %u layers on the host CPU, prompt and decode (the CPU cost model): +%.1f ms per "
                        "decode step\n", x->offload_layers, x->offload_s * 1e3);
        else if (x->offload_layers)
            fprintf(fp, "  offload     %u layers in host memory: decoded on the host CPU at its bandwidth, +%.1f ms per "
                        "decode step; streamed to the GPU over PCIe %d.0 for a prompt\n",
                    x->offload_layers, x->offload_s * 1e3, g->pcie_gen);
    } else {
        fprintf(fp, "  step        %10.2f s   (compute at %.0f%% of peak, pipeline bubble %.1f%%, exposed comm %.2f s%s)\n",
                x->step_time_s, fitlm_plan_k.eff_train * 100, x->bubble * 100, x->comm_s,
                x->offload_s > 0 ? ", offload" : "");
        fprintf(fp, "  throughput  %10s tokens/s   MFU %.1f%%   model FLOPs/token %.1f GFLOP (%s + 12 L H Q T)\n",
                human_rate(x->train_tps, c1, sizeof c1), x->mfu * 100, x->flops_per_token / 1e9,
                r->lora_rank ? "4N: no weight gradients" : "6N");
        if (r->train_tokens > 0)
            fprintf(fp, "  %.3g tokens: %.1f hours\n", r->train_tokens, r->train_tokens / x->train_tps / 3600);
    }
    fprintf(fp, "\nCost\n");
    if (x->usd_per_hour > 0) {
        fprintf(fp, "  $%.2f per hour (%d x $%.3g%s), $%.3g per 1M %s tokens\n", x->usd_per_hour, x->count,
                g->cloud_usd_per_hour, g->cloud_estimate ? " typical on-demand, estimate" : " on-demand",
                x->usd_per_million, r->mode == FITLM_PLAN_INFER ? "generated" : "trained");
        if (r->mode == FITLM_PLAN_TRAIN && r->train_tokens > 0)
            fprintf(fp, "  %.3g tokens: $%s\n", r->train_tokens,
                    commas(r->train_tokens / x->train_tps / 3600 * x->usd_per_hour, c1, sizeof c1));
    } else {
        fprintf(fp, "  no cloud price for %s\n", g->name);
    }
    if (x->purchase_usd > 0)
        fprintf(fp, "  purchase: $%s for the GPUs%s\n", commas(x->purchase_usd, c1, sizeof c1),
                g->purchase_estimate ? " (estimate)" : "");
    /* the capacity vLLM would print: for the engine-neutral and vLLM plans of
     * catalog cards (another engine's plan, or this host's measured GPU, is
     * not vLLM's; the JSON keeps serving_vllm for every GPU plan) */
    if (r->mode == FITLM_PLAN_INFER && !g->is_cpu && !g->measured &&
        (r->engine == FITLM_ENGINE_GENERIC || r->engine == FITLM_ENGINE_VLLM)) {
        fitlm_vllm_capacity vc;
        uint32_t nbt = r->ctx > 2048 ? r->ctx : 2048;
        fitlm_vllm_capacity_compute(&m->hp, x->dev[FITLM_MEM_WEIGHTS], x->capacity_bytes, x->tp, x->kv_type, nbt, r->ctx,
                                    0.90, &vc);
        fprintf(fp,
                "  served by vLLM (gpu_memory_utilization 0.90): %.2f GiB for the KV cache per GPU = %.0f blocks, %s "
                "tokens; maximum concurrency for %u tokens per request: %.2fx\n",
                vc.kv_memory / FITLM_GIB, vc.kv_blocks, commas(vc.kv_tokens, c1, sizeof c1), r->ctx, vc.max_concurrency);
        if (vllm_graphs_over_pcie(g, x->tp))
            fprintf(fp,
                    "  vLLM's CUDA graphs come on top of that budget (before v0.21 they are captured after the KV cache "
                    "is sized, from the %.2f GiB left free per GPU): with TP over PCIe 1.1-6.6 GiB per GPU have been "
                    "logged (NCCL buffers captured in the graphs); if capture runs out of memory, lower "
                    "--gpu-memory-utilization or pass --enforce-eager\n",
                    vc.total_gpu_memory * 0.10 / FITLM_GIB);
    }
    fprintf(fp, "  price source: %s (%s)\n", g->cloud_source[0] ? g->cloud_source : "n/a",
            g->price_date[0] ? g->price_date : "undated");

    if (out->n_here) {
        const fitlm_gpu *h = &cat->gpus[out->here[0].gpu];
        fprintf(fp, "\nThis machine (%s, %d cores, %.1f GiB, ~%.0f GB/s %s):\n", h->arch, h->cpu_cores,
                h->memory_bytes / FITLM_GIB, h->mem_bw / 1e9, h->bw_measured ? "measured" : "estimated");
        const fitlm_host_profile *prof = cat->host_profile;
        if (prof)
            fprintf(fp,
                    "  cost model: host profile %s (%s); measured: read bandwidth with 1-%d threads, the kernels' "
                    "decode and prefill rates for %d weight types, fixed costs (%s)\n",
                    cat->host_profile_path, prof->created, prof->n_bw, prof->n_kern, prof->overhead_source);
        else
            fprintf(fp,
                    "  cost model: assumed figures (read bandwidth %s, kernels at %.0f%% of it, prefill at %.0f%% of the "
                    "fp32 SIMD peak, %.0f us per layer and %.0f us per token): 'fitlm calibrate' measures them\n",
                    h->bw_measured ? "measured" : "8 GB/s per core", FITLM_ASSUMED_DECODE_EFF * 100,
                    FITLM_ASSUMED_PREFILL_EFF * 100, FITLM_ASSUMED_PER_LAYER_S * 1e6, FITLM_ASSUMED_PER_TOKEN_S * 1e6);
        for (int i = 0; prof && i < prof->n_dev; i++) {
            char alias[16] = "local"; /* the catalog names cmd_plan gives them: local, local1 .. */
            if (i > 0) snprintf(alias, sizeof alias, "local%d", i);
            fprintf(fp, "  GPU %s measured by 'fitlm calibrate --device' (%s): --gpu %s --engine fitlm plans on it\n",
                    prof->dev[i].name, prof->dev[i].quick ? "--quick" : prof->created, alias);
        }
        for (size_t i = 0; i < out->n_here; i++) {
            const fitlm_plan_result *y = &out->here[i];
            fprintf(fp, "  %-15s %6.1f GiB of %.1f usable: %s", fitlm_plan_format_name(r, y), y->per_device_bytes / FITLM_GIB,
                    y->usable_bytes / FITLM_GIB, y->fits ? "fits" : "does not fit");
            if (y->fits)
                fprintf(fp, ", ~%s tokens/s decode, TTFT ~%.1f s", human_rate(y->decode_tps, c1, sizeof c1), y->ttft_s);
            fprintf(fp, "\n");
        }
    }
    if (out->have_fewest && out->fewest.count < x->count) {
        fprintf(fp, "\nFewest devices that fit: ");
        print_layout_line(fp, m, r, cat, &out->fewest);
        fprintf(fp, "\n  %.1f GiB per device, ", out->fewest.per_device_bytes / FITLM_GIB);
        if (r->mode == FITLM_PLAN_INFER)
            fprintf(fp, "%s tokens/s decode, ", human_rate(out->fewest.decode_tps, c1, sizeof c1));
        else
            fprintf(fp, "%s tokens/s, MFU %.1f%%, ", human_rate(out->fewest.train_tps, c1, sizeof c1),
                    out->fewest.mfu * 100);
        if (out->fewest.usd_per_hour > 0)
            fprintf(fp, "$%.2f/h, $%.3g per 1M tokens\n", out->fewest.usd_per_hour, out->fewest.usd_per_million);
        else
            fprintf(fp, "no price\n");
    }
    if (out->n > 1 && r->top > 0) {
        fprintf(fp, "\nAlternatives (best layout per GPU type%s, ranked by %s)\n",
                r->formats_compete ? " and format" : "", objective_name(r->objective));
        print_table_header(fp, r);
        for (size_t i = 0; i < out->n && (int)i <= r->top; i++) print_table_row(fp, r, cat, (int)i + 1, &out->results[i]);
    }
    if (out->n_quant_alts) {
        fprintf(fp, "\nOther weight formats (best layout for each, ranked by %s)\n", objective_name(r->objective));
        print_table_header(fp, r);
        for (size_t i = 0; i < out->n_quant_alts; i++) print_table_row(fp, r, cat, (int)i + 1, &out->quant_alts[i]);
    }
    fprintf(fp, "\nEstimates from published formulas and datasheet peaks (docs/planner.md); prices are typical, not "
                "quotes.\n");
}

/* ------------------------------------------------------------------ JSON */

static cJSON *result_json(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                          const fitlm_plan_result *x) {
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    cJSON *o = cJSON_CreateObject();
    cJSON *plan = cJSON_AddObjectToObject(o, "plan");
    cJSON_AddStringToObject(plan, "gpu", g->name);
    cJSON_AddNumberToObject(plan, "count", x->count);
    cJSON_AddNumberToObject(plan, "tp", x->tp);
    cJSON_AddNumberToObject(plan, "pp", x->pp);
    cJSON_AddNumberToObject(plan, "dp", x->dp);
    if (r->mode == FITLM_PLAN_INFER) {
        cJSON_AddStringToObject(plan, "weights", fitlm_plan_format_name(r, x));
        cJSON_AddStringToObject(plan, "kv_type", fitlm_type_name(x->kv_type));
        cJSON_AddNumberToObject(plan, "offload_layers", x->offload_layers);
        cJSON_AddNumberToObject(plan, "batch", x->batch);
    } else {
        cJSON_AddNumberToObject(plan, "zero", x->zero);
        cJSON_AddStringToObject(plan, "recompute", recompute_name(x->recompute));
        cJSON_AddStringToObject(plan, "offload_optimizer", offload_name(x->offload_opt));
        cJSON_AddStringToObject(plan, "offload_params", offload_name(x->offload_param));
        cJSON_AddNumberToObject(plan, "grad_accum", x->grad_accum);
        cJSON_AddNumberToObject(plan, "pp_interleave", x->interleave > 1 ? x->interleave : 1);
        cJSON_AddBoolToObject(plan, "pp_embedding_split", x->pp_embed_split);
        cJSON_AddNumberToObject(plan, "global_batch", (double)r->micro_batch * x->grad_accum * x->dp);
    }
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    cJSON_AddNumberToObject(mem, "weights_bytes", x->comp[FITLM_MEM_WEIGHTS]);
    cJSON_AddNumberToObject(mem, "kv_cache_bytes", x->comp[FITLM_MEM_KV]);
    cJSON_AddNumberToObject(mem, "kv_bytes_per_token", r->mode == FITLM_PLAN_INFER ? x->kv_bytes_per_token
                                                                                   : fitlm_kv_bytes_per_token(&m->hp, FITLM_TYPE_F16));
    cJSON_AddNumberToObject(mem, "activations_bytes", x->comp[FITLM_MEM_ACT]);
    cJSON_AddNumberToObject(mem, "gradients_bytes", x->comp[FITLM_MEM_GRAD]);
    cJSON_AddNumberToObject(mem, "optimizer_bytes", x->comp[FITLM_MEM_OPT]);
    cJSON_AddNumberToObject(mem, "lora_bytes", x->comp[FITLM_MEM_LORA]);
    cJSON_AddNumberToObject(mem, "overhead_bytes", x->comp[FITLM_MEM_OVERHEAD]);
    cJSON_AddNumberToObject(mem, "per_device_bytes", x->per_device_bytes);
    cJSON_AddNumberToObject(mem, "total_bytes", x->total_bytes);
    cJSON_AddNumberToObject(mem, "device_capacity_bytes", x->capacity_bytes);
    cJSON_AddNumberToObject(mem, "device_usable_bytes", x->usable_bytes);
    cJSON_AddNumberToObject(mem, "host_bytes", x->host_bytes);
    cJSON_AddNumberToObject(mem, "nvme_bytes", x->nvme_bytes);
    cJSON *pd = cJSON_AddObjectToObject(mem, "per_device");
    static const char *const keys[FITLM_MEM_COUNT] = {"weights_bytes", "kv_cache_bytes", "activations_bytes",
                                                      "gradients_bytes", "optimizer_bytes", "lora_bytes",
                                                      "overhead_bytes"};
    for (int c = 0; c < FITLM_MEM_COUNT; c++) cJSON_AddNumberToObject(pd, keys[c], x->dev[c]);
    if (r->mode == FITLM_PLAN_TRAIN) cJSON_AddNumberToObject(pd, "zero3_gather_bytes", x->zero3_gather_bytes);
    double dsg, dsc;
    if (deepspeed_check(m, r, cat, x, &dsg, &dsc)) {
        cJSON *ds = cJSON_AddObjectToObject(mem, "deepspeed_estimate");
        cJSON_AddNumberToObject(ds, "gpu_bytes", dsg);
        cJSON_AddNumberToObject(ds, "cpu_bytes", dsc);
    }
    cJSON *stages = cJSON_AddArrayToObject(mem, "stages");
    for (int s = 0; s < x->n_stages && s < FITLM_PLAN_MAX_STAGES; s++) {
        cJSON *so = cJSON_CreateObject();
        double tot = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) {
            cJSON_AddNumberToObject(so, keys[c], x->stage[s][c]);
            tot += x->stage[s][c];
        }
        cJSON_AddNumberToObject(so, "total_bytes", tot);
        cJSON_AddItemToArray(stages, so);
    }
    cJSON *comp = cJSON_AddObjectToObject(o, "compute");
    cJSON_AddNumberToObject(comp, "flops_per_token", x->flops_per_token);
    {
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&m->hp, &pc);
        cJSON_AddNumberToObject(comp, "matmul_params",
                                (double)pc.per_layer_linear * m->hp.n_layers + (double)m->hp.vocab_size * m->hp.dim);
    }
    if (r->mode == FITLM_PLAN_INFER && !g->is_cpu) {
        /* the capacity as vLLM prints it (gpu_memory_utilization 0.90,
         * max_num_batched_tokens = max(context, 2048), requests of the context) */
        fitlm_vllm_capacity vc;
        uint32_t nbt = r->ctx > 2048 ? r->ctx : 2048;
        fitlm_vllm_capacity_compute(&m->hp, x->dev[FITLM_MEM_WEIGHTS], x->capacity_bytes, x->tp, x->kv_type, nbt, r->ctx,
                                    0.90, &vc);
        cJSON *sv = cJSON_AddObjectToObject(o, "serving_vllm");
        cJSON_AddNumberToObject(sv, "gpu_memory_utilization", 0.90);
        cJSON_AddNumberToObject(sv, "max_num_batched_tokens", nbt);
        cJSON_AddNumberToObject(sv, "total_gpu_memory_bytes", vc.total_gpu_memory);
        cJSON_AddNumberToObject(sv, "weights_bytes", vc.weights);
        cJSON_AddNumberToObject(sv, "non_torch_bytes", vc.non_torch);
        cJSON_AddNumberToObject(sv, "activation_peak_bytes", vc.activation_peak);
        cJSON_AddNumberToObject(sv, "kv_cache_memory_bytes", vc.kv_memory);
        cJSON_AddNumberToObject(sv, "kv_blocks", vc.kv_blocks);
        cJSON_AddNumberToObject(sv, "kv_tokens", vc.kv_tokens);
        cJSON_AddNumberToObject(sv, "request_tokens", r->ctx);
        cJSON_AddNumberToObject(sv, "max_concurrency", vc.max_concurrency);
        cJSON_AddNumberToObject(sv, "left_free_bytes", vc.total_gpu_memory - vc.budget);
        cJSON_AddBoolToObject(sv, "cuda_graphs_tp_over_pcie", vllm_graphs_over_pcie(g, x->tp));
    }
    cJSON *t = cJSON_AddObjectToObject(o, "time");
    if (r->mode == FITLM_PLAN_INFER) {
        cJSON_AddNumberToObject(t, "prefill_tokens_per_s", x->prefill_tps);
        cJSON_AddNumberToObject(t, "decode_tokens_per_s", x->decode_tps);
        cJSON_AddNumberToObject(t, "ttft_s", x->ttft_s);
        cJSON_AddNumberToObject(t, "tpot_s", x->tpot_s);
        cJSON_AddStringToObject(t, "prefill_bound", x->prefill_bound ? x->prefill_bound : "");
        cJSON_AddStringToObject(t, "decode_bound", x->decode_bound ? x->decode_bound : "");
        cJSON_AddNumberToObject(t, "offload_s_per_forward", x->offload_s);
        if (cat->gpus[x->gpu].is_cpu && x->tp * x->pp > 1) { /* MPI ranks on this host */
            fitlm_host_comm hc;
            fitlm_host_comm_for(cat->host_profile, r->link_alpha_s, r->link_bw, &hc);
            if (r->link_bw > 0) cJSON_AddStringToObject(t, "nodes_link", r->link_name);
            else cJSON_AddNullToObject(t, "nodes_link");
            cJSON_AddNumberToObject(t, "comm_s_per_decode_step", x->comm_s);
            cJSON_AddNumberToObject(t, "allreduce_alpha_s", hc.alpha_s);
            cJSON_AddNumberToObject(t, "allreduce_bw", hc.bw);
            cJSON_AddBoolToObject(t, "allreduce_measured", hc.measured);
        }
    } else {
        cJSON_AddNullToObject(t, "prefill_tokens_per_s");
        cJSON_AddNullToObject(t, "decode_tokens_per_s");
        cJSON_AddNumberToObject(t, "step_time_s", x->step_time_s);
        cJSON_AddNumberToObject(t, "train_tokens_per_s", x->train_tps);
        cJSON_AddNumberToObject(t, "mfu", x->mfu);
        cJSON_AddNumberToObject(t, "comm_s", x->comm_s);
        cJSON_AddNumberToObject(t, "offload_s", x->offload_s);
        if (r->train_tokens > 0) cJSON_AddNumberToObject(t, "total_hours", r->train_tokens / x->train_tps / 3600);
    }
    cJSON_AddNumberToObject(t, "pipeline_bubble", x->bubble);
    cJSON *cost = cJSON_AddObjectToObject(o, "cost");
    cJSON_AddNumberToObject(cost, "usd_per_hour", x->usd_per_hour);
    cJSON_AddNumberToObject(cost, "usd_per_million_tokens", x->usd_per_million);
    cJSON_AddNumberToObject(cost, "purchase_usd", x->purchase_usd);
    cJSON_AddBoolToObject(cost, "estimate", g->cloud_estimate || g->purchase_estimate);
    if (r->mode == FITLM_PLAN_TRAIN && r->train_tokens > 0)
        cJSON_AddNumberToObject(cost, "total_usd", r->train_tokens / x->train_tps / 3600 * x->usd_per_hour);
    return o;
}

char *fitlm_plan_json(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                      const fitlm_plan_output *out, fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    cJSON_AddNumberToObject(root, "schema_version", 1);
    cJSON_AddStringToObject(root, "mode", r->mode == FITLM_PLAN_INFER ? "inference" : "training");
    cJSON *mo = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(mo, "name", m->name);
    cJSON_AddNumberToObject(mo, "params", (double)m->params);
    cJSON_AddStringToObject(mo, "arch", arch_str(hp->arch));
    cJSON_AddStringToObject(mo, "source", m->source);
    cJSON_AddNumberToObject(mo, "layers", hp->n_layers);
    cJSON_AddNumberToObject(mo, "hidden", hp->dim);
    cJSON_AddNumberToObject(mo, "heads", hp->n_heads);
    cJSON_AddNumberToObject(mo, "kv_heads", hp->n_kv_heads);
    cJSON_AddNumberToObject(mo, "head_dim", hp->head_dim);
    cJSON_AddNumberToObject(mo, "ffn", hp->ffn_dim);
    cJSON_AddNumberToObject(mo, "vocab", hp->vocab_size);
    cJSON_AddNumberToObject(mo, "max_context", hp->ctx_len);
    cJSON_AddNumberToObject(mo, "sliding_window", hp->sliding_window);
    cJSON_AddBoolToObject(mo, "tied_embeddings", hp->tied_embeddings);
    if (m->from_file) cJSON_AddNumberToObject(mo, "file_weight_bytes", (double)m->file_weight_bytes);
    cJSON *w = cJSON_AddObjectToObject(root, "workload");
    if (r->mode == FITLM_PLAN_INFER) {
        cJSON_AddNumberToObject(w, "context", r->ctx);
        cJSON_AddNumberToObject(w, "batch", r->batch);
        cJSON_AddBoolToObject(w, "batch_search", r->batch_auto);
        cJSON_AddNumberToObject(w, "max_batch", r->max_batch);
        cJSON_AddStringToObject(w, "engine", fitlm_engine_profile_get(r->engine)->name);
        cJSON_AddNumberToObject(w, "prompt_tokens", r->prompt);
        cJSON_AddNumberToObject(w, "output_tokens", r->output);
        cJSON_AddNumberToObject(w, "prefill_chunk", r->chunk);
        cJSON_AddStringToObject(w, "weights", r->formats[0].name);
        cJSON_AddStringToObject(w, "kv_type", fitlm_type_name(r->kv_types[0]));
    } else {
        cJSON_AddStringToObject(w, "method", r->lora_rank ? (r->qlora ? "qlora" : "lora") : r->pretrain ? "pretrain" : "full");
        cJSON_AddNumberToObject(w, "lora_rank", r->lora_rank);
        cJSON_AddStringToObject(w, "optimizer", optimizer_name(r->optimizer));
        cJSON_AddBoolToObject(w, "mixed_precision", !r->pure_fp32);
        cJSON_AddNumberToObject(w, "sequence_length", r->seq);
        cJSON_AddNumberToObject(w, "micro_batch", r->micro_batch);
        cJSON_AddBoolToObject(w, "sequence_parallel", r->sequence_parallel);
    }
    cJSON_AddBoolToObject(w, "flash_attention", r->flash);
    cJSON_AddStringToObject(root, "objective", objective_name(r->objective));
    cJSON_AddBoolToObject(root, "feasible", out->n > 0);
    if (out->n > 0) {
        cJSON *best = result_json(m, r, cat, &out->results[0]);
        cJSON *item;
        cJSON *next;
        for (item = best->child; item; item = next) {
            next = item->next;
            cJSON_AddItemToObject(root, item->string, cJSON_DetachItemViaPointer(best, item));
        }
        cJSON_Delete(best);
    } else {
        cJSON_AddStringToObject(root, "why", out->hint);
    }
    if (out->have_fewest) cJSON_AddItemToObject(root, "fewest_devices", result_json(m, r, cat, &out->fewest));
    cJSON *alts = cJSON_AddArrayToObject(root, "alternatives");
    for (size_t i = 1; i < out->n && (int)i <= r->top; i++)
        cJSON_AddItemToArray(alts, result_json(m, r, cat, &out->results[i]));
    cJSON *qa = cJSON_AddArrayToObject(root, "other_formats");
    for (size_t i = 0; i < out->n_quant_alts; i++) cJSON_AddItemToArray(qa, result_json(m, r, cat, &out->quant_alts[i]));
    cJSON *cm = cJSON_AddObjectToObject(root, "this_machine_cost_model");
    if (cat->host_profile) {
        cJSON_AddStringToObject(cm, "source", "measured");
        cJSON_AddStringToObject(cm, "profile", cat->host_profile_path);
        cJSON_AddStringToObject(cm, "created", cat->host_profile->created);
    } else {
        cJSON_AddStringToObject(cm, "source", "assumed");
    }
    cJSON *here = cJSON_AddArrayToObject(root, "this_machine");
    for (size_t i = 0; i < out->n_here; i++) {
        cJSON *o = result_json(m, r, cat, &out->here[i]);
        cJSON_AddBoolToObject(o, "fits", out->here[i].fits);
        cJSON_AddItemToArray(here, o);
    }
    cJSON *s = cJSON_AddObjectToObject(root, "search");
    cJSON_AddNumberToObject(s, "layouts_evaluated", (double)out->evaluated);
    cJSON_AddNumberToObject(s, "seconds", out->search_seconds);
    cJSON_AddNumberToObject(s, "cpu_seconds", out->search_cpu_seconds);
    cJSON *k = cJSON_AddObjectToObject(root, "assumptions");
    cJSON_AddNumberToObject(k, "eff_prefill", fitlm_plan_k.eff_prefill);
    cJSON_AddNumberToObject(k, "eff_decode_bandwidth", fitlm_plan_k.eff_decode_bw);
    cJSON_AddNumberToObject(k, "eff_decode_flops", fitlm_plan_k.eff_decode_flops);
    cJSON_AddNumberToObject(k, "eff_train", fitlm_plan_k.eff_train);
    cJSON_AddNumberToObject(k, "eff_link", fitlm_plan_k.eff_link);
    if (out->n > 0) {
        const fitlm_backend_overhead *o = fitlm_backend_overhead_for(&cat->gpus[out->results[0].gpu]);
        cJSON *ob = cJSON_AddObjectToObject(k, "overhead");
        cJSON_AddStringToObject(ob, "backend", o->backend);
        cJSON_AddNumberToObject(ob, "context_bytes", o->context_bytes);
        cJSON_AddNumberToObject(ob, "blas_workspace_bytes", o->blas_workspace_bytes);
        cJSON_AddNumberToObject(ob, "collective_bytes", o->collective_bytes);
        /* --fragmentation replaces both */
        cJSON_AddNumberToObject(ob, "fragmentation_inference", r->fragmentation >= 0 ? r->fragmentation : o->frag_infer);
        cJSON_AddNumberToObject(ob, "fragmentation_training", r->fragmentation >= 0 ? r->fragmentation : o->frag_train);
    }
    cJSON_AddNumberToObject(k, "alpha_link_s", fitlm_plan_k.alpha_link_s);
    cJSON_AddNumberToObject(k, "alpha_pcie_s", fitlm_plan_k.alpha_pcie_s);
    cJSON_AddNumberToObject(k, "alpha_internode_s", fitlm_plan_k.alpha_internode_s);
    cJSON_AddNumberToObject(k, "gpu_per_layer_s", fitlm_plan_k.gpu_per_layer_s);
    cJSON_AddNumberToObject(k, "gpu_per_step_s", fitlm_plan_k.gpu_per_step_s);
    if (r->mode == FITLM_PLAN_INFER) {
        const fitlm_engine_profile *e = fitlm_engine_profile_get(r->engine);
        cJSON *eo = cJSON_AddObjectToObject(k, "engine");
        cJSON_AddStringToObject(eo, "name", e->name);
        cJSON_AddBoolToObject(eo, "vllm_memory_profile", e->vllm_memory);
        cJSON_AddBoolToObject(eo, "kv_paged", e->kv_paged);
        cJSON_AddBoolToObject(eo, "sliding_window_frees", e->window_frees);
        cJSON_AddBoolToObject(eo, "fp16_accumulate", e->fp16_acc16);
        cJSON_AddBoolToObject(eo, "dequantized_fp16_accumulate", e->dequant_acc16);
        cJSON_AddBoolToObject(eo, "int8_prefill", e->int8_prefill);
        cJSON_AddNumberToObject(eo, "int8_efficiency", e->int8_eff);
        cJSON_AddNumberToObject(eo, "per_layer_s", e->per_layer_s > 0 ? e->per_layer_s : fitlm_plan_k.gpu_per_layer_s);
        cJSON_AddNumberToObject(eo, "per_step_s", e->per_step_s > 0 ? e->per_step_s : fitlm_plan_k.gpu_per_step_s);
        cJSON_AddNumberToObject(eo, "weight_only_gemm_min_s", e->wo_gemm_min_s);
    }
    cJSON_AddNumberToObject(k, "internode_bytes_per_s", fitlm_plan_k.internode_bw);
    cJSON_AddNumberToObject(k, "kv_block_tokens", r->kv_block);
    cJSON_AddNumberToObject(k, "memory_margin", r->margin);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) fitlm_fail(err, "out of memory");
    return text;
}

/* ------------------------------------------------------------------ SVG */

static void xml_escape(FILE *fp, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '&': fputs("&amp;", fp); break;
        case '"': fputs("&quot;", fp); break;
        default: fputc(*s, fp);
        }
    }
}

int fitlm_plan_write_svg(const char *path, const fitlm_plan_model *m, const fitlm_plan_request *r,
                         const fitlm_catalog *cat, const fitlm_plan_output *out, fitlm_error *err) {
    if (out->n == 0) return fitlm_fail(err, "%s: no feasible layout to draw", path);
    const fitlm_plan_result *x = &out->results[0];
    const fitlm_gpu *g = &cat->gpus[x->gpu];
    /* one bar per device (devices of one PP stage hold the same bytes); more than
     * 32 devices: one bar per stage */
    int bars = x->count;
    bool grouped = bars > 32;
    if (grouped) bars = x->pp; /* one bar per stage */
    if (bars > FITLM_PLAN_MAX_STAGES) bars = FITLM_PLAN_MAX_STAGES;
    int bw = bars > 16 ? 28 : 56, gap = bars > 16 ? 10 : 24;
    int left = 70, top = 70, plot_h = 360;
    int width = left + bars * (bw + gap) + 230, height = top + plot_h + 90;
    if (width < 620) width = 620; /* room for the title */
    double cap = x->capacity_bytes, ymax = cap;
    for (int s = 0; s < x->n_stages && s < FITLM_PLAN_MAX_STAGES; s++) {
        double t = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) t += x->stage[s][c];
        if (t > ymax) ymax = t;
    }
    ymax *= 1.08;
    fitlm_atomic_file *af = fitlm_atomic_open(path, err);
    if (!af) return -1;
    FILE *fp = af->fp;
    fprintf(fp, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(fp, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    fprintf(fp, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", left);
    xml_escape(fp, m->name);
    fprintf(fp, " on %d x ", x->count);
    xml_escape(fp, g->name);
    fprintf(fp, " (TP %d, PP %d, DP %d)</text>\n", x->tp, x->pp, x->dp);
    fprintf(fp, "<text x=\"%d\" y=\"44\" fill=\"#555\">%s: memory per device, GiB (fitlm plan)", left,
            r->mode == FITLM_PLAN_INFER ? "inference" : "training");
    if (x->dp > 1) fprintf(fp, "; %d data-parallel replicas", x->dp);
    fprintf(fp, "</text>\n");
    /* axis and grid */
    double step = ymax / FITLM_GIB > 200 ? 40 : ymax / FITLM_GIB > 80 ? 20 : ymax / FITLM_GIB > 30 ? 10 : ymax / FITLM_GIB > 10 ? 5 : 1;
    for (double v = 0; v <= ymax / FITLM_GIB + 1e-9; v += step) {
        double y = top + plot_h - v * FITLM_GIB / ymax * plot_h;
        fprintf(fp, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", left, y,
                left + bars * (bw + gap), y);
        fprintf(fp, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%.0f</text>\n", left - 6, y + 4, v);
    }
    fprintf(fp, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", left, top, left, top + plot_h);
    for (int i = 0; i < bars; i++) {
        int s = grouped ? i : (i / x->tp) % x->pp;
        if (s >= x->n_stages) s = x->n_stages - 1;
        double bx = left + gap / 2.0 + i * (bw + gap), y = top + plot_h;
        double tot = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) {
            double v = x->stage[s][c];
            if (v <= 0) continue;
            double h = v / ymax * plot_h;
            y -= h;
            tot += v;
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" fill=\"%s\"><title>%s: %.2f GiB</title></rect>\n",
                    bx, y, bw, h, k_colors[c], k_mem_labels[c], v / FITLM_GIB);
        }
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.1f</text>\n", bx + bw / 2.0,
                y - 4, tot / FITLM_GIB);
        if (grouped)
            fprintf(fp, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">stage %d (x%d)</text>\n",
                    bx + bw / 2.0, top + plot_h + 14, s, x->tp * x->dp);
        else
            fprintf(fp, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">GPU %d</text>\n",
                    bx + bw / 2.0, top + plot_h + 14, i);
    }
    double ycap = top + plot_h - cap / ymax * plot_h, yuse = top + plot_h - x->usable_bytes / ymax * plot_h;
    int x2 = left + bars * (bw + gap);
    fprintf(fp, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#d62728\" stroke-width=\"2\"/>\n", left,
            ycap, x2, ycap);
    fprintf(fp, "<text x=\"%d\" y=\"%.1f\" fill=\"#d62728\">capacity %.1f GiB</text>\n", x2 + 6, ycap + 4,
            cap / FITLM_GIB);
    fprintf(fp, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>\n",
            left, yuse, x2, yuse);
    fprintf(fp, "<text x=\"%d\" y=\"%.1f\" fill=\"#d62728\">usable %.1f GiB</text>\n", x2 + 6, yuse + 16,
            x->usable_bytes / FITLM_GIB);
    int ly = top + plot_h / 2; /* below the capacity labels */
    for (int c = FITLM_MEM_COUNT - 1; c >= 0; c--) {
        if (x->dev[c] <= 0 && x->comp[c] <= 0) continue;
        fprintf(fp, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x2 + 6, ly, k_colors[c]);
        fprintf(fp, "<text x=\"%d\" y=\"%d\">%s</text>\n", x2 + 24, ly + 10, k_mem_labels[c]);
        ly += 18;
    }
    fprintf(fp, "<text x=\"%d\" y=\"%d\" fill=\"#555\" font-size=\"11\">", left, top + plot_h + 40);
    if (r->mode == FITLM_PLAN_INFER)
        fprintf(fp, "weights %s, KV %s, context %u, batch %u", fitlm_plan_format_name(r, x), fitlm_type_name(x->kv_type),
                r->ctx, x->batch);
    else
        fprintf(fp, "ZeRO-%d, recompute %s, sequence %u, micro-batch %u", x->zero, recompute_name(x->recompute),
                r->seq, r->micro_batch);
    fprintf(fp, "; margin %.0f%%</text>\n", r->margin * 100);
    fprintf(fp, "</svg>\n");
    return fitlm_atomic_commit(af, err);
}
