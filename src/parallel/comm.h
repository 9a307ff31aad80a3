/* fitlm_comm: the communication layer of distributed inference.
 *
 * A communicator is a group of ranks (processes) with the few collectives the
 * parallel forward pass needs: a sum all-reduce of F32 or F16 rows (tensor
 * parallel), broadcast (each step's batch), point-to-point send/recv (pipeline
 * activations, logits) and a barrier. Two implementations:
 *   - single process (always built): size 1, collectives are no-ops;
 *   - MPI (comm_mpi.c, built with -DFITLM_MPI=ON|AUTO when OpenMPI is found).
 * The interface takes host buffers and byte counts only, so an NCCL
 * implementation for GPU backends plugs in as a third table of functions
 * (device pointers instead of host ones) without touching the forward pass.
 *
 * Errors: every call returns 0, or -1 with err. The MPI implementation never
 * returns from a failed peer: a rank that dies makes the launcher (mpirun)
 * end every rank, and an MPI error ends the job (MPI_Abort) after printing
 * "fitlm: error: rank R: ..." (see fitlm_comm_world_init).
 */
#ifndef FITLM_PARALLEL_COMM_H
#define FITLM_PARALLEL_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct fitlm_comm fitlm_comm;

/* A send in progress (fitlm_comm_isend): the implementation's handle. */
typedef struct fitlm_comm_req {
    bool active;                 /* started and not yet seen complete */
    unsigned char handle[32];    /* MPI_Request, or nothing */
} fitlm_comm_req;

/* Element types of fitlm_comm_allreduce_sum. */
typedef enum fitlm_comm_dtype {
    FITLM_COMM_F32 = 0,
    FITLM_COMM_F16 = 1, /* IEEE half, summed in F32 and rounded back */
} fitlm_comm_dtype;

/* Traffic counters of one communicator (this rank's side). */
typedef struct fitlm_comm_stats {
    uint64_t calls;      /* collectives and point-to-point calls */
    uint64_t bytes;      /* payload bytes this rank contributed or sent */
    double seconds;      /* wall time spent inside the calls (includes waiting) */
} fitlm_comm_stats;

struct fitlm_comm {
    const char *kind; /* "single", "mpi" */
    int rank, size;
    /* Receives from ranks of this host sleep after a short spin instead of
     * polling until the message comes (MPI's receive polls without pause):
     * set for ranks whose threads share the host's cores, so that a waiting
     * rank leaves its core to the rank that computes (fitlm_parallel: the
     * stages' turns). Senders wake a sleeping receiver at once. */
    bool idle_sleep;
    fitlm_comm_stats stats;
    void *state; /* implementation-private */
    int (*allreduce_sum)(fitlm_comm *c, void *buf, size_t n, fitlm_comm_dtype t, fitlm_error *err);
    int (*bcast)(fitlm_comm *c, void *buf, size_t bytes, int root, fitlm_error *err);
    int (*send)(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_error *err);
    int (*recv)(fitlm_comm *c, void *buf, size_t bytes, int src, int tag, fitlm_error *err);
    int (*isend)(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_comm_req *req,
                 fitlm_error *err);
    /* *done = whether the send finished (block: waits until it did); a
     * finished request becomes inactive */
    int (*complete)(fitlm_comm *c, fitlm_comm_req *req, bool block, bool *done, fitlm_error *err);
    int (*barrier)(fitlm_comm *c, fitlm_error *err);
    /* The ranks with the same color form a new communicator, ordered by key
     * (collective over c). NULL with err. */
    fitlm_comm *(*split)(fitlm_comm *c, int color, int key, fitlm_error *err);
    void (*free)(fitlm_comm *c);
};

/* In-place sum over the ranks of n elements of type t (every rank gets the sum). */
int fitlm_comm_allreduce_sum(fitlm_comm *c, void *buf, size_t n, fitlm_comm_dtype t, fitlm_error *err);
/* Copies root's bytes to every rank. */
int fitlm_comm_bcast(fitlm_comm *c, void *buf, size_t bytes, int root, fitlm_error *err);
int fitlm_comm_send(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_error *err);
/* Starts sending buf to dst and returns at once: buf must stay unchanged
 * until fitlm_comm_test reports the send done or fitlm_comm_wait returns
 * (req->active is then false). Messages between two ranks with one tag
 * arrive in the order they were started, blocking or not. */
int fitlm_comm_isend(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_comm_req *req,
                     fitlm_error *err);
/* Whether the send finished (never blocks); a request that is not active is done. */
int fitlm_comm_test(fitlm_comm *c, fitlm_comm_req *req, bool *done, fitlm_error *err);
/* Blocks until the send finished. */
int fitlm_comm_wait(fitlm_comm *c, fitlm_comm_req *req, fitlm_error *err);
/* Receives exactly `bytes` from src (a shorter or longer message is an error). */
int fitlm_comm_recv(fitlm_comm *c, void *buf, size_t bytes, int src, int tag, fitlm_error *err);
int fitlm_comm_barrier(fitlm_comm *c, fitlm_error *err);
/* Caller frees the result with fitlm_comm_free. */
fitlm_comm *fitlm_comm_split(fitlm_comm *c, int color, int key, fitlm_error *err);
/* Frees a communicator made by split or fitlm_comm_single_new (not the world). */
void fitlm_comm_free(fitlm_comm *c);

/* A one-rank communicator (caller frees with fitlm_comm_free). NULL only
 * when out of memory. */
fitlm_comm *fitlm_comm_single_new(void);

/* ---- the process's world ---- */

/* Starts the world communicator: MPI when fitlm was built with it and the
 * process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE /
 * PMIX_RANK), else a single process. Under MPI it also makes MPI errors and
 * SIGTERM from the launcher (another rank failed) end this rank with
 * "fitlm: error: rank R: ..." and a non-zero status. Call once, first thing in
 * main. 0, or -1 with err. */
int fitlm_comm_world_init(int *argc, char ***argv, fitlm_error *err);
/* The world communicator (a single-process one before init). Owned by the
 * process: never free it. */
fitlm_comm *fitlm_comm_world(void);
/* Ends the world: with status 0 a clean MPI_Finalize; with a non-zero status
 * and more than one rank, MPI_Abort, so that no rank waits forever for this
 * one, after waiting up to 2 s for the other ranks to end with an error too
 * (a check every rank fails: each prints its own message first). Returns
 * status. */
int fitlm_comm_world_finalize(int status);
/* The world's ranks on this host (1 in a single process). */
int fitlm_comm_host_ranks(void);
/* True when this host's other ranks can wait for a message asleep (a single
 * process, or the doorbells exist: /dev/shm was there at init); false when
 * they poll, taking a core each while they wait. */
bool fitlm_comm_ranks_sleep(void);
/* This rank's resident bytes right after MPI's start (MPI_Init, the
 * doorbells): a process's base under MPI, before it loads a model. 0 in a
 * single process or where /proc/self/statm cannot be read. */
uint64_t fitlm_comm_init_rss_bytes(void);
/* True when built with MPI support. */
bool fitlm_comm_mpi_available(void);
/* True when several threads may call the world's communicators at once
 * (a single process, or MPI initialized with MPI_THREAD_MULTIPLE). */
bool fitlm_comm_threads_ok(void);

/* Ends every rank of the job now with `status` (MPI_Abort; exit() when single). */
_Noreturn void fitlm_comm_abort(int status);

#endif
