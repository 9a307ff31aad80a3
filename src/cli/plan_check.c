/* --plan-check: prediction beside measurement (plan_check.h). */
#include "cli/plan_check.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_type.h"
#include "parallel/comm.h"
#include "parallel/parallel.h"
#include "planner/cpu_cost.h"
#include "planner/gpu_cost.h"
#include "planner/host_comm.h"
#include "planner/planner.h"
#include "sys/threadpool.h"
#include "runtime/mem_model.h"
#include "util/error.h"
#include "util/file.h"

#define MIB 1048576.0

/* Bytes of 1-D F16/BF16 tensors the CPU backend converts to F32 (the runtime
 * counts them as scratch). */
static uint64_t converted_vector_bytes(const fitlm_model *m) {
    uint64_t b = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        bool vec = t->n_dims == 1 || t->n_elements == t->ne[0];
        if (vec && (t->type == FITLM_TYPE_F16 || t->type == FITLM_TYPE_BF16) && t->kind != FITLM_T_COUNT &&
            t->kind != FITLM_T_ROPE_FREQS)
            b += t->n_elements * 4;
    }
    return b;
}

/* The header of the comparison table whose lines row() prints. */
static void table_header(FILE *out) {
    fprintf(out, "| %-22s | %14s | %14s | %-5s | %8s | %s\n", "quantity", "predicted", "measured", "unit", "error",
            "notes");
    fprintf(out, "|------------------------|----------------|----------------|-------|----------|------\n");
}

static void row(FILE *out, const char *what, double pred, double meas, const char *unit, int prec, const char *note) {
    char e[32];
    if (meas > 0) snprintf(e, sizeof e, "%+.1f%%", 100.0 * (pred - meas) / meas);
    else snprintf(e, sizeof e, "-");
    fprintf(out, "| %-22s | %14.*f | %14.*f | %-5s | %8s | %s\n", what, prec, pred, prec, meas, unit, e, note);
}

/* Loads the named profile (an error when it cannot be read) or the default
 * one (a warning, then assumed figures); *have says whether one was loaded,
 * src names it. NULL after printing an error; the caller frees the result. */
static fitlm_host_profile *load_profile(const char *profile_path, bool *have, char *src, size_t cap) {
    fitlm_host_profile *prof = calloc(1, sizeof *prof);
    if (!prof) return fitlm_die("out of memory"), NULL;
    char def[PATH_MAX];
    fitlm_error err = {{0}};
    *have = false;
    if (profile_path) {
        if (fitlm_host_profile_load(prof, profile_path, &err)) {
            free(prof);
            fitlm_error_print(&err);
            return NULL;
        }
        *have = true;
        snprintf(src, cap, "host profile %s", profile_path);
    } else if (fitlm_host_profile_default_path(def, sizeof def) == 0 && fitlm_file_exists(def)) {
        if (fitlm_host_profile_load(prof, def, &err) == 0) {
            *have = true;
            snprintf(src, cap, "host profile %s", def);
        } else {
            fprintf(stderr, "fitlm: warning: %s; using assumed figures\n", err.msg);
        }
    }
    if (!*have) snprintf(src, cap, "no host profile (run 'fitlm calibrate'): assumed figures");
    return prof;
}

/* The F16 matrices the backend runs as BF16 (their values all bfloat16
 * values) move to the BF16 rates: the share this process converted (bf16 of
 * its f16 matrix bytes), of the whole model's F16 work. Under MPI the
 * process holds only its part while the work is the whole model's (moving
 * rank 0's bytes alone left half the prompt's matmuls at the F16 rate,
 * 15-24 % slow). */
static void retype_bf16(fitlm_cpu_work *w, uint64_t bf16, uint64_t f16) {
    if (!bf16) return;
    double share = f16 > 0 ? fmin(1.0, (double)bf16 / (double)f16) : 1.0, total = 0;
    if (w->output_type == FITLM_TYPE_F16) total += w->output_bytes;
    for (int i = 0; i < w->n; i++)
        if (w->t[i].type == FITLM_TYPE_F16) total += w->t[i].bytes;
    fitlm_cpu_work_retype(w, FITLM_TYPE_F16, FITLM_TYPE_BF16, f16 > 0 ? share * total : (double)bf16);
}

/* Rank 0's share of the model under T tensor ranks, holding layers [l0, l1)
 * of the first stage (parallel/shard.c cuts them): Q, K, V, gate and up by
 * output columns and O and down by input rows, 1/T each (K and V heads
 * replicated when T exceeds them: 1/n_kv_heads), norms whole, the embedding,
 * and the output norm and matrix when this first stage is also the last. */
static double shard_weight_bytes(const fitlm_model *m, uint32_t T, uint32_t l0, uint32_t l1, bool last) {
    const fitlm_hparams *hp = &m->hp;
    double kv_share = T <= hp->n_kv_heads ? 1.0 / T : 1.0 / (hp->n_kv_heads ? hp->n_kv_heads : 1);
    double b = 0;
    for (uint32_t l = l0; l < l1 && l < hp->n_layers && m->layer_tensors; l++)
        for (int k = 0; k < FITLM_T_COUNT; k++) {
            const fitlm_tensor *t = m->layer_tensors[l][k];
            if (!t) continue;
            double share = 1.0;
            if (k == FITLM_T_ATTN_Q || k == FITLM_T_ATTN_Q_BIAS || k == FITLM_T_ATTN_OUT || k == FITLM_T_FFN_GATE ||
                k == FITLM_T_FFN_UP || k == FITLM_T_FFN_DOWN)
                share = 1.0 / T;
            else if (k == FITLM_T_ATTN_K || k == FITLM_T_ATTN_V || k == FITLM_T_ATTN_K_BIAS || k == FITLM_T_ATTN_V_BIAS)
                share = kv_share;
            b += (double)t->nbytes * share;
        }
    const fitlm_tensor *E = m->global_tensors[FITLM_T_TOKEN_EMBD], *O = m->global_tensors[FITLM_T_OUTPUT],
                       *N = m->global_tensors[FITLM_T_OUTPUT_NORM];
    if (E) b += (double)E->nbytes;
    if (last && O) b += (double)O->nbytes;
    if (last && N) b += (double)N->nbytes;
    return b;
}

/* The largest pipeline stage's share of the layers: rank 0's [l0, l1) or the
 * mean of the other P - 1 stages' (1 without pipeline parallel). */
static double largest_stage_share(const fitlm_model *m, uint32_t l0, uint32_t l1, uint32_t P) {
    double L = m->hp.n_layers ? m->hp.n_layers : 1;
    double own = l1 > l0 ? l1 - l0 : L / P;
    return P > 1 ? fmax(own, (L - own) / (P - 1)) / L : 1;
}

static void gpu_serve_rows(FILE *out, const fitlm_model *m, const plan_check_serve *run,
                           const fitlm_host_profile *prof);

int plan_check_serve_print(FILE *out, const fitlm_model *m, const char *profile_path, const plan_check_serve *run) {
    bool have;
    char src[PATH_MAX + 64];
    fitlm_host_profile *prof = load_profile(profile_path, &have, src, sizeof src);
    if (!prof) return -1;
    if (run->gpu) {
        gpu_serve_rows(out, m, run, have ? prof : NULL);
        free(prof);
        return 0;
    }
    if (run->plan_gpu)
        fprintf(out, "fitlm: note: --plan-gpu %s not used: no layers ran on a GPU (the CPU's plan check follows)\n",
                run->plan_gpu);
    fitlm_cpu_work w;
    fitlm_cpu_work_of_model(m, run->kv_type, &w);
    /* the types the backend runs: F16 matrices of bfloat16 values run as BF16 */
    retype_bf16(&w, run->bf16_from_f16_bytes, run->f16_matrix_bytes);
    uint32_t T = run->tp ? run->tp : 1, P = run->pp ? run->pp : 1;
    bool mpi = T * P > 1;
    /* sequences decoding together: the tokens of an engine step; under
     * pipeline parallel a step is one of P lanes, and as many lanes as
     * were in flight at once share the pipeline (all P when every step
     * overlapped another, one when none did) */
    double rows = run->concurrency >= 1 ? run->concurrency : 1;
    double busy = run->steps ? 1.0 + (double)(P - 1) * (double)run->steps_overlapped / (double)run->steps : 1.0;
    double b = P > 1 ? rows * busy : rows;
    uint32_t ctx = run->mean_ctx > 1 ? (uint32_t)run->mean_ctx : 1;
    double max_stage = largest_stage_share(m, run->layer0, run->layer1, P);
    int all_threads = run->threads * (int)(T * P);
    /* stages in turns: one process's step at one stage's threads (the
     * weights read once per step), and the messages between the stages */
    uint32_t P_compute = run->turns ? 1 : P;
    if (run->turns) all_threads = run->threads * (int)T, b = rows;
    double mean_prompt = run->requests ? (double)run->prompt_tokens / (double)run->requests : 0;
    uint32_t np = mean_prompt >= 1 ? (uint32_t)mean_prompt : 1;
    fitlm_cpu_pred pp, tg;
    fitlm_host_pipeline_predict(have ? prof : NULL, 0, 0, &w, all_threads, (int)P_compute, np, FITLM_DEFAULT_UBATCH,
                                max_stage, ctx - 1, 1, &pp, &tg);
    double step = fitlm_host_pipeline_step_s(&tg, &w, (int)P_compute, max_stage, b, run->mean_ctx), comm = 0;
    if (mpi) {
        fitlm_host_comm hc;
        fitlm_host_comm_of(have ? prof : NULL, &hc);
        comm = fitlm_host_step_comm_s(&hc, &m->hp, (int)T, (int)P, b);
        step += comm;
    }
    /* steps also carry the chunks of new prompts (chunked prefill): their
     * tokens per step at the prefill rate of a mean prompt (per round of the
     * lanes under pipeline parallel) */
    double prompt_per_step = run->steps ? (double)run->prompt_tokens / (double)run->steps : 0;
    if (prompt_per_step > 0 && run->requests && pp.prefill_s > 0)
        step += prompt_per_step * P_compute * pp.prefill_s / np;
    if (mpi)
        fprintf(out, "\nplan check: the planner's prediction beside this server (%s; %u x %u MPI ranks of %d "
                     "threads%s; %.3f ms of communication per decode step)\n",
                src, T, P, run->threads, run->turns ? ", the stages in turns" : "", comm * 1e3);
    else
        fprintf(out, "\nplan check: the planner's prediction beside this server (%s; %d threads)\n", src, run->threads);
    fprintf(out, "at the measured concurrency %.2f (%llu generated tokens in %llu engine steps%s, %llu requests)\n", b,
            (unsigned long long)run->generated, (unsigned long long)run->steps, P_compute > 1 ? " of the lanes" : "",
            (unsigned long long)run->requests);
    table_header(out);
    double wpred = (double)fitlm_model_tensor_bytes(m);
    if (mpi)
        wpred = shard_weight_bytes(m, T, run->layer0, run->layer1 > run->layer0 ? run->layer1 : m->hp.n_layers, P == 1);
    row(out, "weights", wpred / MIB, (double)run->weight_bytes / MIB, "MiB", 2,
        mpi ? "rank 0's share of the file's tensor bytes" : "tensor bytes of the file");
    char note[200];
    snprintf(note, sizeof note, "mean context %.0f, %.1f prompt tokens per step; mean of %llu inter-token intervals",
             run->mean_ctx, prompt_per_step, (unsigned long long)run->itl_count);
    row(out, "time per output token", step * 1e3, run->itl_s * 1e3, "ms", 3, note);
    snprintf(note, sizeof note, "concurrency / time per output token");
    row(out, "decode throughput", b / step, run->itl_s > 0 ? b / run->itl_s : 0, "tok/s", 2, note);
    /* the same step with the rates that drift measured again now (plan_check_print) */
    if (!mpi && have && tg.rates.read_bw_measured && run->steps) {
        fitlm_host_profile *now = malloc(sizeof *now);
        fitlm_error perr = {{0}};
        if (!now || fitlm_host_profile_now(prof, run->threads, 0, &w, now, &perr)) {
            fprintf(out, "(the host now: not measured: %s)\n", now ? perr.msg : "out of memory");
        } else {
            fitlm_cpu_pred pp2, tg2;
            fitlm_host_pipeline_predict(now, 0, 0, &w, all_threads, 1, np, FITLM_DEFAULT_UBATCH, max_stage, ctx - 1, 1,
                                        &pp2, &tg2);
            double step2 = fitlm_host_pipeline_step_s(&tg2, &w, 1, max_stage, b, run->mean_ctx);
            if (prompt_per_step > 0 && run->requests && pp2.prefill_s > 0) step2 += prompt_per_step * pp2.prefill_s / np;
            snprintf(note, sizeof note, "the profile's figure at %d threads vs a probe at shut-down", tg.rates.threads);
            row(out, "read bandwidth", tg.rates.read_bw / 1e9, tg2.rates.read_bw / 1e9, "GB/s", 2, note);
            snprintf(note, sizeof note, "the plan with the read bandwidth, the kernels and the decode attention measured now");
            row(out, "time per token, now", step2 * 1e3, run->itl_s * 1e3, "ms", 3, note);
        }
        free(now);
    }
    if (tg.assumed[0]) fprintf(out, "assumed: %s\n", tg.assumed);
    free(prof);
    return 0;
}

/* Adds an MPI run's communication (planner/host_comm.h) to the prediction of
 * its compute: each prompt chunk's and each decode step's. Returns the decode
 * step's seconds of it. */
static double add_comm(const fitlm_host_profile *prof, const fitlm_model *m, uint32_t T, uint32_t P, uint32_t n_prompt,
                       uint32_t n_ubatch, fitlm_cpu_pred *pp, fitlm_cpu_pred *tg) {
    fitlm_host_comm hc;
    fitlm_host_comm_of(prof, &hc);
    uint32_t ub = n_ubatch ? n_ubatch : 1;
    double chunks = n_prompt ? ceil((double)n_prompt / ub) : 0;
    if (chunks > 0) {
        pp->prefill_s += chunks * fitlm_host_step_comm_s(&hc, &m->hp, (int)T, (int)P, n_prompt / chunks);
        pp->ttft_s = pp->prefill_s;
        pp->pp_tps = n_prompt / pp->prefill_s;
    }
    double comm = fitlm_host_step_comm_s(&hc, &m->hp, (int)T, (int)P, 1);
    tg->decode_s += comm;
    tg->tg_tps = 1.0 / tg->decode_s;
    return comm;
}

/* The bytes of a mapped embedding that the looked-up rows make resident. A
 * read fault on a file mapping maps the pages around it that the page cache
 * holds, an aligned window of fault_around_bytes (Linux: 64 KiB by default;
 * the file was just read, or is read ahead on the fault): every window that
 * a row's bytes fall in. */
#define FAULT_AROUND_BYTES ((uint64_t)64 << 10)
static double embd_touched_bytes(const fitlm_tensor *E, uint32_t vocab, const plan_check_run *run) {
    if (!E->data || !vocab) return (double)E->nbytes;
    uint64_t rowb = E->nbytes / vocab, base = (uint64_t)(uintptr_t)E->data;
    uint64_t w0 = base / FAULT_AROUND_BYTES, n_win = (base + E->nbytes - 1) / FAULT_AROUND_BYTES - w0 + 1;
    unsigned char *hit = calloc(n_win, 1);
    if (!hit) return (double)E->nbytes;
    uint64_t n_hit = 0;
    for (int l = 0; l < 2; l++)
        for (uint32_t i = 0; i < run->n_embd_ids[l]; i++) {
            int32_t id = run->embd_ids[l][i];
            if (id < 0 || (uint32_t)id >= vocab) continue;
            uint64_t a = base + (uint64_t)id * rowb;
            for (uint64_t w = a / FAULT_AROUND_BYTES; w <= (a + rowb - 1) / FAULT_AROUND_BYTES; w++)
                if (!hit[w - w0]) hit[w - w0] = 1, n_hit++;
        }
    free(hit);
    return (double)(n_hit * FAULT_AROUND_BYTES);
}

int plan_check_gpu_valid(const char *name, fitlm_error *err) {
    fitlm_catalog cat;
    if (fitlm_catalog_load_builtin(&cat, err)) return -1;
    int i = fitlm_catalog_find(&cat, name);
    fitlm_catalog_free(&cat);
    if (i < 0)
        return fitlm_fail(err, "--plan-gpu: no GPU '%s' in the catalog (fitlm plan --list-gpus names them)", name);
    return 0;
}

/* The GPU planner (planner.h) for a run's catalog card: fitlm's own engine
 * profile, the model file's tensor bytes, layers beyond the GPU's on the
 * host's CPU entry (from the host profile when one is loaded). */
typedef struct gpu_plan {
    fitlm_catalog cat;
    fitlm_plan_model pm;
    fitlm_weight_bytes wb;
    int gpu;          /* catalog index */
    uint32_t on_gpu;  /* layers on the GPU */
    int threads;      /* the run's CPU threads (its layers on the host) */
    const fitlm_device_rates *measured; /* the profile's entry for this device (borrowed), or NULL */
    double bw, flops; /* its rates on the file's weight types */
} gpu_plan;

static void gpu_plan_close(gpu_plan *gp) {
    fitlm_weight_bytes_free(&gp->wb);
    fitlm_plan_model_free(&gp->pm);
    fitlm_catalog_free(&gp->cat);
}

/* 0 with gp ready (close it), or -1 after printing why there is no speed
 * prediction (gp closed). device: the driver's name; plan_gpu: the card
 * named instead (NULL: the one the name matches); prof borrowed (copied). */
static int gpu_plan_open(gpu_plan *gp, FILE *out, const char *device, const char *plan_gpu, const char *model_path,
                         uint32_t gpu_layers, int threads, const fitlm_host_profile *prof) {
    memset(gp, 0, sizeof *gp);
    gp->threads = threads;
    fitlm_error err = {{0}};
    if (fitlm_catalog_load_builtin(&gp->cat, &err)) {
        fprintf(out, "speed not predicted: %s\n", err.msg);
        return -1;
    }
    fitlm_catalog_add_host_cpu(&gp->cat);
    if (prof) {
        fitlm_host_profile *copy = malloc(sizeof *copy);
        if (copy) {
            *copy = *prof;
            fitlm_catalog_use_profile(&gp->cat, copy, "");
        }
    }
    gp->gpu = plan_gpu ? fitlm_catalog_find(&gp->cat, plan_gpu) : fitlm_catalog_match_device(&gp->cat, device);
    /* the device measured by calibrate --device: its rates on this file's weight types */
    const fitlm_device_rates *dr = plan_gpu ? NULL : fitlm_host_profile_device(prof, device);
    if (dr && fitlm_device_rates_for_file(dr, model_path, &gp->bw, &gp->flops)) {
        int at = fitlm_catalog_use_device(&gp->cat, gp->gpu >= 0 && !gp->cat.gpus[gp->gpu].is_cpu ? gp->gpu : -1, dr,
                                          gp->bw, gp->flops);
        if (at >= 0) gp->gpu = at, gp->measured = dr;
    }
    if (gp->gpu < 0 || gp->cat.gpus[gp->gpu].is_cpu) {
        fprintf(out, "speed not predicted: %s is not a card of the catalog (fitlm calibrate --device measures it; "
                     "--plan-gpu NAME predicts for a card of fitlm plan --list-gpus)\n", device);
        gpu_plan_close(gp);
        return -1;
    }
    if (!model_path || fitlm_plan_model_open(&gp->pm, model_path, &err)) {
        fprintf(out, "speed not predicted: %s\n", model_path ? err.msg : "no model file");
        gpu_plan_close(gp);
        return -1;
    }
    gp->on_gpu = gpu_layers < gp->pm.hp.n_layers ? gpu_layers : gp->pm.hp.n_layers;
    return 0;
}

/* One batch-`batch` layout of the card, `prompt` tokens in and `output` out
 * (the context is made to hold them); 0 with x, or -1 after printing why. */
static int gpu_plan_eval(gpu_plan *gp, FILE *out, uint32_t prompt, uint32_t output, uint32_t batch, uint32_t n_ctx,
                         uint32_t ubatch, int kv_type, fitlm_plan_result *x) {
    fitlm_error err = {{0}};
    uint32_t L = gp->pm.hp.n_layers;
    fitlm_plan_request r;
    fitlm_plan_request_defaults(&r, &gp->pm);
    r.batch = batch ? batch : 1;
    r.chunk = ubatch ? ubatch : 512;
    r.kv_types[0] = kv_type;
    r.n_kv_types = 1;
    memset(&r.formats[0], 0, sizeof r.formats[0]);
    r.formats[0].kind = FITLM_W_FILE;
    snprintf(r.formats[0].name, sizeof r.formats[0].name, "%s", gp->pm.file_type_name);
    r.n_formats = 1;
    r.engine = FITLM_ENGINE_FITLM;
    r.n_gpusel = 1;
    r.gpusel[0].gpu = gp->gpu;
    r.gpusel[0].count = 1;
    r.tp = r.pp = r.dp = 1;
    r.offload_allowed = gp->on_gpu < L;
    r.gpu_layers = (int)gp->on_gpu;
    r.host_threads = gp->threads;
    r.margin = 0;
    r.prompt = prompt ? prompt : 1;
    r.output = output ? output : 1;
    r.ctx = n_ctx > r.prompt + r.output ? n_ctx : r.prompt + r.output;
    if (gp->pm.hp.ctx_len > 0 && r.ctx > gp->pm.hp.ctx_len) r.ctx = gp->pm.hp.ctx_len;
    if (r.prompt + r.output > r.ctx) r.prompt = r.ctx > r.output ? r.ctx - r.output : 1;
    if (fitlm_plan_request_validate(&r, &gp->pm, &gp->cat, &err) ||
        (!gp->wb.layer && fitlm_weight_bytes_compute(&gp->pm, &r.formats[0], &gp->wb, &err))) {
        fprintf(out, "speed not predicted: %s\n", err.msg);
        return -1;
    }
    memset(x, 0, sizeof *x);
    x->gpu = gp->gpu;
    x->count = x->tp = x->pp = x->dp = 1;
    x->format = 0;
    x->kv_type = kv_type;
    x->batch = r.batch;
    x->offload_layers = L - gp->on_gpu;
    fitlm_plan_evaluate(&gp->pm, &r, &gp->cat, &gp->wb, x);
    return 0;
}

/* What the speed rows assumed. */
static void gpu_plan_note(const gpu_plan *gp, FILE *out, const char *device) {
    const fitlm_gpu *g = &gp->cat.gpus[gp->gpu];
    uint32_t L = gp->pm.hp.n_layers;
    if (gp->measured)
        fprintf(out, "speed on %s: measured by fitlm calibrate --device%s: on this file's weight types %.2f GB/s "
                     "decode and %.2f GFLOP/s prompt matmuls, %.1f us per layer and %.1f us per step",
                device, gp->measured->quick ? " --quick" : "", gp->bw / 1e9, gp->flops / 1e9,
                gp->measured->per_layer_s * 1e6, gp->measured->per_step_s * 1e6);
    else
        fprintf(out, "speed on %s: the catalog's %s (%.0f GB/s, %.0f TFLOP/s 16-bit) with fitlm's engine profile "
                     "and the planner's assumed efficiencies (%.0f %% of the bandwidth, %.0f %% of the peak), not "
                     "calibrated on this card (fitlm calibrate --device measures it)",
                device, g->name, g->mem_bw / 1e9, (g->bf16_flops > 0 ? g->bf16_flops : g->fp16_flops) / 1e12,
                fitlm_plan_k.eff_decode_bw * 100, fitlm_plan_k.eff_prefill * 100);
    if (gp->on_gpu < L)
        fprintf(out, "; %u of %u layers on this host's CPU, prompt and decode, at the CPU cost model's rates (%s)",
                L - gp->on_gpu, L, gp->cat.host_profile ? "the host profile's" : "assumed: no host profile");
    fprintf(out, "\n");
}

/* The speed rows of a GPU run: its prompt (one token out), then its decode
 * after ctx0 positions. Prints why when there is no prediction. */
static void gpu_speed_rows(FILE *out, const plan_check_run *run, const fitlm_host_profile *prof) {
    const fitlm_runtime_memory *mem = run->mem;
    gpu_plan gp;
    if (gpu_plan_open(&gp, out, run->gpu, run->plan_gpu, run->model_path, run->gpu_layers, run->threads, prof)) return;
    fitlm_plan_result x[2];
    if (gpu_plan_eval(&gp, out, run->n_prompt, 1, 1, mem->n_ctx, mem->n_ubatch, mem->kv_type, &x[0]) ||
        gpu_plan_eval(&gp, out, run->ctx0, run->n_gen, 1, mem->n_ctx, mem->n_ubatch, mem->kv_type, &x[1])) {
        gpu_plan_close(&gp);
        return;
    }
    char what[48];
    if (run->n_prompt && run->pp_tps_median > 0) {
        snprintf(what, sizeof what, "prefill pp%u", run->n_prompt);
        row(out, what, x[0].prefill_tps, run->pp_tps_median, "tok/s", 2, "");
        double ttft = run->ttft_s > 0 ? run->ttft_s : run->n_prompt / run->pp_tps_median;
        char note[64];
        snprintf(note, sizeof note, "%u-token prompt", run->n_prompt);
        row(out, "time to first token", x[0].ttft_s * 1e3, ttft * 1e3, "ms", 3, note);
    }
    if (run->n_gen && run->tg_tps_median > 0) {
        snprintf(what, sizeof what, "decode tg%u", run->n_gen);
        row(out, what, x[1].decode_tps, run->tg_tps_median, "tok/s", 2, "");
    }
    gpu_plan_note(&gp, out, run->gpu);
    gpu_plan_close(&gp);
}

/* serve --plan-check with layers on a GPU: the GPU planner's decode step of
 * the measured concurrency (rounded to whole sequences) at the mean context
 * of a generated token, beside the measured inter-token latency. */
static void gpu_serve_rows(FILE *out, const fitlm_model *m, const plan_check_serve *run,
                           const fitlm_host_profile *prof) {
    double b = run->concurrency >= 1 ? run->concurrency : 1;
    fprintf(out, "\nplan check: the planner's prediction beside this server (layers on %s)\n", run->gpu);
    fprintf(out, "at the measured concurrency %.2f (%llu generated tokens in %llu engine steps, %llu requests)\n", b,
            (unsigned long long)run->generated, (unsigned long long)run->steps, (unsigned long long)run->requests);
    table_header(out);
    row(out, "weights", (double)fitlm_model_tensor_bytes(m) / MIB, (double)run->weight_bytes / MIB, "MiB", 2,
        "tensor bytes of the file");
    gpu_plan gp;
    if (gpu_plan_open(&gp, out, run->gpu, run->plan_gpu, run->model_path, run->gpu_layers, run->threads, prof)) return;
    /* the planner's decode context is prompt + output / 2 */
    uint32_t seqs = (uint32_t)(b + 0.5), prompt = run->mean_ctx >= 2 ? (uint32_t)run->mean_ctx : 1;
    fitlm_plan_result x;
    if (!gpu_plan_eval(&gp, out, prompt, 1, seqs, prompt + 1, 512, run->kv_type, &x)) {
        char note[200];
        double prompt_per_step = run->steps ? (double)run->prompt_tokens / (double)run->steps : 0;
        snprintf(note, sizeof note,
                 "planned: %u sequences after %u positions (mean context %.1f; the %.1f prompt tokens per step "
                 "not counted); mean of %llu inter-token intervals",
                 seqs, prompt, run->mean_ctx, prompt_per_step, (unsigned long long)run->itl_count);
        row(out, "time per output token", x.tpot_s * 1e3, run->itl_s * 1e3, "ms", 4, note);
        row(out, "decode throughput", b / x.tpot_s, run->itl_s > 0 ? b / run->itl_s : 0, "tok/s", 2,
            "concurrency / time per output token");
        gpu_plan_note(&gp, out, run->gpu);
    }
    gpu_plan_close(&gp);
}

/* A run with layers on a GPU: the rows that hold on any device, and the speed
 * from the GPU planner for the catalog card it ran on. The scratch (the GPU
 * backend's own buffers) and the host's resident memory (the driver's) are
 * not what the CPU memory model describes. */
static int print_gpu_run(FILE *out, const fitlm_model *m, const plan_check_run *run, const fitlm_host_profile *prof) {
    const fitlm_runtime_memory *mem = run->mem;
    fitlm_mem_model mm;
    fitlm_mem_model_cpu(&m->hp, fitlm_model_tensor_bytes(m), mem->kv_type, mem->n_ctx, mem->n_ubatch, 1, &mm);
    fitlm_cpu_work w;
    fitlm_cpu_work_of_model(m, mem->kv_type, &w);
    fprintf(out, "\nplan check: the planner's prediction beside this run (layers on %s)\n", run->gpu);
    table_header(out);
    row(out, "weights", (double)mm.weights / MIB, (double)mem->weight_bytes / MIB, "MiB", 2, "tensor bytes of the file");
    if (mem->weight_read_per_token)
        row(out, "weights read per token", fitlm_cpu_work_decode_bytes(&w) / MIB,
            (double)mem->weight_read_per_token / MIB, "MiB", 3, "the planner's work vs the runtime's count");
    char note[200];
    snprintf(note, sizeof note, "%s, %u positions", fitlm_type_name(mem->kv_type), mem->n_ctx);
    row(out, "KV cache", (double)mm.kv / MIB, (double)mem->kv_bytes / MIB, "MiB", 2, note);
    gpu_speed_rows(out, run, prof);
    fprintf(out, "not predicted on %s: scratch and resident memory (the GPU backend's own buffers and the driver's)\n",
            run->gpu);
    return 0;
}

int plan_check_print(FILE *out, const fitlm_model *m, const char *profile_path, const plan_check_run *run) {
    bool have;
    char src[PATH_MAX + 64];
    fitlm_host_profile *prof = load_profile(profile_path, &have, src, sizeof src);
    if (!prof) return -1;
    if (run->gpu) {
        int rc = print_gpu_run(out, m, run, have ? prof : NULL);
        free(prof);
        return rc;
    }
    if (run->plan_gpu)
        fprintf(out, "fitlm: note: --plan-gpu %s not used: no layers ran on a GPU (the CPU's plan check follows)\n",
                run->plan_gpu);

    const fitlm_runtime_memory *mem = run->mem;
    uint32_t T = run->tp > 1 ? run->tp : 1, P = run->pp > 1 ? run->pp : 1;
    bool mpi = T * P > 1;
    /* the memory model of what this process holds: the whole model, or under
     * MPI rank 0's share (its layers, 1/T of the heads and FFN columns) */
    fitlm_hparams shp = m->hp;
    uint64_t wbytes = fitlm_model_tensor_bytes(m);
    if (mpi) {
        shp.n_layers = run->layer1 > run->layer0 ? run->layer1 - run->layer0 : m->hp.n_layers;
        shp.n_heads = m->hp.n_heads / T;
        shp.n_kv_heads = T <= m->hp.n_kv_heads ? m->hp.n_kv_heads / T : 1;
        shp.ffn_dim = m->hp.ffn_dim / T;
        wbytes = (uint64_t)shard_weight_bytes(m, T, run->layer0, run->layer1 > run->layer0 ? run->layer1 : m->hp.n_layers,
                                              P == 1);
    }
    fitlm_mem_model mm;
    fitlm_mem_model_cpu(&shp, wbytes, mem->kv_type, mem->n_ctx, mem->n_ubatch, run->threads, &mm);
    uint64_t conv = converted_vector_bytes(m) + run->extra_scratch;
    fitlm_cpu_work w;
    fitlm_cpu_work_of_model(m, mem->kv_type, &w);
    /* the types the backend runs: F16 matrices of bfloat16 values run as BF16 */
    retype_bf16(&w, mem->bf16_from_f16_bytes, mem->f16_matrix_bytes);
    fitlm_cpu_pred pp, tg;
    /* the speed of the whole run: under MPI the ranks share this host's cores
     * and bandwidth (the single process's prediction with all their threads)
     * plus each step's communication (planner/host_comm.h), as `plan --gpu
     * cpu:N --tp T --pp P` predicts it */
    int all_threads = run->threads * (int)(T * P);
    /* pipeline stages take turns on one sequence (planner/host_comm.h); the
     * largest stage: rank 0's layers or the mean of the others'. With the
     * stages in turns on shared cores (each rank all `threads` in its turn,
     * no micro-batches) the compute is one process's at those threads. */
    uint32_t P_compute = run->turns ? 1 : P;
    if (run->turns) all_threads = run->threads * (int)T;
    double max_stage = largest_stage_share(m, run->layer0, run->layer1, P);
    fitlm_host_pipeline_predict(have ? prof : NULL, 0, 0, &w, all_threads, (int)P_compute, run->n_prompt,
                                mem->n_ubatch, max_stage, run->ctx0, run->n_gen, &pp, &tg);
    double comm_tg = mpi ? add_comm(have ? prof : NULL, m, T, P, run->n_prompt, mem->n_ubatch, &pp, &tg) : 0;

    /* resident: the weights, less the embedding never looked up when it
     * stays in the mapped file (not repacked, not the output matrix) */
    double resident_w = (double)mm.weights;
    const fitlm_tensor *E = m->global_tensors[FITLM_T_TOKEN_EMBD];
    bool tied = !m->global_tensors[FITLM_T_OUTPUT];
    if (E && !tied && mem->embd_mapped) {
        double touched = embd_touched_bytes(E, m->hp.vocab_size, run);
        if (touched < (double)E->nbytes) resident_w -= (double)E->nbytes - touched;
    }
    /* the KV cache's pages become resident as positions are written */
    double kv_res = (double)mm.kv;
    if (run->positions_used && run->positions_used < mm.n_ctx)
        kv_res = (double)mm.kv_per_position * run->positions_used;
    /* the process before it loads a model: calibrate's measure of one; under
     * MPI this rank's right after MPI's start (its libraries, plugins,
     * shared-memory segments; calibrate is not an MPI process) */
    double base = pp.rates.process_base;
    bool mpi_base = mpi && fitlm_comm_init_rss_bytes() > 0;
    if (mpi_base) base = (double)fitlm_comm_init_rss_bytes();
    double rss_pred = resident_w + kv_res + (double)(mm.scratch + conv) + base;

    if (mpi)
        fprintf(out, "\nplan check: the planner's prediction beside this run (%s; %u x %u MPI ranks of %d threads; "
                     "memory: rank 0's share, layers %u-%u; speed: the whole run, %.3f ms of communication per "
                     "decode step)\n",
                src, T, P, run->threads, run->layer0, run->layer1 ? run->layer1 - 1 : 0, comm_tg * 1e3);
    else
        fprintf(out, "\nplan check: the planner's prediction beside this run (%s; %d threads)\n", src, run->threads);
    table_header(out);
    row(out, "weights", (double)mm.weights / MIB, (double)mem->weight_bytes / MIB, "MiB", 2,
        mpi ? "rank 0's share of the file's tensor bytes" : "tensor bytes of the file");
    if (mem->weight_read_per_token && !mpi)
        row(out, "weights read per token", fitlm_cpu_work_decode_bytes(&w) / MIB,
            (double)mem->weight_read_per_token / MIB, "MiB", 3, "the planner's work vs the runtime's count");
    char note[200];
    snprintf(note, sizeof note, "%s, %u positions", fitlm_type_name(mem->kv_type), mem->n_ctx);
    row(out, "KV cache", (double)mm.kv / MIB, (double)mem->kv_bytes / MIB, "MiB", 2, note);
    snprintf(note, sizeof note, "%u-token micro-batches, attention for %u positions", mem->n_ubatch, mem->n_ctx);
    row(out, "scratch", (double)(mm.scratch + conv) / MIB, (double)mem->scratch_bytes / MIB, "MiB", 2, note);
    snprintf(note, sizeof note, "weights resident + KV written + scratch + process %.1f MiB%s", base / MIB,
             mpi_base ? " (this rank after MPI's start)" : "");
    row(out, "peak resident (VmHWM)", rss_pred / MIB, (double)run->peak_rss / MIB, "MiB", 1, note);
    if (run->n_prompt && run->pp_tps_median > 0) {
        char what[48];
        snprintf(what, sizeof what, "prefill pp%u", run->n_prompt);
        snprintf(note, sizeof note, "vs the fastest run %.2f: %+.1f%%", run->pp_tps_best,
                 run->pp_tps_best > 0 ? 100.0 * (pp.pp_tps - run->pp_tps_best) / run->pp_tps_best : 0.0);
        row(out, what, pp.pp_tps, run->pp_tps_median, "tok/s", 2, note);
        double ttft = run->ttft_s > 0 ? run->ttft_s : run->n_prompt / run->pp_tps_median;
        snprintf(what, sizeof what, "time to first token");
        snprintf(note, sizeof note, "%u-token prompt", run->n_prompt);
        row(out, what, pp.ttft_s * 1e3, ttft * 1e3, "ms", 3, note);
    }
    if (run->n_gen && run->tg_tps_median > 0) {
        char what[48];
        snprintf(what, sizeof what, "decode tg%u", run->n_gen);
        snprintf(note, sizeof note, "vs the fastest run %.2f: %+.1f%%", run->tg_tps_best,
                 run->tg_tps_best > 0 ? 100.0 * (tg.tg_tps - run->tg_tps_best) / run->tg_tps_best : 0.0);
        row(out, what, tg.tg_tps, run->tg_tps_median, "tok/s", 2, note);
    }
    /* this machine's memory speed moves between the calibration and the run
     * (other tenants): the same prediction with the drifting rates measured
     * again right after the run (fitlm_host_profile_now) */
    /* Under MPI the probe measures what the run's ranks shared: this host at
     * the threads the prediction computes with (all the ranks' threads, or a
     * pipeline stage's while the stages overlap), the other ranks asleep
     * meanwhile; only when every rank runs here (on several hosts rank 0's
     * host is not the run's). */
    bool probe = run->probe_now && have && tg.rates.read_bw_measured && (run->n_gen || run->n_prompt);
    if (probe && mpi)
        probe = run->par && run->par->dp_size <= 1 && fitlm_comm_host_ranks() == run->par->world->size;
    if (probe && mpi && !fitlm_comm_ranks_sleep()) {
        /* the waiting ranks would poll on the cores the probe measures */
        fprintf(out, "(the host now: not measured: without doorbells (no /dev/shm) the other ranks poll while they "
                     "wait)\n");
        probe = false;
    }
    if (probe) {
        fitlm_host_profile *now = malloc(sizeof *now);
        fitlm_error perr = {{0}};
        /* mpirun binds each rank to its cores: the probe takes all the host's */
        fitlm_cpu_mask mask;
        bool widened = mpi && fitlm_cpus_widen(&mask) == 0;
        int prc = !now || (mpi && fitlm_parallel_send_pause(run->par, &perr)) ||
                  fitlm_host_profile_now(prof, tg.rates.threads, mpi ? 0 : run->read_bw_now, &w, now, &perr);
        if (widened) fitlm_cpus_restore(&mask);
        if (prc) {
            fprintf(out, "(the host now: not measured: %s)\n", now ? perr.msg : "out of memory");
        } else {
            fitlm_cpu_pred pp2, tg2;
            fitlm_host_pipeline_predict(now, 0, 0, &w, all_threads, (int)P_compute, run->n_prompt, mem->n_ubatch,
                                        max_stage, run->ctx0, run->n_gen, &pp2, &tg2);
            if (mpi) add_comm(now, m, T, P, run->n_prompt, mem->n_ubatch, &pp2, &tg2);
            snprintf(note, sizeof note, "the profile's figure at %d threads vs a probe right after the run",
                     tg.rates.threads);
            row(out, "read bandwidth", tg.rates.read_bw / 1e9, tg2.rates.read_bw / 1e9, "GB/s", 2, note);
            /* the kernel of the type that streams the most bytes, timed again */
            int big = -1;
            for (int i = 0; i < w.n; i++)
                if (big < 0 || w.t[i].bytes > w.t[big].bytes) big = i;
            /* at the run's threads: the bytes over the time the two predictions give them */
            for (int k = 0; big >= 0 && k < prof->n_kern; k++)
                if (prof->kern[k].type == w.t[big].type && prof->kern[k].decode_bw > 0 && tg.mat_s[big] > 0 &&
                    tg2.mat_s[big] > 0) {
                    char what[48];
                    snprintf(what, sizeof what, "%s decode kernel", fitlm_type_name(w.t[big].type));
                    snprintf(note, sizeof note, "one row from DRAM at %d threads: the profile's vs timed again now",
                             tg.rates.threads);
                    row(out, what, w.t[big].bytes / tg.mat_s[big] / 1e9, w.t[big].bytes / tg2.mat_s[big] / 1e9, "GB/s",
                        2, note);
                }
            if (tg.rates.attn_decode_measured && tg2.rates.attn_decode_flops > 0) {
                double q = 4.0 * (double)m->hp.n_heads * m->hp.head_dim;
                snprintf(note, sizeof note, "per cached position and layer: the profile's vs a probe now (%s)",
                         prof->quick ? "4 layers, 256 positions" : "8 layers, 512 positions");
                row(out, "decode attention", q / tg.rates.attn_decode_flops * 1e9,
                    q / tg2.rates.attn_decode_flops * 1e9, "ns", 1, note);
            }
            if (run->n_prompt && run->pp_tps_median > 0) {
                snprintf(note, sizeof note, "the plan with the rates above measured now");
                row(out, "prefill, host now", pp2.pp_tps, run->pp_tps_median, "tok/s", 2, note);
            }
            if (run->n_gen && run->tg_tps_median > 0) {
                /* what moved: the weight reads and the attention at the mean context */
                double mean_ctx = run->ctx0 + (run->n_gen + 1) / 2.0, reads = 0, reads2 = 0;
                for (int i = 0; i <= w.n; i++) reads += tg.mat_s[i], reads2 += tg2.mat_s[i];
                double attn = tg.attn_pos_s * mean_ctx, attn2 = tg2.attn_pos_s * mean_ctx;
                snprintf(note, sizeof note,
                         "weight reads %.4g -> %.4g ms, attention at mean context %.0f %.4g -> %.4g ms, the rest %.4g ms",
                         reads * 1e3, reads2 * 1e3, mean_ctx, attn * 1e3, attn2 * 1e3,
                         (tg.decode_s - reads - attn) * 1e3);
                row(out, "decode, host now", tg2.tg_tps, run->tg_tps_median, "tok/s", 2, note);
            }
        }
        free(now);
    }
    fprintf(out, "measured figures: %s%s%s\n",
            pp.rates.read_bw_measured ? "read bandwidth" : "",
            pp.kernels_measured && tg.kernels_measured ? ", kernel rates" : "",
            pp.rates.overhead_measured ? ", fixed costs" : "");
    const char *assumed = strlen(pp.assumed) >= strlen(tg.assumed) ? pp.assumed : tg.assumed;
    if (assumed[0]) fprintf(out, "assumed: %s\n", assumed);
    free(prof);
    return 0;
}
