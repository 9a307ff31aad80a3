/* fitlm plan: memory, time, cost and the best layout for a model. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/commands.h"
#include "format/ggml_type.h"
#include "planner/cpu_cost.h"
#include "planner/gpu_cost.h"
#include "planner/host_comm.h"
#include "planner/planner.h"
#include "util/error.h"
#include "util/file.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: fitlm plan [MODEL] [options]\n"
            "\n"
            "MODEL: a preset (see --list-models), a GGUF file, a Hugging Face folder or its config.json.\n"
            "With no options: an inference plan at context 8192 (or the model's maximum), batch 1, the model's\n"
            "own 16-bit weights, searched over every GPU in the catalog, with quantized alternatives.\n"
            "\n"
            "  -m, --model MODEL          the model (instead of the positional argument)\n"
            "      --list-models          list the built-in model presets\n"
            "      --list-gpus            list the GPU catalog (with --gpus-file entries and the host CPU)\n"
            "      --measure-host         measure this machine's memory read bandwidth (about 0.1 s) instead of estimating it\n"
            "      --profile FILE         the host profile of 'fitlm calibrate' for this machine's CPU (default\n"
            "                             $XDG_CACHE_HOME/fitlm/host.json or ~/.cache/fitlm/host.json when present)\n"
            "      --no-profile           ignore the default host profile (assumed figures)\n"
            "      --train                plan training instead of inference (also --mode train)\n"
            "      --pretrain             training from scratch (same memory model as a full fine-tune)\n"
            "inference workload:\n"
            "  -c, --ctx-size N           context length per sequence (KV cache is allocated for it)\n"
            "  -b, --batch N|auto         concurrent sequences; auto: searched per layout for the objective\n"
            "                             (the default with --objective throughput or --min-tokens-per-s)\n"
            "      --max-batch N          largest batch searched (default 256)\n"
            "      --engine E             vllm, llama.cpp, trt-llm, exllama, fitlm or generic (default): the engine's\n"
            "                             runtime memory, KV allocation and GEMM path (docs/planner.md)\n"
            "      --prompt-tokens N      prompt length (default min(1024, ctx/2))\n"
            "  -n, --output-tokens N      generated tokens per request (default 256)\n"
            "      --chunk N              prefill chunk in tokens (default 2048)\n"
            "  -q, --quant FMT[,FMT..]    weights: bf16 f16 f32 fp8 int8 gptq[-gN] awq[-gN] q8_0 q4_k_m q4_0 ...\n"
            "                             (also --dtype); 'any' lets all common formats compete\n"
            "      --kv-type T[,T..]      KV cache: f16 (default), bf16, fp8, q8_0, q4_0; 'any' to compare\n"
            "      --kv-block N           KV cache block in tokens (default 16)\n"
            "      --offload cpu|none     allow keeping layers in host memory (the fewest that make it fit)\n"
            "      --gpu local            this host's GPU as 'fitlm calibrate --device' measured it (local1 ..:\n"
            "                             the next ones), at its kernels' rates on these weights\n"
            "  -ngl, --n-gpu-layers N     N layers on each GPU replica, the rest in host memory, as llama.cpp's\n"
            "                             -ngl (one pipeline stage; N >= the layer count: all): --engine fitlm runs\n"
            "                             them on the host CPU, the others decode them there at its bandwidth and\n"
            "                             stream them to the GPU over PCIe for a prompt\n"
            "  -t, --threads N            host CPU threads for its rows and layers (default: the host profile's)\n"
            "      --no-flash             no FlashAttention (attention scores materialized)\n"
            "training:\n"
            "      --seq-len N            sequence length (default min(4096, model max))\n"
            "      --micro-batch N        sequences per micro-batch (default 1)\n"
            "      --grad-accum N         micro-batches per step (default: global batch / (micro x DP))\n"
            "      --global-batch N       sequences per step (default 64)\n"
            "      --optimizer adamw|adam8bit|sgd\n"
            "      --zero 0|1|2|3         ZeRO stage (default: searched)\n"
            "      --offload-optimizer cpu|nvme   --offload-params cpu|nvme (ZeRO-3)\n"
            "      --recompute none|selective|full (default: searched)\n"
            "      --no-sp                no sequence parallelism with TP\n"
            "      --pp-interleave V      model chunks per pipeline device (interleaved 1F1B; default: searched\n"
            "                             1, 2, 4 .. where the micro-batches are a multiple of PP)\n"
            "      --pp-embedding-split yes|no   count the embedding and the output layer + loss as one\n"
            "                             pipeline layer each (Megatron's account_for_embedding/loss_in_\n"
            "                             pipeline_split; default: searched)\n"
            "      --fp32-grads           keep gradients in fp32 (18 bytes/parameter with AdamW)\n"
            "      --fp32                 pure fp32 training (no mixed precision)\n"
            "      --lora-rank N          LoRA adapters of rank N (base frozen in BF16)\n"
            "      --lora-targets LIST    q,k,v,o,gate,up,down or 'all' (default q,k,v,o)\n"
            "      --qlora                QLoRA: base frozen in NF4 (rank 16 unless --lora-rank)\n"
            "      --train-tokens N       total tokens to train: prints total time and cost\n"
            "layout search:\n"
            "      --gpu NAME[:COUNT]     only this GPU (repeat or comma-separate); COUNT fixes the device count\n"
            "      --gpus-file FILE       add custom hardware (same format as data/gpus.json)\n"
            "      --tp N  --pp N  --dp N fix tensor / pipeline / data parallel degrees\n"
            "      --max-gpus N           largest layout searched (default 64)\n"
            "      --objective cost|latency|throughput   (default cost: $ per million tokens)\n"
            "      --max-cost USD         at most this many $ per hour\n"
            "      --min-tokens-per-s N   at least this many tokens/s (inference: the batch is searched, then replicas)\n"
            "      --max-ttft S           at most this time to first token (seconds)\n"
            "      --margin F             fraction of device memory kept free (default 0.05)\n"
            "      --fragmentation F      allocator fragmentation allowed for, as a fraction of the activations\n"
            "                             (+ gradients in training) (default 0.05 inference, 0.10 training)\n"
            "      --host-mem GIB         host memory per node available for offload (default: not checked)\n"
            "      --nodes-link L         with --gpu cpu:N --tp/--pp: one rank per node like this host, over\n"
            "                             10gbe, 25gbe, 100gbe or GBPS:ALPHA_US (default: the ranks share this host)\n"
            "      --top N                alternatives shown (default 8)\n"
            "output:\n"
            "      --json                 JSON on stdout (schema: docs/planner.md)\n"
            "      --svg FILE             memory per device as stacked bars against capacity\n");
}

/* Strict number parsing: the whole string, finite, within [lo, hi]. */
static int parse_num(const char *opt, const char *s, double lo, double hi, double *out) {
    if (!s) return fitlm_die("%s needs a value", opt), -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return fitlm_die("%s: '%s' is not a number", opt, s), -1;
    /* allow k/M/G suffixes? no: keep numbers plain */
    if (v < lo || v > hi) return fitlm_die("%s: %s is outside [%g, %g]", opt, s, lo, hi), -1;
    *out = v;
    return 0;
}

static int parse_uint(const char *opt, const char *s, double lo, double hi, uint32_t *out) {
    double v;
    if (parse_num(opt, s, lo, hi, &v)) return -1;
    if (v != floor(v)) return fitlm_die("%s: '%s' must be a whole number", opt, s), -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_int(const char *opt, const char *s, double lo, double hi, int *out) {
    uint32_t u;
    if (parse_uint(opt, s, lo, hi, &u)) return -1;
    *out = (int)u;
    return 0;
}

static int parse_kv(const char *s, int *t) {
    if (!strcasecmp(s, "fp8") || !strcasecmp(s, "f8") || !strcasecmp(s, "fp8_e4m3")) {
        *t = FITLM_TYPE_F8_E4M3;
        return 0;
    }
    if (!strcasecmp(s, "q4")) s = "q4_0";
    if (!strcasecmp(s, "q8")) s = "q8_0";
    int v = fitlm_type_from_name(s);
    if (v == FITLM_TYPE_INVALID || fitlm_kv_type_bytes(v) <= 0 || v == FITLM_TYPE_I8 || v == FITLM_TYPE_I16 ||
        v == FITLM_TYPE_I32 || v == FITLM_TYPE_I64 || v == FITLM_TYPE_F64)
        return fitlm_die("--kv-type: unknown KV cache type '%s' (f16, bf16, f32, fp8, q8_0, q4_0, q5_0, iq4_nl)", s), -1;
    *t = v;
    return 0;
}

static int parse_offload(const char *opt, const char *s, fitlm_offload *o) {
    if (!s) return fitlm_die("%s needs a value", opt), -1;
    if (!strcasecmp(s, "cpu")) *o = FITLM_OFFLOAD_CPU;
    else if (!strcasecmp(s, "nvme")) *o = FITLM_OFFLOAD_NVME;
    else if (!strcasecmp(s, "none")) *o = FITLM_OFFLOAD_NONE;
    else return fitlm_die("%s: expected none, cpu or nvme, got '%s'", opt, s), -1;
    return 0;
}

static int parse_targets(const char *s, unsigned *mask) {
    *mask = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) return fitlm_die("--lora-targets: too long"), -1;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcasecmp(tok, "all"))
            *mask |= (1u << FITLM_T_ATTN_Q) | (1u << FITLM_T_ATTN_K) | (1u << FITLM_T_ATTN_V) |
                     (1u << FITLM_T_ATTN_OUT) | (1u << FITLM_T_FFN_GATE) | (1u << FITLM_T_FFN_UP) |
                     (1u << FITLM_T_FFN_DOWN);
        else if (!strcasecmp(tok, "q") || !strcasecmp(tok, "q_proj")) *mask |= 1u << FITLM_T_ATTN_Q;
        else if (!strcasecmp(tok, "k") || !strcasecmp(tok, "k_proj")) *mask |= 1u << FITLM_T_ATTN_K;
        else if (!strcasecmp(tok, "v") || !strcasecmp(tok, "v_proj")) *mask |= 1u << FITLM_T_ATTN_V;
        else if (!strcasecmp(tok, "o") || !strcasecmp(tok, "o_proj")) *mask |= 1u << FITLM_T_ATTN_OUT;
        else if (!strcasecmp(tok, "gate") || !strcasecmp(tok, "gate_proj")) *mask |= 1u << FITLM_T_FFN_GATE;
        else if (!strcasecmp(tok, "up") || !strcasecmp(tok, "up_proj")) *mask |= 1u << FITLM_T_FFN_UP;
        else if (!strcasecmp(tok, "down") || !strcasecmp(tok, "down_proj")) *mask |= 1u << FITLM_T_FFN_DOWN;
        else return fitlm_die("--lora-targets: unknown module '%s' (q,k,v,o,gate,up,down,all)", tok), -1;
    }
    if (!*mask) return fitlm_die("--lora-targets: empty list"), -1;
    return 0;
}

static void list_models(void) {
    int n = fitlm_preset_count(NULL);
    printf("%-32s %16s %7s %6s %5s %4s %8s  %s\n", "preset", "parameters", "layers", "hidden", "heads", "kv", "context",
           "source");
    for (int i = 0; i < n; i++) {
        const fitlm_preset_info *p = fitlm_preset_at(i);
        fitlm_param_counts pc;
        fitlm_plan_param_counts(&p->hp, &pc);
        printf("%-32s %16llu %7u %6u %5u %4u %8u  %s\n", p->name, (unsigned long long)pc.total, p->hp.n_layers,
               p->hp.dim, p->hp.n_heads, p->hp.n_kv_heads, p->hp.ctx_len, p->source);
    }
}

/* --list-gpus --json: the catalog as a JSON array (every field of an entry). */
static int list_gpus_json(const fitlm_catalog *cat) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return fitlm_die("out of memory");
    for (size_t i = 0; i < cat->n; i++) {
        const fitlm_gpu *g = &cat->gpus[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", g->name);
        cJSON *al = cJSON_AddArrayToObject(o, "aliases");
        for (int k = 0; k < g->n_aliases; k++) cJSON_AddItemToArray(al, cJSON_CreateString(g->aliases[k]));
        cJSON_AddStringToObject(o, "vendor", g->vendor);
        cJSON_AddStringToObject(o, "arch", g->arch);
        cJSON_AddBoolToObject(o, "is_cpu", g->is_cpu);
        cJSON_AddNumberToObject(o, "memory_bytes", g->memory_bytes);
        cJSON_AddNumberToObject(o, "usable_memory_bytes", g->usable_memory_bytes);
        cJSON_AddNumberToObject(o, "mem_bw_bytes_per_s", g->mem_bw);
        cJSON_AddNumberToObject(o, "fp16_flops", g->fp16_flops);
        cJSON_AddNumberToObject(o, "bf16_flops", g->bf16_flops);
        cJSON_AddNumberToObject(o, "fp8_flops", g->fp8_flops);
        cJSON_AddNumberToObject(o, "fp16_acc16_flops", g->fp16_acc16_flops > 0 ? g->fp16_acc16_flops : g->fp16_flops);
        cJSON_AddNumberToObject(o, "int8_ops", g->int8_ops);
        cJSON_AddStringToObject(o, "link", g->link);
        cJSON_AddNumberToObject(o, "link_bw_bytes_per_s", g->link_bw);
        cJSON_AddNumberToObject(o, "link_max_gpus", g->link_max_gpus);
        cJSON_AddNumberToObject(o, "internode_bw_bytes_per_s", g->internode_bw);
        cJSON_AddNumberToObject(o, "pcie_gen", g->pcie_gen);
        cJSON_AddNumberToObject(o, "max_per_node", g->max_per_node);
        cJSON_AddNumberToObject(o, "tdp_w", g->tdp_w);
        cJSON_AddNumberToObject(o, "purchase_usd", g->purchase_usd);
        cJSON_AddNumberToObject(o, "cloud_usd_per_hour", g->cloud_usd_per_hour);
        if (g->is_cpu) {
            cJSON_AddNumberToObject(o, "cpu_cores", g->cpu_cores);
            cJSON_AddBoolToObject(o, "bw_measured", g->bw_measured);
        }
        cJSON_AddStringToObject(o, "spec_source", g->spec_source);
        cJSON_AddStringToObject(o, "origin", g->origin);
    }
    char *txt = cJSON_Print(arr);
    cJSON_Delete(arr);
    if (!txt) return fitlm_die("out of memory");
    printf("%s\n", txt);
    free(txt);
    return 0;
}

static void list_gpus(const fitlm_catalog *cat) {
    printf("%-15s %8s %9s %10s %9s %9s %-16s %9s %9s  %s\n", "name", "mem GiB", "BW GB/s", "BF16 TF/s", "FP8 TF/s",
           "INT8 TOPS", "link", "$/hour", "purchase", "origin");
    for (size_t i = 0; i < cat->n; i++) {
        const fitlm_gpu *g = &cat->gpus[i];
        printf("%-15s %8.1f %9.0f %10.1f %9.1f %9.1f %-16s %9.3g %9.0f  %s\n", g->name, g->memory_bytes / FITLM_GIB,
               g->mem_bw / 1e9, g->bf16_flops / 1e12, g->fp8_flops / 1e12, g->int8_ops / 1e12, g->link,
               g->cloud_usd_per_hour, g->purchase_usd, g->origin);
    }
}

/* The GPUs of this host that `fitlm calibrate --device` measured (in the
 * host profile) as catalog entries named `local`, `local1` ..: at the rates
 * their kernels reach on the model file's weight types, or on the first
 * weight format's type for a preset; planned with --engine fitlm they use
 * their measured fixed costs too. 0, or -1 after printing why. */
static int add_local_gpus(fitlm_catalog *cat, const fitlm_plan_model *pm, const char *model_arg,
                          const fitlm_wformat *f) {
    const fitlm_host_profile *hp = cat->host_profile;
    if (!hp || hp->n_dev == 0) return 0;
    fitlm_cpu_work w; /* a preset (or a file that does not load): its format's type */
    memset(&w, 0, sizeof w);
    fitlm_cpu_work_add(&w, fitlm_plan_format_type(pm, f), 1, 1);
    for (int i = 0; i < hp->n_dev; i++) {
        double bw = 0, fl = 0;
        if (f->kind != FITLM_W_FILE || !fitlm_device_rates_for_file(&hp->dev[i], model_arg, &bw, &fl))
            fitlm_device_rates_for_work(&hp->dev[i], &w, &bw, &fl);
        int at = fitlm_catalog_use_device(cat, -1, &hp->dev[i], bw, fl);
        if (at < 0) return fitlm_die("out of memory"), -1;
        fitlm_gpu *g = &cat->gpus[at];
        if (i == 0) snprintf(g->aliases[0], sizeof g->aliases[0], "local");
        else snprintf(g->aliases[0], sizeof g->aliases[0], "local%d", i);
        g->n_aliases = 1;
    }
    return 0;
}

static int add_gpusel(fitlm_plan_request *r, const fitlm_catalog *cat, const char *spec) {
    char buf[256];
    if (strlen(spec) >= sizeof buf) return fitlm_die("--gpu: too long"), -1;
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        int count = 0;
        if (colon) {
            *colon = 0;
            if (parse_int("--gpu COUNT", colon + 1, 1, 65536, &count)) return -1;
        }
        int gi = fitlm_catalog_find(cat, tok);
        if (gi < 0 && !strncasecmp(tok, "local", 5))
            return fitlm_die("--gpu %s: the host profile holds no such measured GPU (fitlm calibrate --device vulkan "
                             "measures this host's)", tok), -1;
        if (gi < 0) return fitlm_die("unknown GPU '%s' (see 'fitlm plan --list-gpus' or add it with --gpus-file)", tok), -1;
        if (count == 0 && cat->gpus[gi].measured) count = 1; /* this host's own GPU: the one there is */
        if (r->n_gpusel >= FITLM_PLAN_MAX_GPUSEL) return fitlm_die("--gpu: too many GPUs"), -1;
        r->gpusel[r->n_gpusel].gpu = gi;
        r->gpusel[r->n_gpusel].count = count;
        r->n_gpusel++;
    }
    return 0;
}

typedef struct pending {
    const char *model, *quant, *kv, *gpus[FITLM_PLAN_MAX_GPUSEL], *gpus_file, *svg, *targets, *profile;
    int n_gpus;
    bool json, list_models, list_gpus, train, measure_host, no_profile;
} pending;

int cmd_plan(int argc, char **argv) {
    pending pd;
    memset(&pd, 0, sizeof pd);
    /* numeric options are parsed after the model is known (defaults depend on it) */
    struct {
        const char *name;
        const char *val;
    } nums[64];
    int n_nums = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : NULL)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list-models")) pd.list_models = true;
        else if (!strcmp(a, "--list-gpus")) pd.list_gpus = true;
        else if (!strcmp(a, "--json")) pd.json = true;
        else if (!strcmp(a, "--measure-host")) pd.measure_host = true;
        else if (!strcmp(a, "--no-profile")) pd.no_profile = true;
        else if (!strcmp(a, "--profile")) {
            if (!(pd.profile = VAL())) return fitlm_die("--profile needs a file");
        }
        else if (!strcmp(a, "--train")) pd.train = true;
        else if (!strcmp(a, "--mode")) {
            const char *v = VAL();
            if (!v) return fitlm_die("--mode needs infer or train");
            if (!strcmp(v, "train") || !strcmp(v, "training")) pd.train = true;
            else if (strcmp(v, "infer") && strcmp(v, "inference")) return fitlm_die("--mode: expected infer or train, got '%s'", v);
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(pd.model = VAL())) return fitlm_die("%s needs a model", a);
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quant") || !strcmp(a, "--dtype") || !strcmp(a, "--weights")) {
            if (!(pd.quant = VAL())) return fitlm_die("%s needs a format", a);
        } else if (!strcmp(a, "--kv-type") || !strcmp(a, "--cache-type") || !strcmp(a, "--kv-cache-dtype")) {
            if (!(pd.kv = VAL())) return fitlm_die("%s needs a type", a);
        } else if (!strcmp(a, "--gpu") || !strcmp(a, "--gpus")) {
            const char *v = VAL();
            if (!v) return fitlm_die("--gpu needs NAME[:COUNT]");
            if (pd.n_gpus >= FITLM_PLAN_MAX_GPUSEL) return fitlm_die("--gpu: too many");
            pd.gpus[pd.n_gpus++] = v;
        } else if (!strcmp(a, "--gpus-file")) {
            if (!(pd.gpus_file = VAL())) return fitlm_die("--gpus-file needs a file");
        } else if (!strcmp(a, "--svg")) {
            if (!(pd.svg = VAL())) return fitlm_die("--svg needs a file name");
        } else if (!strcmp(a, "--lora-targets")) {
            if (!(pd.targets = VAL())) return fitlm_die("--lora-targets needs a list");
        } else if (!strcmp(a, "--pretrain")) {
            pd.train = true;
            if (n_nums >= 64) return fitlm_die("too many options");
            nums[n_nums].name = a, nums[n_nums].val = NULL, n_nums++;
        } else if (!strcmp(a, "--no-flash") || !strcmp(a, "--no-sp") || !strcmp(a, "--fp32-grads") ||
                   !strcmp(a, "--fp32") || !strcmp(a, "--qlora") || !strcmp(a, "--pretrain")) {
            if (n_nums >= 64) return fitlm_die("too many options");
            nums[n_nums].name = a, nums[n_nums].val = NULL, n_nums++;
        } else if (a[0] == '-' && a[1]) {
            static const char *const with_value[] = {
                "-c", "--ctx-size", "-b", "--batch", "--prompt-tokens", "-n", "--output-tokens", "--chunk",
                "--kv-block", "--offload", "--seq-len", "--micro-batch", "--grad-accum", "--global-batch",
                "--optimizer", "--zero", "--offload-optimizer", "--offload-params", "--recompute", "--lora-rank",
                "--train-tokens", "--tp", "--pp", "--dp", "--max-gpus", "--objective", "--max-cost",
                "--min-tokens-per-s", "--max-ttft", "--margin", "--fragmentation", "--top", "--flash", "--host-mem",
                "--engine", "--max-batch", "--pp-interleave", "--pp-embedding-split", "--nodes-link", "-ngl",
                "--n-gpu-layers", "--gpu-layers", "-t", "--threads"};
            bool known = false;
            for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
                if (!strcmp(a, with_value[k])) known = true;
            if (!known) return fitlm_die("plan: unknown option '%s' (see 'fitlm plan --help')", a);
            const char *v = VAL();
            if (!v) return fitlm_die("%s needs a value", a);
            if (n_nums >= 64) return fitlm_die("too many options");
            nums[n_nums].name = a, nums[n_nums].val = v, n_nums++;
        } else {
            if (pd.model) return fitlm_die("plan: more than one model given ('%s' and '%s')", pd.model, a);
            pd.model = a;
        }
#undef VAL
    }

    fitlm_error err = {{0}};
    if (fitlm_preset_count(&err) < 0) return fitlm_error_print(&err), 1;
    if (pd.list_models) {
        list_models();
        return 0;
    }
    fitlm_catalog cat;
    if (fitlm_catalog_load_builtin(&cat, &err)) return fitlm_error_print(&err), 1;
    int rc = 1;
    fitlm_plan_model model;
    memset(&model, 0, sizeof model);
    fitlm_plan_output out;
    memset(&out, 0, sizeof out);
    char *json = NULL;
    if (pd.gpus_file) {
        char *text = fitlm_file_read_all(pd.gpus_file, 16u << 20, NULL, &err);
        if (!text || fitlm_catalog_add_json(&cat, text, pd.gpus_file, &err)) {
            free(text);
            fitlm_error_print(&err);
            goto done;
        }
        free(text);
    }
    fitlm_catalog_add_host_cpu(&cat);
    if (pd.profile && pd.no_profile) {
        fitlm_die("plan: --profile and --no-profile contradict each other");
        goto done;
    }
    {
        /* the host profile: explicit (must load), or the default one when present */
        char def[4096];
        const char *ppath = pd.profile;
        if (!ppath && !pd.no_profile && fitlm_host_profile_default_path(def, sizeof def) == 0 && fitlm_file_exists(def))
            ppath = def;
        if (ppath) {
            fitlm_host_profile *hp = malloc(sizeof *hp);
            if (!hp) {
                fitlm_die("out of memory");
                goto done;
            }
            if (fitlm_host_profile_load(hp, ppath, &err)) {
                free(hp);
                if (pd.profile) {
                    fitlm_error_print(&err);
                    goto done;
                }
                fprintf(stderr, "fitlm: warning: %s; using assumed figures for this machine\n", err.msg);
            } else {
                fitlm_catalog_use_profile(&cat, hp, ppath);
            }
        }
    }
    if (pd.measure_host) fitlm_catalog_measure_host(&cat, 0);
    if (pd.list_gpus) {
        if (pd.json) rc = list_gpus_json(&cat);
        else list_gpus(&cat), rc = 0;
        goto done;
    }
    if (!pd.model) {
        fitlm_die("plan: no model given (e.g. 'fitlm plan llama-3-8b'; see --list-models)");
        goto done;
    }
    if (fitlm_plan_model_open(&model, pd.model, &err)) {
        fitlm_error_print(&err);
        goto done;
    }

    fitlm_plan_request r;
    fitlm_plan_request_defaults(&r, &model);
    if (pd.train) r.mode = FITLM_PLAN_TRAIN;
    /* weights */
    {
        const char *q = pd.quant;
        char buf[256];
        if (!q) {
            if (model.from_file) q = "file";
            else q = model.native_type == FITLM_TYPE_F16 ? "f16" : model.native_type == FITLM_TYPE_F32 ? "f32" : "bf16";
        }
        if (!strcasecmp(q, "any") || !strcasecmp(q, "auto")) {
            const char *native = model.native_type == FITLM_TYPE_F16 ? "f16" : "bf16";
            snprintf(buf, sizeof buf, "%s,fp8,int8,awq,gptq,q8_0,q6_k,q5_k_m,q4_k_m,q3_k_m", native);
            r.formats_compete = true;
        } else {
            if (strlen(q) >= sizeof buf) {
                fitlm_die("--quant: too long");
                goto done;
            }
            snprintf(buf, sizeof buf, "%s", q);
            if (strchr(q, ',')) r.formats_compete = true;
        }
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (r.n_formats >= FITLM_PLAN_MAX_FORMATS) {
                fitlm_die("--quant: too many formats");
                goto done;
            }
            fitlm_wformat *f = &r.formats[r.n_formats];
            if (!strcasecmp(tok, "file")) {
                if (!model.from_file) {
                    fitlm_die("--quant file needs a model file with weights");
                    goto done;
                }
                memset(f, 0, sizeof *f);
                f->kind = FITLM_W_FILE;
                snprintf(f->name, sizeof f->name, "%s", model.file_type_name);
            } else if (fitlm_wformat_parse(tok, f, &err)) {
                fitlm_error_print(&err);
                goto done;
            }
            r.n_formats++;
        }
        if (r.mode == FITLM_PLAN_TRAIN && pd.quant && r.formats[0].kind != FITLM_W_PLAIN) {
            fitlm_die("training plans take --fp32 or bf16 weights; for a quantized frozen base use --qlora");
            goto done;
        }
    }
    if (pd.kv) {
        char buf[128];
        if (strlen(pd.kv) >= sizeof buf) {
            fitlm_die("--kv-type: too long");
            goto done;
        }
        snprintf(buf, sizeof buf, "%s", !strcasecmp(pd.kv, "any") ? "f16,fp8,q8_0,q4_0" : pd.kv);
        r.n_kv_types = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (r.n_kv_types >= FITLM_PLAN_MAX_KV) {
                fitlm_die("--kv-type: too many types");
                goto done;
            }
            if (parse_kv(tok, &r.kv_types[r.n_kv_types])) goto done;
            r.n_kv_types++;
        }
    }
    bool want_local = false; /* only asked for: a measured GPU has no price to rank it among the catalog's */
    for (int i = 0; i < pd.n_gpus; i++)
        for (const char *g = pd.gpus[i]; *g && !want_local; g++)
            want_local = !strncasecmp(g, "local", 5) && (g == pd.gpus[i] || g[-1] == ',');
    if (want_local && add_local_gpus(&cat, &model, pd.model, &r.formats[0])) goto done;
    for (int i = 0; i < pd.n_gpus; i++)
        if (add_gpusel(&r, &cat, pd.gpus[i])) goto done;
    if (pd.targets && parse_targets(pd.targets, &r.lora_targets)) goto done;
    bool set_batch = false, set_margin = false, set_chunk = false;
    for (int i = 0; i < n_nums; i++) {
        const char *o = nums[i].name, *v = nums[i].val;
        int bad = 0;
        if (!strcmp(o, "-b") || !strcmp(o, "--batch")) set_batch = true;
        if (!strcmp(o, "--margin")) set_margin = true;
        if (!strcmp(o, "--chunk")) set_chunk = true;
        if (!strcmp(o, "-c") || !strcmp(o, "--ctx-size")) bad = parse_uint(o, v, 1, 1 << 30, &r.ctx);
        else if ((!strcmp(o, "-b") || !strcmp(o, "--batch")) && !strcasecmp(v, "auto")) r.batch_auto = true;
        else if (!strcmp(o, "-b") || !strcmp(o, "--batch")) {
            bad = parse_uint(o, v, 1, 1 << 20, &r.batch);
            r.batch_auto = false;
        } else if (!strcmp(o, "--max-batch")) bad = parse_uint(o, v, 1, 65536, &r.max_batch);
        else if (!strcmp(o, "--pp-interleave")) {
            bad = parse_int(o, v, 1, 64, &r.pp_interleave);
            if (!bad && (r.pp_interleave & (r.pp_interleave - 1)))
                bad = fitlm_die("--pp-interleave: expected a power of two (1, 2, 4 .. 64), got %s", v);
        }
        else if (!strcmp(o, "--pp-embedding-split")) {
            if (!strcasecmp(v, "yes") || !strcasecmp(v, "on")) r.pp_embed_split = 1;
            else if (!strcasecmp(v, "no") || !strcasecmp(v, "off")) r.pp_embed_split = 0;
            else bad = fitlm_die("--pp-embedding-split: expected yes or no, got '%s'", v);
        }
        else if (!strcmp(o, "--engine")) {
            if (fitlm_engine_parse(v, &r.engine))
                bad = fitlm_die("--engine: expected vllm, llama.cpp, trt-llm, exllama, fitlm or generic, got '%s'", v);
        }
        else if (!strcmp(o, "--prompt-tokens")) bad = parse_uint(o, v, 1, 1 << 30, &r.prompt);
        else if (!strcmp(o, "-n") || !strcmp(o, "--output-tokens")) bad = parse_uint(o, v, 1, 1 << 30, &r.output);
        else if (!strcmp(o, "--chunk")) bad = parse_uint(o, v, 1, 1 << 24, &r.chunk);
        else if (!strcmp(o, "--kv-block")) bad = parse_uint(o, v, 1, 65536, &r.kv_block);
        else if (!strcmp(o, "--seq-len")) bad = parse_uint(o, v, 1, 1 << 30, &r.seq);
        else if (!strcmp(o, "--micro-batch")) bad = parse_uint(o, v, 1, 65536, &r.micro_batch);
        else if (!strcmp(o, "--grad-accum")) bad = parse_uint(o, v, 1, 65536, &r.grad_accum);
        else if (!strcmp(o, "--global-batch")) bad = parse_uint(o, v, 1, 1 << 24, &r.global_batch);
        else if (!strcmp(o, "--zero")) bad = parse_int(o, v, 0, 3, &r.zero);
        else if (!strcmp(o, "--lora-rank")) bad = parse_uint(o, v, 1, 65536, &r.lora_rank);
        else if (!strcmp(o, "--train-tokens")) bad = parse_num(o, v, 1, 1e16, &r.train_tokens);
        else if (!strcmp(o, "--tp")) bad = parse_int(o, v, 1, 4096, &r.tp);
        else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) bad = parse_int(o, v, 1, 4096, &r.host_threads);
        else if (!strcmp(o, "-ngl") || !strcmp(o, "--n-gpu-layers") || !strcmp(o, "--gpu-layers")) {
            bad = parse_int(o, v, 0, 1 << 20, &r.gpu_layers);
            if (!bad) r.offload_allowed = true;
        }
        else if (!strcmp(o, "--pp")) bad = parse_int(o, v, 1, 4096, &r.pp);
        else if (!strcmp(o, "--dp")) bad = parse_int(o, v, 1, 65536, &r.dp);
        else if (!strcmp(o, "--max-gpus")) bad = parse_int(o, v, 1, 65536, &r.max_gpus);
        else if (!strcmp(o, "--max-cost")) bad = parse_num(o, v, 0.0001, 1e7, &r.max_cost);
        else if (!strcmp(o, "--min-tokens-per-s")) bad = parse_num(o, v, 0.0001, 1e12, &r.min_tokens_per_s);
        else if (!strcmp(o, "--max-ttft")) bad = parse_num(o, v, 1e-6, 1e6, &r.max_ttft);
        else if (!strcmp(o, "--margin")) bad = parse_num(o, v, 0, 0.9, &r.margin);
        else if (!strcmp(o, "--fragmentation")) bad = parse_num(o, v, 0, 1, &r.fragmentation);
        else if (!strcmp(o, "--host-mem")) {
            bad = parse_num(o, v, 0.001, 1 << 24, &r.host_mem);
            r.host_mem *= FITLM_GIB;
        }
        else if (!strcmp(o, "--top")) bad = parse_int(o, v, 0, 1000, &r.top);
        else if (!strcmp(o, "--nodes-link")) {
            fitlm_error lerr = {{0}};
            if (fitlm_host_link_parse(v, &r.link_alpha_s, &r.link_bw, r.link_name, sizeof r.link_name, &lerr))
                bad = fitlm_die("%s", lerr.msg);
        }
        else if (!strcmp(o, "--no-flash")) r.flash = false;
        else if (!strcmp(o, "--flash")) {
            if (!strcasecmp(v, "on") || !strcmp(v, "1")) r.flash = true;
            else if (!strcasecmp(v, "off") || !strcmp(v, "0")) r.flash = false;
            else bad = fitlm_die("--flash: expected on or off");
        } else if (!strcmp(o, "--no-sp")) r.sequence_parallel = false;
        else if (!strcmp(o, "--fp32-grads")) r.fp32_grads = true;
        else if (!strcmp(o, "--fp32")) r.pure_fp32 = true;
        else if (!strcmp(o, "--qlora")) r.qlora = true;
        else if (!strcmp(o, "--pretrain")) r.pretrain = true; /* same memory model as a full fine-tune */
        else if (!strcmp(o, "--offload")) {
            if (!strcasecmp(v, "cpu") || !strcasecmp(v, "auto")) r.offload_allowed = true;
            else if (!strcasecmp(v, "none")) r.offload_allowed = false;
            else bad = fitlm_die("--offload: expected cpu or none, got '%s'", v);
        } else if (!strcmp(o, "--offload-optimizer")) bad = parse_offload(o, v, &r.offload_opt);
        else if (!strcmp(o, "--offload-params")) bad = parse_offload(o, v, &r.offload_param);
        else if (!strcmp(o, "--optimizer")) {
            if (!strcasecmp(v, "adamw") || !strcasecmp(v, "adam")) r.optimizer = FITLM_OPT_ADAMW;
            else if (!strcasecmp(v, "adam8bit") || !strcasecmp(v, "adamw8bit") || !strcasecmp(v, "8bit-adam"))
                r.optimizer = FITLM_OPT_ADAM8BIT;
            else if (!strcasecmp(v, "sgd")) r.optimizer = FITLM_OPT_SGD;
            else bad = fitlm_die("--optimizer: expected adamw, adam8bit or sgd, got '%s'", v);
        } else if (!strcmp(o, "--recompute")) {
            if (!strcasecmp(v, "none")) r.recompute = FITLM_RECOMPUTE_NONE;
            else if (!strcasecmp(v, "selective")) r.recompute = FITLM_RECOMPUTE_SELECTIVE;
            else if (!strcasecmp(v, "full")) r.recompute = FITLM_RECOMPUTE_FULL;
            else bad = fitlm_die("--recompute: expected none, selective or full, got '%s'", v);
        } else if (!strcmp(o, "--objective")) {
            if (!strcasecmp(v, "cost")) r.objective = FITLM_OBJ_COST;
            else if (!strcasecmp(v, "latency")) r.objective = FITLM_OBJ_LATENCY;
            else if (!strcasecmp(v, "throughput")) r.objective = FITLM_OBJ_THROUGHPUT;
            else bad = fitlm_die("--objective: expected cost, latency or throughput, got '%s'", v);
        }
        if (bad) goto done;
    }
    {
        /* the engine's own defaults for what was not given */
        const fitlm_engine_profile *eng = fitlm_engine_profile_get(r.engine);
        if (!set_margin) r.margin = eng->default_margin;
        if (!set_chunk && eng->default_chunk) r.chunk = eng->default_chunk;
        /* throughput objectives search the concurrency unless -b fixes it */
        if (!set_batch && (r.objective == FITLM_OBJ_THROUGHPUT || r.min_tokens_per_s > 0)) r.batch_auto = true;
        if (r.batch_auto && r.mode == FITLM_PLAN_TRAIN) r.batch_auto = false;
    }
    if (r.mode == FITLM_PLAN_INFER && r.ctx > model.hp.ctx_len) {
        /* keep the message in validate */
    }
    if (fitlm_plan_request_validate(&r, &model, &cat, &err)) {
        fitlm_error_print(&err);
        goto done;
    }
    if (fitlm_plan_search(&model, &r, &cat, &out, &err)) {
        fitlm_error_print(&err);
        goto done;
    }
    if (out.n == 0) {
        if (pd.json) { /* scripts get the reason as JSON too ("feasible": false); the exit status stays 1 */
            json = fitlm_plan_json(&model, &r, &cat, &out, NULL);
            if (json) printf("%s\n", json);
        }
        fitlm_die("%s: %s", model.name, out.hint);
        goto done;
    }
    if (pd.svg && fitlm_plan_write_svg(pd.svg, &model, &r, &cat, &out, &err)) {
        fitlm_error_print(&err);
        goto done;
    }
    if (pd.json) {
        json = fitlm_plan_json(&model, &r, &cat, &out, &err);
        if (!json) {
            fitlm_error_print(&err);
            goto done;
        }
        fputs(json, stdout);
        fputc('\n', stdout);
    } else {
        fitlm_plan_print_text(stdout, &model, &r, &cat, &out);
        if (pd.svg) printf("wrote %s\n", pd.svg);
    }
    rc = 0;
done:
    free(json);
    fitlm_plan_output_free(&out);
    fitlm_plan_model_free(&model);
    fitlm_catalog_free(&cat);
    return rc;
}
