/* The CPU cost model shared by the planner (its row for this machine) and the
 * runtime's commands (`bench --plan-check`, `run --plan-check`): the time of
 * a prompt and of each generated token on this host, from a host profile that
 * `fitlm calibrate` measures (read bandwidth by thread count, the real matmul
 * kernels' decode bandwidth and prefill FLOP/s per weight type, fixed costs
 * per layer and per token) or, without one, from stated assumptions.
 *
 *   decode, one token at context c:
 *     sum over weight types T of bytes_T / decode_bw_T(threads)
 *     + KV bytes of c positions / read_bw(threads)
 *     + n_layers x per_layer + per_token
 *     + (n_layers x FITLM_MATMUL_CALLS_PER_LAYER + 1) x matmul_call
 *   a decode step of B sequences: one token's time + per type T the
 *     calibrated time of B rows beyond one row's + the other sequences' KV
 *   prefill of n tokens (micro-batches of ub):
 *     sum over T of 2 params_T n / prefill_flops_T(threads)   (matrices, not the output;
 *     with a profile that has the batched-row times: the time of that many rows)
 *     + 2 n^2 n_layers q_dim / attention FLOP/s               (causal attention)
 *     + output matrix once (logits of the last token only)
 *     + ceil(n / ub) x (n_layers x per_layer + per_token)
 *   TTFT = prefill of the prompt (its logits give the first token).
 * docs/planner.md ("This machine: the calibrated CPU model") shows the errors. */
#ifndef FITLM_PLANNER_CPU_COST_H
#define FITLM_PLANNER_CPU_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "util/error.h"

#define FITLM_PROFILE_VERSION 1
#define FITLM_PROFILE_MAX_THREADS 256
#define FITLM_PROFILE_MAX_TYPES 16
/* Row counts (sequences in a decode step, or tokens of a prompt
 * micro-batch) at which calibrate times each kernel against one row, the
 * weights coming from DRAM: 2, 4 .. 256 (fitlm_cal_batch_rows). */
#define FITLM_CAL_N_BATCH 8
extern const int fitlm_cal_batch_rows[FITLM_CAL_N_BATCH];

typedef struct fitlm_kernel_rate {
    int type;             /* fitlm_type of the weights */
    bool repacked;        /* timed in the layout the CPU backend holds it (fitlm_cpu_repackable) */
    double decode_bw;     /* bytes/s: one-token matmul with the weights coming from DRAM */
    double prefill_flops; /* FLOP/s: matmul of FITLM_CAL_PREFILL_TOKENS tokens */
    double batch_flops;   /* FLOP/s: decode matmul of FITLM_CAL_BATCH_ROWS rows (sequences) with the weights
                           * coming from DRAM, as a batched decode step runs it; 0 = not measured */
    double batch_ratio[FITLM_CAL_N_BATCH]; /* time of fitlm_cal_batch_rows[k] rows over the time of one row,
                                            * the weights coming from DRAM (median of the rounds); 0 = not
                                            * measured (profiles before it: the 16-row rate alone is used) */
} fitlm_kernel_rate;

/* A GPU of this host measured through fitlm's own GPU backend by
 * `fitlm calibrate --device D` (planner/gpu_cost.h): what its kernels and
 * fixed costs achieve, which the GPU planner then uses for that device in
 * place of the catalog's peaks and its assumed efficiencies. */
#define FITLM_PROFILE_MAX_DEVICES 4
#define FITLM_PROFILE_MAX_DEVICE_TYPES 8
typedef struct fitlm_device_rates {
    char name[128];     /* the driver's device name, as the runtime reports it */
    char backend[16];   /* "vulkan" */
    double memory_bytes; /* the device's largest device-local heap */
    int n_kern;
    struct {
        int type;             /* fitlm_type of the weights */
        double decode_bw;     /* bytes/s of the weights a decode step streams (the layers' matrices) */
        double prefill_flops; /* FLOP/s of a prompt's matmuls (2 x weights x tokens) */
    } kern[FITLM_PROFILE_MAX_DEVICE_TYPES];
    double per_layer_s, per_step_s; /* fixed time per layer and per forward step */
    bool quick;                     /* calibrate --quick: small shapes, few repetitions */
} fitlm_device_rates;

typedef struct fitlm_host_profile {
    int version;
    char created[32];   /* UTC, ISO 8601 */
    /* facts from /proc and /sys that do not change from run to run */
    char cpu[96];
    char isa[16];       /* the kernel family fitlm uses: scalar / avx2 / avx512 */
    char flags[64];     /* the SIMD flags that matter: "avx2 fma f16c avx512f avx512_vnni ..." */
    int physical_cores, logical_cpus;
    double l2_bytes, l3_bytes, memory_bytes;
    double max_mhz;     /* cpufreq's cpuinfo_max_freq or the model name's "@ x.xGHz"; 0 = unknown */
    /* measured (0 = not measured) */
    int n_bw;                                      /* read_bw[1..n_bw] */
    double read_bw[FITLM_PROFILE_MAX_THREADS + 1]; /* bytes/s with t threads */
    int threads;                                   /* threads of the kernel figures */
    fitlm_kernel_rate kern[FITLM_PROFILE_MAX_TYPES];
    int n_kern;
    double dispatch_s;   /* one thread-pool dispatch of an empty job */
    double per_layer_s;  /* fixed time per layer and forward step */
    double per_token_s;  /* fixed time per forward step (embedding, output norm, sampling) */
    double matmul_call_s; /* fixed time of one decode matmul call whose weights come from DRAM, beyond
                           * bytes / decode_bw (the threads' first reads, the closing barrier); 0 = not
                           * measured (profiles before it) */
    char overhead_source[160];
    double process_base_bytes; /* resident memory of a fitlm process before it loads a model */
    double allreduce_alpha_s, allreduce_bw; /* MPI all-reduce latency and bandwidth; 0 = not measured */
    double attn_decode_flops; /* one decode row's attention over cached positions, counted as 4 x q_dim
                               * flops per position and layer (fitlm_calibrate_attention); 0 = not
                               * measured (profiles before it) */
    double attn_prefill_flops; /* a prompt's attention (its queries side by side in the lanes), counted as
                                * 4 x q_dim flops per (query, cached position) pair and layer
                                * (fitlm_calibrate_attention); 0 = not measured (profiles before it:
                                * the F32 matmul kernel's prefill rate stands in) */
    bool quick;               /* written by `calibrate --quick` (fewer repetitions, rows beyond 64
                               * extrapolated): the host-now probe (fitlm_host_profile_now) is as short */
    int n_dev;                /* GPUs measured by `calibrate --device` (0: none) */
    fitlm_device_rates dev[FITLM_PROFILE_MAX_DEVICES];
} fitlm_host_profile;

/* The measured GPU of p whose name is `name` (NULL: none). */
const fitlm_device_rates *fitlm_host_profile_device(const fitlm_host_profile *p, const char *name);
/* Stores d in p: in place of the entry of the same device name, else added
 * (with FITLM_PROFILE_MAX_DEVICES already there, in place of the last). */
void fitlm_host_profile_put_device(fitlm_host_profile *p, const fitlm_device_rates *d);

/* Fills the /proc and /sys facts of this machine (the rest zero). */
void fitlm_host_facts(fitlm_host_profile *p);

/* $XDG_CACHE_HOME/fitlm/host.json, else $HOME/.cache/fitlm/host.json. 0, or -1
 * (no usable directory in the environment, or the path does not fit cap). */
int fitlm_host_profile_default_path(char *buf, size_t cap);
/* Writes p as JSON to path (parent directories created, temp file + rename).
 * 0 or -1 with err. */
int fitlm_host_profile_save(const fitlm_host_profile *p, const char *path, fitlm_error *err);
/* Reads a profile written by fitlm_host_profile_save; every field is
 * type- and range-checked. 0, or -1 with err (a missing file: "cannot open"). */
int fitlm_host_profile_load(fitlm_host_profile *p, const char *path, fitlm_error *err);
/* Returns a malloc'd JSON text of p (caller frees), NULL when out of memory. */
char *fitlm_host_profile_json(const fitlm_host_profile *p);

/* Figures used when nothing was measured (stated in every report that uses them). */
#define FITLM_ASSUMED_BW_PER_CORE 8e9      /* bytes/s of streaming read per core */
#define FITLM_ASSUMED_BW_CAP 300e9         /* an 8-channel DDR5 socket */
#define FITLM_ASSUMED_DECODE_EFF 0.80      /* matmul kernels' share of the read bandwidth */
#define FITLM_ASSUMED_PREFILL_EFF 0.30     /* share of the fp32 SIMD peak the prefill matmuls reach */
#define FITLM_ASSUMED_PER_LAYER_S 30e-6
#define FITLM_ASSUMED_PER_TOKEN_S 100e-6
#define FITLM_ASSUMED_PROCESS_BASE 16.0 * 1048576.0
/* Without calibration the thread-pool dispatches per layer and per step set
 * the fixed costs: matmul q/k/v, attention, output projection, gate/up, down,
 * and the serial vector operations between them count as about six per layer;
 * embedding, output norm, output matmul and sampling as four per step. */
#define FITLM_DISPATCHES_PER_LAYER 6
#define FITLM_DISPATCHES_PER_TOKEN 4
/* Matmul calls of one layer in decode (runtime/forward.c, forward_rows): Q/K/V
 * in one call, the attention output, gate/up in one call, down. */
#define FITLM_MATMUL_CALLS_PER_LAYER 4
/* Rows of the batched decode matmul calibrate times (16 sequences' tokens). */
#define FITLM_CAL_BATCH_ROWS 16
/* Tokens of the prefill matmul calibrate times. */
#define FITLM_CAL_PREFILL_TOKENS 256

/* The rates one prediction uses and whether each was measured. */
typedef struct fitlm_cpu_rates {
    int threads;
    double read_bw;
    bool read_bw_measured;
    double per_layer_s, per_token_s;
    double matmul_call_s;
    bool overhead_measured;
    double attn_flops;        /* a prompt's attention (its queries fill the lanes) */
    double attn_decode_flops; /* a decode row's attention */
    bool attn_decode_measured;
    double process_base;
} fitlm_cpu_rates;

/* What a model reads and computes per token, by weight type. */
typedef struct fitlm_cpu_work {
    const fitlm_hparams *hp;
    int n;
    struct {
        int type;
        double bytes;   /* bytes read per decoded token (every layer's matrices and norms of this type) */
        double params;  /* weights in matrices multiplied per prompt token */
    } t[FITLM_PROFILE_MAX_TYPES];
    int output_type;     /* the output matrix (read once per step for the logits) */
    double output_bytes, output_params;
    int kv_type;
} fitlm_cpu_work;

/* Adds bytes/params of a weight type to w (merging with an existing entry;
 * beyond FITLM_PROFILE_MAX_TYPES types the last entry absorbs the rest). */
void fitlm_cpu_work_add(fitlm_cpu_work *w, int type, double bytes, double params);
/* The work of a loaded model, from its tensors (as the runtime reads them):
 * every layer's matrices and vectors, the final norm and the output matrix. */
void fitlm_cpu_work_of_model(const fitlm_model *m, int kv_type, fitlm_cpu_work *w);
/* Weight bytes one decoded token streams (every layer, the final norm and the
 * output matrix): the figure `bench` turns into GB/s and the planner's decode
 * reads; `--plan-check` shows it beside the runtime's own count. */
double fitlm_cpu_work_decode_bytes(const fitlm_cpu_work *w);
/* Moves `bytes` of weights (with their share of the parameters) from type
 * `from` to type `to` of the same size, as when the CPU backend runs F16
 * matrices of bfloat16 values as BF16; the output matrix first if it has
 * that type. No-op when w has no such bytes. */
void fitlm_cpu_work_retype(fitlm_cpu_work *w, int from, int to, double bytes);

typedef struct fitlm_cpu_pred {
    fitlm_cpu_rates rates;
    double prefill_s, pp_tps;   /* the prompt */
    double ttft_s;
    double decode_s, tg_tps;    /* mean per generated token */
    double attn_pos_s;          /* one decode row's attention per cached position: the
                                 * position's KV read plus its compute over all layers */
    bool kernels_measured;      /* every weight type's kernel rate came from the profile */
    /* per entry of the work (w->t[i], then the output matrix at [w->n]): seconds
     * of one token's matmul and the FLOP/s of a batched decode step (for
     * fitlm_cpu_batch_step_s) */
    double mat_s[FITLM_PROFILE_MAX_TYPES + 1];
    double batch_flops[FITLM_PROFILE_MAX_TYPES + 1];
    /* seconds beyond mat_s[i] of fitlm_cal_batch_rows[k] rows through the
     * same matrices (the calibrated ratio at this prediction's threads);
     * batch_measured[i] false: not in the profile (the 16-row rate alone) */
    double batch_extra_s[FITLM_PROFILE_MAX_TYPES + 1][FITLM_CAL_N_BATCH];
    bool batch_measured[FITLM_PROFILE_MAX_TYPES + 1];
    char assumed[256];          /* what was assumed, "" when everything was measured */
} fitlm_cpu_pred;

/* Predicts a prompt of n_prompt tokens from an empty cache in micro-batches of
 * ub, then n_gen generated tokens after ctx0 positions, on `threads` threads
 * (<= 0: the profile's, else physical cores). prof may be NULL (all assumed;
 * then host_bw / host_flops, the catalog's estimates, are used; 0 = derive). */
void fitlm_cpu_predict(const fitlm_host_profile *prof, double host_bw, double host_flops, const fitlm_cpu_work *w,
                       int threads, uint32_t n_prompt, uint32_t ub, uint32_t ctx0, uint32_t n_gen,
                       fitlm_cpu_pred *out);

/* One decode step of `batch` sequences on the CPU runtime (the serving
 * engine's batched decode, the planner's batch on this machine): one
 * sequence's time (tg at mean context ctx), plus for each weight type the
 * calibrated time of `batch` rows through its matrices beyond one row's
 * (interpolated between the timed row counts 1, 2, 4 .. 64, proportional
 * to the rows beyond 256; a profile without them: the longer of reading the
 * weights once and computing the rows at the 16-row rate), plus the other
 * batch - 1 sequences' attention at that context (their KV read and the
 * calibrated decode attention rate, tg->attn_pos_s per position). Seconds;
 * the same function for `plan` and `serve --plan-check`. */
double fitlm_cpu_batch_step_s(const fitlm_cpu_pred *tg, const fitlm_cpu_work *w, double batch, double ctx);

/* Measures this machine (about 45 s; quick: a few seconds, rows beyond 64 extrapolated): read bandwidth with 1..max_threads
 * threads (<= 0: physical cores), the decode bandwidth and prefill FLOP/s of
 * the real CPU kernels per weight type at max_threads, the thread-pool
 * dispatch and the fixed costs per layer and step (fitlm_calibrate_overheads). quick: fewer repetitions (for
 * tests). log (may be NULL) gets a line per measurement. 0 or -1 with err. */
int fitlm_calibrate_host(fitlm_host_profile *p, int max_threads, bool quick, FILE *log, fitlm_error *err);

/* Measures the fixed costs per layer and per step with the real runtime:
 * decode of two tiny synthetic models (1 and 9 layers, weights in the caches)
 * written to $TMPDIR (removed after): the slope per layer and the rest per
 * step, at p->threads threads (both timed again, up to 3 times, while a busy
 * machine makes the slope come out <= 0; then 0). 0 or -1 with err. */
int fitlm_calibrate_overheads(fitlm_host_profile *p, fitlm_error *err);

/* Measures one decode row's attention rate (p->attn_decode_flops): decode of a
 * synthetic 16-layer (quick: 4) model with TinyLlama's heads after a short and a long
 * prompt (1024 tokens; quick: 256), the time per cached position and layer; and a
 * prompt's attention rate (p->attn_prefill_flops): the same model's prompts of a
 * quarter of that and of all of it, the part of their time that grows with the
 * square of the length. Each is timed again (up to 3 times) while a busy
 * machine makes its difference come out <= 0 (then its rate is 0: the planner
 * falls back). 0 or -1 with err. */
int fitlm_calibrate_attention(fitlm_host_profile *p, bool quick, fitlm_error *err);

/* The rates of *prof that drift on a shared machine, measured again now (for
 * a plan check right after a run): the read bandwidth at `threads` (the same
 * probe as calibrate's; read_bw_now > 0: that figure instead, bytes/s), the
 * matmuls of the kernels `work` runs (NULL: all) from DRAM, one row and
 * every row count of fitlm_cal_batch_rows (batched decode rows and prompt
 * micro-batches; the other kernels follow the read bandwidth, with the
 * profile's time beyond one row), and the decode attention rate (with the heads of work->hp when its
 * query is 1024 wide or more, else TinyLlama's, as calibrate).
 * All at `threads`; where that is not the profile's thread count, the
 * kernels' and the attention's figures are stored as the profile's threads
 * would have to give them for fitlm_cpu_predict at `threads` to return what
 * was measured. The compute rates and the fixed costs stay the profile's. *now receives a
 * copy of *prof with those figures replaced and `created` set to now. It takes
 * a few seconds and up to 512 MiB, freed before it returns. 0, or -1 with err. */
int fitlm_host_profile_now(const fitlm_host_profile *prof, int threads, double read_bw_now,
                           const fitlm_cpu_work *work, fitlm_host_profile *now, fitlm_error *err);

/* Refines the fixed costs by a decode run of a real model: its measured time
 * per token minus the kernel-bound prediction, over its layers (per_layer),
 * per_token from the dispatch count. 0 or -1 with err. */
int fitlm_calibrate_overheads_with_model(fitlm_host_profile *p, const char *model_path, FILE *log, fitlm_error *err);

#endif
