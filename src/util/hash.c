#include "util/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t key0, key1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void) {
    uint64_t k[2] = {0, 0};
    size_t got = 0;
    while (got < sizeof k) {
        ssize_t r = getrandom((char *)k + got, sizeof k - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got < sizeof k) { /* no getrandom: time and addresses still differ per process */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        k[1] ^= (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
    key0 = k[0];
    key1 = k[1];
}

static inline uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1;                                                                                                      \
        v1 = rotl(v1, 13);                                                                                             \
        v1 ^= v0;                                                                                                      \
        v0 = rotl(v0, 32);                                                                                             \
        v2 += v3;                                                                                                      \
        v3 = rotl(v3, 16);                                                                                             \
        v3 ^= v2;                                                                                                      \
        v0 += v3;                                                                                                      \
        v3 = rotl(v3, 21);                                                                                             \
        v3 ^= v0;                                                                                                      \
        v2 += v1;                                                                                                      \
        v1 = rotl(v1, 17);                                                                                             \
        v1 ^= v2;                                                                                                      \
        v2 = rotl(v2, 32);                                                                                             \
    } while (0)

static uint64_t load_le64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

uint64_t fitlm_siphash(int c_rounds, int d_rounds, uint64_t k0, uint64_t k1, const void *msg, size_t n) {
    const uint8_t *m = msg;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t full = n & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t w = load_le64(m + i);
        v3 ^= w;
        for (int r = 0; r < c_rounds; r++) SIPROUND;
        v0 ^= w;
    }
    uint64_t last = (uint64_t)(n & 0xff) << 56;
    for (size_t i = 0; i < (n & 7); i++) last |= (uint64_t)m[full + i] << (8 * i);
    v3 ^= last;
    for (int r = 0; r < c_rounds; r++) SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    for (int r = 0; r < d_rounds; r++) SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t fitlm_hash_bytes(const void *p, size_t n) {
    pthread_once(&key_once, key_init);
    return fitlm_siphash(1, 3, key0, key1, p, n);
}

uint64_t fitlm_hash_u64(uint64_t x) {
    pthread_once(&key_once, key_init);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(x >> (8 * i));
    return fitlm_siphash(1, 3, key0, key1, b, 8);
}

int64_t fitlm_index_set_find(const fitlm_index_set *s, const char *key, size_t len, fitlm_index_key_fn fn,
                             const void *ctx) {
    if (!s->slot) return -1;
    size_t h = (size_t)fitlm_hash_bytes(key, len) & s->mask;
    for (size_t probe = 0; probe <= FITLM_HASH_MAX_PROBE; probe++, h = (h + 1) & s->mask) {
        uint32_t v = s->slot[h];
        if (!v) return -1;
        size_t klen;
        const char *k = fn(ctx, v - 1, &klen);
        if (klen == len && memcmp(k, key, len) == 0) return v - 1;
    }
    return -1;
}

/* Places index (known absent) into slot[], 0 or -1 when the probe is too long. */
static int place(uint32_t *slot, size_t mask, uint32_t index, const char *key, size_t len) {
    size_t h = (size_t)fitlm_hash_bytes(key, len) & mask;
    for (size_t probe = 0; probe <= FITLM_HASH_MAX_PROBE; probe++, h = (h + 1) & mask) {
        if (!slot[h]) {
            slot[h] = index + 1;
            return 0;
        }
    }
    return -1;
}

int fitlm_index_set_add(fitlm_index_set *s, uint32_t index, fitlm_index_key_fn fn, const void *ctx,
                        uint32_t *existing, fitlm_error *err) {
    size_t len;
    const char *key = fn(ctx, index, &len);
    int64_t found = fitlm_index_set_find(s, key, len, fn, ctx);
    if (found >= 0) {
        if (existing) *existing = (uint32_t)found;
        return 0;
    }
    if (index == UINT32_MAX) return fitlm_fail(err, "hash set: too many entries");
    if (!s->slot || (s->n + 1) * 2 > s->mask + 1) {
        size_t cap = s->slot ? (s->mask + 1) * 2 : 64;
        if (cap > SIZE_MAX / sizeof(uint32_t) || cap < s->mask + 1) return fitlm_fail(err, "hash set: too many entries");
        uint32_t *ns = calloc(cap, sizeof *ns);
        if (!ns) return fitlm_fail(err, "out of memory");
        for (size_t i = 0; s->slot && i <= s->mask; i++) {
            if (!s->slot[i]) continue;
            size_t kl;
            const char *k = fn(ctx, s->slot[i] - 1, &kl);
            if (place(ns, cap - 1, s->slot[i] - 1, k, kl)) {
                free(ns);
                return fitlm_fail(err, "hash set: probe length over %d", FITLM_HASH_MAX_PROBE);
            }
        }
        free(s->slot);
        s->slot = ns;
        s->mask = cap - 1;
    }
    if (place(s->slot, s->mask, index, key, len))
        return fitlm_fail(err, "hash set: probe length over %d", FITLM_HASH_MAX_PROBE);
    s->n++;
    return 1;
}

void fitlm_index_set_free(fitlm_index_set *s) {
    free(s->slot);
    memset(s, 0, sizeof *s);
}
