/* The Vulkan backend's ops against the CPU backend (and, for matmul and
 * embed, against a double-precision product of the dequantized weights) on
 * random data: every weight type, the F32/F16/Q8_0 KV caches, attention with
 * GQA, paged block tables, several sequences, a sliding window and contexts
 * longer than one 64-position chunk; results independent of how many tokens
 * share a call; the tiled (prefill) matmul bit-identical to the matrix-vector
 * one, on shapes off its tile and on matrices split by the storage binding
 * range (FITLM_VULKAN_MAX_RANGE); device errors (no such device, out of device
 * memory, a lost device played by FITLM_VK_FAULT) as errors, not crashes.
 *
 * Tolerances (|vulkan - reference| <= tol * scale, scale said per check):
 *  - matmul vs the dequantized weights in double: 1e-6 * sum_c |w||x| — the
 *    shader multiplies the same dequantized F32 weights by F32 activations and
 *    only the summation order differs (K <= 512 terms: at most about
 *    K * 2^-24 = 3e-5 in the worst case, typically sqrt(K) * 2^-24 = 1.3e-6;
 *    measured <= 1e-7 on lavapipe).
 *  - matmul vs the CPU backend: the CPU backend quantizes activations to Q8
 *    for the quantized types (x rounded to 1/254 of each 32-block's |x|max),
 *    so there 1e-2 * sum|w||x|; for BF16 weights it rounds x to BF16 (relative
 *    error <= 2^-9 per element), so 4e-3; F32/F16 weights 1e-6 as above.
 *  - rmsnorm, silu_mul, add, rope: 1e-5 relative to the values' magnitude
 *    (F32 rounding of a few operations; RoPE uses the CPU's own cos/sin).
 *  - attention: 1e-5 absolute on outputs of magnitude <= 1 (softmax weights of
 *    F32 dot products of 64-128 terms; online vs two-pass softmax only
 *    reorders the sums; measured <= 3e-7). With the F16 / Q8_0 caches a stored
 *    value may differ by one rounding step where it falls on a tie (the GPU's
 *    packHalf2x16 rounding), so the caches are compared element by element
 *    within one step and attention within 1e-3.
 *  - embed, get_rows, copy_slots, the F32 KV cache: exact. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "check.h"
#include "format/ggml_type.h"
#include "quant/quant.h"
#include "util/fp16.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static fitlm_backend *vk, *cpu;

/* An F32 tensor with the same rows on both backends. */
static void pair_f32(int64_t ne0, int64_t ne1, const float *data, fitlm_btensor *tv, fitlm_btensor *tc) {
    fitlm_error err;
    CHECK(vk->alloc(vk, FITLM_TYPE_F32, ne0, ne1, tv, &err) == 0, "vk alloc: %s", err.msg);
    CHECK(cpu->alloc(cpu, FITLM_TYPE_F32, ne0, ne1, tc, &err) == 0, "cpu alloc: %s", err.msg);
    if (data) {
        vk->upload(vk, tv, 0, ne1, data);
        cpu->upload(cpu, tc, 0, ne1, data);
    } else {
        vk->clear(vk, tv);
        cpu->clear(cpu, tc);
    }
}

static void get(fitlm_backend *be, const fitlm_btensor *t, int64_t rows, float *out) {
    fitlm_error err;
    be->download(be, t, 0, rows, out);
    CHECK(be->sync(be, &err) == 0, "%s sync: %s", be->name, err.msg);
}

static fitlm_tensor weight_tensor(int type, int64_t rows, int64_t cols, const void *data, uint64_t nbytes) {
    static char name[] = "blk.0.ffn_up.weight";
    fitlm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.type = type;
    t.n_dims = rows > 1 ? 2 : 1;
    t.ne[0] = (uint64_t)cols;
    t.ne[1] = (uint64_t)rows;
    t.ne[2] = t.ne[3] = 1;
    t.n_elements = (uint64_t)(rows * cols);
    t.nbytes = nbytes;
    t.data = data;
    t.file_index = -1;
    return t;
}

/* Random weights of `type` (quantized from random floats) and their dequantized values. */
static uint8_t *make_weights(int type, int64_t rows, int64_t cols, float *deq, uint64_t *nbytes) {
    bool ok = true;
    uint64_t rb = fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
    uint8_t *w = malloc(rb * (uint64_t)rows); /* caller frees */
    float *row = malloc((size_t)cols * sizeof *row);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = frand() * (1.0f + (float)(r % 3));
        if (type == FITLM_TYPE_F32) {
            memcpy(w + (uint64_t)r * rb, row, rb);
        } else if (type == FITLM_TYPE_F16 || type == FITLM_TYPE_BF16) {
            for (int64_t c = 0; c < cols; c++) {
                uint16_t h = type == FITLM_TYPE_F16 ? fitlm_fp32_to_fp16(row[c]) : fitlm_fp32_to_bf16(row[c]);
                memcpy(w + (uint64_t)r * rb + 2 * c, &h, 2);
            }
        } else {
            CHECK(fitlm_quantize_row(type, row, w + (uint64_t)r * rb, cols, NULL) == (int64_t)rb, "quantize");
        }
        CHECK(fitlm_dequantize_row(type, w + (uint64_t)r * rb, deq + r * cols, cols) == 0, "dequantize");
    }
    free(row);
    *nbytes = rb * (uint64_t)rows;
    return w;
}

static void test_matmul_embed(int type, int64_t rows, int64_t cols) {
    const char *tn = fitlm_type_name(type);
    enum { NT = 13 };
    float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
    uint64_t nbytes;
    uint8_t *w = make_weights(type, rows, cols, deq, &nbytes);
    float *x = malloc((size_t)(cols * NT) * sizeof *x);
    for (int64_t i = 0; i < cols * NT; i++) x[i] = 2.0f * frand();
    fitlm_tensor t = weight_tensor(type, rows, cols, w, nbytes);
    fitlm_error err;
    fitlm_btensor Wv, Wc, Xv, Xc, Yv, Yc, Y1v, Y1c;
    CHECK(vk->prepare_weight(vk, &t, &Wv, &err) == 0, "vk prepare %s: %s", tn, err.msg);
    CHECK(cpu->prepare_weight(cpu, &t, &Wc, &err) == 0, "cpu prepare %s: %s", tn, err.msg);
    pair_f32(cols, NT, x, &Xv, &Xc);
    pair_f32(rows, NT, NULL, &Yv, &Yc);
    pair_f32(rows, 1, NULL, &Y1v, &Y1c);
    vk->matmul(vk, &Wv, &Xv, NT, &Yv);
    cpu->matmul(cpu, &Wc, &Xc, NT, &Yc);
    float *yv = malloc((size_t)(rows * NT) * sizeof *yv), *yc = malloc((size_t)(rows * NT) * sizeof *yc);
    get(vk, &Yv, NT, yv);
    get(cpu, &Yc, NT, yc);
    bool quant = type != FITLM_TYPE_F32 && type != FITLM_TYPE_F16 && type != FITLM_TYPE_BF16;
    double worst_ref = 0, worst_cpu = 0;
    for (int t0 = 0; t0 < NT; t0++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, scale = 1e-30;
            for (int64_t c = 0; c < cols; c++) {
                ref += (double)deq[r * cols + c] * x[t0 * cols + c];
                scale += fabs((double)deq[r * cols + c] * x[t0 * cols + c]);
            }
            double v = yv[t0 * rows + r];
            worst_ref = fmax(worst_ref, fabs(v - ref) / scale);
            worst_cpu = fmax(worst_cpu, fabs(v - yc[t0 * rows + r]) / scale);
        }
    CHECK(worst_ref <= 1e-6, "matmul %s %lldx%lld vs dequantized reference: %g", tn, (long long)rows,
          (long long)cols, worst_ref);
    printf("matmul %-5s %3lldx%-3lld: vs dequantized %.2g, vs CPU %.2g (of sum|w||x|)\n", tn, (long long)rows,
           (long long)cols, worst_ref, worst_cpu);
    double tol_cpu = quant ? 1e-2 : type == FITLM_TYPE_BF16 ? 4e-3 : 1e-6;
    CHECK(worst_cpu <= tol_cpu, "matmul %s vs the CPU backend: %g", tn, worst_cpu);
    /* batch independence: token 7 alone gives bit-identical results */
    fitlm_btensor x7 = fitlm_btensor_rows(&Xv, 7, 1);
    vk->matmul(vk, &Wv, &x7, 1, &Y1v);
    float *y1 = malloc((size_t)rows * sizeof *y1);
    get(vk, &Y1v, 1, y1);
    CHECK(!memcmp(y1, yv + 7 * rows, (size_t)rows * sizeof *y1), "matmul %s: token 7 alone differs from in a batch",
          tn);
    /* matmul_multi: the same as separate calls */
    const fitlm_btensor *ws[2] = {&Wv, &Wv};
    fitlm_btensor *ys[2] = {&Y1v, &Yv};
    vk->matmul_multi(vk, 2, ws, &Xv, 1, ys);
    get(vk, &Y1v, 1, y1);
    CHECK(!memcmp(y1, yv, (size_t)rows * sizeof *y1), "matmul_multi %s", tn);

    /* embed: rows 3, 0, rows-1, 3 decoded exactly as the dequantizer */
    int32_t ids[4] = {3, 0, (int32_t)rows - 1, 3};
    fitlm_btensor Ev, Ec;
    pair_f32(cols, 4, NULL, &Ev, &Ec);
    vk->embed(vk, &Wv, ids, 4, &Ev);
    cpu->embed(cpu, &Wc, ids, 4, &Ec);
    float *ev = malloc((size_t)(cols * 4) * sizeof *ev), *ec = malloc((size_t)(cols * 4) * sizeof *ec);
    get(vk, &Ev, 4, ev);
    get(cpu, &Ec, 4, ec);
    int bad = 0;
    for (int i = 0; i < 4; i++)
        for (int64_t c = 0; c < cols; c++) bad += ev[i * cols + c] != deq[ids[i] * cols + c];
    CHECK(bad == 0, "embed %s: %d values differ from the dequantizer", tn, bad);
    CHECK(!memcmp(ev, ec, (size_t)(cols * 4) * sizeof *ev), "embed %s differs from the CPU backend", tn);

    fitlm_btensor *rel_v[] = {&Wv, &Xv, &Yv, &Y1v, &Ev}, *rel_c[] = {&Wc, &Xc, &Yc, &Y1c, &Ec};
    for (int i = 0; i < 5; i++) {
        vk->release(vk, rel_v[i]);
        cpu->release(cpu, rel_c[i]);
    }
    free(deq);
    free(w);
    free(x);
    free(yv);
    free(yc);
    free(y1);
    free(ev);
    free(ec);
}

#ifdef FITLM_HAVE_VULKAN
/* The tiled (prefill) matmul: nt >= 16 tokens on backend `be` (whose tiled
 * shader must run: checked by its dispatch counter) against the dequantized
 * weights in double (1e-6 of sum|w||x|, as the matrix-vector shader: the same
 * F32 products, only the summation order differs from the reference), and
 * bit-identical to the matrix-vector shader for each token: run in calls of
 * 1..7 tokens (below the tiled threshold), so a decode token gets the same
 * result alone as inside a prefill batch. Shapes that are not multiples of
 * the 32 x 32 tile nor of the 128-element step are included. If `same` is
 * given, the results must also equal it bit for bit (another backend). */
static float *check_tiled(fitlm_backend *be, int type, int64_t rows, int64_t cols, int64_t nt, const float *same) {
    const char *tn = fitlm_type_name(type);
    float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
    uint64_t nbytes;
    uint64_t seed = rng;
    uint8_t *w = make_weights(type, rows, cols, deq, &nbytes);
    float *x = malloc((size_t)(cols * nt) * sizeof *x);
    for (int64_t i = 0; i < cols * nt; i++) x[i] = 2.0f * frand();
    x[3] = 0.0f; /* exact zeros and tiny values among the activations */
    x[cols + 1] = 1e-30f;
    fitlm_tensor t = weight_tensor(type, rows, cols, w, nbytes);
    fitlm_error err;
    fitlm_btensor Wv, Xv, Yv, Y1v;
    CHECK(be->prepare_weight(be, &t, &Wv, &err) == 0, "vk prepare %s: %s", tn, err.msg);
    CHECK(be->alloc(be, FITLM_TYPE_F32, cols, nt, &Xv, &err) == 0, "alloc: %s", err.msg);
    CHECK(be->alloc(be, FITLM_TYPE_F32, rows, nt, &Yv, &err) == 0, "alloc: %s", err.msg);
    CHECK(be->alloc(be, FITLM_TYPE_F32, rows, nt, &Y1v, &err) == 0, "alloc: %s", err.msg);
    be->upload(be, &Xv, 0, nt, x);
    be->clear(be, &Yv);
    be->clear(be, &Y1v);
    uint64_t before = fitlm_backend_vulkan_tiled_dispatches(be);
    be->matmul(be, &Wv, &Xv, nt, &Yv);
    CHECK(fitlm_backend_vulkan_tiled_dispatches(be) > before, "matmul %s of %lld tokens did not use the tiled shader",
          tn, (long long)nt);
    float *yv = malloc((size_t)(rows * nt) * sizeof *yv), *y1 = malloc((size_t)(rows * nt) * sizeof *y1);
    get(be, &Yv, nt, yv);
    double worst = 0;
    for (int64_t t0 = 0; t0 < nt; t0++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, scale = 1e-30;
            for (int64_t c = 0; c < cols; c++) {
                ref += (double)deq[r * cols + c] * x[t0 * cols + c];
                scale += fabs((double)deq[r * cols + c] * x[t0 * cols + c]);
            }
            worst = fmax(worst, fabs(yv[t0 * rows + r] - ref) / scale);
        }
    CHECK(worst <= 1e-6, "tiled matmul %s %lldx%lld, %lld tokens vs dequantized reference: %g", tn, (long long)rows,
          (long long)cols, (long long)nt, worst);
    /* the matrix-vector shader, in calls of 1, 2, ..., 7 tokens */
    before = fitlm_backend_vulkan_tiled_dispatches(be);
    for (int64_t t0 = 0, k = 1; t0 < nt; t0 += k, k = k % 7 + 1) {
        int64_t n = nt - t0 < k ? nt - t0 : k;
        fitlm_btensor xs = fitlm_btensor_rows(&Xv, t0, n), ys = fitlm_btensor_rows(&Y1v, t0, n);
        be->matmul(be, &Wv, &xs, n, &ys);
    }
    get(be, &Y1v, nt, y1);
    CHECK(fitlm_backend_vulkan_tiled_dispatches(be) == before, "calls of < 8 tokens used the tiled shader");
    int64_t diff = 0;
    for (int64_t i = 0; i < rows * nt; i++) diff += memcmp(&yv[i], &y1[i], sizeof *yv) != 0;
    CHECK(diff == 0, "tiled matmul %s %lldx%lld: %lld of %lld values differ from the matrix-vector shader's", tn,
          (long long)rows, (long long)cols, (long long)diff, (long long)(rows * nt));
    if (same) CHECK(!memcmp(same, yv, (size_t)(rows * nt) * sizeof *yv), "tiled matmul %s: differs between backends", tn);
    printf("tiled matmul %-5s %3lldx%-4lld %3lld tokens: vs dequantized %.2g, bit-identical to the mat-vec shader\n",
           tn, (long long)rows, (long long)cols, (long long)nt, worst);
    fitlm_btensor *rel[] = {&Wv, &Xv, &Yv, &Y1v};
    for (int i = 0; i < 4; i++) be->release(be, rel[i]);
    free(deq);
    free(w);
    free(x);
    free(y1);
    (void)seed;
    return yv; /* caller frees */
}

/* Matrices larger than one storage binding (FITLM_VULKAN_MAX_RANGE plays a
 * 64 KiB limit): matmul bound in row ranges, by both shaders, gives the same
 * bits as on the unsplit backend; embed reads rows exactly. */
static void test_split_range(void) {
    setenv("FITLM_VULKAN_MAX_RANGE", "64K", 1);
    fitlm_error err = {{0}};
    fitlm_backend *sp = fitlm_backend_new("vulkan", 1, &err);
    unsetenv("FITLM_VULKAN_MAX_RANGE");
    CHECK(sp != NULL, "vulkan with FITLM_VULKAN_MAX_RANGE=64K: %s", err.msg);
    if (!sp) return;
    static const int types[] = {FITLM_TYPE_Q8_0, FITLM_TYPE_Q4_K, FITLM_TYPE_F16};
    static const int64_t cols_of[] = {256, 512, 96};
    for (int i = 0; i < 3; i++) {
        /* 600 rows: 163 KiB, 169 KiB, 113 KiB, bound in 2-3 ranges */
        uint64_t seed = rng;
        float *a = check_tiled(sp, types[i], 600, cols_of[i], 20, NULL);
        rng = seed; /* the same weights and activations on the unsplit backend */
        float *b = check_tiled(vk, types[i], 600, cols_of[i], 20, a);
        free(a);
        free(b);
        /* embed through row-by-row bindings */
        float *deq = malloc((size_t)(600 * cols_of[i]) * sizeof *deq);
        uint64_t nbytes;
        uint8_t *w = make_weights(types[i], 600, cols_of[i], deq, &nbytes);
        fitlm_tensor t = weight_tensor(types[i], 600, cols_of[i], w, nbytes);
        fitlm_btensor Wv, Ev;
        CHECK(sp->prepare_weight(sp, &t, &Wv, &err) == 0, "prepare: %s", err.msg);
        CHECK(sp->alloc(sp, FITLM_TYPE_F32, cols_of[i], 3, &Ev, &err) == 0, "alloc: %s", err.msg);
        int32_t ids[3] = {599, 0, 301};
        sp->embed(sp, &Wv, ids, 3, &Ev);
        float *ev = malloc((size_t)(3 * cols_of[i]) * sizeof *ev);
        get(sp, &Ev, 3, ev);
        int bad = 0;
        for (int k = 0; k < 3; k++)
            for (int64_t c = 0; c < cols_of[i]; c++) bad += ev[k * cols_of[i] + c] != deq[ids[k] * cols_of[i] + c];
        CHECK(bad == 0, "embed %s split by the binding range: %d values differ", fitlm_type_name(types[i]), bad);
        sp->release(sp, &Wv);
        sp->release(sp, &Ev);
        free(deq);
        free(w);
        free(ev);
    }
    sp->free(sp);
}

/* The cooperative-matrix matmul (FITLM_VULKAN_COOPMAT=1, a device with
 * VK_NV_cooperative_matrix): against the dequantized weights in double. Its
 * inputs are rounded to F16 (relative error <= 2^-11 each, so a product's
 * <= 2^-10) and summed in F32: tolerance 1.5e-3 * sum|w||x|. Calls of fewer
 * than 16 tokens keep the matrix-vector shader. */
static void check_coopmat(fitlm_backend *be, int type, int64_t rows, int64_t cols, int64_t nt) {
    const char *tn = fitlm_type_name(type);
    float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
    uint64_t nbytes;
    uint8_t *w = make_weights(type, rows, cols, deq, &nbytes);
    float *x = malloc((size_t)(cols * nt) * sizeof *x);
    for (int64_t i = 0; i < cols * nt; i++) x[i] = 2.0f * frand();
    fitlm_tensor t = weight_tensor(type, rows, cols, w, nbytes);
    fitlm_error err;
    fitlm_btensor Wv, Xv, Yv;
    CHECK(be->prepare_weight(be, &t, &Wv, &err) == 0, "vk prepare %s: %s", tn, err.msg);
    CHECK(be->alloc(be, FITLM_TYPE_F32, cols, nt, &Xv, &err) == 0, "alloc: %s", err.msg);
    CHECK(be->alloc(be, FITLM_TYPE_F32, rows, nt, &Yv, &err) == 0, "alloc: %s", err.msg);
    be->upload(be, &Xv, 0, nt, x);
    be->clear(be, &Yv);
    uint64_t before = fitlm_backend_vulkan_coopmat_dispatches(be);
    be->matmul(be, &Wv, &Xv, nt, &Yv);
    CHECK(fitlm_backend_vulkan_coopmat_dispatches(be) > before, "matmul %s of %lld tokens did not use coopmat", tn,
          (long long)nt);
    float *yv = malloc((size_t)(rows * nt) * sizeof *yv);
    get(be, &Yv, nt, yv);
    double worst = 0;
    for (int64_t t0 = 0; t0 < nt; t0++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, scale = 1e-30;
            for (int64_t c = 0; c < cols; c++) {
                ref += (double)deq[r * cols + c] * x[t0 * cols + c];
                scale += fabs((double)deq[r * cols + c] * x[t0 * cols + c]);
            }
            worst = fmax(worst, fabs(yv[t0 * rows + r] - ref) / scale);
        }
    CHECK(worst <= 1.5e-3, "coopmat matmul %s %lldx%lld, %lld tokens vs dequantized reference: %g", tn,
          (long long)rows, (long long)cols, (long long)nt, worst);
    before = fitlm_backend_vulkan_coopmat_dispatches(be);
    fitlm_btensor xs = fitlm_btensor_rows(&Xv, 0, 15), ys = fitlm_btensor_rows(&Yv, 0, 15);
    be->matmul(be, &Wv, &xs, 15, &ys);
    CHECK(be->sync(be, &err) == 0, "sync: %s", err.msg);
    CHECK(fitlm_backend_vulkan_coopmat_dispatches(be) == before, "a call of 15 tokens used coopmat");
    printf("coopmat matmul %-5s %3lldx%-4lld %3lld tokens: vs dequantized %.2g\n", tn, (long long)rows,
           (long long)cols, (long long)nt, worst);
    fitlm_btensor *rel[] = {&Wv, &Xv, &Yv};
    for (int i = 0; i < 3; i++) be->release(be, rel[i]);
    free(deq);
    free(w);
    free(x);
    free(yv);
}

static void coopmat_shapes(fitlm_backend *be, const int *types, int n_types) {
    for (int i = 0; i < n_types; i++) {
        check_coopmat(be, types[i], 70, 256, 45);
        check_coopmat(be, types[i], 33, 512, 16);
        check_coopmat(be, types[i], 130, 768, 200);
    }
    check_coopmat(be, FITLM_TYPE_F32, 37, 67, 40);
    check_coopmat(be, FITLM_TYPE_F16, 9, 1000, 100);
    check_coopmat(be, FITLM_TYPE_BF16, 130, 33, 64);
}

/* FITLM_VULKAN_COOPMAT=1: the cooperative-matrix path only where the device
 * has what it needs (VK_NV_cooperative_matrix...). Elsewhere (lavapipe)
 * nothing changes: the tiled shader runs and gives the default backend's
 * bits. Where it is used (an NVIDIA GPU: bench/gpu.sh runs this test), every
 * weight type on shapes off its 64 x 64 tile and 64-element step. Not 0 or 1:
 * an error. */
static void test_coopmat(const int *types, int n_types) {
    setenv("FITLM_VULKAN_COOPMAT", "1", 1);
    fitlm_error err = {{0}};
    fitlm_backend *be = fitlm_backend_new("vulkan", 1, &err);
    unsetenv("FITLM_VULKAN_COOPMAT");
    CHECK(be != NULL, "vulkan with FITLM_VULKAN_COOPMAT=1: %s", err.msg);
    if (!be) return;
    bool asked = false;
    const char *why = NULL;
    bool on = fitlm_backend_vulkan_coopmat(be, &asked, &why);
    CHECK(asked && why && *why, "FITLM_VULKAN_COOPMAT=1 is seen, with a reason");
    bool dflt_asked = true;
    CHECK(!fitlm_backend_vulkan_coopmat(vk, &dflt_asked, NULL) && !dflt_asked, "off unless asked for");
    printf("cooperative-matrix prefill on %s: %s (%s)\n", fitlm_backend_vulkan_device_name(be),
           on ? "used" : "not used", why ? why : "");
    if (!on) {
        uint64_t seed = rng;
        float *a = check_tiled(be, FITLM_TYPE_Q4_K, 70, 256, 45, NULL);
        rng = seed;
        float *b = check_tiled(vk, FITLM_TYPE_Q4_K, 70, 256, 45, a);
        free(a);
        free(b);
        CHECK(fitlm_backend_vulkan_coopmat_dispatches(be) == 0, "coopmat dispatches where it is not used");
    } else {
        coopmat_shapes(be, types, n_types);
    }
    be->free(be);
    /* the test hook FITLM_VULKAN_COOPMAT=emulate: the same shader with the NV
     * intrinsics replaced by scalar code of their addressing, so its decoding,
     * tiles, padding and stores are checked on any device with shaderFloat16 */
    setenv("FITLM_VULKAN_COOPMAT", "emulate", 1);
    err.msg[0] = 0;
    be = fitlm_backend_new("vulkan", 1, &err);
    unsetenv("FITLM_VULKAN_COOPMAT");
    if (!be && strstr(err.msg, "shaderFloat16")) {
        printf("coopmat emulation: not on this device (%s)\n", err.msg);
    } else {
        CHECK(be != NULL, "vulkan with FITLM_VULKAN_COOPMAT=emulate: %s", err.msg);
        if (!be) return;
        on = fitlm_backend_vulkan_coopmat(be, &asked, &why);
        CHECK(on && why && strstr(why, "emulated"), "emulate: on %d (%s)", on, why ? why : "");
        printf("coopmat emulated by scalar code:\n");
        coopmat_shapes(be, types, n_types);
        be->free(be);
    }
    static const char *bad[] = {"2", "yes", "on"};
    for (int i = 0; i < 3; i++) {
        setenv("FITLM_VULKAN_COOPMAT", bad[i], 1);
        err.msg[0] = 0;
        fitlm_backend *nb = fitlm_backend_new("vulkan", 1, &err);
        CHECK(nb == NULL && strstr(err.msg, "FITLM_VULKAN_COOPMAT"), "FITLM_VULKAN_COOPMAT=%s: %s", bad[i], err.msg);
        if (nb) nb->free(nb);
    }
    unsetenv("FITLM_VULKAN_COOPMAT");
}
#endif

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_elementwise(void) {
    enum { N = 67, T = 5 };
    float x[N * T], w[N], g[N * T], u[N * T], outv[N * T], outc[N * T];
    for (int i = 0; i < N * T; i++) {
        x[i] = 3 * frand();
        g[i] = 6 * frand();
        u[i] = frand();
    }
    for (int i = 0; i < N; i++) w[i] = frand();
    g[3] = 95.0f;
    g[4] = -95.0f;
    fitlm_btensor xv, xc, wv, wc, yv, yc, gv, gc, uv, uc;
    pair_f32(N, T, x, &xv, &xc);
    pair_f32(N, 1, w, &wv, &wc);
    pair_f32(N, T, NULL, &yv, &yc);
    pair_f32(N, T, g, &gv, &gc);
    pair_f32(N, T, u, &uv, &uc);
    /* rmsnorm into y, then in place */
    vk->rmsnorm(vk, &xv, &wv, 1e-5f, T, &yv);
    cpu->rmsnorm(cpu, &xc, &wc, 1e-5f, T, &yc);
    get(vk, &yv, T, outv);
    get(cpu, &yc, T, outc);
    CHECK(max_diff(outv, outc, N * T) <= 1e-5 * max_abs(outc, N * T), "rmsnorm: %g", max_diff(outv, outc, N * T));
    vk->rmsnorm(vk, &yv, &wv, 1e-5f, T, &yv);
    cpu->rmsnorm(cpu, &yc, &wc, 1e-5f, T, &yc);
    get(vk, &yv, T, outv);
    get(cpu, &yc, T, outc);
    CHECK(max_diff(outv, outc, N * T) <= 1e-5 * max_abs(outc, N * T), "rmsnorm in place: %g",
          max_diff(outv, outc, N * T));
    /* silu_mul into gate (aliased) */
    vk->silu_mul(vk, &gv, &uv, T, &gv);
    cpu->silu_mul(cpu, &gc, &uc, T, &gc);
    get(vk, &gv, T, outv);
    get(cpu, &gc, T, outc);
    CHECK(max_diff(outv, outc, N * T) <= 1e-5 * max_abs(outc, N * T), "silu_mul: %g", max_diff(outv, outc, N * T));
    /* add, add_bias */
    vk->add(vk, &xv, &uv, T);
    cpu->add(cpu, &xc, &uc, T);
    vk->add_bias(vk, &xv, &wv, T);
    cpu->add_bias(cpu, &xc, &wc, T);
    get(vk, &xv, T, outv);
    get(cpu, &xc, T, outc);
    CHECK(max_diff(outv, outc, N * T) == 0, "add + add_bias: %g", max_diff(outv, outc, N * T));
    /* get_rows */
    int32_t rows[3] = {4, 0, 2};
    vk->get_rows(vk, &xv, rows, 3, &yv);
    get(vk, &yv, 3, outv);
    CHECK(!memcmp(outv, outc + 4 * N, N * sizeof(float)) && !memcmp(outv + N, outc, N * sizeof(float)) &&
              !memcmp(outv + 2 * N, outc + 2 * N, N * sizeof(float)),
          "get_rows");
    /* rope, both layouts, far positions included */
    enum { H = 3, D = 64 };
    float q[T * H * D], inv_freq[D / 2];
    for (int i = 0; i < T * H * D; i++) q[i] = frand();
    for (int i = 0; i < D / 2; i++) inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / D);
    int32_t pos[T] = {0, 1, 17, 5000, 131071};
    for (int layout = 0; layout < 2; layout++) {
        fitlm_rope_table rt = {.layout = layout ? FITLM_ROPE_HALF : FITLM_ROPE_ADJACENT, .head_dim = D,
                               .inv_freq = inv_freq};
        fitlm_btensor qv, qc;
        pair_f32(H * D, T, q, &qv, &qc);
        vk->rope(vk, &qv, T, H, pos, &rt);
        cpu->rope(cpu, &qc, T, H, pos, &rt);
        float rv[T * H * D], rc[T * H * D];
        get(vk, &qv, T, rv);
        get(cpu, &qc, T, rc);
        CHECK(max_diff(rv, rc, T * H * D) <= 1e-5 * max_abs(rc, T * H * D), "rope layout %d: %g", layout,
              max_diff(rv, rc, T * H * D));
        vk->release(vk, &qv);
        cpu->release(cpu, &qc);
    }
    fitlm_btensor *rv_[] = {&xv, &wv, &yv, &gv, &uv}, *rc_[] = {&xc, &wc, &yc, &gc, &uc};
    for (int i = 0; i < 5; i++) {
        vk->release(vk, rv_[i]);
        cpu->release(cpu, rc_[i]);
    }
}

/* Raw bytes of a device tensor (through an F32 view of its rows). */
static void raw_bytes(fitlm_backend *be, const fitlm_btensor *t, void *out) {
    fitlm_btensor v = *t;
    v.type = FITLM_TYPE_F32;
    v.ne0 = (int64_t)(t->nbytes / (uint64_t)t->ne1 / 4);
    get(be, &v, t->ne1, out);
}

/* KV caches filled by kv_store on both backends, compared, then attention. */
static void test_attention(int kv_type, int D, uint32_t window) {
    const char *tn = fitlm_type_name(kv_type);
    enum { H = 4, KVH = 2, BS = 16, NB = 24 };
    int64_t kvd = (int64_t)KVH * D, slots = (int64_t)BS * NB;
    fitlm_error err;
    CHECK(vk->reserve(vk, 64, BS * NB, H, KVH, (uint32_t)D, &err) == 0, "vk reserve: %s", err.msg);
    CHECK(cpu->reserve(cpu, 64, BS * NB, H, KVH, (uint32_t)D, &err) == 0, "cpu reserve: %s", err.msg);
    fitlm_btensor kv_v[2], kv_c[2];
    for (int i = 0; i < 2; i++) {
        CHECK(vk->alloc(vk, kv_type, kvd, slots, &kv_v[i], &err) == 0, "vk cache: %s", err.msg);
        CHECK(cpu->alloc(cpu, kv_type, kvd, slots, &kv_c[i], &err) == 0, "cpu cache: %s", err.msg);
        vk->clear(vk, &kv_v[i]);
        cpu->clear(cpu, &kv_c[i]);
    }
    /* two sequences: 0 of 150 positions, 1 of 40, in shuffled blocks */
    int32_t tab0[10] = {5, 2, 9, 11, 0, 7, 13, 20, 17, 3}, tab1[3] = {1, 23, 4};
    const int32_t *tables[2] = {tab0, tab1};
    int32_t lens[2] = {150, 40};
    fitlm_attn_batch meta = {.block_table = tables, .block_shift = 4};
    /* store every position: in chunks of up to 64 tokens */
    for (int s = 0; s < 2; s++)
        for (int p0 = 0; p0 < lens[s]; p0 += 64) {
            int n = lens[s] - p0 < 64 ? lens[s] - p0 : 64;
            float *kx = malloc((size_t)(n * kvd) * sizeof *kx), *vx = malloc((size_t)(n * kvd) * sizeof *vx);
            int64_t sl[64];
            for (int i = 0; i < n * kvd; i++) {
                kx[i] = frand();
                vx[i] = frand();
            }
            for (int i = 0; i < n; i++) sl[i] = fitlm_attn_slot(&meta, s, p0 + i);
            fitlm_btensor kv, kc, vv, vc;
            pair_f32(kvd, n, kx, &kv, &kc);
            pair_f32(kvd, n, vx, &vv, &vc);
            vk->kv_store(vk, &kv_v[0], sl, &kv, n);
            vk->kv_store(vk, &kv_v[1], sl, &vv, n);
            cpu->kv_store(cpu, &kv_c[0], sl, &kc, n);
            cpu->kv_store(cpu, &kv_c[1], sl, &vc, n);
            CHECK(vk->sync(vk, &err) == 0, "vk sync: %s", err.msg);
            vk->release(vk, &kv);
            vk->release(vk, &vv);
            cpu->release(cpu, &kc);
            cpu->release(cpu, &vc);
            free(kx);
            free(vx);
        }
    /* the stored caches, element by element */
    uint8_t *bv = malloc(kv_v[0].nbytes), *bc = malloc(kv_c[0].nbytes);
    for (int i = 0; i < 2; i++) {
        raw_bytes(vk, &kv_v[i], bv);
        memcpy(bc, kv_c[i].data, kv_c[i].nbytes);
        int64_t bad = 0;
        bool ok = true;
        uint64_t rb = fitlm_type_row_bytes(kv_type, (uint64_t)kvd, &ok);
        float *rv = malloc((size_t)kvd * sizeof *rv), *rc = malloc((size_t)kvd * sizeof *rc);
        for (int64_t s = 0; s < slots; s++) {
            fitlm_dequantize_row(kv_type, bv + s * rb, rv, kvd);
            fitlm_dequantize_row(kv_type, bc + s * rb, rc, kvd);
            for (int64_t e = 0; e < kvd; e++) {
                /* one rounding step of the type at this magnitude */
                double step = kv_type == FITLM_TYPE_F32 ? 0 : kv_type == FITLM_TYPE_F16 ? fabs(rc[e]) / 1024 + 1e-7
                                                                                         : 1.0 / 127 + 1e-6;
                if (fabs((double)rv[e] - rc[e]) > step * 1.0001) bad++;
            }
        }
        CHECK(bad == 0, "kv_store %s: %lld values beyond one rounding step", tn, (long long)bad);
        free(rv);
        free(rc);
    }
    free(bv);
    free(bc);
    /* queries: 6 tokens of seq 0 (incl. positions 0, 63, 64, 149) and 3 of seq 1 */
    enum { NT = 9 };
    int32_t pos[NT] = {0, 63, 64, 100, 148, 149, 0, 20, 39};
    int32_t seq[NT] = {0, 0, 0, 0, 0, 0, 1, 1, 1};
    float *q = malloc((size_t)(NT * H * D) * sizeof *q);
    for (int i = 0; i < NT * H * D; i++) q[i] = 2 * frand();
    fitlm_btensor qv, qc, ov, oc, o1v, o1c;
    pair_f32(H * D, NT, q, &qv, &qc);
    pair_f32(H * D, NT, NULL, &ov, &oc);
    pair_f32(H * D, 1, NULL, &o1v, &o1c);
    fitlm_attn_batch ab = {.n_tokens = NT, .pos = pos, .seq = seq, .block_table = tables, .block_shift = 4};
    vk->attention(vk, &qv, &kv_v[0], &kv_v[1], &ab, H, KVH, D, window, &ov);
    cpu->attention(cpu, &qc, &kv_c[0], &kv_c[1], &ab, H, KVH, D, window, &oc);
    float *outv = malloc((size_t)(NT * H * D) * sizeof *outv), *outc = malloc((size_t)(NT * H * D) * sizeof *outc);
    get(vk, &ov, NT, outv);
    get(cpu, &oc, NT, outc);
    double tol = kv_type == FITLM_TYPE_F32 ? 1e-5 : 1e-3;
    printf("attention %-4s D=%3d window %2u: max |vulkan - cpu| %.2g\n", tn, D, window,
           max_diff(outv, outc, NT * H * D));
    CHECK(max_diff(outv, outc, NT * H * D) <= tol, "attention %s D=%d window %u: %g", tn, D, window,
          max_diff(outv, outc, NT * H * D));
    /* token 4 alone: bit-identical */
    fitlm_btensor q4 = fitlm_btensor_rows(&qv, 4, 1);
    fitlm_attn_batch ab1 = {.n_tokens = 1, .pos = pos + 4, .seq = seq + 4, .block_table = tables, .block_shift = 4};
    vk->attention(vk, &q4, &kv_v[0], &kv_v[1], &ab1, H, KVH, D, window, &o1v);
    float *one = malloc((size_t)(H * D) * sizeof *one);
    get(vk, &o1v, 1, one);
    CHECK(!memcmp(one, outv + 4 * H * D, (size_t)(H * D) * sizeof *one), "attention %s: a token alone differs", tn);
    /* copy_slots: slot 5*16+3 -> 6*16+1 on both, compared as raw bytes */
    int64_t from[2] = {5 * 16 + 3, 2 * 16}, to[2] = {6 * 16 + 1, 8 * 16 + 15};
    vk->copy_slots(vk, &kv_v[0], from, to, 2);
    cpu->copy_slots(cpu, &kv_c[0], from, to, 2);
    bv = malloc(kv_v[0].nbytes);
    raw_bytes(vk, &kv_v[0], bv);
    bool ok = true;
    uint64_t rb = fitlm_type_row_bytes(kv_type, (uint64_t)kvd, &ok);
    CHECK(!memcmp(bv + to[0] * rb, bv + from[0] * rb, rb) && !memcmp(bv + to[1] * rb, bv + from[1] * rb, rb),
          "copy_slots %s", tn);
    free(bv);
    for (int i = 0; i < 2; i++) {
        vk->release(vk, &kv_v[i]);
        cpu->release(cpu, &kv_c[i]);
    }
    fitlm_btensor *rv_[] = {&qv, &ov, &o1v}, *rc_[] = {&qc, &oc, &o1c};
    for (int i = 0; i < 3; i++) {
        vk->release(vk, rv_[i]);
        cpu->release(cpu, rc_[i]);
    }
    free(q);
    free(outv);
    free(outc);
    free(one);
}

static void test_errors(void) {
    fitlm_error err = {{0}};
    fitlm_backend *none = fitlm_backend_new("vulkan:99", 1, &err);
    CHECK(none == NULL && strstr(err.msg, "no Vulkan device 99"), "vulkan:99: %s", err.msg);
    if (none) none->free(none);
    err.msg[0] = 0;
    CHECK(fitlm_backend_new("vulkan:x", 1, &err) == NULL && strstr(err.msg, "unknown device"), "vulkan:x: %s", err.msg);
    /* far more than any device has: an error that says so, no crash */
    fitlm_btensor t;
    err.msg[0] = 0;
    CHECK(vk->alloc(vk, FITLM_TYPE_F32, 1 << 20, 1 << 20, &t, &err) == -1 &&
              (strstr(err.msg, "out of device memory") || strstr(err.msg, "larger than the device")),
          "huge alloc: %s", err.msg);
    CHECK(vk->sync(vk, &err) == 0, "the backend still works after a failed allocation: %s", err.msg);
}

/* A lost device (played by the FITLM_VK_FAULT test hook): the submission that
 * meets it and every later one fail with the message, allocations too, the
 * downloaded values are zeros rather than garbage, and freeing works. */
static void test_device_lost(void) {
    setenv("FITLM_VK_FAULT", "device_lost_after:1", 1);
    fitlm_error err = {{0}};
    fitlm_backend *be = fitlm_backend_new("vulkan", 1, &err);
    unsetenv("FITLM_VK_FAULT");
    CHECK(be != NULL, "vulkan with FITLM_VK_FAULT: %s", err.msg);
    if (!be) return;
    fitlm_btensor a;
    CHECK(be->alloc(be, FITLM_TYPE_F32, 64, 4, &a, &err) == 0, "alloc: %s", err.msg);
    float x[256], y[256];
    for (int i = 0; i < 256; i++) x[i] = (float)i + 1;
    for (int k = 0; k < 4; k++) {
        memset(y, 0x55, sizeof y);
        be->upload(be, &a, 0, 4, x);
        be->add(be, &a, &a, 4);
        be->download(be, &a, 0, 4, y); /* one submission each (upload, add and download) */
        err.msg[0] = 0;
        int rc = be->sync(be, &err);
        if (k == 0) {
            CHECK(rc == 0 && y[5] == 12.0f, "before the fault: rc %d, %g (%s)", rc, y[5], err.msg);
        } else {
            CHECK(rc == -1 && strstr(err.msg, "was lost") && strstr(err.msg, "VK_ERROR_DEVICE_LOST"),
                  "submission %d after the fault: rc %d '%s'", k, rc, err.msg);
            int nz = 0;
            for (int i = 0; i < 256; i++) nz += y[i] != 0.0f;
            CHECK(nz == 0, "a download from a lost device gives zeros (%d values are not)", nz);
        }
    }
    fitlm_btensor b;
    err.msg[0] = 0;
    CHECK(be->alloc(be, FITLM_TYPE_F32, 64, 4, &b, &err) == -1 && strstr(err.msg, "was lost"),
          "alloc on a lost device: %s", err.msg);
    be->release(be, &a);
    be->free(be);
    /* a malformed hook is an error, not ignored */
    static const char *bad[] = {"device_lost_after:", "device_lost_after:-1", "device_lost_after:3x", "lost"};
    for (int i = 0; i < 4; i++) {
        setenv("FITLM_VK_FAULT", bad[i], 1);
        err.msg[0] = 0;
        fitlm_backend *nb = fitlm_backend_new("vulkan", 1, &err);
        CHECK(nb == NULL && strstr(err.msg, "FITLM_VK_FAULT"), "FITLM_VK_FAULT=%s: %s", bad[i], err.msg);
        if (nb) nb->free(nb);
    }
    unsetenv("FITLM_VK_FAULT");
}

int main(void) {
    fitlm_error err = {{0}};
    vk = fitlm_backend_new("vulkan", 1, &err);
    if (!vk) {
        if (strstr(err.msg, "unknown device")) {
            printf("SKIP: this build has no Vulkan backend\n");
            return 77;
        }
        if (getenv("FITLM_REQUIRE_VULKAN")) {
            fprintf(stderr, "FITLM_REQUIRE_VULKAN is set but: %s\n", err.msg);
            return 1;
        }
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    cpu = fitlm_backend_cpu_new(1, &err);
    if (!cpu) return fprintf(stderr, "cpu backend: %s\n", err.msg), 1;
    static const int types[] = {FITLM_TYPE_F32,  FITLM_TYPE_F16,  FITLM_TYPE_BF16, FITLM_TYPE_Q8_0,
                                FITLM_TYPE_Q4_0, FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K, FITLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        test_matmul_embed(types[i], 37, 256);
        test_matmul_embed(types[i], 5, 512);
    }
    test_matmul_embed(FITLM_TYPE_F32, 9, 67);
    test_matmul_embed(FITLM_TYPE_F16, 9, 67);
#ifdef FITLM_HAVE_VULKAN
    /* the tiled prefill matmul: every type, shapes off the 32 x 32 tile */
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        free(check_tiled(vk, types[i], 70, 256, 45, NULL));
        free(check_tiled(vk, types[i], 33, 512, 16, NULL));
    }
    free(check_tiled(vk, FITLM_TYPE_F32, 37, 67, 40, NULL));
    free(check_tiled(vk, FITLM_TYPE_F16, 9, 1000, 100, NULL));
    free(check_tiled(vk, FITLM_TYPE_BF16, 130, 33, 64, NULL));
    test_split_range();
    test_coopmat(types, (int)(sizeof types / sizeof types[0]));
#endif
    test_elementwise();
    static const int kv_types[] = {FITLM_TYPE_F32, FITLM_TYPE_F16, FITLM_TYPE_Q8_0};
    for (int i = 0; i < 3; i++) {
        test_attention(kv_types[i], 64, 0);
        test_attention(kv_types[i], 128, 0);
        test_attention(kv_types[i], 64, 37);
    }
    test_errors();
    test_device_lost();
    vk->free(vk);
    cpu->free(cpu);
    return check_report();
}
