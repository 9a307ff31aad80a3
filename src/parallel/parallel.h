/* The distributed layout of one process: where this rank sits in a
 * T (tensor) x P (pipeline) x D (data) grid of ranks over a fitlm_comm, and
 * the messages of the distributed forward pass.
 *
 * World rank w = d*(T*P) + s*T + t: replica group d, pipeline stage s,
 * tensor rank t. World rank 0 is the root of every group: it runs the command
 * (tokenizes, schedules, samples) and broadcasts each step's batch over the
 * group's link (`link`: group 0's own communicator; for a group d > 0 a
 * communicator of world rank 0 followed by the group's ranks), whose ranks
 * run fitlm_forward_serve until the root's forward pass is freed. Stage s runs
 * layers [layer0, layer1); the last stage's tensor rank 0 computes the logits
 * and sends them to the root (when it is not the root itself).
 *
 * Data parallel (D > 1, `serve` only): world rank 0 computes in group 0 and
 * drives each group d > 0 through a *remote view* (fitlm_parallel_replica):
 * a fitlm_parallel with no layers, no embedding and no output layer whose
 * forward pass only sends the batch over the link and receives the logits.
 * The root thus runs one engine (scheduler, KV block accounting, sampling)
 * per group, each on its own thread, while the groups compute at the same
 * time (MPI_THREAD_MULTIPLE).
 *
 * Only the CPU backend takes part for now (activations are exchanged from
 * host memory).
 */
#ifndef FITLM_PARALLEL_PARALLEL_H
#define FITLM_PARALLEL_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "parallel/comm.h"
#include "parallel/layout.h"
#include "runtime/batch.h"
#include "util/error.h"

typedef struct fitlm_parallel {
    fitlm_comm *world;  /* borrowed (the process's world) */
    fitlm_comm *group;  /* this replica group: T*P ranks, owned */
    fitlm_comm *tp;     /* this stage's T ranks, owned */
    uint32_t tp_size, pp_size, dp_size;
    uint32_t tp_rank, stage, dp_rank;
    uint32_t layer0, layer1; /* this stage's layers */
    fitlm_comm *link;   /* the step messages' and logits' communicator, root = its rank 0: group 0's `group`
                           (borrowed), else owned */
    uint32_t link_off;  /* link rank of group rank g: g + link_off (0 for group 0, 1 for the others) */
    bool remote;        /* a remote view of world rank 0 on a group d > 0 (fitlm_parallel_replica) */
    bool turns;         /* the stages take turns (fitlm_parallel_set_turns) */
    struct fitlm_parallel **replicas; /* world rank 0: [dp_size] views, [0] = this one; owned ([0] excepted) */
    uint32_t *bounds;        /* [pp_size+1] every stage's first layer, owned */
    fitlm_tp_shard shard;
    uint64_t model_hash;     /* fitlm_parallel_model_hash of the model */
    /* the batch received last (workers): buffers owned, grown on demand */
    uint8_t *rx;
    size_t rx_cap;
    const int32_t **rx_tables;
    uint32_t rx_tables_cap;
    uint8_t *tx; /* the root's message buffer */
    size_t tx_cap;
    uint32_t *nblk; /* the root's per-sequence block counts */
    uint32_t nblk_cap;
    /* sends in flight (activations to the next stage, logits to the root):
     * each a copy of its rows, owned, reused once finished */
    struct fitlm_parallel_send *sends;
    uint32_t n_sends;
} fitlm_parallel;

/* Lays out the world's ranks for a T x P x D run of model m (T*P*D must equal
 * the world size; the layout rules of layout.h; pp_layers as in
 * fitlm_pp_split). Collective over the world (splits communicators). The
 * caller frees the result with fitlm_parallel_free. NULL with err. */
fitlm_parallel *fitlm_parallel_new(fitlm_comm *world, const fitlm_model *m, uint32_t T, uint32_t P, uint32_t D,
                                   const char *pp_layers, fitlm_error *err);
void fitlm_parallel_free(fitlm_parallel *p);

/* How the pipeline's stages share time. Overlapped (the default when every
 * rank has cores of its own): several steps, or micro-batches of one, are in
 * flight so that the stages compute at the same time, each with its own
 * cores. In turns: one step and one micro-batch in flight, so one stage
 * computes while the others wait asleep (fitlm_comm idle_sleep); each rank
 * then runs as many threads as the host has cores, and the weights are read
 * once per step, as in one process. mode 1 = turns, 0 = overlapped, -1 = auto:
 * turns when P > 1 and the ranks on the root's host times n_threads exceed
 * its CPUs (e.g. PP 2 with -t 2 on a 2-core host). Collective over the world:
 * every rank takes the root's choice. 0, or -1 with err. */
int fitlm_parallel_set_turns(fitlm_parallel *p, int mode, int n_threads, fitlm_error *err);

/* World rank 0 of a D > 1 run: replica group d's view (d = 0: p itself; the
 * others remote views, owned by p). NULL for d >= dp_size or on other ranks. */
fitlm_parallel *fitlm_parallel_replica(fitlm_parallel *p, uint32_t d);

/* True on world rank 0 (the root of every group) and in its remote views. */
bool fitlm_parallel_is_root(const fitlm_parallel *p);
bool fitlm_parallel_first_stage(const fitlm_parallel *p);
bool fitlm_parallel_last_stage(const fitlm_parallel *p);
/* True on the rank that computes the logits (last stage, tensor rank 0). */
bool fitlm_parallel_head(const fitlm_parallel *p);
/* "rank W (tp t/T, stage s/P, layers a-b)" into buf. */
void fitlm_parallel_describe(const fitlm_parallel *p, char *buf, size_t cap);

/* A hash of the model's header (architecture, hyperparameters, every tensor's
 * name, type, shape and offset), the same on every node that maps the same
 * file: a fixed key, not the process's. */
uint64_t fitlm_parallel_model_hash(const fitlm_model *m);

/* Every rank of the world compares its n values with world rank 0's (model
 * hash, sizes of the forward pass); on any difference every rank fails with
 * a message naming what differs (what[i] names value i). Collective. */
int fitlm_parallel_agree(fitlm_parallel *p, const uint64_t *v, const char *const *what, int n, fitlm_error *err);

/* ---- the messages of one step (group-collective) ---- */

/* Root: broadcasts batch b (block tables up to each row's position, blocks of
 * 1 << block_shift slots) to its group. */
int fitlm_parallel_send_batch(fitlm_parallel *p, const fitlm_batch *b, int block_shift, fitlm_error *err);
/* The batch's micro-batch count travels with it (b->n_micro). */
/* Root: tells its group to stop serving (the forward pass is freed). */
int fitlm_parallel_send_stop(fitlm_parallel *p, fitlm_error *err);
/* Root: tells its group that the root keeps this host's cores for a while
 * (the plan check's probe of the host after a run): each other rank waits for
 * the next step message asleep (parallel/comm.h's doorbells, where its ranks
 * share a host) instead of polling for it. */
int fitlm_parallel_send_pause(fitlm_parallel *p, fitlm_error *err);
/* Others: receives the next batch into *b (arrays valid until the next call):
 * 1, or 0 when the root said stop, or -1 with err. */
int fitlm_parallel_recv_batch(fitlm_parallel *p, fitlm_batch *b, fitlm_error *err);

/* Sum of this stage's partial rows (n F32 values) over its tensor ranks. */
int fitlm_parallel_allreduce(fitlm_parallel *p, float *x, size_t n, fitlm_error *err);
/* The residual stream (n F32 values) to the same tensor rank of the next
 * stage / from the previous one. Sends (here and of the logits) copy the
 * rows and return at once: a stage goes on with its next batch while the
 * next stage is still busy, so that several steps can be in flight
 * (fitlm_forward_submit). Messages keep their order. */
int fitlm_parallel_send_next(fitlm_parallel *p, const float *x, size_t n, fitlm_error *err);
int fitlm_parallel_recv_prev(fitlm_parallel *p, float *x, size_t n, fitlm_error *err);
/* Logit rows from the head rank to the root (n F32 values). */
int fitlm_parallel_send_logits(fitlm_parallel *p, const float *x, size_t n, fitlm_error *err);
int fitlm_parallel_recv_logits(fitlm_parallel *p, float *x, size_t n, fitlm_error *err);

/* Waits until every send this rank started has finished (before stopping). */
int fitlm_parallel_flush(fitlm_parallel *p, fitlm_error *err);

/* Communication this rank did so far (all its communicators together). */
void fitlm_parallel_stats(const fitlm_parallel *p, fitlm_comm_stats *out);

/* The worker's exit status when this process served as a non-root rank
 * (set by fitlm_parallel_worker_done), else -1: main returns it. */
int fitlm_parallel_worker_status(void);
void fitlm_parallel_worker_done(int status);

#endif
