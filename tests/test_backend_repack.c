/* The CPU backend's repacked weights, end to end through the backend
 * interface: prepare_weight of Q4_0 / Q8_0 / Q6_K matrices (copied, Q4_0 and
 * Q8_0 into their repacked layouts, Q8_0 rows too long for it as they are,
 * when AVX2 or AVX-512 is active), then matmul (1 token and
 * several, 1 and 3 threads) against fitlm_cpu_matmul_ref_qact (same quantized
 * activations, dequantized weights, double sums; bound 1e-5 * sum|w x|), embed
 * bit for bit against fitlm_cpu_get_row of the file data, shapes that cannot
 * be repacked keeping the file data, FITLM_CPU_REPACK=0 keeping it always, and
 * the source bytes unchanged. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kernels.h"
#include "check.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "util/fp16.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* F16 cases: FITLM_CPU_F16 for the backend (NULL: unset, "auto"), and whether
 * the weights are bfloat16 values (as in F16 files converted from bfloat16
 * checkpoints) */
static const char *f16_mode;
static int f16_bf16_values;

static void check_case(int type, int64_t rows, int64_t cols, int threads, int repack_env) {
    const char *tn = fitlm_type_name(type);
    bool ok;
    size_t rb = (size_t)fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
    size_t nbytes = rb * (size_t)rows;
    uint8_t *w = malloc(nbytes), *w_copy = malloc(nbytes);
    float *row = malloc(sizeof(float) * (size_t)cols), *row2 = malloc(sizeof(float) * (size_t)cols);
    enum { NT = 5 };
    float *x = malloc(sizeof(float) * (size_t)(cols * NT));
    double *yq = malloc(sizeof(double) * (size_t)(rows * NT)), *yabs = malloc(sizeof(double) * (size_t)(rows * NT));
    if (!w || !w_copy || !row || !row2 || !x || !yq || !yabs) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            row[c] = frand() * (1.0f + (float)(r % 5));
            if (f16_bf16_values) row[c] = fitlm_bf16_to_fp32(fitlm_fp32_to_bf16(row[c]));
        }
        CHECK(fitlm_quantize_row(type, row, w + (size_t)r * rb, cols, NULL) == (int64_t)rb, "quantize %s", tn);
    }
    memcpy(w_copy, w, nbytes);
    for (int64_t i = 0; i < cols * NT; i++) x[i] = 2.0f * frand();

    setenv("FITLM_CPU_REPACK", repack_env ? "1" : "0", 1);
    if (f16_mode) setenv("FITLM_CPU_F16", f16_mode, 1);
    else unsetenv("FITLM_CPU_F16");
    fitlm_error err;
    fitlm_backend *be = fitlm_backend_cpu_new(threads, &err);
    CHECK(be != NULL, "backend");
    if (!be) goto done;
    char name[] = "blk.0.ffn_up.weight";
    fitlm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.type = type;
    t.n_dims = 2;
    t.ne[0] = (uint64_t)cols;
    t.ne[1] = (uint64_t)rows;
    t.ne[2] = t.ne[3] = 1;
    t.n_elements = (uint64_t)(rows * cols);
    t.nbytes = nbytes;
    t.data = w;
    t.file_index = -1; /* caller-owned memory, not a model file: the backend must leave it alone */
    t.layer = 0;
    fitlm_btensor W, X, Y, E;
    CHECK(be->prepare_weight(be, &t, &W, &err) == 0, "prepare_weight %s", tn);
    /* F16 becomes BF16 (the bfloat16 kernel) only where no weight changes,
     * unless told; else it keeps F16 and its exact x16 kernel */
    int want_type = type;
    if (type == FITLM_TYPE_F16 && repack_env && fitlm_cpu_repackable(FITLM_TYPE_BF16, rows, cols) &&
        (f16_mode && !strcmp(f16_mode, "bf16") ? true
         : f16_mode && !strcmp(f16_mode, "exact") ? false
                                                  : f16_bf16_values))
        want_type = FITLM_TYPE_BF16;
    bool expect = repack_env && fitlm_cpu_repackable(want_type, rows, cols);
    CHECK(W.type == want_type, "%s %lldx%lld mode %s: runs as %s (expected %s)", tn, (long long)rows, (long long)cols,
          f16_mode ? f16_mode : "unset", fitlm_type_name(W.type), fitlm_type_name(want_type));
    CHECK(W.repacked == expect && W.owned == expect && (W.data != (void *)w) == expect,
          "%s %lldx%lld repack=%d: repacked %d (expected %d)", tn, (long long)rows, (long long)cols, repack_env,
          (int)W.repacked, (int)expect);
    CHECK(W.nbytes == nbytes && W.ne0 == cols && W.ne1 == rows, "%s btensor shape", tn);
    for (int nt = 1; nt <= NT; nt += NT - 1) {
        CHECK(be->alloc(be, FITLM_TYPE_F32, cols, nt, &X, &err) == 0 && be->alloc(be, FITLM_TYPE_F32, rows, nt, &Y, &err) == 0,
              "alloc");
        be->upload(be, &X, 0, nt, x);
        be->matmul(be, &W, &X, nt, &Y);
        fitlm_cpu_matmul_ref_qact(type, w_copy, rows, cols, x, nt, yq, yabs);
        /* the x16 float kernels: cols/4 (BF16) or cols/2 (F16) float additions
         * per accumulator (test_kernels.c explains the bound); an F16 matrix
         * run as BF16 against its bfloat16-rounded weights and activations */
        bool bf16_kernel = W.repacked && W.type == FITLM_TYPE_BF16;
        double rel = bf16_kernel                               ? (double)(cols / 4 + 1) * 0x1p-24
                     : W.repacked && W.type == FITLM_TYPE_F16 ? (double)(cols / 2 + 1) * 0x1p-24
                                                               : 1e-5;
        if (bf16_kernel)
            for (int64_t r = 0; r < rows; r++) {
                fitlm_cpu_get_row(type, w_copy, cols, r, row);
                for (int tk = 0; tk < nt; tk++) {
                    double acc = 0.0;
                    for (int64_t c = 0; c < cols; c++)
                        acc += (double)fitlm_bf16_to_fp32(fitlm_fp32_to_bf16(row[c])) *
                               (double)fitlm_bf16_to_fp32(fitlm_fp32_to_bf16(x[tk * cols + c]));
                    yq[tk * rows + r] = acc;
                }
            }
        int bad = 0;
        const float *y = Y.data;
        for (int64_t i = 0; i < rows * nt; i++)
            if (!(fabs((double)y[i] - yq[i]) <= rel * yabs[i] + 1e-30)) bad++;
        CHECK(bad == 0, "%s %lldx%lld threads=%d ntok=%d repack=%d: %d outputs off the oracle", tn, (long long)rows,
              (long long)cols, threads, nt, repack_env, bad);
        be->release(be, &X);
        be->release(be, &Y);
    }
    /* embed: rows of the (possibly repacked) matrix as floats */
    int32_t ids[4] = {0, (int32_t)(rows - 1), (int32_t)(rows / 2), 1};
    CHECK(be->alloc(be, FITLM_TYPE_F32, cols, 4, &E, &err) == 0, "alloc");
    be->embed(be, &W, ids, 4, &E);
    int badrow = 0;
    for (int k = 0; k < 4; k++) {
        fitlm_cpu_get_row(type, w_copy, cols, ids[k], row2);
        if (W.type != type) /* F16 run as BF16: the rounded values (the same ones where they were bfloat16 values) */
            for (int64_t c = 0; c < cols; c++) row2[c] = fitlm_bf16_to_fp32(fitlm_fp32_to_bf16(row2[c]));
        if (memcmp(row2, (const float *)E.data + (size_t)k * (size_t)cols, sizeof(float) * (size_t)cols) != 0) badrow++;
    }
    CHECK(badrow == 0, "%s embed: %d rows differ from get_row", tn, badrow);
    be->release(be, &E);
    be->release(be, &W);
    be->free(be);
    CHECK(memcmp(w, w_copy, nbytes) == 0, "%s: the source tensor is unchanged", tn);
done:
    free(w);
    free(w_copy);
    free(row);
    free(row2);
    free(x);
    free(yq);
    free(yabs);
}

int main(void) {
    static const int types[] = {FITLM_TYPE_Q4_0, FITLM_TYPE_Q8_0, FITLM_TYPE_Q6_K};
    static const int64_t shapes[][2] = {{16, 256}, {48, 2048}, {144, 512}, {7, 256}, {32, 384}, {16, 32}, {12, 128}, {4, 61696}};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            if (shapes[s][1] % (int64_t)fitlm_type_get(types[ti])->block_size) continue;
            for (int th = 1; th <= 3; th += 2)
                for (int env = 0; env < 2; env++) check_case(types[ti], shapes[s][0], shapes[s][1], th, env);
        }
    /* F16 and BF16 (the x16 bfloat16 kernel with AVX512_BF16): F16 weights
     * that are bfloat16 values take it by default, others only with
     * FITLM_CPU_F16=bf16, none with =exact */
    static const char *modes[] = {NULL, "auto", "bf16", "exact"};
    static const int64_t fshapes[][2] = {{16, 256}, {48, 2048}, {12, 128}, {16, 100},
                                          {1072, 2048}}; /* the last: more than one 4 MiB conversion slice */
    for (int bfv = 0; bfv < 2; bfv++)
        for (int m = 0; m < 4; m++)
            for (size_t sh = 0; sh < sizeof fshapes / sizeof fshapes[0]; sh++) {
                f16_mode = modes[m];
                f16_bf16_values = bfv;
                check_case(FITLM_TYPE_F16, fshapes[sh][0], fshapes[sh][1], 2, 1);
                if (m == 0) check_case(FITLM_TYPE_BF16, fshapes[sh][0], fshapes[sh][1], 2, 1);
            }
    f16_mode = NULL;
    f16_bf16_values = 0;
    /* the repacked layouts where AVX2 or AVX-512 is active (the copy-only Q8_0 shape
     * and refused row counts are checked by check_case's `expect`) */
    if (fitlm_cpu_isa_active() >= FITLM_ISA_AVX2) {
        CHECK(fitlm_cpu_repackable(FITLM_TYPE_Q8_0, 32, 384) && fitlm_cpu_repackable(FITLM_TYPE_Q8_0, 4, 61696) &&
                  !fitlm_cpu_repackable(FITLM_TYPE_Q8_0, 12, 256) && !fitlm_cpu_repackable(FITLM_TYPE_Q4_0, 12, 128),
              "Q8_0 repackable shapes");
    }
    printf("repacking active on this CPU: %s\n",
           fitlm_cpu_repackable(FITLM_TYPE_Q4_0, 16, 256) ? "yes (AVX2 or AVX-512)" : "no (file layout only)");
    return check_report();
}
