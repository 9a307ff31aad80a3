/* Keyed hashing for tables whose keys come from untrusted files (token texts,
 * metadata keys, tensor names): SipHash-1-3 (Aumasson & Bernstein) under a key
 * drawn once per process from the kernel's random source, so that nobody can
 * choose a set of strings that collide, and a set of indices keyed by the
 * strings they name (open addressing, load <= 1/2, probe length bounded). */
#ifndef FITLM_UTIL_HASH_H
#define FITLM_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* SipHash-1-3 of n bytes under the process key (thread-safe). */
uint64_t fitlm_hash_bytes(const void *p, size_t n);

/* SipHash-c-d of n bytes under the key (k0, k1) (k0 = the key's first 8 bytes,
 * little-endian): the primitive, exposed for the reference test vectors. */
uint64_t fitlm_siphash(int c_rounds, int d_rounds, uint64_t k0, uint64_t k1, const void *msg, size_t n);

/* A keyed mix of a 64-bit integer (e.g. a pair of ids) under the process key. */
uint64_t fitlm_hash_u64(uint64_t x);

/* Longest probe sequence a table built with these hashes should ever see; a
 * longer one means a broken hash, and the tables refuse to go on. */
#define FITLM_HASH_MAX_PROBE 128

/* Set of uint32 indices (into the caller's array) keyed by the string each
 * index names; the caller's key function returns that string. Zero-initialize
 * (`fitlm_index_set s = {0};`), free with fitlm_index_set_free(). The set holds
 * no pointers into the caller's array, so the array may move. */
typedef const char *(*fitlm_index_key_fn)(const void *ctx, uint32_t index, size_t *len);
typedef struct fitlm_index_set {
    uint32_t *slot; /* index + 1; 0 = empty */
    size_t mask;    /* capacity - 1 */
    size_t n;
} fitlm_index_set;

/* The index whose key is (key, len), or -1. */
int64_t fitlm_index_set_find(const fitlm_index_set *s, const char *key, size_t len, fitlm_index_key_fn fn,
                             const void *ctx);
/* Adds index (whose key fn returns) unless its key is already present: 1 added,
 * 0 present (*existing, if non-NULL, gets the index holding it), -1 with err
 * (out of memory, probe length over FITLM_HASH_MAX_PROBE). */
int fitlm_index_set_add(fitlm_index_set *s, uint32_t index, fitlm_index_key_fn fn, const void *ctx,
                        uint32_t *existing, fitlm_error *err);
void fitlm_index_set_free(fitlm_index_set *s);

#endif
