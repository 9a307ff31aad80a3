/* The MPI implementation of fitlm_comm (OpenMPI; built with FITLM_HAVE_MPI). */
#include <mpi.h>

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "parallel/comm.h"
#include "util/file.h"
#include "util/fp16.h"

void fitlm_comm_single_fill_(fitlm_comm *c);

typedef struct mpi_state {
    MPI_Comm comm;
    bool owned;    /* made by split: freed with MPI_Comm_free */
    int *world_of; /* [size] each rank's world rank, owned; NULL for the world itself */
} mpi_state;

static fitlm_comm g_world;
static mpi_state g_world_state;
static int g_world_ready, g_mpi_on, g_thread_multiple;
static MPI_Op g_sum_f16 = MPI_OP_NULL;
/* A copy of the world used only by a failing exit (fitlm_comm_world_finalize):
 * its barrier never matches a collective of the work itself. */
static MPI_Comm g_exit_comm = MPI_COMM_NULL;

static MPI_Comm mc(const fitlm_comm *c) {
    return ((const mpi_state *)c->state)->comm;
}

/* ---- doorbells: waking a rank of this host that sleeps in a receive ----
 *
 * The world's ranks on one host share a small mapping (POSIX shared memory
 * made at world init) with two words per rank: a ring count and the number of
 * its threads asleep. A sender bumps the receiver's count after starting a
 * send and, when someone sleeps there, wakes it (a futex on the shared
 * word). A receiver with idle_sleep polls its receive for BELL_SPIN_NS, then
 * sleeps on its count (at most BELL_SLEEP_NS at a time, so that a message the
 * send did not yet deliver when it rang, e.g. over TCP, is still found).
 * bells_setup is collective over the world (at init); when the mapping
 * cannot be made (no /dev/shm) there are no doorbells and receives poll as
 * MPI's do. bells_free (at finalize) unmaps it. */
#define BELL_SPIN_NS 30000L
#define BELL_SLEEP_NS 1000000L

static int g_host_ranks = 1, g_host_rank;
static int *g_host_index;          /* [world size] host index of a world rank, -1 on another host; owned */
static _Atomic uint32_t *g_bells;  /* [2 * host ranks]: ring count, sleepers; mapped, or NULL (none) */
static size_t g_bells_bytes;

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

static void bells_setup(void) {
    MPI_Comm host;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host) != MPI_SUCCESS) return;
    MPI_Comm_size(host, &g_host_ranks);
    MPI_Comm_rank(host, &g_host_rank);
    int wsize = g_world.size, me = g_world.rank;
    int *members = malloc((size_t)g_host_ranks * sizeof *members);
    g_host_index = malloc((size_t)wsize * sizeof *g_host_index);
    int ok = members && g_host_index;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, host);
    if (ok) {
        MPI_Allgather(&me, 1, MPI_INT, members, 1, MPI_INT, host);
        for (int i = 0; i < wsize; i++) g_host_index[i] = -1;
        for (int i = 0; i < g_host_ranks; i++) g_host_index[members[i]] = i;
        char name[64] = {0};
        size_t bytes = (size_t)g_host_ranks * 2 * sizeof *g_bells;
        int fd = -1;
        if (g_host_rank == 0) {
            snprintf(name, sizeof name, "/fitlm-bells-%ld-%ld", (long)getpid(), (long)time(NULL));
            fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
            if (fd >= 0 && ftruncate(fd, (off_t)bytes) != 0) {
                close(fd);
                fd = -1;
                shm_unlink(name);
            }
            if (fd < 0) name[0] = 0;
        }
        MPI_Bcast(name, sizeof name, MPI_CHAR, 0, host);
        if (name[0] && g_host_rank != 0) fd = shm_open(name, O_RDWR, 0);
        void *map = fd >= 0 ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
        if (fd >= 0) close(fd);
        ok = map != MAP_FAILED;
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, host);
        MPI_Barrier(host); /* every rank opened it: the name can go */
        if (g_host_rank == 0 && name[0]) shm_unlink(name);
        if (ok) {
            g_bells = map;
            g_bells_bytes = bytes;
        } else if (map != MAP_FAILED) {
            munmap(map, bytes);
        }
    }
    free(members);
    MPI_Comm_free(&host);
}

static void bells_free(void) {
    if (g_bells) munmap((void *)g_bells, g_bells_bytes);
    g_bells = NULL;
    free(g_host_index);
    g_host_index = NULL;
}

/* The doorbell index of rank r of c: -1 when it is on another host (or there are no doorbells). */
static int bell_of(const fitlm_comm *c, int r) {
    if (!g_bells) return -1;
    const mpi_state *s = c->state;
    int w = s->world_of ? s->world_of[r] : r;
    return w >= 0 && w < g_world.size ? g_host_index[w] : -1;
}

/* Rings the doorbell of rank dst of c (nothing when it is on another host). */
static void ring(const fitlm_comm *c, int dst) {
    int i = bell_of(c, dst);
    if (i < 0) return;
    atomic_fetch_add(&g_bells[2 * i], 1);
    if (atomic_load(&g_bells[2 * i + 1])) futex(&g_bells[2 * i], FUTEX_WAKE, INT_MAX, NULL);
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Completes request r, sleeping on this rank's doorbell after BELL_SPIN_NS. */
static int wait_sleeping(MPI_Request *r, MPI_Status *stt) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    _Atomic uint32_t *count = &g_bells[2 * g_host_rank], *sleepers = count + 1;
    for (;;) {
        int flag = 0, rc = MPI_Test(r, &flag, stt);
        if (rc != MPI_SUCCESS || flag) return rc;
        if (elapsed_ns(&t0) < BELL_SPIN_NS) continue;
        atomic_fetch_add(sleepers, 1);
        uint32_t seen = atomic_load(count);
        rc = MPI_Test(r, &flag, stt); /* a ring before `seen` was read: its message is there now */
        if (rc == MPI_SUCCESS && !flag) {
            struct timespec ts = {0, BELL_SLEEP_NS};
            futex(count, FUTEX_WAIT, seen, &ts);
        }
        atomic_fetch_sub(sleepers, 1);
        if (rc != MPI_SUCCESS || flag) return rc;
    }
}

static int mpi_fail(fitlm_error *err, const fitlm_comm *c, const char *what, int code) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", code);
    return fitlm_fail(err, "rank %d: %s failed: %s", g_world.rank, what, s);
}

/* F16 rows are summed in F32 and rounded back (MPI has no half type). */
static void sum_f16(void *in, void *inout, int *len, MPI_Datatype *dt) {
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = fitlm_fp32_to_fp16(fitlm_fp16_to_fp32(a[i]) + fitlm_fp16_to_fp32(b[i]));
}

static int mpi_allreduce(fitlm_comm *c, void *buf, size_t n, fitlm_comm_dtype t, fitlm_error *err) {
    if (n > (size_t)INT32_MAX) return fitlm_fail(err, "all-reduce of %zu elements is too large", n);
    int rc = t == FITLM_COMM_F16 ? MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_UINT16_T, g_sum_f16, mc(c))
                                 : MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, mc(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, c, "all-reduce", rc);
}

static int mpi_bcast(fitlm_comm *c, void *buf, size_t bytes, int root, fitlm_error *err) {
    if (bytes > (size_t)INT32_MAX) return fitlm_fail(err, "broadcast of %zu bytes is too large", bytes);
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, mc(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, c, "broadcast", rc);
}

static int mpi_send(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_error *err) {
    if (bytes > (size_t)INT32_MAX) return fitlm_fail(err, "message of %zu bytes is too large", bytes);
    MPI_Request r;
    int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, mc(c), &r);
    if (rc == MPI_SUCCESS) {
        ring(c, dst); /* a receiver asleep takes the message while this waits */
        rc = MPI_Wait(&r, MPI_STATUS_IGNORE);
    }
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, c, "send", rc);
}

static int mpi_recv(fitlm_comm *c, void *buf, size_t bytes, int src, int tag, fitlm_error *err) {
    if (bytes > (size_t)INT32_MAX) return fitlm_fail(err, "message of %zu bytes is too large", bytes);
    MPI_Status stt;
    int rc;
    if (c->idle_sleep && bell_of(c, src) >= 0) { /* a sender on this host rings when it sends */
        MPI_Request r;
        rc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, src, tag, mc(c), &r);
        if (rc == MPI_SUCCESS) rc = wait_sleeping(&r, &stt);
    } else {
        rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, src, tag, mc(c), &stt);
    }
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, "receive", rc);
    int got = 0;
    MPI_Get_count(&stt, MPI_BYTE, &got);
    if ((size_t)got != bytes)
        return fitlm_fail(err, "rank %d: expected %zu bytes from rank %d, got %d", g_world.rank, bytes, src, got);
    return 0;
}

_Static_assert(sizeof(MPI_Request) <= sizeof(((fitlm_comm_req *)0)->handle), "MPI_Request fits a fitlm_comm_req");

static int mpi_isend(fitlm_comm *c, const void *buf, size_t bytes, int dst, int tag, fitlm_comm_req *req,
                     fitlm_error *err) {
    if (bytes > (size_t)INT32_MAX) return fitlm_fail(err, "message of %zu bytes is too large", bytes);
    MPI_Request r;
    int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, mc(c), &r);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, "send", rc);
    ring(c, dst);
    memcpy(req->handle, &r, sizeof r);
    req->active = true;
    return 0;
}

static int mpi_complete(fitlm_comm *c, fitlm_comm_req *req, bool block, bool *done, fitlm_error *err) {
    MPI_Request r;
    memcpy(&r, req->handle, sizeof r);
    int flag = 1, rc = block ? MPI_Wait(&r, MPI_STATUS_IGNORE) : MPI_Test(&r, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, "send", rc);
    memcpy(req->handle, &r, sizeof r);
    *done = flag != 0;
    if (*done) req->active = false;
    return 0;
}

static int mpi_barrier(fitlm_comm *c, fitlm_error *err) {
    int rc = MPI_Barrier(mc(c));
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, c, "barrier", rc);
}

static void mpi_free(fitlm_comm *c) {
    mpi_state *s = c->state;
    if (s && s->owned) MPI_Comm_free(&s->comm);
    if (s) free(s->world_of);
    free(s);
    free(c);
}

static void mpi_fill(fitlm_comm *c, mpi_state *s);

static fitlm_comm *mpi_split(fitlm_comm *c, int color, int key, fitlm_error *err) {
    fitlm_comm *n = calloc(1, sizeof *n);
    mpi_state *s = calloc(1, sizeof *s);
    if (!n || !s) {
        free(n);
        free(s);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    int rc = MPI_Comm_split(mc(c), color, key, &s->comm);
    if (rc != MPI_SUCCESS) {
        free(n);
        free(s);
        mpi_fail(err, c, "communicator split", rc);
        return NULL;
    }
    s->owned = true;
    mpi_fill(n, s);
    /* each rank's world rank, for the doorbells */
    s->world_of = malloc((size_t)n->size * sizeof *s->world_of);
    int *ranks = malloc((size_t)n->size * sizeof *ranks);
    MPI_Group mine, world;
    if (s->world_of && ranks && MPI_Comm_group(s->comm, &mine) == MPI_SUCCESS) {
        MPI_Comm_group(MPI_COMM_WORLD, &world);
        for (int i = 0; i < n->size; i++) ranks[i] = i;
        MPI_Group_translate_ranks(mine, n->size, ranks, world, s->world_of);
        MPI_Group_free(&mine);
        MPI_Group_free(&world);
    } else {
        free(s->world_of);
        s->world_of = NULL;
        n->free(n);
        free(ranks);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    free(ranks);
    return n;
}

static void mpi_fill(fitlm_comm *c, mpi_state *s) {
    c->kind = "mpi";
    c->state = s;
    MPI_Comm_rank(s->comm, &c->rank);
    MPI_Comm_size(s->comm, &c->size);
    c->allreduce_sum = mpi_allreduce;
    c->bcast = mpi_bcast;
    c->send = mpi_send;
    c->recv = mpi_recv;
    c->isend = mpi_isend;
    c->complete = mpi_complete;
    c->barrier = mpi_barrier;
    c->split = mpi_split;
    c->free = mpi_free;
}

/* ---- failure handling ---- */

/* Any MPI error ends the whole job with a clear message (never a hang). */
static void on_mpi_error(MPI_Comm *comm, int *code, ...) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(*code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", *code);
    fprintf(stderr, "fitlm: error: rank %d: communication failed: %s (another rank may have died)\n", g_world.rank,
            s);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1);
}

/* mpirun sends SIGTERM to the surviving ranks when one rank dies or aborts:
 * say so (async-signal-safe), then die of the signal. Also called by the
 * file module's handlers (util/file.h), which replace this one once a model
 * is mapped. */
static void note_signal(int sig) {
    if (sig != SIGTERM) return;
    static const char pre[] = "fitlm: error: rank ";
    static const char post[] = ": stopped by the launcher (another rank of the job failed or the job was interrupted)\n";
    char num[16];
    int n = 0, r = g_world.rank;
    char rev[16];
    do {
        rev[n++] = (char)('0' + r % 10);
        r /= 10;
    } while (r && n < 15);
    for (int i = 0; i < n; i++) num[i] = rev[n - 1 - i];
    ssize_t w = write(2, pre, sizeof pre - 1);
    w = write(2, num, (size_t)n);
    w = write(2, post, sizeof post - 1);
    (void)w;
}

static void on_sigterm(int sig) {
    note_signal(sig);
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

static uint64_t g_init_rss; /* fitlm_comm_init_rss_bytes */

/* VmRSS from /proc/self/statm (its second field, in pages); 0 if unreadable. */
static uint64_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    int n = f ? fscanf(f, "%llu %llu", &size, &res) : 0;
    if (f) fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)res * (uint64_t)page : 0;
}

int fitlm_comm_world_init(int *argc, char ***argv, fitlm_error *err) {
    if (g_world_ready) return 0;
    g_world_ready = 1;
    if (!launched_by_mpi()) {
        fitlm_comm_single_fill_(&g_world);
        g_world.free = NULL;
        return 0;
    }
    int provided = 0;
    /* MPI_THREAD_MULTIPLE: a data-parallel root drives several replica groups from one thread each */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        fitlm_comm_single_fill_(&g_world);
        g_world.free = NULL;
        return fitlm_fail(err, "MPI_Init failed");
    }
    g_mpi_on = 1;
    g_thread_multiple = provided >= MPI_THREAD_MULTIPLE;
    MPI_Errhandler eh;
    MPI_Comm_create_errhandler(on_mpi_error, &eh);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, eh);
    MPI_Errhandler_free(&eh);
    MPI_Op_create(sum_f16, 1, &g_sum_f16);
    if (MPI_Comm_dup(MPI_COMM_WORLD, &g_exit_comm) != MPI_SUCCESS) g_exit_comm = MPI_COMM_NULL;
    g_world_state.comm = MPI_COMM_WORLD;
    g_world_state.owned = false;
    mpi_fill(&g_world, &g_world_state);
    g_world.free = NULL;
    if (g_world.size > 1) bells_setup();
    g_init_rss = resident_bytes();
    if (g_world.size > 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigterm;
        sigaction(SIGTERM, &sa, NULL);
        fitlm_file_set_signal_note(note_signal);
    }
    return 0;
}

fitlm_comm *fitlm_comm_world(void) {
    if (!g_world_ready) {
        fitlm_comm_single_fill_(&g_world);
        g_world.free = NULL;
        g_world_ready = 1;
    }
    return &g_world;
}

int fitlm_comm_world_finalize(int status) {
    if (!g_mpi_on) return status;
    fflush(stdout);
    fflush(stderr);
    if (status != 0 && g_world.size > 1) {
        /* the ranks that fail the same check (a flag, the layout, the file)
         * get here too: wait for them, up to 2 s, so that every rank has
         * printed its own error before the abort ends the job; a rank still
         * inside a collective never arrives, and the abort ends it */
        MPI_Request rq;
        int done = 0;
        if (g_exit_comm != MPI_COMM_NULL && MPI_Ibarrier(g_exit_comm, &rq) == MPI_SUCCESS)
            for (int i = 0; i < 2000 && !done; i++) {
                if (MPI_Test(&rq, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
                if (!done) usleep(1000);
            }
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    if (g_exit_comm != MPI_COMM_NULL) MPI_Comm_free(&g_exit_comm);
    if (g_sum_f16 != MPI_OP_NULL) MPI_Op_free(&g_sum_f16);
    bells_free();
    MPI_Finalize();
    g_mpi_on = 0;
    return status;
}

bool fitlm_comm_mpi_available(void) {
    return true;
}

int fitlm_comm_host_ranks(void) {
    return g_host_ranks;
}

uint64_t fitlm_comm_init_rss_bytes(void) {
    return g_init_rss;
}

bool fitlm_comm_ranks_sleep(void) {
    return !g_mpi_on || g_host_ranks <= 1 || g_bells != NULL;
}

bool fitlm_comm_threads_ok(void) {
    return !g_mpi_on || g_thread_multiple;
}

_Noreturn void fitlm_comm_abort(int status) {
    fflush(stdout);
    fflush(stderr);
    if (g_mpi_on) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}
