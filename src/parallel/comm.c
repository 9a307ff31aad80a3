/* The communicator front end and the single-process implementation. */
#include "parallel/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define TIMED(c, nbytes, call)                                                                                        \
    do {                                                                                                               \
        double t0_ = now_s();                                                                                          \
        int r_ = (call);                                                                                               \
        (c)->stats.seconds += now_s() - t0_;                                                                           \
        (c)->stats.calls++;                                                                                            \
        (c)->stats.bytes += (nbytes);                                                                                  \
        return r_;                                                                                                     \
    } while (0)

int fitlm_comm_allreduce_sum(fitlm_comm *c, void *buf, size_t n, fitlm_comm_dtype t, fitlm_error *err) {
    if (c->size == 1 || n == 0) return 0;
    TIMED(c, n * (t == FITLM_COMM_F16 ? 2 : 4), c->allreduce_sum(c, buf, n, t, err));
}

int fitlm_comm_bcast(fitlm_comm *c, void *buf, size_t bytes, int root, fitlm_error *err) {
    if (c->size == 1 || bytes == 0) return 0;
    TIMED(c, c->rank == root ? bytes : 0, c->bcast(c, buf, bytes, root, err));
}

int fitlm_comm_send(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_error *err) {
    if (dst < 0 || dst >= c->size || dst == c->rank)
        return fitlm_fail(err, "send to rank %d of a %d-rank group from rank %d", dst, c->size, c->rank);
    TIMED(c, bytes, c->send(c, buf, bytes, dst, tag, err));
}

int fitlm_comm_isend(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_comm_req *req,
                     fitlm_error *err) {
    if (dst < 0 || dst >= c->size || dst == c->rank)
        return fitlm_fail(err, "send to rank %d of a %d-rank group from rank %d", dst, c->size, c->rank);
    if (req->active) return fitlm_fail(err, "a send request reused before it finished");
    TIMED(c, bytes, c->isend(c, buf, bytes, dst, tag, req, err));
}

int fitlm_comm_test(fitlm_comm *c, fitlm_comm_req *req, bool *done, fitlm_error *err) {
    *done = true;
    if (!req->active) return 0;
    return c->complete(c, req, false, done, err);
}

int fitlm_comm_wait(fitlm_comm *c, fitlm_comm_req *req, fitlm_error *err) {
    if (!req->active) return 0;
    bool done = false;
    double t0 = now_s();
    int r = c->complete(c, req, true, &done, err);
    c->stats.seconds += now_s() - t0;
    return r;
}

int fitlm_comm_recv(fitlm_comm *c, void *buf, size_t bytes, int src, int tag, fitlm_error *err) {
    if (src < 0 || src >= c->size || src == c->rank)
        return fitlm_fail(err, "receive from rank %d of a %d-rank group on rank %d", src, c->size, c->rank);
    TIMED(c, 0, c->recv(c, buf, bytes, src, tag, err));
}

int fitlm_comm_barrier(fitlm_comm *c, fitlm_error *err) {
    if (c->size == 1) return 0;
    TIMED(c, 0, c->barrier(c, err));
}

fitlm_comm *fitlm_comm_split(fitlm_comm *c, int color, int key, fitlm_error *err) {
    return c->split(c, color, key, err);
}

void fitlm_comm_free(fitlm_comm *c) {
    if (c) c->free(c);
}

/* ---- single process ---- */

static int single_allreduce(fitlm_comm *c, void *buf, size_t n, fitlm_comm_dtype t, fitlm_error *err) {
    return 0;
}
static int single_bcast(fitlm_comm *c, void *buf, size_t bytes, int root, fitlm_error *err) {
    return 0;
}
static int single_send(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_error *err) {
    return fitlm_fail(err, "a single process has no rank to send to");
}
static int single_recv(fitlm_comm *c, void *buf, size_t bytes, int src, int tag, fitlm_error *err) {
    return fitlm_fail(err, "a single process has no rank to receive from");
}
static int single_isend(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_comm_req *req,
                        fitlm_error *err) {
    return fitlm_fail(err, "a single process has no rank to send to");
}
static int single_complete(fitlm_comm *c, fitlm_comm_req *req, bool block, bool *done, fitlm_error *err) {
    req->active = false;
    *done = true;
    return 0;
}
static int single_barrier(fitlm_comm *c, fitlm_error *err) {
    return 0;
}
static fitlm_comm *single_split(fitlm_comm *c, int color, int key, fitlm_error *err) {
    fitlm_comm *s = fitlm_comm_single_new();
    if (!s) fitlm_fail(err, "out of memory");
    return s;
}
static void single_free(fitlm_comm *c) {
    free(c);
}

static void single_fill(fitlm_comm *c) {
    memset(c, 0, sizeof *c);
    c->kind = "single";
    c->rank = 0;
    c->size = 1;
    c->allreduce_sum = single_allreduce;
    c->bcast = single_bcast;
    c->send = single_send;
    c->recv = single_recv;
    c->isend = single_isend;
    c->complete = single_complete;
    c->barrier = single_barrier;
    c->split = single_split;
    c->free = single_free;
}

fitlm_comm *fitlm_comm_single_new(void) {
    fitlm_comm *c = malloc(sizeof *c);
    if (c) single_fill(c);
    return c;
}

/* ---- the world without MPI ---- */
#ifndef FITLM_HAVE_MPI
static fitlm_comm g_world;
static int g_world_ready;

int fitlm_comm_world_init(int *argc, char ***argv, fitlm_error *err) {
    single_fill(&g_world);
    g_world.free = NULL; /* never freed */
    g_world_ready = 1;
    return 0;
}

fitlm_comm *fitlm_comm_world(void) {
    if (!g_world_ready) fitlm_comm_world_init(NULL, NULL, NULL);
    return &g_world;
}

int fitlm_comm_world_finalize(int status) {
    return status;
}

bool fitlm_comm_mpi_available(void) {
    return false;
}

int fitlm_comm_host_ranks(void) {
    return 1;
}

uint64_t fitlm_comm_init_rss_bytes(void) {
    return 0;
}

bool fitlm_comm_ranks_sleep(void) {
    return true;
}

bool fitlm_comm_threads_ok(void) {
    return true;
}

_Noreturn void fitlm_comm_abort(int status) {
    fflush(stdout);
    exit(status);
}
#else
/* comm_mpi.c defines the world; it reuses the single-process table for a
 * process that mpirun did not start. */
void fitlm_comm_single_fill_(fitlm_comm *c);
void fitlm_comm_single_fill_(fitlm_comm *c) {
    single_fill(c);
}
#endif
