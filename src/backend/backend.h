/* The compute backend interface used by the runtime's forward pass.
 *
 * A backend is a table of function pointers plus opaque state. The model code
 * (src/runtime) only ever calls through this table, so a CUDA backend can be
 * added next to the CPU one without touching the forward pass.
 *
 * Tensors (fitlm_btensor) are 2-D: `ne0` elements per row, `ne1` rows, stored
 * row after row in `type` (a fitlm_type id). `data` is an address on the
 * backend's device (a host address for the CPU backend). Activations are F32,
 * one row per token. Weight matrices keep their file type (rows = output
 * features, ne0 = input features, the GGUF convention). A KV cache tensor is
 * a pool of rows ("slots") holding n_kv_heads*head_dim values each in the
 * cache type (F32, F16 or Q8_0); which slot holds which position of which
 * sequence is said per call by the batch metadata (fitlm_attn_batch: block
 * tables), never by a global: one op call can serve many sequences.
 *
 * Ops are asynchronous with respect to the host only where the backend says so;
 * `sync` waits for completion and reports the first error any op met (ops
 * themselves return nothing so that decode stays branch-free).
 */
#ifndef FITLM_BACKEND_BACKEND_H
#define FITLM_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util/error.h"

typedef enum fitlm_device {
    FITLM_DEVICE_CPU = 0,
    FITLM_DEVICE_CUDA = 1,
    FITLM_DEVICE_VULKAN = 2,
} fitlm_device;

typedef struct fitlm_btensor {
    int type;            /* fitlm_type of the elements */
    fitlm_device device; /* where data lives */
    int64_t ne0;         /* elements per row */
    int64_t ne1;         /* rows */
    uint64_t nbytes;     /* bytes of the whole tensor */
    void *data;          /* device address (host address on the CPU backend) */
    bool owned;          /* true: allocated by the backend, give back with release() */
    bool repacked;       /* CPU: an owned copy of a weight in the backend's own layout
                            (kernels.h, fitlm_cpu_repack), used in place of the file's */
} fitlm_btensor;

/* Rotary position embedding of one call: frequencies are precomputed by the
 * runtime (theta, linear / Llama 3.1 scaling, GGUF rope_freqs factors) so that
 * every backend applies exactly the same table. */
typedef struct fitlm_rope_table {
    fitlm_rope_layout layout; /* ADJACENT pairs or HALF (rotate-half) */
    int head_dim;             /* rotated dimensions = head_dim (full rotary) */
    const float *inv_freq;    /* host array of head_dim/2 angular frequencies */
} fitlm_rope_table;

/* Where the tokens of one op call sit in the KV pool. Token t belongs to
 * sequence seq[t], at position pos[t] of that sequence. Position p of
 * sequence s lives in cache slot
 *     block_table[s][p >> block_shift] << block_shift | (p & (block_size - 1))
 * (blocks of block_size = 1 << block_shift slots). Token t attends positions
 * max(0, pos[t] - window + 1) .. pos[t] of its own sequence (window 0: from
 * 0), which must all have been stored (kv_store) by this call or before.
 * Host arrays, valid for the call. */
typedef struct fitlm_attn_batch {
    int64_t n_tokens;
    const int32_t *pos;                 /* [n_tokens] */
    const int32_t *seq;                 /* [n_tokens] index into block_table */
    const int32_t *const *block_table;  /* [n_seqs][blocks of that sequence] */
    int block_shift;                    /* log2 of the block size */
} fitlm_attn_batch;

/* The cache slot of position p of sequence s. */
static inline int64_t fitlm_attn_slot(const fitlm_attn_batch *b, int32_t s, int64_t p) {
    return ((int64_t)b->block_table[s][p >> b->block_shift] << b->block_shift) |
           (p & (((int64_t)1 << b->block_shift) - 1));
}

typedef struct fitlm_backend fitlm_backend;

/* The most matrices one matmul_multi call takes. */
#define FITLM_MATMUL_MULTI_MAX 4

struct fitlm_backend {
    const char *name;    /* "cpu", "cuda", "vulkan" */
    fitlm_device device;
    void *state;         /* backend-private */

    /* Frees the backend and its state (not tensors the caller still holds). */
    void (*free)(fitlm_backend *be);

    /* True if matmul accepts weights of this type. */
    bool (*weight_type_supported)(const fitlm_backend *be, int type);

    /* Allocates an uninitialised (ne0 x ne1) tensor of `type` on the device.
     * The caller gives it back with release(). 0, or -1 with err. */
    int (*alloc)(fitlm_backend *be, int type, int64_t ne0, int64_t ne1, fitlm_btensor *out, fitlm_error *err);
    /* Frees an owned tensor (no-op for borrowed ones) and zeroes the struct. */
    void (*release)(fitlm_backend *be, fitlm_btensor *t);

    /* Makes a model tensor usable by the ops. Matrices keep their type (the CPU
     * backend borrows the mapped file data; a GPU backend uploads). Vectors
     * (norm weights, biases) are always presented as F32 (converted into an
     * owned copy if the file stores them otherwise). Release with release(). */
    int (*prepare_weight)(fitlm_backend *be, const fitlm_tensor *src, fitlm_btensor *out, fitlm_error *err);

    /* Reserves scratch for calls of up to n_tokens tokens and attention over up
     * to n_ctx positions per sequence with n_heads query heads sharing
     * n_kv_heads KV heads, so that no op allocates while decoding. Only grows.
     * 0, or -1 with err. */
    int (*reserve)(fitlm_backend *be, uint32_t n_tokens, uint32_t n_ctx, uint32_t n_heads, uint32_t n_kv_heads,
                   uint32_t head_dim, fitlm_error *err);
    /* Bytes of backend-internal scratch currently held (for the memory report). */
    uint64_t (*scratch_bytes)(const fitlm_backend *be);

    /* Host <-> device copies of F32 rows: rows [row0, row0+n_rows) of t. */
    void (*upload)(fitlm_backend *be, fitlm_btensor *t, int64_t row0, int64_t n_rows, const float *src);
    void (*download)(fitlm_backend *be, const fitlm_btensor *t, int64_t row0, int64_t n_rows, float *dst);
    /* Sets every byte of t to zero. */
    void (*clear)(fitlm_backend *be, fitlm_btensor *t);
    /* Waits for queued work; returns 0, or -1 with the first op error. */
    int (*sync)(fitlm_backend *be, fitlm_error *err);

    /* ---- ops (n_tokens rows of F32 activations unless said otherwise) ---- */

    /* y[t, r] = sum_c W[r, c] * x[t, c] for t < n_tokens. x: (W.ne0 x n_tokens),
     * y: (W.ne1 x n_tokens). */
    void (*matmul)(fitlm_backend *be, const fitlm_btensor *W, const fitlm_btensor *x, int64_t n_tokens,
                   fitlm_btensor *y);
    /* y[i] = W[i] x for i < n (1 <= n <= FITLM_MATMUL_MULTI_MAX): matmuls that
     * share their input (Q, K and V; gate and up) in one call, so a backend can
     * prepare x once and run them together. The same results as n matmul calls. */
    void (*matmul_multi)(fitlm_backend *be, int n, const fitlm_btensor *const *W, const fitlm_btensor *x,
                         int64_t n_tokens, fitlm_btensor *const *y);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w. y may equal x. */
    void (*rmsnorm)(fitlm_backend *be, const fitlm_btensor *x, const fitlm_btensor *w, float eps, int64_t n_tokens,
                    fitlm_btensor *y);
    /* In place: rows of x hold n_heads heads of rope->head_dim; token t sits at
     * position pos[t] (host array of n_tokens). */
    void (*rope)(fitlm_backend *be, fitlm_btensor *x, int64_t n_tokens, int n_heads, const int32_t *pos,
                 const fitlm_rope_table *rope);
    /* Writes row t of src (F32) into cache slot slot[t] (host array of
     * n_tokens), converting to the cache's type. */
    void (*kv_store)(fitlm_backend *be, fitlm_btensor *cache, const int64_t *slot, const fitlm_btensor *src,
                     int64_t n_tokens);
    /* Causal grouped-query attention over the KV pool. q: ab->n_tokens rows
     * of n_heads*head_dim; token t attends the positions fitlm_attn_batch
     * describes (its own sequence, up to its own position, within the
     * window). Query head h uses KV head h / (n_heads / n_kv_heads). Scores
     * are scaled by 1/sqrt(head_dim). out: n_tokens rows of n_heads*head_dim.
     * Each token's result depends only on its query and its sequence's cache
     * rows, never on which other tokens share the call. */
    void (*attention)(fitlm_backend *be, const fitlm_btensor *q, const fitlm_btensor *k_cache,
                      const fitlm_btensor *v_cache, const fitlm_attn_batch *ab, int n_heads, int n_kv_heads,
                      int head_dim, uint32_t window, fitlm_btensor *out);
    /* dst[i] = src[rows[i]] for i < n (F32 rows; rows a host array). */
    void (*get_rows)(fitlm_backend *be, const fitlm_btensor *src, const int32_t *rows, int64_t n, fitlm_btensor *dst);
    /* Copies cache slots: dst_slot[i] <- src_slot[i] for i < n, whole rows, in
     * every tensor of the call (copy-on-write of a KV block). */
    void (*copy_slots)(fitlm_backend *be, fitlm_btensor *cache, const int64_t *src_slot, const int64_t *dst_slot,
                       int64_t n);
    /* out = silu(gate) * up, elementwise over n_tokens rows (out may alias gate). */
    void (*silu_mul)(fitlm_backend *be, const fitlm_btensor *gate, const fitlm_btensor *up, int64_t n_tokens,
                     fitlm_btensor *out);
    /* x += y over n_tokens rows. */
    void (*add)(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *y, int64_t n_tokens);
    /* x[t] += b for every row t < n_tokens (b: F32 vector of x.ne0). */
    void (*add_bias)(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *b, int64_t n_tokens);
    /* out[t] = row ids[t] of the embedding matrix E (any supported type); ids is
     * a host array already checked to be < E.ne1. */
    void (*embed)(fitlm_backend *be, const fitlm_btensor *E, const int32_t *ids, int64_t n_tokens,
                  fitlm_btensor *out);
};

/* A view of rows [row0, row0+n_rows) of t (borrowed: never released). Works for
 * any backend because it only offsets the address; t must be a plain type. */
fitlm_btensor fitlm_btensor_rows(const fitlm_btensor *t, int64_t row0, int64_t n_rows);

/* Creates the backend named `name` ("cpu"; "vulkan" or "vulkan:N" when built
 * with it, N as `fitlm devices` lists, plain "vulkan" the first discrete GPU
 * else the first device) with n_threads worker threads (CPU; <= 0 = physical
 * cores). The caller frees it with be->free(be). NULL with err if unknown or
 * unavailable. */
fitlm_backend *fitlm_backend_new(const char *name, int n_threads, fitlm_error *err);

/* The device a runtime command uses without --device: $FITLM_DEVICE if set,
 * else "vulkan:N" for the first discrete GPU when built with Vulkan and there
 * is one, else "cpu". A static string (or the environment's). */
const char *fitlm_backend_default_name(void);

#endif
