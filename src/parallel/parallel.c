/* Rank layout and the messages of the distributed forward pass. */
#include "parallel/parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/hash.h"

/* Point-to-point tags. */
enum { TAG_ACT = 11, TAG_LOGITS = 12, TAG_STEP = 13 };

/* The first message of a step carries this many bytes (header and, for
 * decode steps, the whole batch); a larger batch follows in a second one.
 * The root sends a step's messages to each rank of the group point to point,
 * without waiting (send_async): a rank still busy with an earlier step takes
 * them when it gets there, so the root can go on to the next step. */
#define FIRST_CHUNK 4096
#define MSG_MAGIC 0x4d4c5446u /* "FTLM" */
enum { CMD_BATCH = 1, CMD_STOP = 2, CMD_PAUSE = 3 };

typedef struct msg_header {
    uint32_t magic, cmd, n_tokens, n_seqs, n_logits, n_micro;
    uint64_t total; /* bytes of the whole message, header included */
} msg_header;

/* A send in flight: its own copy of the rows. */
struct fitlm_parallel_send {
    fitlm_comm *comm;
    fitlm_comm_req req;
    void *buf;
    size_t cap;
};

static int g_worker_status = -1;

int fitlm_parallel_worker_status(void) {
    return g_worker_status;
}
void fitlm_parallel_worker_done(int status) {
    g_worker_status = status;
}

fitlm_parallel *fitlm_parallel_new(fitlm_comm *world, const fitlm_model *m, uint32_t T, uint32_t P, uint32_t D,
                                   const char *pp_layers, fitlm_error *err) {
    if (T == 0 || P == 0 || D == 0 || T > FITLM_PARALLEL_MAX || P > FITLM_PARALLEL_MAX || D > FITLM_PARALLEL_MAX)
        return fitlm_fail(err, "--tp, --pp and --dp must be from 1 to %d", FITLM_PARALLEL_MAX), NULL;
    if ((uint64_t)T * P * D != (uint64_t)world->size) {
        if (world->size == 1)
            fitlm_fail(err, "--tp %u x --pp %u x --dp %u = %llu ranks, but this is a single process: start it with "
                            "mpirun -np %llu%s",
                       T, P, D, (unsigned long long)T * P * D, (unsigned long long)T * P * D,
                       fitlm_comm_mpi_available() ? "" : " (and a fitlm built with MPI: -DFITLM_MPI=ON)");
        else
            fitlm_fail(err, "--tp %u x --pp %u x --dp %u = %llu ranks, but mpirun started %d (-np must equal T x P x D)",
                       T, P, D, (unsigned long long)T * P * D, world->size);
        return NULL;
    }
    if (fitlm_tp_check_model(m, T, err)) return NULL;
    if (D > 1 && !fitlm_comm_threads_ok())
        return fitlm_fail(err, "--dp %u: the root drives each replica group from its own thread, but this MPI "
                               "library does not provide MPI_THREAD_MULTIPLE", D),
               NULL;
    fitlm_parallel *p = calloc(1, sizeof *p);
    if (!p) return fitlm_fail(err, "out of memory"), NULL;
    p->world = world;
    p->tp_size = T;
    p->pp_size = P;
    p->dp_size = D;
    uint32_t w = (uint32_t)world->rank;
    p->dp_rank = w / (T * P);
    p->stage = (w / T) % P;
    p->tp_rank = w % T;
    p->bounds = calloc(P + 1, sizeof *p->bounds);
    if (!p->bounds) {
        fitlm_fail(err, "out of memory");
        goto fail;
    }
    if (fitlm_pp_split(m, P, pp_layers, p->bounds, err)) goto fail;
    p->layer0 = p->bounds[p->stage];
    p->layer1 = p->bounds[p->stage + 1];
    fitlm_tp_shard_of(&m->hp, T, p->tp_rank, &p->shard);
    p->model_hash = fitlm_parallel_model_hash(m);
    p->group = fitlm_comm_split(world, (int)p->dp_rank, (int)(w % (T * P)), err);
    if (!p->group) goto fail;
    p->tp = fitlm_comm_split(world, (int)(p->dp_rank * P + p->stage), (int)p->tp_rank, err);
    if (!p->tp) goto fail;
    p->link = p->group;
    if (D > 1 && w == 0) {
        p->replicas = calloc(D, sizeof *p->replicas);
        if (!p->replicas) {
            fitlm_fail(err, "out of memory");
            goto fail;
        }
        p->replicas[0] = p;
    }
    /* each group d > 0 gets a link: world rank 0 (link rank 0) and the group's ranks (1 + group rank) */
    for (uint32_t d = 1; d < D; d++) {
        bool member = w == 0 || p->dp_rank == d;
        fitlm_comm *c = fitlm_comm_split(world, member ? 0 : 1, w == 0 ? 0 : 1 + (int)(w % (T * P)), err);
        if (!c) goto fail;
        if (!member) {
            fitlm_comm_free(c);
        } else if (w != 0) {
            p->link = c;
            p->link_off = 1;
        } else {
            fitlm_parallel *r = calloc(1, sizeof *r);
            if (!r) {
                fitlm_comm_free(c);
                fitlm_fail(err, "out of memory");
                goto fail;
            }
            r->world = world;
            r->tp_size = T, r->pp_size = P, r->dp_size = D;
            r->dp_rank = d;
            r->remote = true;
            r->link = c;
            r->link_off = 1;
            r->model_hash = p->model_hash;
            fitlm_tp_shard_of(&m->hp, T, 0, &r->shard);
            p->replicas[d] = r;
        }
    }
    return p;
fail:
    fitlm_parallel_free(p);
    return NULL;
}

void fitlm_parallel_free(fitlm_parallel *p) {
    if (!p) return;
    if (p->replicas)
        for (uint32_t d = 1; d < p->dp_size; d++) fitlm_parallel_free(p->replicas[d]);
    free(p->replicas);
    /* sends still in flight complete before the communicators they use go */
    if (p->sends) {
        fitlm_error err = {{0}};
        if (fitlm_parallel_flush(p, &err)) fitlm_error_print(&err);
        for (uint32_t i = 0; i < p->n_sends; i++) free(p->sends[i].buf);
        free(p->sends);
    }
    if (p->link && p->link != p->group) fitlm_comm_free(p->link);
    fitlm_comm_free(p->tp);
    fitlm_comm_free(p->group);
    free(p->bounds);
    free(p->rx);
    free(p->rx_tables);
    free(p->tx);
    free(p->nblk);
    free(p);
}

int fitlm_parallel_set_turns(fitlm_parallel *p, int mode, int n_threads, fitlm_error *err) {
    uint32_t on = 0;
    if (fitlm_parallel_is_root(p)) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        /* only stages take turns: without pipeline parallelism the flag changes nothing */
        on = p->pp_size > 1 && (mode == 1 || (mode < 0 && n_threads > 0 && cpus > 0 &&
                                              (long)fitlm_comm_host_ranks() * n_threads > cpus));
    }
    if (fitlm_comm_bcast(p->world, &on, sizeof on, 0, err)) return -1;
    for (uint32_t d = 0; d < (p->replicas ? p->dp_size : 1); d++) {
        fitlm_parallel *r = d ? p->replicas[d] : p;
        r->turns = on != 0;
        r->link->idle_sleep = on != 0;
        if (r->group) r->group->idle_sleep = on != 0;
    }
    return 0;
}

fitlm_parallel *fitlm_parallel_replica(fitlm_parallel *p, uint32_t d) {
    if (!p || !p->replicas || d >= p->dp_size) return NULL;
    return p->replicas[d];
}

bool fitlm_parallel_is_root(const fitlm_parallel *p) {
    return p->world->rank == 0;
}
bool fitlm_parallel_first_stage(const fitlm_parallel *p) {
    return !p->remote && p->stage == 0;
}
bool fitlm_parallel_last_stage(const fitlm_parallel *p) {
    return !p->remote && p->stage + 1 == p->pp_size;
}
bool fitlm_parallel_head(const fitlm_parallel *p) {
    return fitlm_parallel_last_stage(p) && p->tp_rank == 0;
}

void fitlm_parallel_describe(const fitlm_parallel *p, char *buf, size_t cap) {
    if (p->remote) {
        snprintf(buf, cap, "rank 0 (the root of replica %u/%u: its scheduler, no layers)", p->dp_rank, p->dp_size);
        return;
    }
    snprintf(buf, cap, "rank %d (tp %u/%u, stage %u/%u, replica %u/%u, layers %u-%u)", p->world->rank, p->tp_rank,
             p->tp_size, p->stage, p->pp_size, p->dp_rank, p->dp_size, p->layer0, p->layer1 ? p->layer1 - 1 : 0);
}

/* ---- model identity ---- */

typedef struct hasher {
    uint8_t buf[4096];
    size_t n;
    uint64_t h;
} hasher;

static void hash_flush(hasher *s) {
    /* chain: h = siphash(h || block) under a fixed key */
    uint8_t tmp[sizeof s->buf + 8];
    memcpy(tmp, &s->h, 8);
    memcpy(tmp + 8, s->buf, s->n);
    s->h = fitlm_siphash(2, 4, 0x6669746c6d2d6d70ull, 0x6964656e74697479ull, tmp, s->n + 8);
    s->n = 0;
}

static void hash_put(hasher *s, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        size_t k = sizeof s->buf - s->n < n ? sizeof s->buf - s->n : n;
        memcpy(s->buf + s->n, b, k);
        s->n += k;
        b += k;
        n -= k;
        if (s->n == sizeof s->buf) hash_flush(s);
    }
}

uint64_t fitlm_parallel_model_hash(const fitlm_model *m) {
    hasher s = {.n = 0, .h = 0};
    const fitlm_hparams *hp = &m->hp;
    uint32_t v[] = {(uint32_t)hp->arch, hp->n_layers, hp->dim,     hp->n_heads,   hp->n_kv_heads,
                    hp->head_dim,       hp->ffn_dim,  hp->vocab_size, hp->ctx_len};
    hash_put(&s, v, sizeof v);
    hash_put(&s, &hp->norm_eps, sizeof hp->norm_eps);
    hash_put(&s, &hp->rope_theta, sizeof hp->rope_theta);
    uint64_t nt = m->n_tensors;
    hash_put(&s, &nt, sizeof nt);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const fitlm_tensor *t = &m->tensors[i];
        if (t->name) hash_put(&s, t->name, strlen(t->name) + 1);
        int32_t ty = t->type;
        hash_put(&s, &ty, sizeof ty);
        hash_put(&s, t->ne, sizeof t->ne);
        hash_put(&s, &t->nbytes, sizeof t->nbytes);
        hash_put(&s, &t->offset, sizeof t->offset);
    }
    hash_flush(&s);
    return s.h;
}

int fitlm_parallel_agree(fitlm_parallel *p, const uint64_t *v, const char *const *what, int n, fitlm_error *err) {
    uint64_t *root = malloc((size_t)n * sizeof *root);
    if (!root) return fitlm_fail(err, "out of memory");
    memcpy(root, v, (size_t)n * sizeof *root);
    if (fitlm_comm_bcast(p->link, root, (size_t)n * sizeof *root, 0, err)) {
        free(root);
        return -1;
    }
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (root[i] != v[i]) bad = i;
    /* every rank learns which fields differ on some rank, so that all fail
     * together and each can name the field (a rank's own message may be cut
     * short when the launcher ends the job) */
    float *flags = calloc((size_t)n, sizeof *flags);
    if (!flags) {
        free(root);
        return fitlm_fail(err, "out of memory");
    }
    if (bad >= 0) flags[bad] = 1.0f;
    int rc = fitlm_comm_allreduce_sum(p->link, flags, (size_t)n, FITLM_COMM_F32, err);
    int other = -1;
    for (int i = 0; i < n && other < 0; i++)
        if (flags[i] > 0.0f) other = i;
    if (rc == 0 && bad >= 0)
        rc = fitlm_fail(err, "rank %d: the launch differs from rank 0's: %s is %llu here, %llu on rank 0", p->world->rank,
                        what[bad], (unsigned long long)v[bad], (unsigned long long)root[bad]);
    else if (rc == 0 && other >= 0)
        rc = fitlm_fail(err, "rank %d: another rank's launch differs from rank 0's in %s (model file or options; "
                             "see its message)",
                        p->world->rank, what[other]);
    free(flags);
    free(root);
    return rc;
}

/* ---- the batch of one step ---- */

static size_t payload_bytes(uint32_t n, uint32_t n_seqs, uint32_t n_logits, uint64_t n_table) {
    return sizeof(msg_header) + (size_t)n * (8 + 4 + 4 + 4) + (size_t)n_logits * 4 + (size_t)n_seqs * 4 +
           (size_t)n_table * 4;
}

static int grow(uint8_t **buf, size_t *cap, size_t need, fitlm_error *err) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : FIRST_CHUNK;
    while (c < need) c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return fitlm_fail(err, "out of memory for a %zu-byte batch message", need);
    *buf = b;
    *cap = c;
    return 0;
}

static int send_async(fitlm_parallel *p, fitlm_comm *c, const void *x, size_t bytes, int dst, int tag,
                      fitlm_error *err);

/* The step message in p->tx (total bytes, at least FIRST_CHUNK of buffer) to
 * every other rank of the link. */
static int send_step(fitlm_parallel *p, size_t total, fitlm_error *err) {
    for (int dst = 1; dst < p->link->size; dst++) {
        if (send_async(p, p->link, p->tx, FIRST_CHUNK, dst, TAG_STEP, err)) return -1;
        if (total > FIRST_CHUNK &&
            send_async(p, p->link, p->tx + FIRST_CHUNK, total - FIRST_CHUNK, dst, TAG_STEP, err))
            return -1;
    }
    return 0;
}

int fitlm_parallel_send_batch(fitlm_parallel *p, const fitlm_batch *b, int block_shift, fitlm_error *err) {
    if (p->link->size == 1) return 0;
    uint32_t n = b->n_tokens, ns = b->n_seqs, nl = b->n_logits;
    if (ns > p->nblk_cap) {
        uint32_t *g = realloc(p->nblk, (size_t)ns * sizeof *g);
        if (!g) return fitlm_fail(err, "out of memory");
        p->nblk = g;
        p->nblk_cap = ns;
    }
    /* the blocks each sequence's rows reach (attention reads up to a row's position) */
    uint32_t *nblk = p->nblk;
    for (uint32_t s = 0; s < ns; s++) nblk[s] = 0;
    for (uint32_t t = 0; t < n; t++) {
        uint32_t need = (uint32_t)(b->pos[t] >> block_shift) + 1;
        if (need > nblk[b->seq[t]]) nblk[b->seq[t]] = need;
    }
    uint64_t n_table = 0;
    for (uint32_t s = 0; s < ns; s++) n_table += nblk[s];
    size_t total = payload_bytes(n, ns, nl, n_table);
    if (grow(&p->tx, &p->tx_cap, total > FIRST_CHUNK ? total : FIRST_CHUNK, err)) return -1;
    uint8_t *q = p->tx;
    msg_header h = {.magic = MSG_MAGIC, .cmd = CMD_BATCH, .n_tokens = n, .n_seqs = ns, .n_logits = nl,
                    .n_micro = b->n_micro, .total = total};
    memcpy(q, &h, sizeof h);
    q += sizeof h;
    memcpy(q, b->slot, (size_t)n * 8), q += (size_t)n * 8;
    memcpy(q, b->ids, (size_t)n * 4), q += (size_t)n * 4;
    memcpy(q, b->pos, (size_t)n * 4), q += (size_t)n * 4;
    memcpy(q, b->seq, (size_t)n * 4), q += (size_t)n * 4;
    if (nl) memcpy(q, b->logit_rows, (size_t)nl * 4), q += (size_t)nl * 4;
    if (ns) memcpy(q, nblk, (size_t)ns * 4), q += (size_t)ns * 4;
    for (uint32_t s = 0; s < ns; s++) {
        if (nblk[s]) memcpy(q, b->block_table[s], (size_t)nblk[s] * 4);
        q += (size_t)nblk[s] * 4;
    }
    return send_step(p, total, err);
}

/* A step message that is only a command (stop, pause) to every other rank. */
static int send_command(fitlm_parallel *p, uint32_t cmd, fitlm_error *err) {
    if (p->link->size == 1) return 0;
    if (grow(&p->tx, &p->tx_cap, FIRST_CHUNK, err)) return -1;
    msg_header h = {.magic = MSG_MAGIC, .cmd = cmd, .total = sizeof h};
    memset(p->tx, 0, FIRST_CHUNK);
    memcpy(p->tx, &h, sizeof h);
    return send_step(p, FIRST_CHUNK, err);
}

int fitlm_parallel_send_stop(fitlm_parallel *p, fitlm_error *err) {
    return send_command(p, CMD_STOP, err);
}

int fitlm_parallel_send_pause(fitlm_parallel *p, fitlm_error *err) {
    return send_command(p, CMD_PAUSE, err);
}

/* Before a receive that may sleep (the stages' turns): this rank's sends are
 * taken first, so that no message waits for a sender asleep (an MPI library
 * may need the sender's progress to move a large one). */
static int flush_before_sleep(fitlm_parallel *p, fitlm_error *err) {
    return p->turns ? fitlm_parallel_flush(p, err) : 0;
}

int fitlm_parallel_recv_batch(fitlm_parallel *p, fitlm_batch *b, fitlm_error *err) {
    if (grow(&p->rx, &p->rx_cap, FIRST_CHUNK, err) || flush_before_sleep(p, err)) return -1;
    /* a pause: the next message is waited for asleep (its sends taken first),
     * whatever this rank's receives do otherwise */
    const bool sleeps = p->link->idle_sleep;
    msg_header h;
    for (;;) {
        int rc = fitlm_comm_recv(p->link, p->rx, FIRST_CHUNK, 0, TAG_STEP, err);
        p->link->idle_sleep = sleeps;
        if (rc) return -1;
        memcpy(&h, p->rx, sizeof h);
        if (h.magic != MSG_MAGIC || h.cmd != CMD_PAUSE) break;
        if (fitlm_parallel_flush(p, err)) return -1;
        p->link->idle_sleep = true;
    }
    if (h.magic != MSG_MAGIC) return fitlm_fail(err, "rank %d: a malformed step message from the root", p->world->rank);
    if (h.cmd == CMD_STOP) return 0;
    if (h.cmd != CMD_BATCH) return fitlm_fail(err, "rank %d: unknown step command %u", p->world->rank, h.cmd);
    if (h.total < sizeof h || h.total > ((uint64_t)1 << 40))
        return fitlm_fail(err, "rank %d: a step message of %llu bytes", p->world->rank, (unsigned long long)h.total);
    if (h.total > FIRST_CHUNK) {
        if (grow(&p->rx, &p->rx_cap, (size_t)h.total, err)) return -1;
        if (fitlm_comm_recv(p->link, p->rx + FIRST_CHUNK, (size_t)h.total - FIRST_CHUNK, 0, TAG_STEP, err))
            return -1;
    }
    uint32_t n = h.n_tokens, ns = h.n_seqs, nl = h.n_logits;
    const uint8_t *q = p->rx + sizeof h;
    memset(b, 0, sizeof *b);
    b->n_tokens = n;
    b->n_micro = h.n_micro;
    b->slot = (const int64_t *)q, q += (size_t)n * 8;
    b->ids = (const int32_t *)q, q += (size_t)n * 4;
    b->pos = (const int32_t *)q, q += (size_t)n * 4;
    b->seq = (const int32_t *)q, q += (size_t)n * 4;
    b->logit_rows = (const int32_t *)q, q += (size_t)nl * 4;
    b->n_logits = nl;
    const uint32_t *nblk = (const uint32_t *)q;
    q += (size_t)ns * 4;
    if (ns > p->rx_tables_cap) {
        const int32_t **t = realloc(p->rx_tables, (size_t)ns * sizeof *t);
        if (!t) return fitlm_fail(err, "out of memory");
        p->rx_tables = t;
        p->rx_tables_cap = ns;
    }
    for (uint32_t s = 0; s < ns; s++) {
        p->rx_tables[s] = (const int32_t *)q;
        q += (size_t)nblk[s] * 4;
    }
    b->block_table = (const int32_t *const *)p->rx_tables;
    b->n_seqs = ns;
    return 1;
}

/* ---- activations and logits ---- */

int fitlm_parallel_allreduce(fitlm_parallel *p, float *x, size_t n, fitlm_error *err) {
    return fitlm_comm_allreduce_sum(p->tp, x, n, FITLM_COMM_F32, err);
}

/* Most sends in flight at once; one more waits for the oldest. Steps in
 * flight are bounded by the pipeline's stages, and a step sends at most a
 * few micro-batches and logit chunks, so this is never reached in practice. */
#define MAX_SENDS 64

/* Copies the bytes and starts sending them; returns at once. */
static int send_async(fitlm_parallel *p, fitlm_comm *c, const void *x, size_t bytes, int dst, int tag,
                      fitlm_error *err) {
    struct fitlm_parallel_send *slot = NULL;
    for (uint32_t i = 0; i < p->n_sends; i++) { /* a finished send's buffer, the largest first */
        bool done;
        if (fitlm_comm_test(p->sends[i].comm, &p->sends[i].req, &done, err)) return -1;
        if (done && (!slot || p->sends[i].cap > slot->cap)) slot = &p->sends[i];
    }
    if (!slot && p->n_sends < MAX_SENDS) {
        struct fitlm_parallel_send *g = realloc(p->sends, (p->n_sends + 1) * sizeof *g);
        if (!g) return fitlm_fail(err, "out of memory");
        p->sends = g;
        slot = &p->sends[p->n_sends++];
        memset(slot, 0, sizeof *slot);
    }
    if (!slot) { /* all busy: wait for the first */
        slot = &p->sends[0];
        if (fitlm_comm_wait(slot->comm, &slot->req, err)) return -1;
    }
    if (slot->cap < bytes) {
        void *b = realloc(slot->buf, bytes);
        if (!b) return fitlm_fail(err, "out of memory for a %zu-byte message", bytes);
        slot->buf = b;
        slot->cap = bytes;
    }
    memcpy(slot->buf, x, bytes);
    slot->comm = c;
    return fitlm_comm_isend(c, slot->buf, bytes, dst, tag, &slot->req, err);
}

int fitlm_parallel_flush(fitlm_parallel *p, fitlm_error *err) {
    for (uint32_t i = 0; i < p->n_sends; i++)
        if (fitlm_comm_wait(p->sends[i].comm, &p->sends[i].req, err)) return -1;
    return 0;
}

int fitlm_parallel_send_next(fitlm_parallel *p, const float *x, size_t n, fitlm_error *err) {
    int dst = (int)((p->stage + 1) * p->tp_size + p->tp_rank);
    return send_async(p, p->group, x, n * sizeof(float), dst, TAG_ACT, err);
}

int fitlm_parallel_recv_prev(fitlm_parallel *p, float *x, size_t n, fitlm_error *err) {
    int src = (int)((p->stage - 1) * p->tp_size + p->tp_rank);
    if (flush_before_sleep(p, err)) return -1;
    return fitlm_comm_recv(p->group, x, n * sizeof(float), src, TAG_ACT, err);
}

int fitlm_parallel_send_logits(fitlm_parallel *p, const float *x, size_t n, fitlm_error *err) {
    return send_async(p, p->link, x, n * sizeof(float), 0, TAG_LOGITS, err);
}

int fitlm_parallel_recv_logits(fitlm_parallel *p, float *x, size_t n, fitlm_error *err) {
    int src = (int)(p->link_off + (p->pp_size - 1) * p->tp_size);
    if (flush_before_sleep(p, err)) return -1;
    return fitlm_comm_recv(p->link, x, n * sizeof(float), src, TAG_LOGITS, err);
}

void fitlm_parallel_stats(const fitlm_parallel *p, fitlm_comm_stats *out) {
    memset(out, 0, sizeof *out);
    const fitlm_comm *cs[] = {p->group, p->tp, p->link != p->group ? p->link : NULL};
    for (int i = 0; i < 3; i++) {
        if (!cs[i]) continue;
        out->calls += cs[i]->stats.calls;
        out->bytes += cs[i]->stats.bytes;
        out->seconds += cs[i]->stats.seconds;
    }
}
