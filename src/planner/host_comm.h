/* The host's MPI communication costs for planning tensor / pipeline parallel
 * runs of fitlm on CPUs (docs/parallel.md): the all-reduce latency alpha and
 * bandwidth that bench/comm_bench measures (T = alpha + m / bw for one
 * all-reduce of m bytes over 2 ranks) and writes into the host profile
 * (fields allreduce_alpha_s, allreduce_bw), or assumed figures when the
 * profile has none. */
#ifndef FITLM_PLANNER_HOST_COMM_H
#define FITLM_PLANNER_HOST_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "planner/cpu_cost.h"
#include "util/error.h"

/* Assumed when not measured: MPI over shared memory on one host. */
#define FITLM_ASSUMED_ALLREDUCE_ALPHA_S 2e-6
#define FITLM_ASSUMED_ALLREDUCE_BW 4e9

typedef struct fitlm_host_comm {
    double alpha_s; /* latency of one all-reduce between 2 ranks */
    double bw;      /* bytes/s of that all-reduce for large messages */
    bool measured;  /* from the host profile (comm_bench), else assumed */
} fitlm_host_comm;

/* The profile's figures when both are set (p may be NULL), else the assumed ones. */
void fitlm_host_comm_of(const fitlm_host_profile *p, fitlm_host_comm *c);

/* Networks between nodes (`plan --nodes-link`): TCP over Ethernet, as
 * OpenMPI's tcp transport runs without RDMA. Goodput 94 % of the line rate
 * (1500-byte frames: 1460 bytes of payload in 1538 on the wire); the 2-rank
 * all-reduce latency is two one-way kernel TCP latencies (assumed: about
 * 15 us on 10/25 GbE, 10 us on 100 GbE). Not measured: comm_bench over the
 * real link (`--mca btl tcp,self` across nodes) gives the figures to use
 * instead, as GBPS:ALPHA_US. */
#define FITLM_LINK_GOODPUT 0.94
/* Parses 10gbe, 25gbe, 100gbe or GBPS:ALPHA_US (line rate in Gb/s, all-reduce
 * latency in us) into alpha (s), bw (bytes/s) and a display name (cap bytes).
 * 0, or -1 with err. */
int fitlm_host_link_parse(const char *spec, double *alpha_s, double *bw, char *name, size_t cap, fitlm_error *err);
/* The figures a plan uses for its ranks: the link's (assumed) when bw > 0,
 * else the host's own (fitlm_host_comm_of). */
void fitlm_host_comm_for(const fitlm_host_profile *p, double link_alpha_s, double link_bw, fitlm_host_comm *c);

/* One sum all-reduce of `bytes` over n ranks: the 2-rank fit read as a ring
 * (2(n-1) steps of alpha/2, 2(n-1)/n x bytes through the link), so n = 2
 * gives exactly alpha + bytes / bw. 0 for n < 2. */
double fitlm_host_allreduce_s(const fitlm_host_comm *c, double bytes, int n);

/* Communication of one forward step of `rows` tokens over T tensor x P
 * pipeline ranks, as fitlm's runtime does it: two F32 all-reduces of
 * rows x dim per layer (T > 1), and the residual stream (rows x dim F32) sent
 * P - 1 times between stages (each a one-way message: alpha/2 + bytes/bw). */
double fitlm_host_step_comm_s(const fitlm_host_comm *c, const fitlm_hparams *hp, int T, int P, double rows);

/* The prompt (pp: n_prompt tokens in chunks of ub) and decode (tg: n_gen
 * tokens after ctx0) predictions of a run whose layers are cut into P
 * pipeline stages on this host's cores, each stage with `threads` / P of the
 * `threads` (fitlm's runtime under mpirun). A prompt chunk passes the stages
 * in k = fitlm_pp_micro_batches(rows, P) micro-batches: the first range passes
 * every stage, each later one adds the slowest stage's time, so the chunk
 * takes ((k - 1) max_stage + 1) / k of its time through the whole model at one
 * stage's threads, max_stage being the largest stage's share of the layers
 * (1/P when balanced: (k + P - 1) / (k P)). tg is one token through the
 * whole model at one stage's threads (fitlm_host_pipeline_step_s turns it
 * into a decode step of several sequences). P < 2: fitlm_cpu_predict with
 * every thread. Communication is not included (fitlm_host_step_comm_s). */
void fitlm_host_pipeline_predict(const fitlm_host_profile *prof, double host_bw, double host_flops,
                                 const fitlm_cpu_work *w, int threads, int P, uint32_t n_prompt, uint32_t ub,
                                 double max_stage, uint32_t ctx0, uint32_t n_gen, fitlm_cpu_pred *pp,
                                 fitlm_cpu_pred *tg);

/* Time per output token of `seqs` sequences decoding through P pipeline
 * stages on this host (tg from fitlm_host_pipeline_predict), as the serving
 * engine's lanes run them: fewer sequences than stages each pass the stages
 * one after another (one token through the whole model at one stage's
 * threads); P or more are split into P lanes of seqs / P rows, each stage
 * works on a different lane, and every sequence gets a token per round of
 * the P lanes: P x max_stage lane steps of seqs / P rows at one stage's
 * threads (each stage reads its weights once per lane, so on a CPU whose
 * kernels gain from more rows this is slower than the single process's
 * step of seqs rows). P < 2: fitlm_cpu_batch_step_s. */
double fitlm_host_pipeline_step_s(const fitlm_cpu_pred *tg, const fitlm_cpu_work *w, int P, double max_stage,
                                  double seqs, double ctx);

/* Sets the measured all-reduce figures in the profile at path (created from
 * this machine's facts when the file does not exist; the other fields are
 * kept). 0, or -1 with err (an unreadable or invalid profile, a bad figure). */
int fitlm_host_profile_set_comm(const char *path, double alpha_s, double bw, fitlm_error *err);

#endif
