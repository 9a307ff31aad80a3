/* --plan-check: the planner's prediction (planner/cpu_cost.h and
 * runtime/mem_model.h, from the host profile) printed beside what a run
 * measured, per component, with the error. */
#ifndef FITLM_CLI_PLAN_CHECK_H
#define FITLM_CLI_PLAN_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "runtime/runtime.h"

typedef struct plan_check_run {
    const fitlm_runtime_memory *mem; /* the runtime's (or engine's) own accounting */
    uint64_t peak_rss;               /* 0 = not measured */
    int threads;
    /* the token ids looked up in the embedding (borrowed; two lists, e.g. the
     * prompt's and the generated ones; repeats allowed): where the embedding
     * stays in the mapped file, the pages they touch become resident */
    const int32_t *embd_ids[2];
    uint32_t n_embd_ids[2];
    uint32_t positions_used;         /* KV positions written (pages of the rest never touched); 0 = all */
    uint64_t extra_scratch;          /* the serving engine's own buffers beyond the runtime's (its logits) */
    /* speed; 0 = not measured. best: the fastest repetition (the undisturbed
     * figure on a shared machine), median: the middle one */
    uint32_t n_prompt;
    double pp_tps_median, pp_tps_best;
    double ttft_s;                   /* measured time to first token; 0 = from n_prompt / pp_tps_median */
    uint32_t ctx0, n_gen;            /* generated tokens after ctx0 positions */
    double tg_tps_median, tg_tps_best;
    bool probe_now;                  /* also predict with the drifting rates measured again right after the
                                      * run (fitlm_host_profile_now: a few seconds, up to 512 MiB); CPU runs only */
    double read_bw_now;              /* bytes/s read by the caller's bandwidth probe right after the runs, at
                                      * `threads` threads (bench), which the probe then takes; 0 = not measured */
    /* an MPI run (tp x pp > 1): the memory rows are rank 0's (tensor rank 0 of
     * the first stage, layers [layer0, layer1)), the speed rows the whole
     * run's, threads per rank */
    uint32_t tp, pp, layer0, layer1;
    bool turns; /* the stages took turns on shared cores (fitlm_parallel_set_turns) */
    /* an MPI run's root (borrowed; NULL otherwise): with probe_now and every
     * rank on this host, the other ranks are told to wait asleep
     * (fitlm_parallel_send_pause) while this one probes the host with the
     * whole run's threads */
    struct fitlm_parallel *par;
    /* the GPU that ran layers (gpu_device_running; NULL: a CPU run): the plan
     * check's cost model is this host's CPU, so only the rows that do not
     * depend on the device are printed (weights, weights read, KV cache) */
    const char *gpu;
    /* with gpu: the model file (the planner reads its tensor bytes), the
     * layers on the GPU (the rest run on the host's CPU), and the catalog
     * card to predict the speed for (NULL: the one the device name matches,
     * fitlm_catalog_match_device; none matched: no speed rows) */
    const char *model_path;
    uint32_t gpu_layers;
    const char *plan_gpu;
} plan_check_run;

/* --plan-gpu NAME: 0 when NAME is a GPU of the built-in catalog, else -1 with
 * err ("no GPU 'x' in the catalog ..."). */
int plan_check_gpu_valid(const char *name, fitlm_error *err);

/* Loads the host profile (profile_path, or the default path when NULL: a
 * missing default file means "assumed figures"), predicts the run and prints
 * the table to out. 0, or -1 after printing an error (an explicit profile
 * that cannot be read). */
int plan_check_print(FILE *out, const fitlm_model *m, const char *profile_path, const plan_check_run *run);

/* serve --plan-check: what the serving engine measured over its life. */
typedef struct plan_check_serve {
    uint64_t weight_bytes;      /* the engine's accounting */
    uint64_t bf16_from_f16_bytes; /* F16 matrices of bfloat16 values the backend runs as BF16 */
    uint64_t f16_matrix_bytes;    /* every F16 matrix this process prepared (as BF16 or not) */
    int kv_type;
    int threads;
    double concurrency;         /* mean tokens per engine step (sequences decoded together) */
    double mean_ctx;            /* mean context of a generated token */
    double itl_s;               /* mean inter-token latency (the /metrics histogram) */
    uint64_t itl_count;         /* intervals it averages */
    uint64_t generated, steps, requests;
    uint64_t steps_overlapped;  /* steps submitted while another lane's was in flight (pipeline parallel) */
    uint64_t prompt_tokens;     /* prompt tokens computed (not the prefix-cache hits) */
    /* an MPI run (tp x pp > 1): weight_bytes is rank 0's (tensor rank 0 of the
     * first stage, layers [layer0, layer1)), threads per rank; under pipeline
     * parallel an engine step is one lane's (steps of the P lanes interleave) */
    uint32_t tp, pp, layer0, layer1;
    bool turns; /* the stages took turns on shared cores: one lane, each rank all `threads` in its turn */
    /* layers on a GPU (as plan_check_run's): the speed from the GPU planner */
    const char *gpu;
    const char *model_path;
    uint32_t gpu_layers;
    const char *plan_gpu;
} plan_check_serve;

/* Prints the planner's decode step and throughput at the measured concurrency
 * (planner/cpu_cost.h: fitlm_cpu_batch_step_s; split over MPI ranks on this
 * host: planner/host_comm.h, the pipeline's lanes and each step's
 * communication), plus the prompt tokens the steps carried on average at the
 * predicted prefill rate, beside the measured ones.
 * 0, or -1 after printing an error (an explicit profile that cannot be read). */
int plan_check_serve_print(FILE *out, const fitlm_model *m, const char *profile_path, const plan_check_serve *run);

#endif
