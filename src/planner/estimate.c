/* One layout -> memory per device, time and cost (inference and training).
 * Formulas and their sources: docs/planner.md. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/ggml_type.h"
#include "planner/host_comm.h"
#include "planner/cpu_cost.h"
#include "planner/planner.h"
#include "runtime/mem_model.h"
#include "runtime/runtime.h"

const char *const fitlm_mem_names[FITLM_MEM_COUNT] = {"weights", "kv_cache", "activations", "gradients",
                                                      "optimizer", "lora", "overhead"};

/* Named constants; the runtime will later calibrate them against measured runs. */
const fitlm_plan_constants fitlm_plan_k = {
    .eff_prefill = 0.60,
    .eff_decode_bw = 0.80,
    .eff_decode_flops = 0.60,
    .eff_train = 0.50,
    .eff_link = 0.80,
    .alpha_link_s = 1e-6, /* per ring step: ~14 us for a small all-reduce over 8 NVLink GPUs */
    .alpha_pcie_s = 2.5e-6,
    .alpha_internode_s = 5e-6,
    .internode_bw = 50e9,    /* fallback only: each catalog entry has its own (internode_gbs) */
    .host_bw_per_gpu = 25e9, /* ~200 GB/s of server DRAM shared by 8 GPUs */
    .nvme_bw_per_gpu = 3e9,
    .kv_block_tokens = 16,
    /* fixed GPU costs: about eight kernel launches per layer at ~1 us each,
     * and per forward step the embedding, output head, sampling and the
     * host's scheduling */
    .gpu_per_layer_s = 8e-6,
    .gpu_per_step_s = 30e-6,
};

#define K fitlm_plan_k

#define MIB 1048576.0
static const fitlm_backend_overhead k_backends[] = {
    /* CUDA: context ~0.5 GiB on recent drivers, cuBLAS workspace 32 MiB (NVIDIA's recommendation for
     * Hopper), NCCL channel buffers */
    {"cuda", 512 * MIB, 32 * MIB, 256 * MIB, 0.05, 0.10},
    /* ROCm: HIP context, hipBLASLt workspace, RCCL buffers: the CUDA figures until measured */
    {"rocm", 512 * MIB, 32 * MIB, 256 * MIB, 0.05, 0.10},
    /* CPU: fitlm's own runtime buffers */
    {"cpu", 64 * MIB, 0, 0, 0.05, 0.10},
};

const fitlm_backend_overhead *fitlm_backend_overhead_for(const fitlm_gpu *g) {
    if (g->is_cpu) return &k_backends[2];
    if (!strcmp(g->vendor, "AMD")) return &k_backends[1];
    return &k_backends[0];
}

static double peak_flops(const fitlm_gpu *g, const fitlm_wformat *f, bool training, bool pure_fp32) {
    if (pure_fp32 || (f && f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F32)) return g->fp16_flops / 2; /* TF32 */
    if (!training && f && f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F8_E4M3 && g->fp8_flops > 0)
        return g->fp8_flops;
    return g->bf16_flops > 0 ? g->bf16_flops : g->fp16_flops;
}

/* Bandwidth and latency of the link a group of n devices talks over. */
static void link_of(const fitlm_gpu *g, int group, bool crosses_nodes, double *bw, double *alpha) {
    if (crosses_nodes) {
        *bw = (g->internode_bw > 0 ? g->internode_bw : K.internode_bw) * K.eff_link;
        *alpha = K.alpha_internode_s;
    } else if (g->link_bw > 0 && group <= g->link_max_gpus) {
        *bw = g->link_bw / 2 * K.eff_link; /* vendors quote both directions together */
        *alpha = K.alpha_link_s;
    } else {
        *bw = fitlm_pcie_bw(g->pcie_gen) * K.eff_link;
        *alpha = K.alpha_pcie_s;
    }
}

static void stage_layers(uint32_t L, int P, int s, uint32_t *l0, uint32_t *l1) {
    uint32_t base = L / (uint32_t)P, extra = L % (uint32_t)P;
    uint32_t start = (uint32_t)s * base + ((uint32_t)s < extra ? (uint32_t)s : extra);
    *l0 = start;
    *l1 = start + base + ((uint32_t)s < extra ? 1 : 0);
}

/* Transformer layers on training pipeline stage s: the layers split as evenly as
 * stage_layers does, or, with the embedding and the output layer + loss counted
 * as one layer each (embed_split), L + 2 units split so, the first and the last
 * stage holding one unit that is not a transformer layer. */
static uint32_t train_stage_layers(uint32_t L, int P, int s, bool embed_split) {
    uint32_t l0, l1;
    if (!embed_split || P < 2) {
        stage_layers(L, P, s, &l0, &l1);
        return l1 - l0;
    }
    stage_layers(L + 2, P, s, &l0, &l1);
    uint32_t n = l1 - l0;
    if (s == 0 && n) n--;
    if (s == P - 1 && n) n--;
    return n;
}

/* frag: --fragmentation (< 0: the backend's constant for the mode) */
static double overhead_bytes(const fitlm_gpu *g, int count, double dynamic, bool training, double frag) {
    const fitlm_backend_overhead *o = fitlm_backend_overhead_for(g);
    if (frag < 0) frag = training ? o->frag_train : o->frag_infer;
    return o->context_bytes + o->blas_workspace_bytes + (count > 1 ? o->collective_bytes : 0) + frag * dynamic;
}

static uint64_t round_up(uint64_t x, uint64_t m) { return m ? (x + m - 1) / m * m : x; }

static double kv_heads_per_device(const fitlm_hparams *hp, int T) {
    double kv = (double)hp->n_kv_heads / T;
    return kv < 1 ? 1 : kv; /* replicated when TP exceeds the KV heads */
}

/* ---------------------------------------------------------------- this machine's CPU */

/* The fitlm CPU kernel whose rates a weight format runs at. */
static int cpu_kernel_type(const fitlm_plan_model *m, const fitlm_wformat *f) {
    switch (f->kind) {
    case FITLM_W_PLAIN:
        return f->type == FITLM_TYPE_F8_E4M3 ? FITLM_TYPE_F16 : f->type;
    case FITLM_W_GGUF:
    case FITLM_W_GGUF_MIX:
        return f->type;
    case FITLM_W_INT8:
        return FITLM_TYPE_Q8_0;
    case FITLM_W_GPTQ:
    case FITLM_W_AWQ:
        return FITLM_TYPE_Q4_0;
    case FITLM_W_FILE: {
        const char *c = strchr(m->file_type_name, ':');
        int t = c ? fitlm_type_from_name(c + 1) : -1;
        return t >= 0 ? t : FITLM_TYPE_F16;
    }
    }
    return FITLM_TYPE_F16;
}

int fitlm_plan_format_type(const fitlm_plan_model *m, const fitlm_wformat *f) { return cpu_kernel_type(m, f); }

/* The catalog's host CPU entry (NULL: none). */
static const fitlm_gpu *host_cpu(const fitlm_catalog *cat) {
    for (size_t i = 0; i < cat->n; i++)
        if (cat->gpus[i].is_cpu) return &cat->gpus[i];
    return NULL;
}

/* The threads the host CPU's share of a plan runs on: -t, else the host
 * profile's, else the CPU entry's cores. */
static int host_threads(const fitlm_plan_request *r, const fitlm_host_profile *prof, const fitlm_gpu *cpu) {
    if (r->host_threads > 0) return r->host_threads;
    if (prof && prof->threads > 0) return prof->threads;
    return cpu && cpu->cpu_cores > 0 ? cpu->cpu_cores : 1;
}

/* Inference on the host CPU with fitlm's own runtime: the memory the runtime
 * allocates (runtime/mem_model.h) and the calibrated cost model
 * (planner/cpu_cost.h), the same functions `bench --plan-check` uses. */
static void eval_infer_cpu(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                           const fitlm_weight_bytes *wb, fitlm_plan_result *res) {
    const fitlm_hparams *hp = &m->hp;
    const fitlm_gpu *g = &cat->gpus[res->gpu];
    const fitlm_wformat *f = &r->formats[res->format >= 0 && res->format < r->n_formats ? res->format : 0];
    const fitlm_host_profile *prof = cat->host_profile;
    int threads = host_threads(r, prof, g);
    uint32_t ub = r->chunk < FITLM_DEFAULT_UBATCH ? r->chunk : FITLM_DEFAULT_UBATCH;
    fitlm_mem_model mm;
    fitlm_mem_model_cpu(hp, (uint64_t)wb->total, res->kv_type, r->ctx, ub, threads, &mm);
    /* one sequence per KV cache; a batch holds one cache per sequence */
    double seqs = r->batch ? r->batch : 1;
    res->n_stages = 1;
    res->kv_bytes_per_token = fitlm_kv_bytes_per_token(hp, res->kv_type);
    double *st = res->stage[0];
    memset(st, 0, sizeof(double) * FITLM_MEM_COUNT);
    st[FITLM_MEM_WEIGHTS] = wb->total;
    st[FITLM_MEM_KV] = (double)mm.kv * seqs;
    st[FITLM_MEM_ACT] = (double)mm.scratch;
    st[FITLM_MEM_OVERHEAD] = prof && prof->process_base_bytes > 0 ? prof->process_base_bytes : FITLM_ASSUMED_PROCESS_BASE;
    memcpy(res->dev, st, sizeof res->dev);
    memcpy(res->comp, st, sizeof res->comp);
    res->per_device_bytes = res->total_bytes = 0;
    for (int c = 0; c < FITLM_MEM_COUNT; c++) res->per_device_bytes += st[c];
    res->total_bytes = res->per_device_bytes;
    res->host_bytes = 0;

    /* the work: every matrix at the format's kernel rate (mixes at their main type) */
    fitlm_param_counts pc;
    fitlm_plan_param_counts(hp, &pc);
    fitlm_cpu_work w;
    memset(&w, 0, sizeof w);
    w.hp = hp;
    w.kv_type = res->kv_type;
    int kt = cpu_kernel_type(m, f);
    double layer_bytes = 0;
    for (uint32_t l = 0; l < wb->n_layers; l++) layer_bytes += wb->layer[l];
    int T = res->tp > 1 ? res->tp : 1, P = res->pp > 1 ? res->pp : 1;
    /* --nodes-link: each rank on its own node (its own cores and memory
     * bandwidth). A token passes every stage, and each tensor rank reads 1/T
     * of every layer it holds: a node's share of the layers' work is 1/T; the
     * output matrix stays whole (replicated, computed once for the logits). */
    bool nodes = r->link_bw > 0 && T * P > 1;
    double share = nodes ? 1.0 / T : 1.0;
    fitlm_cpu_work_add(&w, kt, layer_bytes * share + wb->other, (double)pc.per_layer_linear * hp->n_layers * share);
    if (nodes) {
        /* the fullest node: a first or last stage of ceil(L / P) layers with
         * its 1/T of them, the embedding or the output matrix (both when P = 1),
         * its KV heads (whole heads; replicated when T exceeds them) */
        double stage_frac = ceil((double)hp->n_layers / P) / (hp->n_layers ? hp->n_layers : 1);
        double ends = P == 1 ? wb->embedding + wb->output : fmax(wb->embedding, wb->output);
        if (hp->tied_embeddings) ends = wb->embedding;
        uint32_t kvh = hp->n_kv_heads ? hp->n_kv_heads : 1;
        double kv_frac = stage_frac * ceil((double)kvh / T) / kvh;
        st[FITLM_MEM_WEIGHTS] = layer_bytes * stage_frac / T + ends + wb->other * stage_frac;
        st[FITLM_MEM_KV] *= kv_frac;
        for (int s = 1; s < P && s < FITLM_PLAN_MAX_STAGES; s++) memcpy(res->stage[s], st, sizeof(double) * FITLM_MEM_COUNT);
        memcpy(res->dev, st, sizeof res->dev);
        res->per_device_bytes = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) res->per_device_bytes += st[c];
        res->total_bytes = res->per_device_bytes * T * P;
    }
    w.output_type = kt;
    w.output_bytes = hp->tied_embeddings ? wb->embedding : wb->output;
    w.output_params = (double)hp->vocab_size * hp->dim;
    fitlm_cpu_pred pp, tg;
    /* pipeline stages on this host share its threads and take turns on fewer
     * sequences than stages (planner/host_comm.h); on separate nodes
     * (--nodes-link) the work above is already one node's share at its
     * threads, the stages one after another */
    double max_stage = ceil((double)hp->n_layers / P) / (hp->n_layers ? hp->n_layers : 1);
    int host_P = nodes ? 1 : P;
    fitlm_host_pipeline_predict(prof, g->mem_bw, g->fp16_flops, &w, threads, host_P, r->prompt, ub, max_stage,
                                r->prompt, r->output, &pp, &tg);
    double mean_ctx = r->prompt + r->output / 2.0;
    res->flops_per_token = 2.0 * ((double)pc.per_layer_linear * hp->n_layers + w.output_params) +
                           4.0 * hp->n_layers * hp->n_heads * hp->head_dim * mean_ctx;
    /* a batch of B sequences on the CPU runtime: prompts one after another,
     * decode steps of B tokens read the weights once (the KV of each) */
    res->ttft_s = pp.ttft_s;
    res->prefill_tps = pp.pp_tps;
    res->prefill_bound = "compute";
    res->tpot_s = fitlm_host_pipeline_step_s(&tg, &w, host_P, max_stage, seqs, mean_ctx);
    /* tensor / pipeline parallel over MPI ranks on this host (fitlm's runtime:
     * the same cores and memory bandwidth split between the ranks, so the
     * compute is the single process's; add the communication, from the
     * profile's measured all-reduce figures or the assumed ones), or on
     * separate nodes (--nodes-link: the node's share above, the link's
     * figures) */
    if (T * P > 1) {
        fitlm_host_comm hc;
        fitlm_host_comm_for(prof, r->link_alpha_s, r->link_bw, &hc);
        double chunks = ceil((double)r->prompt / ub);
        double pf_comm = chunks * fitlm_host_step_comm_s(&hc, hp, T, P, (double)r->prompt / chunks);
        double tg_comm = fitlm_host_step_comm_s(&hc, hp, T, P, seqs);
        res->ttft_s += pf_comm;
        res->prefill_tps = r->prompt / res->ttft_s;
        res->tpot_s += tg_comm;
        res->comm_s = tg_comm;
        res->n_stages = P;
    }
    res->decode_tps = seqs / res->tpot_s;
    /* compute-bound once the rows beyond the first take longer than reading the weights */
    double read_s = 0;
    for (int i = 0; i <= w.n; i++) read_s += tg.mat_s[i];
    double step_rows = host_P > 1 ? (seqs >= host_P ? seqs / host_P : 1) : seqs; /* a lane's rows */
    res->decode_bound = fitlm_cpu_batch_step_s(&tg, &w, step_rows, 0) - tg.decode_s > read_s ? "compute" : "memory";
    res->bubble = 0;
    res->offload_s = 0;
    double cycle = res->ttft_s * seqs + r->output * res->tpot_s;
    res->usd_per_hour = g->cloud_usd_per_hour * res->count;
    res->purchase_usd = g->purchase_usd * res->count;
    double gen = seqs * r->output;
    res->usd_per_million = res->usd_per_hour > 0 ? res->usd_per_hour * cycle / 3600.0 / gen * 1e6 : 0;
}

/* Layers of stage [l0, l1) on the device when the last `off` of L stay on the host. */
static double stage_dev_layers(uint32_t L, uint32_t off, uint32_t l0, uint32_t l1) {
    uint32_t end = L - off < l1 ? L - off : l1;
    return end > l0 ? (double)(end - l0) : 0;
}

/* The layers a GPU plan keeps in host memory, run on the host CPU as fitlm's
 * split backend runs them (the engine's host_layers_on_cpu): the calibrated
 * CPU cost model (planner/cpu_cost.h, the catalog's CPU entry and host
 * profile) over their matrices at the format's kernel rate, without the
 * output matrix (it stays with the GPU's last layer). *prefill_s: the
 * batch's prompts, one after another; *step_s: a decode step of the batch at
 * mean context ctx. false (nothing set) when the catalog has no CPU entry. */
static bool host_layers_cost(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                             const fitlm_wformat *f, uint32_t off, double off_bytes, int kv_type, double ctx,
                             double *prefill_s, double *step_s) {
    const fitlm_gpu *cpu = host_cpu(cat);
    if (!cpu || off == 0) return false;
    const fitlm_host_profile *prof = cat->host_profile;
    int threads = host_threads(r, prof, cpu);
    uint32_t ub = r->chunk < FITLM_DEFAULT_UBATCH ? r->chunk : FITLM_DEFAULT_UBATCH;
    fitlm_hparams h = m->hp;
    h.n_layers = off;
    fitlm_param_counts pc;
    fitlm_plan_param_counts(&m->hp, &pc);
    fitlm_cpu_work w;
    memset(&w, 0, sizeof w);
    w.hp = &h;
    w.kv_type = kv_type;
    int kt = cpu_kernel_type(m, f);
    fitlm_cpu_work_add(&w, kt, off_bytes, (double)pc.per_layer_linear * off);
    w.output_type = kt;
    fitlm_cpu_pred pp, tg;
    fitlm_cpu_predict(prof, cpu->mem_bw, cpu->fp16_flops, &w, threads, r->prompt, ub, 0, 0, &pp);
    fitlm_cpu_predict(prof, cpu->mem_bw, cpu->fp16_flops, &w, threads, 0, ub, r->prompt, r->output, &tg);
    *prefill_s = pp.prefill_s * (r->batch ? r->batch : 1);
    *step_s = fitlm_cpu_batch_step_s(&tg, &w, r->batch ? r->batch : 1, ctx);
    return true;
}

/* ---------------------------------------------------------------- inference */

static void eval_infer(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                       const fitlm_weight_bytes *wb, fitlm_plan_result *res) {
    const fitlm_hparams *hp = &m->hp;
    const fitlm_gpu *g = &cat->gpus[res->gpu];
    if (g->is_cpu && res->offload_layers == 0) {
        eval_infer_cpu(m, r, cat, wb, res);
        return;
    }
    const fitlm_wformat *f = &r->formats[res->format >= 0 && res->format < r->n_formats ? res->format : 0];
    const fitlm_engine_profile *eng = fitlm_engine_profile_get(r->engine);
    double per_layer_s = eng->per_layer_s > 0 ? eng->per_layer_s : K.gpu_per_layer_s;
    double per_step_s = eng->per_step_s > 0 ? eng->per_step_s : K.gpu_per_step_s;
    /* a GPU measured through fitlm's backend (calibrate --device): its
     * figures are what the kernels reach, and with fitlm's engine its own
     * fixed costs */
    const double eff_bw = g->measured ? 1.0 : K.eff_decode_bw, eff_pf = g->measured ? 1.0 : K.eff_prefill;
    if (g->measured && r->engine == FITLM_ENGINE_FITLM) {
        per_layer_s = g->measured_per_layer_s;
        per_step_s = g->measured_per_step_s;
    }
    int T = res->tp, P = res->pp;
    uint32_t L = hp->n_layers;
    double kvb = fitlm_kv_type_bytes(res->kv_type);
    double kv_dev_heads = kv_heads_per_device(hp, T);
    uint64_t window = hp->sliding_window ? hp->sliding_window : r->ctx;
    if (window > r->ctx) window = r->ctx;
    /* KV tokens held: contiguous engines allocate the full context of every
     * sequence (bounded by a sliding window only where the engine frees what
     * falls out of it); paged engines hold blocks for the tokens in use
     * (prompt + output), and at least one request of the full context (vLLM
     * refuses to start when its KV cannot hold max_model_len tokens) */
    uint64_t held = eng->window_frees ? window : r->ctx;
    double tokens = (double)r->batch * (double)round_up(held, r->kv_block);
    if (eng->kv_paged) {
        uint64_t in_use = (uint64_t)r->prompt + r->output;
        if (in_use > held) in_use = held;
        tokens = fmax((double)r->batch * (double)round_up(in_use, r->kv_block), (double)round_up(held, r->kv_block));
    }
    double chunk = (double)r->batch * r->prompt;
    if (chunk > r->chunk) chunk = r->chunk;
    double heads_dev = (double)hp->n_heads / T;

    res->kv_bytes_per_token = fitlm_kv_bytes_per_token(hp, res->kv_type);
    res->comp[FITLM_MEM_WEIGHTS] = wb->total;
    res->comp[FITLM_MEM_KV] = res->kv_bytes_per_token * tokens;

    /* transient buffers of one prefill chunk (the largest of attention, MLP, logits) */
    double hidden = 2.0 * chunk * hp->dim * 2;
    double attn = chunk * (heads_dev + 2 * kv_dev_heads) * hp->head_dim * 2 + chunk * heads_dev * hp->head_dim * 2;
    if (!r->flash) attn += chunk * heads_dev * (double)window * 6; /* fp32 scores + 16-bit probabilities */
    double mlp = chunk * 3.0 * hp->ffn_dim / T * 2;
    double logits = (double)r->batch * hp->vocab_size / T * 4;

    /* offloaded layers (host memory, streamed over PCIe every forward) */
    uint32_t off = res->offload_layers;
    if (off > L) off = L;
    double off_bytes = 0;
    for (uint32_t l = L - off; l < L; l++) off_bytes += wb->layer[l];

    double worst = 0, act_worst = 0, replica_act = 0;
    res->n_stages = P;
    for (int s = 0; s < P; s++) {
        uint32_t l0, l1;
        stage_layers(L, P, s, &l0, &l1);
        double w = 0;
        for (uint32_t l = l0; l < l1; l++) w += (l >= L - off) ? 0 : wb->layer[l];
        if (s == 0) w += wb->embedding;
        if (s == P - 1) w += wb->output + wb->other + (hp->tied_embeddings && P > 1 ? wb->embedding : 0);
        double act = hidden + fmax(attn, mlp);
        if (s == P - 1) act = hidden + fmax(fmax(attn, mlp), logits);
        double ovh = overhead_bytes(g, res->count, act, false, r->fragmentation);
        if (eng->vllm_memory) {
            /* vLLM's start-up profile: the activation peak of a profile run of
             * max_num_batched_tokens = max(context, 2048) tokens (logits on the
             * last stage) and its non-torch memory (CUDA context, cuBLAS, NCCL) */
            uint32_t nbt = r->ctx > 2048 ? r->ctx : 2048;
            act = fitlm_vllm_activation_peak(hp, nbt, T, s == P - 1);
            ovh = (T * P > 1) ? FITLM_VLLM_NON_TORCH_TPN : FITLM_VLLM_NON_TORCH_TP1;
        }
        double *st = res->stage[s < FITLM_PLAN_MAX_STAGES ? s : FITLM_PLAN_MAX_STAGES - 1];
        memset(st, 0, sizeof(double) * FITLM_MEM_COUNT);
        st[FITLM_MEM_WEIGHTS] = w / T;
        /* the KV of the host's layers in host memory where the engine keeps it with its layer */
        double kv_layers = eng->kv_with_layer ? stage_dev_layers(L, off, l0, l1) : (double)(l1 - l0);
        st[FITLM_MEM_KV] = 2.0 * kv_layers * kv_dev_heads * hp->head_dim * kvb * tokens;
        st[FITLM_MEM_ACT] = act;
        st[FITLM_MEM_OVERHEAD] = ovh;
        double tot = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) tot += st[c];
        if (tot > worst) {
            worst = tot;
            memcpy(res->dev, st, sizeof res->dev);
        }
        if (act > act_worst) act_worst = act;
        res->total_bytes += tot * T;
        replica_act += act * T; /* every device of the replica holds its own buffers */
        res->comp[FITLM_MEM_OVERHEAD] += st[FITLM_MEM_OVERHEAD] * T;
    }
    res->total_bytes *= res->dp;
    res->per_device_bytes = worst;
    res->comp[FITLM_MEM_ACT] = replica_act;
    res->host_bytes = off_bytes * res->dp;
    if (eng->kv_with_layer) res->host_bytes += 2.0 * off * hp->n_kv_heads * hp->head_dim * kvb * tokens * res->dp;

    /* ---- time ---- */
    fitlm_param_counts pc;
    fitlm_plan_param_counts(hp, &pc);
    double p_mm = (double)pc.per_layer_linear * L + (double)hp->vocab_size * hp->dim;
    double mean_ctx = r->prompt + r->output / 2.0;
    if (mean_ctx > window) mean_ctx = (double)window;
    double attn_tok = 4.0 * L * hp->n_heads * hp->head_dim * mean_ctx;
    res->flops_per_token = 2 * p_mm + attn_tok;
    double peak = g->measured ? g->bf16_flops : peak_flops(g, f, false, false);
    /* the prefill GEMMs of the engine's compute path: FP16 accumulation on the
     * cards where it runs faster (GeForce), or quantized weights on INT8 tensor
     * cores at the engine's measured fraction of the INT8 peak */
    double pf_rate = peak * eff_pf;
    bool quantized = f->kind == FITLM_W_GGUF || f->kind == FITLM_W_GGUF_MIX ||
                     (f->kind == FITLM_W_FILE && !strstr(m->file_type_name, "F16") && !strstr(m->file_type_name, "F32"));
    if (eng->int8_prefill && quantized && g->int8_ops > 0) pf_rate = g->int8_ops * eng->int8_eff;
    else if (eng->fp16_acc16 && g->fp16_acc16_flops > g->fp16_flops &&
             ((f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F16) ||
              (f->kind == FITLM_W_FILE && !strcmp(m->file_type_name, "file:F16"))))
        pf_rate = g->fp16_acc16_flops * K.eff_prefill; /* BF16 and FP32 accumulate in FP32 */
    else if (eng->dequant_acc16 && g->fp16_acc16_flops > g->fp16_flops &&
             (f->kind == FITLM_W_GPTQ || f->kind == FITLM_W_AWQ))
        pf_rate = g->fp16_acc16_flops * K.eff_prefill; /* reconstructed to FP16, cublasHgemm */
    double bw_mem = g->mem_bw;
    double link_bw, alpha;
    link_of(g, T, false, &link_bw, &alpha);
    double pp_bw, pp_alpha;
    link_of(g, T * P, T * P > g->max_per_node, &pp_bw, &pp_alpha);
    double pcie = fitlm_pcie_bw(g->pcie_gen) * K.eff_link;
    double off_dev = off_bytes / T;
    /* offloaded layers as llama.cpp runs them: a decode step computes them on
     * the host CPU at its memory bandwidth (the catalog's CPU entry: measured
     * by fitlm calibrate or estimated), a prefill chunk streams their weights
     * to the GPU over PCIe (large batches run on the GPU) */
    const fitlm_gpu *hcpu = host_cpu(cat);
    double host_bw = hcpu ? hcpu->mem_bw * K.eff_decode_bw : 0;
    /* bytes a forward streams per stage: its weights, less the input
     * embedding table on the first stage (a token reads one row of it),
     * unless that table is also the output head there (tied, one stage) */
    double embd_unread = (hp->tied_embeddings && P == 1) ? 0 : wb->embedding / T;
    double off_decode = off_bytes > 0 ? (host_bw > 0 ? off_bytes / host_bw : off_dev / pcie) : 0;
    /* fitlm's engine: the host's layers run on the host CPU for the prompt
     * too, one after the other with the GPU's (nothing streamed over PCIe);
     * the GPU computes, reads the KV of and pays the fixed costs of its own
     * layers only */
    double off_prefill = -1, host_step = 0;
    bool on_host = eng->host_layers_on_cpu && off > 0 &&
                   host_layers_cost(m, r, cat, f, off, off_bytes, res->kv_type, mean_ctx, &off_prefill, &host_step);
    if (on_host) off_decode = host_step;

    /* prefill: B prompts in n chunks that flow through the PP stages; per chunk and
     * stage FLOPs / compute + weight bytes / bandwidth (a chunk of a few hundred
     * tokens sits near the ridge point, where the GEMMs hide neither the weight
     * stream nor the math: the published batch-1 first-token latencies of
     * TensorRT-LLM on A100 and L40S follow the sum within 20 %, the roofline's
     * max was 26-42 % short at 128 tokens; docs/planner.md) plus the TP
     * all-reduces; n + P - 1 stage slots in all */
    double prompt_tokens = (double)r->batch * r->prompt;
    double n_chunks = ceil(prompt_tokens / chunk);
    /* the attention's score and value products run in 16 bits whatever the
     * weights' format (FlashAttention-2 and TensorRT-LLM's context FMHA take
     * FP16/BF16 operands; the FP8 GEMMs' rate does not apply to them) */
    double attn_rate = pf_rate;
    if (f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F8_E4M3 && peak > peak_flops(g, NULL, false, false))
        attn_rate = peak_flops(g, NULL, false, false) * eff_pf;
    double pf_gemm_flops = (double)r->batch * 2 * p_mm * r->prompt;
    double pf_attn_flops =
        (double)r->batch * 2.0 * L * hp->n_heads * hp->head_dim * (double)r->prompt * fmin(r->prompt, window);
    double slot = 0;
    bool pf_compute = true;
    for (int s = 0; s < P; s++) {
        uint32_t l0, l1;
        stage_layers(L, P, s, &l0, &l1);
        double nl = on_host ? stage_dev_layers(L, off, l0, l1) : l1 - l0;
        double wst = res->stage[s < FITLM_PLAN_MAX_STAGES ? s : FITLM_PLAN_MAX_STAGES - 1][FITLM_MEM_WEIGHTS] -
                     (s == 0 ? embd_unread : 0);
        double tc = (pf_gemm_flops / pf_rate + pf_attn_flops / attn_rate) / n_chunks * (nl / L) / T;
        double tm = wst / (bw_mem * eff_bw);
        double tcomm = T > 1 ? 2.0 * nl * fitlm_allreduce_time(chunk * hp->dim * 2, T, alpha, link_bw) : 0;
        if (P > 1) tcomm += pp_alpha + chunk * hp->dim * 2 / pp_bw;
        double t = tc + tm + tcomm + nl * per_layer_s;
        if (t > slot) {
            slot = t;
            pf_compute = tc >= tm;
        }
    }
    double prefill = (n_chunks + P - 1) * slot + n_chunks * per_step_s + (on_host ? off_prefill : n_chunks * off_dev / pcie);
    res->prefill_bound = pf_compute ? "compute" : "memory";
    res->ttft_s = prefill;
    res->prefill_tps = prompt_tokens / prefill * res->dp;

    /* decode: one token for each of B sequences per step, B split in min(B, P) micro-batches */
    int mpp = (int)(r->batch < (uint32_t)P ? r->batch : (uint32_t)P);
    if (mpp < 1) mpp = 1;
    double bmb = (double)r->batch / mpp;
    double kv_dev_tok = 2.0 * kv_dev_heads * hp->head_dim * kvb; /* per layer per token per device */
    /* weight-only quantized GEMMs with a shortest time (the engine's
     * wo_gemm_min_s): per layer, the merged QKV, the output projection, the
     * merged gate/up and the down projection each take at least that long; a
     * matrix's bytes are its share of the layer's parameters */
    bool wo_floor = eng->wo_gemm_min_s > 0 && (f->kind == FITLM_W_INT8 || f->kind == FITLM_W_GPTQ ||
                                                f->kind == FITLM_W_AWQ);
    double gemm_share[4] = {0};
    if (wo_floor && pc.per_layer_linear > 0) {
        double d = hp->dim, hd = hp->head_dim, q = (double)hp->n_heads * hd, kvd = (double)hp->n_kv_heads * hd;
        double ff = hp->ffn_dim, lin = (double)pc.per_layer_linear;
        gemm_share[0] = d * (q + 2 * kvd) / lin;
        gemm_share[1] = q * d / lin;
        gemm_share[2] = 2 * d * ff / lin;
        gemm_share[3] = ff * d / lin;
    }
    double t_stage = 0;
    bool mem_bound = true;
    for (int s = 0; s < P; s++) {
        uint32_t l0, l1;
        stage_layers(L, P, s, &l0, &l1);
        double nl = on_host ? stage_dev_layers(L, off, l0, l1) : l1 - l0;
        double bytes = res->stage[s < FITLM_PLAN_MAX_STAGES ? s : FITLM_PLAN_MAX_STAGES - 1][FITLM_MEM_WEIGHTS] -
                       (s == 0 ? embd_unread : 0) + bmb * mean_ctx * kv_dev_tok * nl;
        double fl = bmb * (2 * p_mm + attn_tok) * (nl / L) / T;
        double tm = bytes / (bw_mem * eff_bw), tc = fl / (peak * K.eff_decode_flops);
        if (wo_floor)
            for (uint32_t l = l0; l < l1; l++) {
                if (l >= L - off) continue; /* runs on the host */
                for (int k = 0; k < 4; k++) {
                    double tg = wb->layer[l] * gemm_share[k] / T / (bw_mem * eff_bw);
                    if (tg < eng->wo_gemm_min_s) tm += eng->wo_gemm_min_s - tg;
                }
            }
        double tcomm = T > 1 ? 2.0 * nl * fitlm_allreduce_time(bmb * hp->dim * 2, T, alpha, link_bw) : 0;
        double t = fmax(tm, tc) + tcomm + nl * per_layer_s;
        if (t > t_stage) {
            t_stage = t;
            mem_bound = tm >= tc;
        }
    }
    /* steady state: the m micro-batches stay in flight (no flush per token);
     * every sequence's next token comes after one trip through the P stages,
     * P stage times, in which each stage is busy m of P slots */
    double step = P * t_stage + (P > 1 ? (P - 1) * (pp_alpha + bmb * hp->dim * 2 / pp_bw) : 0) + off_decode +
                  per_step_s;
    res->bubble = P > 1 ? (double)(P - mpp) / P : 0;
    res->decode_bound = mem_bound ? "memory" : "compute";
    res->tpot_s = step;
    res->decode_tps = r->batch / step * res->dp;
    res->offload_s = off_decode;

    double cycle = res->ttft_s + r->output * res->tpot_s;
    res->usd_per_hour = g->cloud_usd_per_hour * res->count;
    res->purchase_usd = g->purchase_usd * res->count;
    double gen = (double)r->batch * r->output * res->dp;
    res->usd_per_million = res->usd_per_hour > 0 ? res->usd_per_hour * cycle / 3600.0 / gen * 1e6 : 0;
}

/* ---------------------------------------------------------------- training */

static double optimizer_k(const fitlm_plan_request *r) {
    switch (r->optimizer) {
    case FITLM_OPT_ADAM8BIT: /* 1-byte m and v + a fp32 absmax per 2048-block each (bitsandbytes) */
        return (r->pure_fp32 ? 0 : 4) + 2 + 2 * 4.0 / 2048;
    case FITLM_OPT_SGD: return (r->pure_fp32 ? 0 : 4) + 4; /* momentum */
    default: return (r->pure_fp32 ? 0 : 4) + 8;            /* fp32 master + m + v */
    }
}

static int lora_targets_count(unsigned mask) {
    int n = 0;
    for (int k = 0; k < 32; k++)
        if (mask & (1u << k)) n++;
    return n;
}

/* LoRA adapter parameters per layer: r * (in + out) per targeted matrix. */
static double lora_params_per_layer(const fitlm_hparams *hp, unsigned mask, double rank) {
    double d = hp->dim, q = (double)hp->n_heads * hp->head_dim, kv = (double)hp->n_kv_heads * hp->head_dim,
           f = hp->ffn_dim, p = 0;
    if (mask & (1u << FITLM_T_ATTN_Q)) p += rank * (d + q);
    if (mask & (1u << FITLM_T_ATTN_K)) p += rank * (d + kv);
    if (mask & (1u << FITLM_T_ATTN_V)) p += rank * (d + kv);
    if (mask & (1u << FITLM_T_ATTN_OUT)) p += rank * (q + d);
    if (mask & (1u << FITLM_T_FFN_GATE)) p += rank * (d + f);
    if (mask & (1u << FITLM_T_FFN_UP)) p += rank * (d + f);
    if (mask & (1u << FITLM_T_FFN_DOWN)) p += rank * (f + d);
    return p;
}

static void eval_train(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                       fitlm_plan_result *res) {
    const fitlm_hparams *hp = &m->hp;
    const fitlm_gpu *g = &cat->gpus[res->gpu];
    int T = res->tp, P = res->pp, D = res->dp, Z = res->zero;
    int V = res->interleave > 1 && P > 1 ? res->interleave : 1;
    uint32_t L = hp->n_layers;
    fitlm_param_counts pc;
    fitlm_plan_param_counts(hp, &pc);
    bool lora = r->lora_rank > 0;
    double kopt = optimizer_k(r);
    double wb = r->pure_fp32 ? 4 : 2;
    double gb = (r->pure_fp32 || r->fp32_grads) ? 4 : 2;
    double psi = (double)pc.total;
    uint32_t m_acc = res->grad_accum;
    double s = r->seq, b = r->micro_batch;
    bool crosses = res->count > g->max_per_node;

    /* frozen base bytes per parameter for LoRA / QLoRA (NF4 + double-quantized absmax) */
    double qlora_bpw = (4.0 + 8.0 / 64 + 32.0 / (64 * 256)) / 8;
    double lora_layer = lora ? lora_params_per_layer(hp, r->lora_targets, r->lora_rank) : 0;
    double psi_lora = lora_layer * L;
    /* adapter bytes per parameter: LoRA (PEFT's default) keeps fp32 adapters and
     * gradients; QLoRA as its reference implementation runs it (artidoro/qlora,
     * qlora.py with --bf16) casts the adapters to the 16-bit compute dtype, so
     * weight and gradient take 2 bytes each, and AdamW's 32-bit m and v 8 */
    double ad_w = r->qlora && !r->pure_fp32 ? 2 : 4, ad_g = ad_w;
    double ad_opt = kopt - (r->pure_fp32 ? 0 : 4); /* no fp32 master copy of an adapter */

    /* replica components */
    if (lora) {
        double lin = (double)pc.per_layer_linear * L, rest = psi - lin;
        res->comp[FITLM_MEM_WEIGHTS] = r->qlora ? lin * qlora_bpw + rest * 2 : psi * 2;
        res->comp[FITLM_MEM_LORA] = psi_lora * (ad_w + ad_g + ad_opt);
    } else {
        res->comp[FITLM_MEM_WEIGHTS] = wb * psi;
        res->comp[FITLM_MEM_GRAD] = gb * psi;
        res->comp[FITLM_MEM_OPT] = kopt * psi;
    }

    fitlm_act_layer al = {.s = s, .b = b, .h = hp->dim, .a = hp->n_heads, .ffn = hp->ffn_dim,
                          .kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim, .t = T,
                          .sp = r->sequence_parallel && T > 1, .flash = r->flash,
                          .recompute = (fitlm_recompute)res->recompute, .gpt_style = false};
    double act_layer = fitlm_activation_bytes_per_layer(&al);
    fitlm_act_layer full = al;
    full.recompute = FITLM_RECOMPUTE_NONE;
    double act_layer_full = fitlm_activation_bytes_per_layer(&full);
    int n_targets = lora_targets_count(r->lora_targets);
    if (lora) act_layer += n_targets * 2.0 * s * b * r->lora_rank;

    double worst = 0, host_per_gpu_worst = 0, nvme_per_gpu_worst = 0;
    res->n_stages = P;
    double gather = 0;
    uint32_t nl_max = 0;
    for (int st = 0; st < P; st++) {
        uint32_t nl_st = train_stage_layers(L, P, st, res->pp_embed_split);
        if (nl_st > nl_max) nl_max = nl_st;
        double nl = nl_st;
        double p_stage = nl * pc.per_layer + (st == 0 ? pc.embedding : 0) +
                         (st == P - 1 ? pc.output + pc.norms_final + (hp->tied_embeddings && P > 1 ? pc.embedding : 0)
                                      : 0);
        double p_dev = p_stage / T;
        double W, G = 0, O = 0, LO = 0, host = 0, nvme = 0;
        if (lora) {
            double lin = nl * pc.per_layer_linear, rest = p_stage - lin;
            W = (r->qlora ? lin * qlora_bpw + rest * 2 : p_stage * 2) / T;
            if (Z >= 3) W /= D;
            double pl = nl * lora_layer / T;
            /* adapter weight + gradient + optimizer states (Adam m, v) */
            LO = pl * ad_w + pl * ad_g / (Z >= 2 ? D : 1) + pl * ad_opt / (Z >= 1 ? D : 1);
        } else {
            W = wb * p_dev;
            G = gb * p_dev;
            O = kopt * p_dev;
            if (Z >= 1) O /= D;
            if (Z >= 2) G /= D;
            if (Z >= 3) W /= D;
            if (res->offload_opt != FITLM_OFFLOAD_NONE) {
                double moved = O + 4 * p_dev / (Z >= 2 ? D : 1); /* states + fp32 gradient copy */
                if (res->offload_opt == FITLM_OFFLOAD_NVME) nvme += O, host += moved - O;
                else host += moved;
                O = 0;
            }
            if (Z >= 3 && res->offload_param != FITLM_OFFLOAD_NONE) {
                if (res->offload_param == FITLM_OFFLOAD_NVME) nvme += W;
                else host += W;
                W = 0;
            }
        }
        if (Z >= 3) gather = 2.0 * 2 * (double)pc.largest_layer / T; /* current + prefetched layer, 16-bit */
        /* 1F1B: stage st holds min(m, P - st) micro-batches' worth; interleaved
         * 1F1B more (the first device p (1 + (p-1)/(p v)), Korthikanti et al.
         * 2022, 4.2.3; the others by Megatron-LM's warm-up count) */
        double inflight = fitlm_pipeline_inflight(P, st, (int)m_acc, V);
        double A = act_layer * nl * inflight;
        if (res->recompute == FITLM_RECOMPUTE_FULL) A += act_layer_full;
        if (st == P - 1) A += 4.0 * s * b * hp->vocab_size / T + 2.0 * s * b * hp->dim;
        if (r->qlora) A += 2.0 * hp->dim * (double)hp->ffn_dim / T; /* one dequantized weight */
        A += gather;
        double *sv = res->stage[st < FITLM_PLAN_MAX_STAGES ? st : FITLM_PLAN_MAX_STAGES - 1];
        memset(sv, 0, sizeof(double) * FITLM_MEM_COUNT);
        sv[FITLM_MEM_WEIGHTS] = W;
        sv[FITLM_MEM_GRAD] = G;
        sv[FITLM_MEM_OPT] = O;
        sv[FITLM_MEM_LORA] = LO;
        sv[FITLM_MEM_ACT] = A;
        sv[FITLM_MEM_OVERHEAD] = overhead_bytes(g, res->count, A + G, true, r->fragmentation);
        double tot = 0;
        for (int c = 0; c < FITLM_MEM_COUNT; c++) tot += sv[c];
        if (tot > worst) {
            worst = tot;
            memcpy(res->dev, sv, sizeof res->dev);
        }
        res->total_bytes += tot * T * D;
        if (host > host_per_gpu_worst) host_per_gpu_worst = host;
        if (nvme > nvme_per_gpu_worst) nvme_per_gpu_worst = nvme;
        res->comp[FITLM_MEM_ACT] += A * T; /* summed over the replica's devices */
        res->comp[FITLM_MEM_OVERHEAD] += sv[FITLM_MEM_OVERHEAD] * T;
    }
    res->zero3_gather_bytes = gather;
    res->per_device_bytes = worst;
    int per_node = res->count < g->max_per_node ? res->count : g->max_per_node;
    res->host_bytes = host_per_gpu_worst * per_node;
    res->nvme_bytes = nvme_per_gpu_worst * per_node;

    /* ---- time ---- */
    double p_mm = (double)pc.per_layer_linear * L + (double)hp->vocab_size * hp->dim;
    double attn_train = 12.0 * L * hp->n_heads * hp->head_dim * s; /* PaLM appendix B: 12 L H Q T */
    double model_flops = (lora ? 4 : 6) * p_mm + attn_train;
    double hw_flops = model_flops;
    if (res->recompute == FITLM_RECOMPUTE_FULL) hw_flops += 2 * p_mm + attn_train / 3;
    else if (res->recompute == FITLM_RECOMPUTE_SELECTIVE && !r->flash) hw_flops += attn_train / 3;
    res->flops_per_token = model_flops;
    double peak = peak_flops(g, NULL, true, r->pure_fp32);
    double tok_replica = b * m_acc * s;
    double t_compute = tok_replica * hw_flops / ((double)T * P * peak * K.eff_train);
    double t_pipe = t_compute * ((double)V * m_acc + P - 1) / ((double)V * m_acc);
    res->bubble = fitlm_pipeline_bubble_interleaved(P, (int)m_acc, V);
    double bw, alpha;
    link_of(g, T, false, &bw, &alpha);
    double ar_per_layer = res->recompute == FITLM_RECOMPUTE_FULL ? 6 : 4;
    double t_tp = T > 1 ? nl_max * m_acc * ar_per_layer * fitlm_allreduce_time(b * s * hp->dim * 2, T, alpha, bw)
                        : 0;
    double dpbw, dpalpha;
    link_of(g, res->count, crosses, &dpbw, &dpalpha);
    double p_dev0 = psi / ((double)T * P);
    double grad_bytes = lora ? psi_lora / ((double)T * P) * 4 : p_dev0 * 2;
    /* full fine-tune: ZeRO-3 moves 3 Psi instead of 2 Psi (Rajbhandari et al. section 7); LoRA with ZeRO-3
     * also all-gathers the sharded frozen base twice per step (forward and backward), each gather half
     * the traffic of an all-reduce of the same bytes */
    double t_dp = D > 1 ? fitlm_allreduce_time(grad_bytes, D, dpalpha, dpbw) * (!lora && Z >= 3 ? 1.5 : 1.0) : 0;
    if (lora && Z >= 3 && D > 1) t_dp += fitlm_allreduce_time(res->comp[FITLM_MEM_WEIGHTS] / ((double)T * P), D, dpalpha, dpbw);
    double exposed_dp = fmax(0, t_dp - t_compute * 2.0 / 3.0); /* overlapped with the backward pass */
    /* pipeline sends: per micro-batch and model chunk the boundary activation
     * forward and its gradient backward, b s h 16-bit values. With TP each of
     * the T ranks sends only its 1/T slice over its own link (Megatron-LM's
     * scatter/gather optimization, Narayanan et al. 2021, section 4.1); without
     * sequence parallelism the receiving ranks all-gather it over the TP link */
    double pp_msg = b * s * hp->dim * 2;
    double t_pp_one = dpalpha + pp_msg / T / dpbw;
    if (T > 1 && !(r->sequence_parallel)) t_pp_one += (T - 1) * alpha + (double)(T - 1) / T * pp_msg / bw;
    double t_pp = P > 1 ? 2.0 * V * m_acc * t_pp_one : 0;
    double t_off = 0;
    if (!lora && res->offload_opt != FITLM_OFFLOAD_NONE) {
        double part = p_dev0 / (Z >= 1 ? D : 1);
        double pcie = fitlm_pcie_bw(g->pcie_gen) * K.eff_link;
        t_off += 4 * part / pcie;                                  /* 16-bit grads down, params up */
        t_off += part * 2 * (kopt + 4) / K.host_bw_per_gpu;        /* CPU optimizer step */
        if (res->offload_opt == FITLM_OFFLOAD_NVME) t_off += part * 2 * kopt / K.nvme_bw_per_gpu;
        if (Z >= 3 && res->offload_param != FITLM_OFFLOAD_NONE) t_off += 2 * 2 * p_dev0 / D / pcie;
    }
    res->offload_s = t_off;
    res->comm_s = t_tp + exposed_dp + t_pp;
    res->step_time_s = t_pipe + res->comm_s + t_off;
    double tok_global = tok_replica * D;
    res->train_tps = tok_global / res->step_time_s;
    res->mfu = tok_global * model_flops / (res->step_time_s * res->count * peak);
    res->usd_per_hour = g->cloud_usd_per_hour * res->count;
    res->purchase_usd = g->purchase_usd * res->count;
    res->usd_per_million = res->usd_per_hour > 0 ? res->usd_per_hour * res->step_time_s / 3600.0 / tok_global * 1e6 : 0;
}

void fitlm_plan_evaluate(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                         const fitlm_weight_bytes *wb, fitlm_plan_result *res) {
    const fitlm_gpu *g = &cat->gpus[res->gpu];
    res->valid = true;
    res->why[0] = 0;
    res->batch = r->batch;
    res->total_bytes = 0;
    memset(res->comp, 0, sizeof res->comp);
    memset(res->dev, 0, sizeof res->dev);
    if (r->mode == FITLM_PLAN_INFER) eval_infer(m, r, cat, wb, res);
    else eval_train(m, r, cat, res);
    res->capacity_bytes = g->usable_memory_bytes > 0 ? g->usable_memory_bytes : g->memory_bytes;
    res->usable_bytes = res->capacity_bytes * (1 - r->margin);
    res->fits = res->per_device_bytes <= res->usable_bytes;
    if (!res->fits)
        snprintf(res->why, sizeof res->why, "needs %.1f GiB per device, %s has %.1f GiB usable",
                 res->per_device_bytes / FITLM_GIB, g->name, res->usable_bytes / FITLM_GIB);
    else if (r->host_mem > 0 && res->host_bytes > r->host_mem) {
        res->fits = false;
        snprintf(res->why, sizeof res->why, "needs %.1f GiB of host memory per node, --host-mem allows %.1f GiB",
                 res->host_bytes / FITLM_GIB, r->host_mem / FITLM_GIB);
    }
}
