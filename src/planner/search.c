/* Layout search: enumerate GPU type x count x TP x PP x DP x weight format x KV
 * type x ZeRO stage x recomputation x offload, drop what violates a constraint,
 * rank by the objective, and when nothing fits say why and what would. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/ggml_type.h"
#include "planner/planner.h"

void fitlm_plan_request_defaults(fitlm_plan_request *r, const fitlm_plan_model *m) {
    memset(r, 0, sizeof *r);
    const fitlm_hparams *hp = &m->hp;
    r->mode = FITLM_PLAN_INFER;
    r->ctx = hp->ctx_len < 8192 ? hp->ctx_len : 8192;
    r->batch = 1;
    r->chunk = 2048;
    r->kv_block = 16;
    r->flash = true;
    r->kv_types[0] = FITLM_TYPE_F16;
    r->n_kv_types = 1;
    r->seq = hp->ctx_len < 4096 ? hp->ctx_len : 4096;
    r->micro_batch = 1;
    r->global_batch = 64;
    r->optimizer = FITLM_OPT_ADAMW;
    r->zero = -1;
    r->recompute = -1;
    r->pp_interleave = 0;
    r->pp_embed_split = -1;
    r->sequence_parallel = true;
    r->lora_targets = (1u << FITLM_T_ATTN_Q) | (1u << FITLM_T_ATTN_K) | (1u << FITLM_T_ATTN_V) |
                      (1u << FITLM_T_ATTN_OUT);
    r->max_gpus = 64;
    r->gpu_layers = -1;
    r->objective = FITLM_OBJ_COST;
    r->engine = FITLM_ENGINE_GENERIC;
    r->max_batch = 256;
    r->margin = 0.05;
    r->fragmentation = -1;
    r->top = 8;
}

static bool tp_ok(const fitlm_hparams *hp, int t, char *why, size_t cap) {
    if (hp->n_heads % (uint32_t)t) {
        if (why) snprintf(why, cap, "TP %d does not divide the %u attention heads", t, hp->n_heads);
        return false;
    }
    if (hp->n_kv_heads % (uint32_t)t && (uint32_t)t % hp->n_kv_heads) {
        if (why)
            snprintf(why, cap, "TP %d neither divides the %u KV heads nor is a multiple of them", t, hp->n_kv_heads);
        return false;
    }
    if (hp->ffn_dim % (uint32_t)t) {
        if (why) snprintf(why, cap, "TP %d does not divide the MLP width %u", t, hp->ffn_dim);
        return false;
    }
    return true;
}

/* Whether a weight format can run with TP t on GPU g, as the engines allow it:
 * GPTQ/AWQ groups must not straddle a tensor-parallel split of a row-parallel
 * input (o_proj: n_heads x head_dim, down_proj: the MLP width), so t x group
 * must divide both (vLLM refuses Qwen2.5-72B's 29568-wide MLP at TP 2, 4, 8
 * with group 128); FP8 weights need FP8 tensor cores or the FP8 Marlin
 * weight-only kernels (Ampere and newer), so not a Turing or Volta card. */
static bool format_ok(const fitlm_hparams *hp, const fitlm_wformat *f, const fitlm_gpu *g, int t, char *why,
                      size_t cap) {
    if ((f->kind == FITLM_W_GPTQ || f->kind == FITLM_W_AWQ) && t > 1 && f->group > 0) {
        uint64_t q_dim = (uint64_t)hp->n_heads * hp->head_dim, step = (uint64_t)t * (uint64_t)f->group;
        if (hp->ffn_dim % step || q_dim % step) {
            if (why)
                snprintf(why, cap,
                         "%s with TP %d: TP x group size (%llu) must divide the row-parallel inputs (MLP width %u, "
                         "attention %llu)",
                         f->name, t, (unsigned long long)step, hp->ffn_dim, (unsigned long long)q_dim);
            return false;
        }
    }
    if (f->kind == FITLM_W_PLAIN && f->type == FITLM_TYPE_F8_E4M3 && g && !g->is_cpu && g->fp8_flops <= 0 &&
        (strstr(g->arch, "Turing") || strstr(g->arch, "Volta"))) {
        if (why) snprintf(why, cap, "%s (%.60s) cannot run FP8 weights (no FP8 tensor cores nor FP8 Marlin kernels)",
                          g->name, g->arch);
        return false;
    }
    return true;
}

int fitlm_plan_request_validate(fitlm_plan_request *r, const fitlm_plan_model *m, const fitlm_catalog *cat,
                                fitlm_error *err) {
    const fitlm_hparams *hp = &m->hp;
    char why[200];
    if (r->mode == FITLM_PLAN_INFER) {
        if (r->ctx < 1) return fitlm_fail(err, "context length must be at least 1");
        if (r->ctx > hp->ctx_len)
            return fitlm_fail(err, "context %u exceeds %s's maximum context of %u tokens", r->ctx, m->name,
                              hp->ctx_len);
        if (r->batch < 1 || r->batch > 1u << 20) return fitlm_fail(err, "batch must be 1..1048576");
        if (r->gpu_layers >= 0 && r->pp > 1)
            return fitlm_fail(err, "-ngl keeps layers in host memory behind one pipeline stage: it takes --pp 1, "
                                   "not --pp %d", r->pp);
        if (r->prompt == 0) r->prompt = r->ctx / 2 < 1024 ? (r->ctx / 2 ? r->ctx / 2 : 1) : 1024;
        if (r->output == 0) {
            r->output = r->ctx / 4 < 256 ? r->ctx / 4 : 256;
            if (r->output < 1) r->output = 1;
            if (r->prompt + r->output > r->ctx) r->output = r->ctx > r->prompt ? r->ctx - r->prompt : 1;
        }
        if ((uint64_t)r->prompt + r->output > r->ctx)
            return fitlm_fail(err, "prompt (%u) + output (%u) tokens exceed the context of %u (raise -c/--ctx-size)",
                              r->prompt, r->output, r->ctx);
        if (r->chunk < 1) return fitlm_fail(err, "prefill chunk must be at least 1 token");
        if (r->kv_block < 1 || r->kv_block > 65536) return fitlm_fail(err, "KV block must be 1..65536 tokens");
        for (int i = 0; i < r->n_kv_types; i++) {
            int t = r->kv_types[i];
            double b = fitlm_kv_type_bytes(t);
            const fitlm_type_info *ti = fitlm_type_get(t);
            if (b <= 0 || (ti && hp->head_dim % ti->block_size))
                return fitlm_fail(err, "KV cache type %s cannot hold rows of head_dim %u", fitlm_type_name(t),
                                  hp->head_dim);
        }
    } else {
        if (r->gpu_layers >= 0) return fitlm_fail(err, "-ngl places an inference plan's layers; not for training");
        if (r->seq < 1) return fitlm_fail(err, "sequence length must be at least 1");
        if (r->seq > hp->ctx_len)
            return fitlm_fail(err, "sequence length %u exceeds %s's maximum context of %u tokens", r->seq, m->name,
                              hp->ctx_len);
        if (r->micro_batch < 1 || r->micro_batch > 65536) return fitlm_fail(err, "micro-batch must be 1..65536");
        if (r->grad_accum > 65536) return fitlm_fail(err, "gradient accumulation must be 1..65536");
        if (r->global_batch < 1 || r->global_batch > 1u << 24) return fitlm_fail(err, "global batch must be 1..16777216");
        if (r->qlora && r->lora_rank == 0) r->lora_rank = 16;
        if (r->lora_rank > 65536) return fitlm_fail(err, "LoRA rank must be 1..65536");
        if (r->lora_rank && !r->lora_targets) return fitlm_fail(err, "LoRA needs at least one target module");
        if (r->zero > 3) return fitlm_fail(err, "ZeRO stage must be 0..3");
        if (r->offload_param != FITLM_OFFLOAD_NONE && r->zero >= 0 && r->zero < 3)
            return fitlm_fail(err, "parameter offload needs ZeRO stage 3 (--zero 3)");
        if (r->offload_opt != FITLM_OFFLOAD_NONE && r->zero == 0)
            return fitlm_fail(err, "optimizer offload needs ZeRO stage 1, 2 or 3");
    }
    if (r->max_gpus < 1 || r->max_gpus > 65536) return fitlm_fail(err, "--max-gpus must be 1..65536");
    if (r->margin < 0 || r->margin > 0.9) return fitlm_fail(err, "--margin must be between 0 and 0.9");
    if (r->top < 0 || r->top > 1000) return fitlm_fail(err, "--top must be 0..1000");
    if (r->tp < 0 || r->tp > 4096 || r->pp < 0 || r->pp > 4096 || r->dp < 0 || r->dp > 65536)
        return fitlm_fail(err, "--tp/--pp/--dp out of range");
    if (r->tp > 0 && !tp_ok(hp, r->tp, why, sizeof why)) return fitlm_fail(err, "%s", why);
    if (r->mode == FITLM_PLAN_INFER && !r->formats_compete && r->n_formats > 0) {
        /* the one requested format must run on some selected GPU with the given TP */
        int ng = r->n_gpusel ? r->n_gpusel : (int)cat->n, usable = 0;
        for (int i = 0; i < ng; i++) {
            const fitlm_gpu *g = &cat->gpus[r->n_gpusel ? r->gpusel[i].gpu : i];
            if (format_ok(hp, &r->formats[0], g, r->tp > 0 ? r->tp : 1, why, sizeof why)) usable++;
        }
        if (!usable) return fitlm_fail(err, "%s", why);
    }
    if (r->pp > (int)hp->n_layers)
        return fitlm_fail(err, "PP %d exceeds the %u layers (each stage needs at least one layer)", r->pp,
                          hp->n_layers);
    if (r->max_cost < 0 || r->min_tokens_per_s < 0 || r->max_ttft < 0)
        return fitlm_fail(err, "constraints must not be negative");
    for (int i = 0; i < r->n_gpusel; i++) {
        const fitlm_gpu *g = &cat->gpus[r->gpusel[i].gpu];
        int c = r->gpusel[i].count;
        if (c < 0 || c > 65536) return fitlm_fail(err, "GPU count %d out of range", c);
        if (c > 0 && r->tp > 0 && r->pp > 0 && r->dp > 0 && c != r->tp * r->pp * r->dp)
            return fitlm_fail(err, "%d x %s cannot be split as TP %d x PP %d x DP %d", c, g->name, r->tp, r->pp,
                              r->dp);
        if (c > 0 && ((r->tp > 0 && c % r->tp) || (r->pp > 0 && c % r->pp) ||
                      (r->tp > 0 && r->pp > 0 && c % (r->tp * r->pp))))
            return fitlm_fail(err, "%d x %s is not a multiple of TP x PP", c, g->name);
        /* the host CPU: one device, or T x P MPI ranks of fitlm on it when the layout is given */
        if (g->is_cpu && c > 1 && (r->dp > 1 || (r->tp <= 1 && r->pp <= 1)))
            return fitlm_fail(err, "the host CPU counts as one device (or as T x P MPI ranks: --gpu cpu:N with "
                                   "--tp/--pp)");
    }
    if (r->tp > 0) {
        int widest = 0;
        int ng = r->n_gpusel ? r->n_gpusel : (int)cat->n;
        for (int i = 0; i < ng; i++) {
            const fitlm_gpu *g = &cat->gpus[r->n_gpusel ? r->gpusel[i].gpu : i];
            if (g->max_per_node > widest) widest = g->max_per_node;
            /* the host CPU as MPI ranks on one machine: as wide as asked */
            if (g->is_cpu && r->n_gpusel && r->gpusel[i].count > widest) widest = r->gpusel[i].count;
        }
        if (r->tp > widest)
            return fitlm_fail(err, "TP %d exceeds the %d GPUs of a node (tensor parallelism stays within a node)", r->tp,
                              widest);
    }
    if (r->link_bw > 0) { /* nodes of this host: only for the host CPU's ranks */
        bool cpu_ranks = r->n_gpusel > 0 && (r->tp > 1 || r->pp > 1);
        for (int i = 0; i < r->n_gpusel; i++)
            if (!cat->gpus[r->gpusel[i].gpu].is_cpu) cpu_ranks = false;
        if (!cpu_ranks || r->mode != FITLM_PLAN_INFER)
            return fitlm_fail(err, "--nodes-link plans inference on nodes like this host: it needs --gpu cpu:N "
                                   "with --tp/--pp");
    }
    if (r->n_formats < 1) return fitlm_fail(err, "no weight format");
    return 0;
}

/* ------------------------------------------------------------------ search */

typedef struct rlist {
    fitlm_plan_result *v;
    size_t n, cap;
} rlist;

static int rl_push(rlist *l, const fitlm_plan_result *x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        fitlm_plan_result *p = realloc(l->v, nc * sizeof *p);
        if (!p) return -1;
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n++] = *x;
    return 0;
}

static double score_of(const fitlm_plan_request *r, const fitlm_plan_result *x) {
    switch (r->objective) {
    case FITLM_OBJ_LATENCY:
        return r->mode == FITLM_PLAN_INFER ? x->ttft_s + r->output * x->tpot_s : x->step_time_s;
    case FITLM_OBJ_THROUGHPUT: return r->mode == FITLM_PLAN_INFER ? -x->decode_tps : -x->train_tps;
    default: return x->usd_per_million > 0 ? x->usd_per_million : 1e30;
    }
}

/* Ranking: objective first, then fewer devices, then lighter techniques. */
static int cmp_result(const void *a, const void *b) {
    const fitlm_plan_result *x = a, *y = b;
    double sx = x->score, sy = y->score;
    double rel = fabs(sx - sy) / fmax(fabs(sx), fabs(sy) + 1e-300);
    if (rel > 1e-9) return sx < sy ? -1 : 1;
    if (x->count != y->count) return x->count - y->count;
    if (x->zero != y->zero) return x->zero - y->zero;
    if (x->recompute != y->recompute) return x->recompute - y->recompute;
    if (x->pp != y->pp) return x->pp - y->pp;
    return x->tp - y->tp;
}

typedef struct search_ctx {
    const fitlm_plan_model *m;
    const fitlm_plan_request *r;
    const fitlm_catalog *cat;
    fitlm_weight_bytes *wb; /* per format */
    size_t evaluated;
    /* closest miss, for hints */
    fitlm_plan_result best_miss;
    bool have_miss;
    char constraint_why[200];
} search_ctx;

static bool constraints_ok(search_ctx *c, fitlm_plan_result *x) {
    const fitlm_plan_request *r = c->r;
    const fitlm_gpu *g = &c->cat->gpus[x->gpu];
    if (r->max_cost > 0 && (g->cloud_usd_per_hour <= 0 || x->usd_per_hour > r->max_cost)) {
        snprintf(c->constraint_why, sizeof c->constraint_why, "the cheapest layout that fits costs more than $%.2f/h",
                 r->max_cost);
        return false;
    }
    if (r->mode == FITLM_PLAN_INFER && r->max_ttft > 0 && x->ttft_s > r->max_ttft) {
        snprintf(c->constraint_why, sizeof c->constraint_why, "no layout that fits reaches a TTFT of %.3g s",
                 r->max_ttft);
        return false;
    }
    double tps = r->mode == FITLM_PLAN_INFER ? x->decode_tps : x->train_tps;
    if (r->min_tokens_per_s > 0 && tps < r->min_tokens_per_s) {
        snprintf(c->constraint_why, sizeof c->constraint_why, "no layout within %d GPUs reaches %.4g tokens/s",
                 r->max_gpus, r->min_tokens_per_s);
        return false;
    }
    return true;
}

static void note_miss(search_ctx *c, const fitlm_plan_result *x) {
    if (!c->have_miss || x->per_device_bytes / x->usable_bytes < c->best_miss.per_device_bytes / c->best_miss.usable_bytes) {
        c->best_miss = *x;
        c->have_miss = true;
    }
}

/* Evaluates one layout at the request's batch; 1 when it fits and meets the
 * constraints (x scored), 0 otherwise (a miss noted). */
static int eval_one(search_ctx *c, const fitlm_plan_request *r, fitlm_plan_result *x) {
    fitlm_plan_evaluate(c->m, r, c->cat, &c->wb[x->format], x);
    c->evaluated++;
    if (!x->fits) {
        note_miss(c, x);
        return 0;
    }
    /* inference with a free device count: add replicas to reach --min-tokens-per-s */
    if (r->mode == FITLM_PLAN_INFER && r->min_tokens_per_s > 0 && x->decode_tps < r->min_tokens_per_s && x->dp == 1 &&
        r->dp == 0 && x->count == x->tp * x->pp) {
        int need = (int)ceil(r->min_tokens_per_s / x->decode_tps);
        if ((long)need * x->tp * x->pp <= r->max_gpus && need > 1) {
            x->dp = need;
            x->count = need * x->tp * x->pp;
            fitlm_plan_evaluate(c->m, r, c->cat, &c->wb[x->format], x);
        }
    }
    if (!constraints_ok(c, x)) return 0;
    x->score = score_of(r, x);
    return 1;
}

static int eval_push(search_ctx *c, fitlm_plan_result *x, rlist *out) {
    if (c->r->mode != FITLM_PLAN_INFER || !c->r->batch_auto) return eval_one(c, c->r, x) ? rl_push(out, x) : 0;
    /* the batch (concurrency) searched per layout: 1, 2, 4 .. max_batch, the
     * best score that fits and meets the constraints (replicas for
     * --min-tokens-per-s only after the batch); the KV cache grows with the
     * batch, so the largest batches stop fitting first */
    fitlm_plan_request rq = *c->r;
    const fitlm_plan_result start = *x;
    fitlm_plan_result best;
    bool have = false;
    for (uint32_t b = 1; b <= c->r->max_batch; b = b < c->r->max_batch && b * 2 > c->r->max_batch ? c->r->max_batch : b * 2) {
        rq.batch = b;
        fitlm_plan_result y = start;
        int ok = eval_one(c, &rq, &y);
        if (ok && (!have || cmp_result(&y, &best) < 0)) {
            best = y;
            have = true;
        }
        *x = y; /* the caller looks at fits (PP and offload search) */
        if (!y.fits) break; /* larger batches need more memory */
        if (b == c->r->max_batch) break;
    }
    if (!have) return 0;
    *x = best;
    return rl_push(out, x);
}

/* Smallest number of trailing layers to keep in host memory so one device fits. */
static uint32_t min_offload_layers(search_ctx *c, fitlm_plan_result *x) {
    uint32_t L = c->m->hp.n_layers, lo = 1, hi = L, best = 0;
    while (lo <= hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        x->offload_layers = mid;
        fitlm_plan_evaluate(c->m, c->r, c->cat, &c->wb[x->format], x);
        c->evaluated++;
        if (x->fits) {
            best = mid;
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    return best;
}

static int search_infer(search_ctx *c, int gpu, int fixed_count, int fi, int kv, rlist *out) {
    const fitlm_plan_request *r = c->r;
    const fitlm_hparams *hp = &c->m->hp;
    const fitlm_gpu *g = &c->cat->gpus[gpu];
    int maxn = fixed_count ? fixed_count : r->max_gpus;
    /* the host CPU as MPI ranks: only the layout --gpu cpu:N --tp/--pp asks for */
    int max_t = g->is_cpu && fixed_count ? fixed_count : g->max_per_node;
    for (int t = 1; t <= max_t && t <= maxn; t++) {
        if (r->tp && t != r->tp) continue;
        if (!tp_ok(hp, t, NULL, 0)) continue;
        if (fi >= 0 && fi < r->n_formats && !format_ok(hp, &r->formats[fi], g, t, NULL, 0)) continue;
        int fitted_at = 0;
        for (int p = 1; p <= (int)hp->n_layers && t * p <= maxn; p++) {
            if (r->pp && p != r->pp) continue;
            if (r->gpu_layers >= 0 && p > 1 && !g->is_cpu) break; /* -ngl: one stage, the rest on the host */
            if (g->is_cpu && (t > 1 || p > 1) && !fixed_count) break;
            if (g->is_cpu && fixed_count && t * p != fixed_count) continue;
            int d = 1;
            if (fixed_count) {
                if (fixed_count % (t * p)) continue;
                d = fixed_count / (t * p);
                if (r->dp && d != r->dp) continue;
            } else if (r->dp) {
                d = r->dp;
                if ((long)t * p * d > r->max_gpus) continue;
            }
            if (!fixed_count && fitted_at && p > 2 * fitted_at) break;
            fitlm_plan_result x;
            memset(&x, 0, sizeof x);
            x.gpu = gpu, x.tp = t, x.pp = p, x.dp = d, x.count = t * p * d, x.format = fi, x.kv_type = kv;
            if (r->gpu_layers >= 0 && !g->is_cpu) {
                /* -ngl N: the layers beyond N stay in host memory, fit or not */
                x.offload_layers = (uint32_t)r->gpu_layers < hp->n_layers ? hp->n_layers - (uint32_t)r->gpu_layers : 0;
                if (eval_push(c, &x, out)) return -1;
                continue;
            }
            if (eval_push(c, &x, out)) return -1;
            if (x.fits) {
                if (!fitted_at) fitted_at = p;
            } else {
                if (r->offload_allowed && p == 1) {
                    uint32_t k = min_offload_layers(c, &x);
                    if (k > 0) {
                        x.offload_layers = k;
                        if (eval_push(c, &x, out)) return -1;
                    }
                }
            }
        }
    }
    return 0;
}

static int search_train(search_ctx *c, int gpu, int fixed_count, rlist *out) {
    const fitlm_plan_request *r = c->r;
    const fitlm_hparams *hp = &c->m->hp;
    const fitlm_gpu *g = &c->cat->gpus[gpu];
    int counts[32], nc = 0;
    if (fixed_count) counts[nc++] = fixed_count;
    else
        for (int n = 1; n <= r->max_gpus && nc < 31; n *= 2) counts[nc++] = n;
    for (int ci = 0; ci < nc; ci++) {
        int n = counts[ci];
        for (int t = 1; t <= g->max_per_node && t <= n; t++) {
            if (r->tp && t != r->tp) continue;
            if (!tp_ok(hp, t, NULL, 0) || n % t) continue;
            for (int p = 1; p <= (int)hp->n_layers && t * p <= n; p *= 2) {
                if (r->pp && p != r->pp) {
                    if (p > r->pp) break;
                    continue;
                }
                if (n % (t * p)) continue;
                int d = n / (t * p);
                if (r->dp && d != r->dp) continue;
                uint32_t acc = r->grad_accum;
                if (!acc) {
                    acc = r->global_batch / (r->micro_batch * (uint32_t)d);
                    if (acc < 1) acc = 1;
                }
                for (int z = 0; z <= 3; z++) {
                    if (r->zero >= 0 && z != r->zero) continue;
                    if (r->offload_opt != FITLM_OFFLOAD_NONE && z == 0) continue;
                    if (r->offload_param != FITLM_OFFLOAD_NONE && z < 3) continue;
                    if (z > 0 && d == 1 && r->zero < 0) continue; /* ZeRO without data parallelism changes nothing */
                    /* LoRA: partitioning the tiny adapter states (ZeRO-1/2) changes nothing either */
                    if (r->lora_rank && r->zero < 0 && (z == 1 || z == 2)) continue;
                    for (int rc = 0; rc <= 2; rc++) {
                        if (r->recompute >= 0 && rc != r->recompute) continue;
                        /* with FlashAttention selective recomputation changes nothing: skip the duplicate */
                        if (r->recompute < 0 && rc == FITLM_RECOMPUTE_SELECTIVE && r->flash) continue;
                        /* interleaved 1F1B: v model chunks per device, each at least one
                         * layer, the micro-batches a multiple of p (Megatron-LM's rule) */
                        int vmax = r->pp_interleave > 0 ? r->pp_interleave : 64;
                        /* the embedding and the output layer + loss as one pipeline layer each
                         * (Megatron-core's account_for_{embedding,loss}_in_pipeline_split) */
                        for (int es = 0; es <= 1; es++) {
                        if (es && p == 1) break;
                        if (r->pp_embed_split >= 0 && es != r->pp_embed_split) continue;
                        uint32_t units = hp->n_layers + (es ? 2u : 0u);
                        if (es && units < 2u * (uint32_t)p) break; /* every stage keeps a transformer layer */
                        for (int v = 1; v <= vmax; v *= 2) {
                            /* a given --pp-interleave applies to pipelines; PP 1 has nothing to interleave */
                            if (r->pp_interleave > 1 && p > 1 && v != r->pp_interleave) continue;
                            if (v > 1 && (p == 1 || acc % (uint32_t)p || (uint32_t)(p * v) > units)) break;
                            fitlm_plan_result x;
                            memset(&x, 0, sizeof x);
                            x.gpu = gpu, x.tp = t, x.pp = p, x.dp = d, x.count = n, x.zero = z, x.recompute = rc;
                            x.offload_opt = r->offload_opt, x.offload_param = r->offload_param;
                            x.grad_accum = acc;
                            x.interleave = v;
                            x.pp_embed_split = es;
                            x.kv_type = FITLM_TYPE_F16;
                            if (eval_push(c, &x, out)) return -1;
                        }
                        }
                    }
                }
            }
        }
    }
    return 0;
}

/* Runs the enumeration over the request's GPUs for formats [f0, f1). */
static int run_search(search_ctx *c, int f0, int f1, rlist *out) {
    const fitlm_plan_request *r = c->r;
    int ng = r->n_gpusel ? r->n_gpusel : (int)c->cat->n;
    for (int gi = 0; gi < ng; gi++) {
        int gpu = r->n_gpusel ? r->gpusel[gi].gpu : gi;
        int fixed = r->n_gpusel ? r->gpusel[gi].count : 0;
        if (!r->n_gpusel && c->cat->gpus[gpu].is_cpu) continue;
        if (r->mode == FITLM_PLAN_TRAIN) {
            if (search_train(c, gpu, fixed, out)) return -1;
            continue;
        }
        for (int fi = f0; fi < f1; fi++)
            for (int k = 0; k < r->n_kv_types; k++)
                if (search_infer(c, gpu, fixed, fi, r->kv_types[k], out)) return -1;
    }
    return 0;
}

/* Sorts, then keeps the best layout per (GPU, format, KV type) first; when that
 * leaves fewer than `fill` entries, other layouts follow in rank order. */
static void best_per_key(rlist *l, size_t fill) {
    if (l->n == 0) return;
    qsort(l->v, l->n, sizeof *l->v, cmp_result);
    size_t n = l->n, w = 0;
    bool *taken = calloc(n ? n : 1, sizeof *taken);
    if (!taken) return; /* keep the sorted list as is */
    fitlm_plan_result *keep = malloc((n ? n : 1) * sizeof *keep);
    if (!keep) {
        free(taken);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < w && !dup; j++)
            dup = keep[j].gpu == l->v[i].gpu && keep[j].format == l->v[i].format && keep[j].kv_type == l->v[i].kv_type;
        if (!dup) {
            keep[w++] = l->v[i];
            taken[i] = true;
        }
    }
    for (size_t i = 0; i < n && w < fill; i++)
        if (!taken[i]) keep[w++] = l->v[i];
    memcpy(l->v, keep, w * sizeof *keep);
    l->n = w;
    free(keep);
    free(taken);
}

static double now_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Hints: what would make an infeasible request feasible. */
static void make_hint(search_ctx *c, fitlm_plan_output *out, fitlm_error *err) {
    const fitlm_plan_request *r = c->r;
    char *h = out->hint;
    size_t cap = sizeof out->hint, n = 0;
    if (!c->have_miss) {
        if (c->constraint_why[0]) snprintf(h, cap, "%s", c->constraint_why);
        else snprintf(h, cap, "no layout satisfies the TP/PP/DP and GPU-count constraints");
        return;
    }
    const fitlm_plan_result *b = &c->best_miss;
    const fitlm_gpu *g = &c->cat->gpus[b->gpu];
    if (c->constraint_why[0]) {
        n += (size_t)snprintf(h + n, cap - n, "%s", c->constraint_why);
        return;
    }
    n += (size_t)snprintf(h + n, cap - n, "does not fit: the best layout (%d x %s, TP %d, PP %d) %s", b->count,
                          g->name, b->tp, b->pp, b->why);
    /* 0: -ngl N: the most layers that fit on the best layout's devices */
    if (r->mode == FITLM_PLAN_INFER && r->gpu_layers > 0 && !g->is_cpu) {
        uint32_t L = c->m->hp.n_layers, top = (uint32_t)r->gpu_layers < L ? (uint32_t)r->gpu_layers : L;
        int lo = 0, hi = (int)top - 1, most = -1;
        fitlm_plan_result y = *b;
        while (lo <= hi) {
            int k = lo + (hi - lo) / 2;
            y.offload_layers = L - (uint32_t)k;
            fitlm_plan_evaluate(c->m, r, c->cat, &c->wb[y.format >= 0 ? y.format : 0], &y);
            if (y.fits) most = k, lo = k + 1;
            else hi = k - 1;
        }
        if (most >= 0 && n + 80 < cap)
            n += (size_t)snprintf(h + n, cap - n, "; -ngl %d fits (the most of the %u layers on %d x %s)", most, L,
                                  b->count, g->name);
    }
    /* 1: more devices of the same kind, same format */
    fitlm_plan_request rr = *r;
    rr.max_cost = rr.min_tokens_per_s = rr.max_ttft = 0;
    rr.tp = rr.pp = 0;
    rr.dp = 0;
    rr.max_gpus = r->max_gpus > 512 ? r->max_gpus : 512;
    int gsel = r->n_gpusel ? r->n_gpusel : 1;
    for (int gi = 0; gi < gsel && n + 80 < cap; gi++) {
        rr.n_gpusel = 1;
        rr.gpusel[0].gpu = r->n_gpusel ? r->gpusel[gi].gpu : b->gpu;
        rr.gpusel[0].count = 0;
        search_ctx c2 = *c;
        c2.r = &rr;
        c2.have_miss = false;
        rlist l = {0};
        if (run_search(&c2, 0, 1, &l) == 0 && l.n) {
            int best = l.v[0].count;
            for (size_t i = 0; i < l.n; i++)
                if (l.v[i].count < best) best = l.v[i].count;
            n += (size_t)snprintf(h + n, cap - n, "; needs >= %d x %s", best, c->cat->gpus[rr.gpusel[0].gpu].name);
        }
        free(l.v);
    }
    /* 2: smaller weights on the requested devices */
    if (r->mode == FITLM_PLAN_INFER && !r->formats_compete) {
        static const char *const alts[] = {"fp8", "int8", "awq", "q4_k_m", "q3_k_m", "q2_k"};
        for (size_t a = 0; a < sizeof alts / sizeof alts[0] && n + 80 < cap; a++) {
            fitlm_plan_request rq = *r;
            rq.max_cost = rq.min_tokens_per_s = rq.max_ttft = 0;
            fitlm_wformat f;
            if (fitlm_wformat_parse(alts[a], &f, NULL)) continue;
            rq.formats[0] = f;
            rq.n_formats = 1;
            fitlm_weight_bytes wb;
            if (fitlm_weight_bytes_compute(c->m, &f, &wb, err)) continue;
            search_ctx c3 = *c;
            c3.r = &rq;
            c3.wb = &wb;
            c3.have_miss = false;
            rlist l = {0};
            int rc = run_search(&c3, 0, 1, &l);
            fitlm_weight_bytes_free(&wb);
            if (rc == 0 && l.n) {
                best_per_key(&l, 1);
                n += (size_t)snprintf(h + n, cap - n, " or %s weights (%s: %.1f GiB per device on %d x %s)",
                                      f.is_4bit_or_less ? "4-bit" : (a < 2 ? "8-bit" : "smaller"), f.name,
                                      l.v[0].per_device_bytes / FITLM_GIB, l.v[0].count,
                                      c->cat->gpus[l.v[0].gpu].name);
                free(l.v);
                if (f.is_4bit_or_less) break;
                while (a + 1 < sizeof alts / sizeof alts[0] && strncmp(alts[a + 1], "q", 1) && strcmp(alts[a + 1], "awq"))
                    a++; /* after an 8-bit format that fits, look for the first 4-bit one */
                continue;
            }
            free(l.v);
        }
        if (b->comp[FITLM_MEM_KV] > 0.25 * b->per_device_bytes * b->tp * b->pp && n + 80 < cap)
            n += (size_t)snprintf(h + n, cap - n, "; the KV cache alone is %.1f GiB: try a smaller -c/--ctx-size or "
                                                  "--batch, or --kv-type q8_0",
                                  b->comp[FITLM_MEM_KV] / FITLM_GIB);
        if (!r->offload_allowed && n + 60 < cap)
            n += (size_t)snprintf(h + n, cap - n, "; or --offload cpu to keep some layers in host memory");
    } else if (r->mode == FITLM_PLAN_TRAIN && n + 120 < cap) {
        /* only the options not already set */
        const char *opts[5];
        int no = 0;
        if (r->zero != 3) opts[no++] = "--zero 3";
        if (r->offload_opt == FITLM_OFFLOAD_NONE) opts[no++] = "--offload-optimizer cpu";
        if (r->recompute != FITLM_RECOMPUTE_FULL) opts[no++] = "--recompute full";
        if (!r->lora_rank && !r->qlora) opts[no++] = "--lora-rank 16";
        if (!r->qlora) opts[no++] = "--qlora";
        for (int i = 0; i < no && n + 40 < cap; i++)
            n += (size_t)snprintf(h + n, cap - n, "%s%s", i == 0 ? "; options: " : i == no - 1 ? " or " : ", ",
                                  opts[i]);
    }
    (void)n;
}

static const char *const k_alt_formats[] = {"fp8", "int8", "awq", "gptq", "q8_0", "q4_k_m"};

int fitlm_plan_search(const fitlm_plan_model *m, const fitlm_plan_request *r, const fitlm_catalog *cat,
                      fitlm_plan_output *out, fitlm_error *err) {
    memset(out, 0, sizeof *out);
    double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    search_ctx c = {.m = m, .r = r, .cat = cat};
    c.wb = calloc((size_t)r->n_formats, sizeof *c.wb);
    if (!c.wb) return fitlm_fail(err, "out of memory");
    int rc = -1;
    for (int i = 0; i < r->n_formats; i++)
        if (fitlm_weight_bytes_compute(m, &r->formats[i], &c.wb[i], err)) goto done;
    rlist l = {0};
    int nf = r->mode == FITLM_PLAN_TRAIN ? 1 : (r->formats_compete ? r->n_formats : 1);
    if (run_search(&c, 0, nf, &l)) {
        free(l.v);
        fitlm_fail(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++)
        if (!out->have_fewest || l.v[i].count < out->fewest.count ||
            (l.v[i].count == out->fewest.count && cmp_result(&l.v[i], &out->fewest) < 0)) {
            out->fewest = l.v[i];
            out->have_fewest = true;
        }
    best_per_key(&l, (size_t)r->top + 1);
    out->results = l.v;
    out->n = l.n;
    if (l.n == 0) make_hint(&c, out, err);

    /* quantized alternatives (inference, when formats do not already compete) */
    if (r->mode == FITLM_PLAN_INFER && !r->formats_compete) {
        size_t na = sizeof k_alt_formats / sizeof k_alt_formats[0];
        out->quant_alts = calloc(na, sizeof *out->quant_alts);
        if (!out->quant_alts) {
            fitlm_fail(err, "out of memory");
            goto done;
        }
        for (size_t a = 0; a < na; a++) {
            fitlm_wformat f;
            if (fitlm_wformat_parse(k_alt_formats[a], &f, NULL)) continue;
            if (!strcmp(f.name, r->formats[0].name)) continue;
            fitlm_plan_request rq = *r;
            rq.formats[0] = f;
            rq.n_formats = 1;
            fitlm_weight_bytes wb;
            if (fitlm_weight_bytes_compute(m, &f, &wb, err)) goto done;
            search_ctx c2 = {.m = m, .r = &rq, .cat = cat, .wb = &wb};
            rlist l2 = {0};
            int e = run_search(&c2, 0, 1, &l2);
            fitlm_weight_bytes_free(&wb);
            c.evaluated += c2.evaluated;
            if (e == 0 && l2.n) {
                best_per_key(&l2, 1);
                fitlm_plan_result x = l2.v[0];
                x.format = -1 - (int)a; /* marks an alternative format: -1 - index into k_alt_formats */
                out->quant_alts[out->n_quant_alts++] = x;
            }
            free(l2.v);
        }
    }
    /* this machine: the CPU entry with the requested format and with Q4_K_M */
    int cpu = fitlm_catalog_find(cat, "CPU");
    if (r->mode == FITLM_PLAN_INFER && r->n_gpusel == 0 && cpu >= 0 && cat->gpus[cpu].is_cpu) {
        static const char *const here_fmt[2] = {NULL, "q4_k_m"};
        for (int k = 0; k < 2; k++) {
            fitlm_plan_request rq = *r;
            rq.n_gpusel = 1;
            rq.gpusel[0].gpu = cpu;
            rq.gpusel[0].count = 1;
            rq.tp = rq.pp = rq.dp = 0;
            rq.max_cost = rq.min_tokens_per_s = rq.max_ttft = 0;
            rq.n_formats = 1;
            if (here_fmt[k]) {
                if (fitlm_wformat_parse(here_fmt[k], &rq.formats[0], NULL)) continue;
                if (!strcmp(rq.formats[0].name, r->formats[0].name)) continue;
            }
            fitlm_weight_bytes wb;
            if (fitlm_weight_bytes_compute(m, &rq.formats[0], &wb, err)) goto done;
            fitlm_plan_result x;
            memset(&x, 0, sizeof x);
            int q4 = 0;
            while (q4 < (int)(sizeof k_alt_formats / sizeof k_alt_formats[0]) && strcmp(k_alt_formats[q4], "q4_k_m"))
                q4++;
            x.gpu = cpu, x.count = x.tp = x.pp = x.dp = 1, x.format = 0;
            x.kv_type = r->kv_types[0];
            fitlm_plan_evaluate(m, &rq, cat, &wb, &x);
            if (k) x.format = -1 - q4; /* names the format for the report */
            fitlm_weight_bytes_free(&wb);
            out->here[out->n_here++] = x;
        }
    }
    rc = 0;
done:
    for (int i = 0; i < r->n_formats; i++) fitlm_weight_bytes_free(&c.wb[i]);
    free(c.wb);
    out->evaluated = c.evaluated;
    out->search_seconds = now_s(CLOCK_MONOTONIC) - t0;
    out->search_cpu_seconds = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return rc;
}

const char *fitlm_plan_format_name(const fitlm_plan_request *r, const fitlm_plan_result *x) {
    static char buf[8][32];
    static int slot;
    if (x->format >= 0) return r->formats[x->format].name;
    int a = -1 - x->format;
    fitlm_wformat f;
    if (a < (int)(sizeof k_alt_formats / sizeof k_alt_formats[0]) && !fitlm_wformat_parse(k_alt_formats[a], &f, NULL)) {
        slot = (slot + 1) % 8;
        snprintf(buf[slot], sizeof buf[slot], "%s", f.name);
        return buf[slot];
    }
    return "?";
}

void fitlm_plan_output_free(fitlm_plan_output *out) {
    if (!out) return;
    free(out->results);
    free(out->quant_alts);
    memset(out, 0, sizeof *out);
}
