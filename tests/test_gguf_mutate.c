/* A deterministic mutation test of the GGUF reader that runs in every CI build
 * (including the ASan/UBSan one): a file written by fitlm's writer (every value
 * type, nested arrays, five tensors) is mutated many times (random bytes,
 * boundary values written over length/count/offset fields, truncation, byte
 * insertion and deletion) and every result must either be refused with a
 * one-line message or be accepted with all tensor data inside the buffer.
 * Also: every truncation before the end of the last tensor is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "util/file.h"

static uint64_t rng_s = 0x243f6a8885a308d3ull;
static uint64_t rng(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}

static int fill(void *user, uint64_t i, void *buf, uint64_t n, fitlm_error *err) {
    (void)user;
    (void)err;
    for (uint64_t j = 0; j < n; j++) ((uint8_t *)buf)[j] = (uint8_t)(i + j * 13);
    return 0;
}

static char *make_sample(const char *dir, size_t *len) {
    fitlm_error err = {{0}};
    char path[8192];
    snprintf(path, sizeof path, "%s/mutate-seed.gguf", dir);
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(3, &err);
    fitlm_gguf_writer_set_alignment(w, 16, &err);
    fitlm_gguf_writer_add_str(w, "general.architecture", "llama", &err);
    fitlm_gguf_writer_add_u32(w, "llama.block_count", 2, &err);
    fitlm_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f, &err);
    fitlm_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true, &err);
    fitlm_gguf_writer_add_u64(w, "x.u64", 1ull << 40, &err);
    const char *toks[] = {"<unk>", "<s>", "</s>", "a", "\xe2\x96\x81the"};
    fitlm_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 5, &err);
    const int32_t types[] = {2, 3, 3, 1, 1};
    fitlm_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", FITLM_GGUF_INT32, types, 5, &err);
    const uint8_t b[] = {1, 0, 1};
    fitlm_gguf_value in[2] = {{.type = FITLM_GGUF_ARRAY}, {.type = FITLM_GGUF_ARRAY}};
    in[0].v.arr.elem_type = FITLM_GGUF_BOOL;
    in[0].v.arr.n = 3;
    in[0].v.arr.raw = b;
    in[1].v.arr.elem_type = FITLM_GGUF_STRING;
    in[1].v.arr.n = 2;
    in[1].v.arr.strs = (const fitlm_gguf_str[]){{1, "x"}, {0, ""}};
    fitlm_gguf_value nest = {.type = FITLM_GGUF_ARRAY};
    nest.v.arr.elem_type = FITLM_GGUF_ARRAY;
    nest.v.arr.n = 2;
    nest.v.arr.vals = in;
    fitlm_gguf_writer_add_value(w, "x.nested", &nest, &err);
    const uint64_t ne1[] = {32, 2}, ne2[] = {256}, ne3[] = {4, 3, 2}, ne4[] = {8}, ne5[] = {32};
    fitlm_gguf_writer_add_tensor(w, "token_embd.weight", FITLM_TYPE_Q8_0, 2, ne1, NULL, &err);
    fitlm_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", FITLM_TYPE_Q4_K, 1, ne2, NULL, &err);
    fitlm_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", FITLM_TYPE_F32, 3, ne3, NULL, &err);
    fitlm_gguf_writer_add_tensor(w, "output_norm.weight", FITLM_TYPE_F16, 1, ne4, NULL, &err);
    fitlm_gguf_writer_add_tensor(w, "output.weight", FITLM_TYPE_Q4_0, 1, ne5, NULL, &err);
    int rc = fitlm_gguf_writer_write(w, path, fill, NULL, &err);
    fitlm_gguf_writer_free(w);
    CHECK(rc == 0, "sample: %s", err.msg);
    if (rc) return NULL;
    return fitlm_file_read_all(path, 1 << 20, len, &err);
}

/* 1 if accepted and consistent, 0 if refused properly, -1 on a violation. */
static int probe(const uint8_t *buf, size_t n, char *why, size_t cap) {
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open_memory(buf, n, &err);
    if (!g) {
        if (!err.msg[0] || strchr(err.msg, '\n')) {
            snprintf(why, cap, "refused without a one-line message: '%.200s'", err.msg);
            return -1;
        }
        return 0;
    }
    int rc = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fitlm_gguf_tensor *t = &g->tensors[i];
        const fitlm_type_info *ti = fitlm_type_get(t->type);
        if (!ti || t->offset > n || t->nbytes > n - t->offset || (const uint8_t *)t->data != buf + t->offset ||
            t->nbytes != t->n_elements / ti->block_size * ti->block_bytes || t->offset % g->alignment ||
            fitlm_gguf_find_tensor(g, t->name.s) != t) {
            snprintf(why, cap, "accepted tensor %llu is inconsistent", (unsigned long long)i);
            rc = -1;
        }
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (fitlm_gguf_get(g, g->kv[i].key.s) != &g->kv[i].value) {
            snprintf(why, cap, "key %llu lookup", (unsigned long long)i);
            rc = -1;
        }
    fitlm_gguf_close(g);
    return rc;
}

int main(void) {
    const char *tmp = check_env_or_skip("FITLM_TMP");
    bool sanitized = getenv("FITLM_SANITIZED") && *getenv("FITLM_SANITIZED");
    size_t len = 0;
    char *seed = make_sample(tmp, &len);
    if (!seed) return check_report();
    char why[256] = "";
    CHECK(probe((const uint8_t *)seed, len, why, sizeof why) == 1, "seed refused: %s", why);

    /* every cut before the end of the last tensor's data is refused */
    fitlm_error err = {{0}};
    fitlm_gguf *g = fitlm_gguf_open_memory(seed, len, &err);
    uint64_t end = 0;
    for (uint64_t i = 0; g && i < g->n_tensors; i++)
        if (g->tensors[i].offset + g->tensors[i].nbytes > end) end = g->tensors[i].offset + g->tensors[i].nbytes;
    fitlm_gguf_close(g);
    int cut_accepted = 0;
    for (uint64_t n = 0; n < end; n++) {
        fitlm_gguf *p = fitlm_gguf_open_memory(seed, n, &err);
        if (p) cut_accepted++;
        fitlm_gguf_close(p);
    }
    CHECK(cut_accepted == 0, "%d of %llu truncations accepted", cut_accepted, (unsigned long long)end);

    static const uint64_t interesting[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 31, 32, 33, 63, 64, 255, 256,
                                           65535, 65536, 0x7fffffffull, 0x80000000ull, 0xffffffffull,
                                           0x100000000ull, 1ull << 62, (1ull << 63) - 1, 1ull << 63,
                                           UINT64_MAX - 64, UINT64_MAX - 31, UINT64_MAX - 7, UINT64_MAX};
    const int n_interesting = (int)(sizeof interesting / sizeof interesting[0]);
    const long iters = sanitized ? 30000 : 300000;
    size_t cap = len + 64;
    uint8_t *buf = malloc(cap);
    long accepted = 0, refused = 0, violations = 0;
    for (long it = 0; it < iters; it++) {
        memcpy(buf, seed, len);
        size_t n = len;
        int muts = 1 + (int)(rng() % 3);
        for (int m = 0; m < muts && n > 8; m++) {
            size_t at = (size_t)(rng() % n);
            switch (rng() % 6) {
            case 0: /* random byte */
                buf[at] = (uint8_t)rng();
                break;
            case 1: /* flip a bit */
                buf[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 2: { /* boundary value over a u64 or u32 field */
                uint64_t v = interesting[rng() % (uint64_t)n_interesting];
                size_t w = (rng() & 1) ? 8 : 4;
                if (at + w <= n) memcpy(buf + at, &v, w);
                break;
            }
            case 3: /* truncate */
                n = at;
                break;
            case 4: /* delete a run */ {
                size_t k = 1 + (size_t)(rng() % 16);
                if (at + k <= n) {
                    memmove(buf + at, buf + at + k, n - at - k);
                    n -= k;
                }
                break;
            }
            default: /* insert bytes */ {
                size_t k = 1 + (size_t)(rng() % 8);
                if (n + k <= cap) {
                    memmove(buf + at + k, buf + at, n - at);
                    for (size_t j = 0; j < k; j++) buf[at + j] = (uint8_t)rng();
                    n += k;
                }
            }
            }
        }
        int rc = probe(buf, n, why, sizeof why);
        if (rc == 1) accepted++;
        else if (rc == 0) refused++;
        else if (violations++ < 5) CHECK(0, "mutation %ld: %s", it, why);
    }
    CHECK(violations == 0, "%ld violations", violations);
    CHECK(refused > iters / 4 && accepted > 0, "suspicious split: %ld accepted, %ld refused", accepted, refused);
    printf("%ld mutations of a %zu-byte file: %ld accepted, %ld refused, %ld violations\n", iters, len, accepted,
           refused, violations);
    free(buf);
    free(seed);
    return check_report();
}
