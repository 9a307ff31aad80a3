/* CPU kernels: fitlm_cpu_matmul under every ISA this CPU has, for every
 * supported weight type, against two oracles:
 *  1. fitlm_cpu_matmul_ref_qact: the same quantized activations, dequantized
 *     weights, sums in double. Only float rounding separates the two, so the
 *     bound is 1e-5 * sum|w x| (a few float ulps per block-sum term).
 *  2. fitlm_cpu_matmul_ref: exact float activations. The Q8 activation
 *     quantization moves each x by at most amax(block)/254, so the bound is
 *     sum_c |w_c| * amax(block of c) / 254 plus the float term above.
 * Weights are random raw blocks (every bit pattern of the quants, random
 * valid fp16 scales) and, for types with a quantizer, quantized random data.
 * Shapes: odd row counts, cols multiples of 256 (and 32-block counts that are
 * not a multiple of 4, float rows ending mid-vector), n_tokens 1/2/3/7/12/14/16
 * (every tile remainder of the 4- and 8-token kernels), all-positive
 * activations, thread counts 1/2/3 with the small-call threshold off; the
 * repacked Q4_0 and Q8_0 layouts (and Q4_K/Q5_K/Q6_K copies, Q8_0 copies for
 * rows too long for its layout) through the same checks. Plus
 * fp16/bf16 special values, SIMD vs scalar activation quantizers byte for
 * byte, fused matmuls (fitlm_cpu_matmul_multi) against separate calls, the
 * bandwidth probe, and the thread pool. */
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sys/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "sys/membw.h"
#include "backend/cpu/quant_blocks.h"
#include "sys/threadpool.h"
#include "check.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float rnd_unit(void) { /* [-1, 1) */
    return (float)((double)rnd_u32() / 2147483648.0 - 1.0);
}
/* roughly normal, with occasional outliers like real activations */
static float rnd_act(void) {
    float s = rnd_unit() + rnd_unit() + rnd_unit();
    if (rnd_u32() % 64 == 0) s *= 8.0f;
    return s;
}

typedef struct {
    int type;
    int half_offsets[2]; /* byte offsets of fp16 scale fields in a block (-1 = none) */
} type_case;

static const type_case k_types[] = {
    {FITLM_TYPE_F32, {-1, -1}},  {FITLM_TYPE_F16, {-1, -1}},  {FITLM_TYPE_BF16, {-1, -1}},
    {FITLM_TYPE_Q4_0, {0, -1}},  {FITLM_TYPE_Q4_1, {0, 2}},   {FITLM_TYPE_Q5_0, {0, -1}},
    {FITLM_TYPE_Q5_1, {0, 2}},   {FITLM_TYPE_Q8_0, {0, -1}},  {FITLM_TYPE_Q2_K, {80, 82}},
    {FITLM_TYPE_Q3_K, {108, -1}}, {FITLM_TYPE_Q4_K, {0, 2}},  {FITLM_TYPE_Q5_K, {0, 2}},
    {FITLM_TYPE_Q6_K, {208, -1}},
};

static void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* Random weights of `type`: float types from random values, block types as
 * random bytes with random positive/negative fp16 scales of moderate size. */
static int use_quantizer; /* 1: weights from fitlm_quantize_row of random floats */
static int positive_acts;  /* 1: activations all positive (worst case for offset corrections) */

static void *random_weights(const type_case *tc, int64_t rows, int64_t cols) {
    const fitlm_type_info *ti = fitlm_type_get(tc->type);
    bool ok;
    size_t rb = (size_t)fitlm_type_row_bytes(tc->type, (uint64_t)cols, &ok);
    uint8_t *w = malloc(rb * (size_t)rows);
    if (!w) return NULL;
    if (use_quantizer) {
        float *row = malloc(sizeof(float) * (size_t)cols);
        int done = row != NULL;
        for (int64_t r = 0; r < rows && done; r++) {
            for (int64_t c = 0; c < cols; c++) row[c] = rnd_act() * 0.05f;
            done = fitlm_quantize_row(tc->type, row, w + (size_t)r * rb, cols, NULL) == (int64_t)rb;
        }
        free(row);
        if (done) return w;
    }
    if (!ti->quantized) {
        for (int64_t i = 0; i < rows * cols; i++) {
            float v = rnd_unit() * 0.1f;
            if (tc->type == FITLM_TYPE_F32) memcpy(w + 4 * i, &v, 4);
            else put_half(w + 2 * i, tc->type == FITLM_TYPE_F16 ? fitlm_fp32_to_fp16(v) : fitlm_fp32_to_bf16(v));
        }
        return w;
    }
    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)rnd_u32();
    size_t nblk = rb * (size_t)rows / ti->block_bytes;
    for (size_t b = 0; b < nblk; b++) {
        for (int k = 0; k < 2; k++) {
            if (tc->half_offsets[k] < 0) continue;
            float s = (0.002f + 0.02f * (rnd_unit() + 1.0f)) * (k == 0 && rnd_u32() % 8 == 0 ? -1.0f : 1.0f);
            put_half(w + b * ti->block_bytes + tc->half_offsets[k], fitlm_fp32_to_fp16(s));
        }
    }
    return w;
}

/* bound for oracle 2: sum_c |w_c| * amax(activation block of c) / 254 (BF16:
 * sum_c |w_c x_c| / 256) */
static double act_quant_bound(int type, const float *wrow, const float *x, int64_t cols) {
    int qb = 0;
    switch (type) {
    case FITLM_TYPE_F32:
    case FITLM_TYPE_F16: return 0.0;
    case FITLM_TYPE_BF16: { /* activations rounded to bfloat16: at most 2^-8 relative each */
        double s = 0.0;
        for (int64_t c = 0; c < cols; c++) s += fabs(wrow[c]) * fabs(x[c]) / 256.0;
        return s;
    }
    case FITLM_TYPE_Q4_0:
    case FITLM_TYPE_Q4_1:
    case FITLM_TYPE_Q5_0:
    case FITLM_TYPE_Q5_1:
    case FITLM_TYPE_Q8_0: qb = 32; break;
    default: qb = 256; break;
    }
    double s = 0.0;
    for (int64_t c0 = 0; c0 < cols; c0 += qb) {
        double amax = 0.0;
        for (int k = 0; k < qb; k++) amax = fmax(amax, fabs(x[c0 + k]));
        for (int k = 0; k < qb; k++) s += fabs(wrow[c0 + k]) * amax / 254.0;
    }
    return s;
}

static int n_isas;
static int n_amx_checks;  /* AMX x16 cases compared with the AVX-512 kernel */
static int n_vnni_checks; /* AVX-VNNI x16 cases compared with the AVX2 kernel */
static fitlm_cpu_isa isas[3];
static fitlm_threadpool *pools[3]; /* 1, 2, 3 threads */

static void check_type_shape(const type_case *tc, int64_t rows, int64_t cols, int64_t ntok) {
    const char *tn = fitlm_type_name(tc->type);
    void *W = random_weights(tc, rows, cols);
    void *P = NULL; /* W repacked, where the layout applies */
    float *X = malloc(sizeof(float) * (size_t)(cols * ntok));
    float *Y = malloc(sizeof(float) * (size_t)(rows * ntok));
    float *Yref = malloc(sizeof(float) * (size_t)(rows * ntok));
    double *Yq = malloc(sizeof(double) * (size_t)(rows * ntok));
    double *Yabs = malloc(sizeof(double) * (size_t)(rows * ntok));
    double *bound2 = malloc(sizeof(double) * (size_t)(rows * ntok));
    float *wrow = malloc(sizeof(float) * (size_t)cols);
    if (!W || !X || !Y || !Yref || !Yq || !Yabs || !bound2 || !wrow) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < cols * ntok; i++) X[i] = positive_acts ? 2.0f + fabsf(rnd_act()) : rnd_act();
    fitlm_cpu_matmul_ref_qact(tc->type, W, rows, cols, X, ntok, Yq, Yabs);
    fitlm_cpu_matmul_ref(tc->type, W, rows, cols, X, ntok, Yref);
    for (int64_t r = 0; r < rows; r++) {
        CHECK(fitlm_cpu_get_row(tc->type, W, cols, r, wrow) == 0, "get_row %s", tn);
        for (int64_t t = 0; t < ntok; t++)
            bound2[t * rows + r] = act_quant_bound(tc->type, wrow, X + t * cols, cols) * 1.0001;
    }
    /* the repacked layout (with AVX2 or AVX-512: Q4_0, Q8_0 and the K types where rows % 16 == 0
     * and a row fits the 64 KiB unpack buffer; Q8_0 rows longer than that,
     * keep their layout; the K types likewise with 256-column blocks):
     * exact round trip, get_row bit for
     * bit, and its matmul (the repacked kernel for any token count, or
     * unpacked rows for lower ISAs) against the same oracles as the plain
     * layout */
    fitlm_cpu_isa_set(isas[n_isas - 1]);
    /* F16 / BF16: an x16 layout of 32-column groups (64 bytes a row) with
     * AVX-512 (BF16: with AVX512_BF16 too); never a copy */
    bool x16_float = (tc->type == FITLM_TYPE_F16 || tc->type == FITLM_TYPE_BF16) &&
                     isas[n_isas - 1] >= FITLM_ISA_AVX512 &&
                     (tc->type == FITLM_TYPE_F16 || fitlm_cpu_has_avx512bf16());
    /* Q4_1 / Q5_0 / Q5_1: an x16 layout with an AVX-512 kernel only (rows too
     * long for it: a copy under AVX2 and AVX-512 alike) */
    bool legacy = tc->type == FITLM_TYPE_Q4_1 || tc->type == FITLM_TYPE_Q5_0 || tc->type == FITLM_TYPE_Q5_1;
    bool x16_type = tc->type == FITLM_TYPE_Q4_0 || tc->type == FITLM_TYPE_Q8_0 || tc->type == FITLM_TYPE_Q4_K ||
                    tc->type == FITLM_TYPE_Q5_K || tc->type == FITLM_TYPE_Q6_K || tc->type == FITLM_TYPE_Q3_K ||
                    tc->type == FITLM_TYPE_Q2_K || x16_float || legacy;
    int64_t x16_bsz = tc->type == FITLM_TYPE_Q4_0 || tc->type == FITLM_TYPE_Q8_0 || x16_float || legacy ? 32 : 256;
    size_t x16_block = x16_float ? 64 : (size_t)fitlm_type_get(tc->type)->block_bytes;
    bool x16_cols = x16_type && cols % x16_bsz == 0 && (size_t)(cols / x16_bsz) * x16_block <= (64u << 10);
    bool x16 = x16_cols && rows % 16 == 0; /* the layout changes */
    bool copy_only = tc->type != FITLM_TYPE_Q4_0 && !x16_float && x16_type && !x16_cols;
    bool packable = (x16 || copy_only) && isas[n_isas - 1] >= FITLM_ISA_AVX2;
    if (legacy && x16 && isas[n_isas - 1] < FITLM_ISA_AVX512) packable = false;
    CHECK(fitlm_cpu_repackable(tc->type, rows, cols) == packable, "%s rows=%lld cols=%lld repackable", tn,
          (long long)rows, (long long)cols);
    if (packable) {
        bool ok;
        size_t wbytes = (size_t)fitlm_type_row_bytes(tc->type, (uint64_t)cols, &ok) * (size_t)rows;
        P = malloc(wbytes);
        void *back = malloc(wbytes);
        float *wrow2 = malloc(sizeof(float) * (size_t)cols);
        if (P && back && wrow2) {
            CHECK(fitlm_cpu_repack(pools[2], tc->type, W, rows, cols, P) == 0, "repack");
            /* Q4_0 and Q8_0 change the layout; the others keep it (a copy into huge pages) */
            CHECK((memcmp(P, W, wbytes) != 0) == x16, "%s rows=%lld cols=%lld repacked layout", tn, (long long)rows,
                  (long long)cols);
            if (x16 && rows >= 32) { /* unpacking a slice of rows across two groups alone */
                size_t rb = wbytes / (size_t)rows;
                fitlm_cpu_unpack_rows(tc->type, P, cols, 13, 7, back);
                CHECK(memcmp(back, (const uint8_t *)W + 13 * rb, 7 * rb) == 0, "%s unpack rows 13..19", tn);
            }
            fitlm_cpu_unpack_rows(tc->type, P, cols, 0, rows, back);
            CHECK(memcmp(back, W, wbytes) == 0, "%s rows=%lld cols=%lld: unpack(repack(W)) == W", tn, (long long)rows,
                  (long long)cols);
            int badrow = 0;
            for (int64_t r = 0; r < rows; r++) {
                fitlm_cpu_get_row(tc->type, W, cols, r, wrow);
                if (fitlm_cpu_get_row_repacked(tc->type, P, cols, r, wrow2) != 0 ||
                    memcmp(wrow, wrow2, sizeof(float) * (size_t)cols) != 0)
                    badrow++;
            }
            CHECK(badrow == 0, "%s: %d repacked rows differ from get_row", tn, badrow);
        } else {
            CHECK(0, "out of memory");
            free(P);
            P = NULL;
        }
        free(back);
        free(wrow2);
    } else if (x16_type) {
        CHECK(fitlm_cpu_repack(NULL, tc->type, W, rows, cols, Y) == -1, "repack refuses rows=%lld cols=%lld",
              (long long)rows, (long long)cols);
    }
    /* The x16 F16 / BF16 kernels add cols/2 (F16: float32 fmas of pairs) or
     * cols/4 (BF16: vdpbf16ps pair sums) terms one after another in each
     * accumulator lane, so they may stray from the oracle's double sum (the
     * same operands: exact F16 weights and float activations; BF16 weights
     * and bfloat16 activations) by up to that many float roundings of
     * sum|w x|, 2^-24 each (1e-5 covers only ~170 terms). */
    for (int ii = 0; ii < n_isas; ii++)
    for (int layout = 0; layout < (P ? 2 : 1); layout++) {
        fitlm_cpu_isa_set(isas[ii]);
        CHECK(fitlm_cpu_isa_active() == isas[ii], "isa set");
        /* the x16 float kernels run (lower ISAs unpack rows for the plain kernels) */
        bool float_x16 = layout == 1 && x16_float && isas[ii] >= FITLM_ISA_AVX512;
        double terms = tc->type == FITLM_TYPE_F16 ? (double)(cols / 2 + 1) : (double)(cols / 4 + 1);
        /* BF16 on AMX: each sum runs through all cols products in turn */
        if (float_x16 && tc->type == FITLM_TYPE_BF16 && fitlm_cpu_amx_active(tc->type)) terms = (double)(cols + 1);
        for (int p = 0; p < 3; p++) {
            for (int64_t i = 0; i < rows * ntok; i++) Y[i] = NAN;
            if (layout == 0) fitlm_cpu_matmul(pools[p], tc->type, W, rows, cols, X, ntok, Y);
            else fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X, ntok, Y);
            int bad1 = 0, bad2 = 0;
            double worst1 = 0.0, worst2 = 0.0;
            for (int64_t i = 0; i < rows * ntok; i++) {
                double tol1 = (float_x16 ? terms * 0x1p-24 : 1e-5) * Yabs[i] + 1e-30;
                double e1 = fabs((double)Y[i] - Yq[i]);
                if (!(e1 <= tol1)) bad1++;
                if (e1 / tol1 > worst1) worst1 = e1 / tol1;
                double tol2 = bound2[i] + tol1 + 1e-5 * Yabs[i] + 1e-30;
                double e2 = fabs((double)Y[i] - (double)Yref[i]);
                if (!(e2 <= tol2)) bad2++;
                if (e2 / tol2 > worst2) worst2 = e2 / tol2;
            }
            CHECK(bad1 == 0, "%s%s %s rows=%lld cols=%lld ntok=%lld threads=%d: %d outputs off the qact oracle (worst %.3g x tol)",
                  tn, layout ? " repacked" : "", fitlm_cpu_isa_name(isas[ii]), (long long)rows, (long long)cols, (long long)ntok, p + 1, bad1,
                  worst1);
            CHECK(bad2 == 0, "%s%s %s rows=%lld cols=%lld ntok=%lld threads=%d: %d outputs off the float oracle (worst %.3g x bound)",
                  tn, layout ? " repacked" : "", fitlm_cpu_isa_name(isas[ii]), (long long)rows, (long long)cols, (long long)ntok, p + 1, bad2,
                  worst2);
            /* the AVX-VNNI x16 kernels (Q4_0, Q8_0 under the AVX2 family):
             * the same code with vpdpbusd emulated in AVX2 where the CPU
             * lacks AVX-VNNI (and the real one where it has it) give the
             * maddubs kernel's bits (the integer sums are exact in both) */
            if (layout == 1 && isas[ii] == FITLM_ISA_AVX2 && (tc->type == FITLM_TYPE_Q4_0 || tc->type == FITLM_TYPE_Q8_0)) {
                float *Yv = malloc(sizeof(float) * (size_t)(rows * ntok));
                if (Yv) {
                    fitlm_cpu_set_avxvnni(FITLM_CPU_AVXVNNI_OFF);
                    fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X, ntok, Y);
                    for (int mode = 0; mode < 2; mode++) {
                        if (mode == 0 && !fitlm_cpu_has_avxvnni()) continue;
                        fitlm_cpu_set_avxvnni(mode == 0 ? FITLM_CPU_AVXVNNI_AUTO : FITLM_CPU_AVXVNNI_EMULATE);
                        CHECK(fitlm_cpu_avxvnni_active(tc->type), "avx-vnni kernel active");
                        for (int64_t i = 0; i < rows * ntok; i++) Yv[i] = NAN;
                        fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X, ntok, Yv);
                        CHECK(memcmp(Y, Yv, sizeof(float) * (size_t)(rows * ntok)) == 0,
                              "%s avx-vnni%s rows=%lld cols=%lld ntok=%lld threads=%d: not the avx2 kernel's bits", tn,
                              mode ? " (emulated)" : "", (long long)rows, (long long)cols, (long long)ntok, p + 1);
                    }
                    fitlm_cpu_set_avxvnni(FITLM_CPU_AVXVNNI_AUTO);
                    free(Yv);
                    n_vnni_checks++;
                }
            }
            /* the AMX x16 kernels (Q4_0, Q8_0 under the AVX-512 family, whole
             * tiles of 16 tokens) give the VNNI kernel's bits, so a token's
             * result does not depend on how many others share its call */
            /* BF16 on AMX (every token count): a token's row is the same
             * bits computed alone as among the others */
            if (layout == 1 && isas[ii] == FITLM_ISA_AVX512 && ntok > 1 && rows % 16 == 0 &&
                fitlm_amx_all_rows(tc->type) && fitlm_cpu_amx_active(tc->type)) {
                float *y1 = malloc(sizeof(float) * (size_t)rows);
                int differ = 0;
                for (int64_t t = 0; y1 && t < ntok; t++) {
                    fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X + t * cols, 1, y1);
                    differ += memcmp(y1, Y + t * rows, sizeof(float) * (size_t)rows) != 0;
                }
                CHECK(y1 && differ == 0, "%s amx rows=%lld cols=%lld ntok=%lld threads=%d: %d tokens differ alone", tn,
                      (long long)rows, (long long)cols, (long long)ntok, p + 1, differ);
                free(y1);
                n_amx_checks++;
            }
            if (layout == 1 && isas[ii] == FITLM_ISA_AVX512 && ntok >= 16 && fitlm_cpu_has_amx_int8() &&
                !fitlm_amx_all_rows(tc->type) && fitlm_dot_repacked_amx(tc->type) && rows % 16 == 0) {
                float *Ya = malloc(sizeof(float) * (size_t)(rows * ntok));
                if (Ya) {
                    fitlm_cpu_set_amx(FITLM_CPU_AMX_OFF);
                    CHECK(!fitlm_cpu_amx_active(tc->type), "amx off");
                    fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X, ntok, Y);
                    fitlm_cpu_set_amx(FITLM_CPU_AMX_AUTO);
                    CHECK(fitlm_cpu_amx_active(tc->type), "amx kernel active");
                    for (int64_t i = 0; i < rows * ntok; i++) Ya[i] = NAN;
                    fitlm_cpu_matmul_repacked(pools[p], tc->type, P, rows, cols, X, ntok, Ya);
                    CHECK(memcmp(Y, Ya, sizeof(float) * (size_t)(rows * ntok)) == 0,
                          "%s amx rows=%lld cols=%lld ntok=%lld threads=%d: not the avx512 kernel's bits", tn,
                          (long long)rows, (long long)cols, (long long)ntok, p + 1);
                    free(Ya);
                    n_amx_checks++;
                }
            }
        }
    }
done:
    free(P);
    free(W);
    free(X);
    free(Y);
    free(Yref);
    free(Yq);
    free(Yabs);
    free(bound2);
    free(wrow);
}

/* fp16/bf16 weights holding inf, nan, subnormals: every ISA must propagate
 * them like IEEE float arithmetic does. */
static void check_special_halves(void) {
    enum { COLS = 256, ROWS = 16 }; /* 16 rows: the x16 layout takes them */
    for (int bf = 0; bf < 2; bf++) {
        int type = bf ? FITLM_TYPE_BF16 : FITLM_TYPE_F16;
        uint16_t w[ROWS * COLS];
        float x[COLS];
        for (int c = 0; c < COLS; c++) x[c] = 1.0f + (float)(c % 7) * 0.25f; /* all positive */
        for (int i = 0; i < ROWS * COLS; i++) w[i] = bf ? fitlm_fp32_to_bf16(0.01f) : fitlm_fp32_to_fp16(0.01f);
        uint16_t pinf = bf ? 0x7f80 : 0x7c00, qnan = bf ? 0x7fc0 : 0x7e00, sub = bf ? 0x0001 : 0x0001;
        w[0 * COLS + 37] = pinf;                                /* row 0: +inf */
        w[1 * COLS + 200] = qnan;                               /* row 1: nan */
        for (int c = 0; c < COLS; c++) w[2 * COLS + c] = sub;  /* row 2: smallest subnormal */
        w[3 * COLS + 5] = pinf;                                 /* row 3: inf - inf = nan */
        w[3 * COLS + 6] = (uint16_t)(pinf | 0x8000);
        float sub_f = bf ? fitlm_bf16_to_fp32(sub) : fitlm_fp16_to_fp32(sub);
        CHECK(bf ? sub_f == 0x1p-133f : sub_f == 0x1p-24f, "subnormal half value %g", (double)sub_f);
        double xs = 0;
        for (int c = 0; c < COLS; c++) xs += x[c];
        /* the plain layout, then the repacked one where this CPU takes it
         * (its F16 values become bfloat16: F16 subnormals are normal there) */
        uint16_t wp[ROWS * COLS];
        fitlm_cpu_isa_set(isas[n_isas - 1]);
        int layouts = fitlm_cpu_repackable(type, ROWS, COLS) && fitlm_cpu_repack(NULL, type, w, ROWS, COLS, wp) == 0 ? 2 : 1;
        for (int lay = 0; lay < layouts; lay++)
        for (int ii = 0; ii < n_isas; ii++) {
            fitlm_cpu_isa_set(isas[ii]);
            float y[ROWS];
            if (lay) fitlm_cpu_matmul_repacked(pools[1], type, wp, ROWS, COLS, x, 1, y);
            else fitlm_cpu_matmul(pools[1], type, w, ROWS, COLS, x, 1, y);
            const char *in = lay ? (isas[ii] >= FITLM_ISA_AVX512 ? "repacked avx512" : "repacked, unpacked")
                                 : fitlm_cpu_isa_name(isas[ii]);
            CHECK(isinf(y[0]) && y[0] > 0, "%s %s +inf weight -> %g", fitlm_type_name(type), in, (double)y[0]);
            CHECK(isnan(y[1]), "%s %s nan weight -> %g", fitlm_type_name(type), in, (double)y[1]);
            /* vdpbf16ps (BF16 under AVX-512 with AVX512_BF16) treats
             * subnormal inputs as zero */
            bool daz = bf && isas[ii] >= FITLM_ISA_AVX512 && fitlm_cpu_has_avx512bf16();
            if (daz)
                CHECK(y[2] == 0.0f, "%s %s subnormal weights -> %g want 0 (flushed)", fitlm_type_name(type), in, (double)y[2]);
            else
                CHECK(fabs(y[2] - sub_f * xs) <= 1e-6 * sub_f * xs, "%s %s subnormal weights -> %g want %g",
                      fitlm_type_name(type), in, (double)y[2], sub_f * xs);
            CHECK(isnan(y[3]), "%s %s inf-inf -> %g", fitlm_type_name(type), in, (double)y[3]);
        }
    }
    /* a Q8_0 block whose fp16 scale is subnormal, and one with an inf scale */
    {
        uint8_t blk[2 * 34];
        memset(blk, 0, sizeof blk);
        put_half(blk, 0x0003); /* 3 * 2^-24 */
        for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(int8_t)(j - 16);
        put_half(blk + 34, 0x7c00);
        for (int j = 0; j < 32; j++) blk[36 + j] = 1;
        float deq[64];
        CHECK(fitlm_dequantize_row(FITLM_TYPE_Q8_0, blk, deq, 64) == 0, "dequant q8_0");
        CHECK(deq[0] == -16.0f * 3.0f * 0x1p-24f && deq[31] == 15.0f * 3.0f * 0x1p-24f, "subnormal scale %g", (double)deq[0]);
        CHECK(isinf(deq[32]) && deq[40] > 0, "inf scale %g", (double)deq[32]);
    }
}

/* The SIMD activation quantizers must produce the same bytes as the scalar
 * ones (the integer kernels of every ISA are checked against an oracle that
 * uses the scalar quantizer). Includes exact ties (x * id = k + 0.5), zeros,
 * huge values, inf and nan. */
static void check_act_quantizers(void) {
    if (fitlm_cpu_isa_detect() < FITLM_ISA_AVX2) return;
    enum { COLS = 1024 };
    static float x[COLS];
    static uint8_t a[COLS / 32 * 40], b[COLS / 32 * 40];
    static act_q8k ka[COLS / 256], kb[COLS / 256];
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < COLS; i++) x[i] = rnd_act() * (trial % 5 == 0 ? 1e30f : 1.0f);
        if (trial % 3 == 1) /* ties: 127 * k / 254 * 2 ... multiples of amax/254 */
            for (int i = 0; i < COLS; i++) x[i] = (float)((int)(rnd_u32() % 255) - 127) * 0.5f;
        if (trial == 7) x[5] = INFINITY;
        if (trial == 8) x[300] = NAN;
        if (trial == 9)
            for (int i = 0; i < 64; i++) x[i] = 0.0f;
        fitlm_quantize_act_q8(x, a, COLS);
        fitlm_quantize_act_q8_avx2(x, b, COLS);
        CHECK(memcmp(a, b, sizeof a) == 0 || trial == 8, "act q8 avx2 != scalar (trial %d)", trial);
        if (trial == 8) CHECK(memcmp(a, b, 32 * 9) == 0 && memcmp(a + 32 * 10, b + 32 * 10, 32 * 22) == 0 &&
                                  isnan(act_q8_d(b, COLS / 32)[9]), "nan block");
        fitlm_quantize_act_q8k(x, ka, COLS);
        fitlm_quantize_act_q8k_avx2(x, kb, COLS);
        int same = 1;
        for (int k = 0; k < COLS / 256; k++)
            same &= (memcmp(&ka[k].d, &kb[k].d, 4) == 0 || (isnan(ka[k].d) && isnan(kb[k].d))) &&
                    memcmp(ka[k].qs, kb[k].qs, 256) == 0 && memcmp(ka[k].bsums, kb[k].bsums, 32) == 0;
        CHECK(same, "act q8k avx2 != scalar (trial %d)", trial);
        /* bfloat16 rounding (ties of the kept part, inf, nan, huge values),
         * on a length that leaves a scalar tail */
        static uint16_t ha[COLS], hb[COLS];
        if (trial == 10)
            for (int i = 0; i < 64; i++) { /* exact ties: the dropped half is 0x8000, kept part odd or even */
                uint32_t u = 0x3f800000u + ((uint32_t)i << 16) + 0x8000u;
                memcpy(&x[i], &u, 4);
            }
        if (trial == 11) x[17] = -INFINITY, x[18] = -NAN, x[19] = -0.0f, x[20] = 0x1p-140f;
        fitlm_quantize_act_bf16(x, ha, COLS - 3);
        fitlm_quantize_act_bf16_avx2(x, hb, COLS - 3);
        CHECK(memcmp(ha, hb, sizeof(uint16_t) * (COLS - 3)) == 0, "act bf16 avx2 != scalar (trial %d)", trial);
    }
}

/* Thread pool: many back-to-back dispatches, each share runs exactly once. */
typedef struct {
    atomic_llong sum;
    atomic_int calls[8];
    atomic_int nth_seen;
} pool_probe;

static void probe_fn(void *arg, int ith, int nth) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->sum, ith + 1);
    atomic_fetch_add(&p->calls[ith], 1);
    atomic_store(&p->nth_seen, nth); /* every share writes the same value */
}

typedef struct {
    atomic_int next;
    int items;
    atomic_int done[64];
    atomic_int per_share[8];
} dyn_probe;

static void dyn_fn(void *arg, int ith, int nth) {
    dyn_probe *d = arg;
    (void)nth;
    for (;;) {
        int c = atomic_fetch_add(&d->next, 1);
        if (c >= d->items) break;
        atomic_fetch_add(&d->done[c], 1);
        atomic_fetch_add(&d->per_share[ith], 1);
    }
}

static void check_threadpool(void) {
    int cores = fitlm_physical_cores();
    CHECK(cores >= 1 && cores <= 4096, "physical cores %d", cores);
    for (int n = 1; n <= 4; n++) {
        fitlm_threadpool *p = fitlm_threadpool_new(n);
        CHECK(p != NULL, "pool %d", n);
        if (!p) continue;
        CHECK(fitlm_threadpool_size(p) == n, "pool size %d", fitlm_threadpool_size(p));
        pool_probe probe;
        memset(&probe, 0, sizeof probe);
        const int runs = 3000;
        for (int r = 0; r < runs; r++) fitlm_threadpool_run(p, probe_fn, &probe);
        CHECK(atomic_load(&probe.sum) == (long long)runs * n * (n + 1) / 2, "pool %d: sum %lld", n,
              (long long)atomic_load(&probe.sum));
        for (int i = 0; i < n; i++) CHECK(atomic_load(&probe.calls[i]) == runs, "pool %d share %d ran %d", n, i, atomic_load(&probe.calls[i]));
        CHECK(atomic_load(&probe.nth_seen) == n, "nth %d", atomic_load(&probe.nth_seen));
        /* jobs taking items from a shared counter: every item exactly once, whoever takes it */
        int bad = 0;
        long by_caller = 0, total = 0;
        for (int r = 0; r < 2000; r++) {
            static dyn_probe d;
            memset(&d, 0, sizeof d);
            d.items = 1 + r % 64;
            fitlm_threadpool_run(p, dyn_fn, &d);
            for (int c = 0; c < d.items; c++) bad += atomic_load(&d.done[c]) != 1;
            by_caller += atomic_load(&d.per_share[0]);
            total += d.items;
        }
        CHECK(bad == 0, "pool %d counter job: %d items not run exactly once", n, bad);
        printf("pool %d counter jobs: caller took %.0f%% of the items\n", n, 100.0 * (double)by_caller / (double)total);
        void *s1 = fitlm_threadpool_scratch(p, 1000);
        CHECK(s1 != NULL && ((uintptr_t)s1 & 63) == 0, "scratch aligned");
        if (s1) memset(s1, 1, 1000);
        fitlm_threadpool_free(p);
    }
    pool_probe probe;
    memset(&probe, 0, sizeof probe);
    fitlm_threadpool_run(NULL, probe_fn, &probe);
    CHECK(atomic_load(&probe.sum) == 1 && atomic_load(&probe.nth_seen) == 1, "NULL pool runs inline");
    fitlm_threadpool *d = fitlm_threadpool_new(0);
    CHECK(d && fitlm_threadpool_size(d) == cores, "default pool size = physical cores");
    fitlm_threadpool_free(d);
}

/* fitlm_cpu_matmul_multi: three matrices sharing their input (rows 32, 16 and
 * 48 as Q, K, V would be) give, bit for bit, what three separate calls give,
 * in the plain layout and in the repacked one, for decode and several tokens,
 * on 1 to 3 threads (chunks spanning the three under every split). */
static void check_matmul_multi(void) {
    static const int types[] = {FITLM_TYPE_Q4_0, FITLM_TYPE_Q8_0, FITLM_TYPE_Q4_K, FITLM_TYPE_F16, FITLM_TYPE_Q6_K};
    static const int64_t rows[3] = {32, 16, 48};
    const int64_t cols = 512;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const type_case *tc = NULL;
        for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++)
            if (k_types[k].type == types[ti]) tc = &k_types[k];
        void *W[3], *P[3];
        bool packed = true;
        for (int i = 0; i < 3; i++) {
            W[i] = random_weights(tc, rows[i], cols);
            bool ok;
            size_t bytes = (size_t)fitlm_type_row_bytes(tc->type, (uint64_t)cols, &ok) * (size_t)rows[i];
            P[i] = malloc(bytes);
            packed = packed && fitlm_cpu_repackable(tc->type, rows[i], cols);
            if (fitlm_cpu_repackable(tc->type, rows[i], cols)) fitlm_cpu_repack(NULL, tc->type, W[i], rows[i], cols, P[i]);
        }
        for (int ntok = 1; ntok <= 5; ntok += 4) {
            float *X = malloc(sizeof(float) * (size_t)(cols * ntok));
            for (int64_t i = 0; i < cols * ntok; i++) X[i] = rnd_act();
            for (int layout = 0; layout < (packed ? 2 : 1); layout++)
                for (int p = 0; p < 3; p++) {
                    float *want[3], *got[3];
                    fitlm_cpu_mm mm[3];
                    for (int i = 0; i < 3; i++) {
                        want[i] = malloc(sizeof(float) * (size_t)(rows[i] * ntok));
                        got[i] = malloc(sizeof(float) * (size_t)(rows[i] * ntok));
                        const void *w = layout ? P[i] : W[i];
                        if (layout) fitlm_cpu_matmul_repacked(pools[p], tc->type, w, rows[i], cols, X, ntok, want[i]);
                        else fitlm_cpu_matmul(pools[p], tc->type, w, rows[i], cols, X, ntok, want[i]);
                        mm[i] = (fitlm_cpu_mm){.W = w, .rows = rows[i], .Y = got[i]};
                    }
                    fitlm_cpu_matmul_multi(pools[p], tc->type, cols, X, ntok, 3, mm, layout == 1);
                    for (int i = 0; i < 3; i++) {
                        CHECK(memcmp(want[i], got[i], sizeof(float) * (size_t)(rows[i] * ntok)) == 0,
                              "matmul_multi %s%s ntok=%d threads=%d matrix %d differs from a separate call",
                              fitlm_type_name(tc->type), layout ? " repacked" : "", ntok, p + 1, i);
                        free(want[i]);
                        free(got[i]);
                    }
                }
            free(X);
        }
        for (int i = 0; i < 3; i++) {
            free(W[i]);
            free(P[i]);
        }
    }
}

int main(void) {
    const char *san = getenv("FITLM_SANITIZED");
    int small = san && *san && strcmp(san, "0") != 0;
    fitlm_cpu_isa hw = fitlm_cpu_isa_detect();
    for (int i = 0; i <= (int)hw; i++) isas[n_isas++] = (fitlm_cpu_isa)i;
    printf("ISAs tested: up to %s\n", fitlm_cpu_isa_name(hw));
    for (int p = 0; p < 3; p++) pools[p] = fitlm_threadpool_new(p + 1);
    fitlm_cpu_set_parallel_threshold(0); /* small test shapes still go through the pool */

    check_threadpool();
    {
        double bw1 = fitlm_measure_read_bandwidth(NULL, 8u << 20), bw2 = fitlm_measure_read_bandwidth(pools[1], 8u << 20);
        CHECK(bw1 > 0.05 && bw1 < 1e4 && bw2 > 0.05 && bw2 < 1e4, "read bandwidth %.2f / %.2f GB/s", bw1, bw2);
        /* reading memory the caller holds: regions at odd addresses and of odd
         * lengths, split over 1-3 threads (an over-read would trip ASan) */
        size_t big = (size_t)3 << 20;
        uint8_t *buf = malloc(big);
        if (buf) {
            memset(buf, 7, big);
            const void *addr[4] = {buf + 1, buf + 300, buf + 5000, buf + (1 << 20) + 3};
            uint64_t len[4] = {1, 127, 4097, (1 << 20) + 129};
            for (int p = 0; p < 3; p++) {
                double g = fitlm_measure_read_bandwidth_of(pools[p], addr, len, 4, 2);
                CHECK(g > 0.01 && g < 1e4, "read bandwidth of regions (%d threads): %.2f GB/s", p + 1, g);
            }
            uint64_t zero[1] = {0};
            CHECK(fitlm_measure_read_bandwidth_of(pools[1], addr, zero, 1, 1) < 0, "nothing to read: -1");
            free(buf);
        }
    }
    {   /* the vendor the prefetch choice keys on, as /proc/cpuinfo names it */
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[256];
        int seen = 0, intel = 0;
        while (f && !seen && fgets(line, sizeof line, f))
            if (!strncmp(line, "vendor_id", 9)) {
                seen = 1;
                intel = strstr(line, "GenuineIntel") != NULL;
            }
        if (f) fclose(f);
        if (seen) CHECK(fitlm_cpu_vendor_intel() == (intel != 0), "vendor: cpuid says Intel %d, /proc/cpuinfo %d",
                        (int)fitlm_cpu_vendor_intel(), intel);
    }
    check_act_quantizers();
    check_special_halves();
    check_matmul_multi();

    static const int64_t ntoks[] = {1, 2, 3, 7, 16, 14, 12}; /* 8 + 6, 8 + 4 with the 8-token AVX-512 tiles */
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        const type_case *tc = &k_types[ti];
        if (!fitlm_cpu_type_supported(tc->type)) {
            CHECK(0, "type %s unsupported", fitlm_type_name(tc->type));
            continue;
        }
        for (size_t k = 0; k < sizeof ntoks / sizeof ntoks[0]; k++) {
            check_type_shape(tc, 37, 512, ntoks[k]);
            if (!small) check_type_shape(tc, 5, 256, ntoks[k]);
        }
        if (!small) check_type_shape(tc, 131, 1024, 5);
        use_quantizer = 1; /* realistic blocks where a quantizer exists */
        check_type_shape(tc, 19, 768, 1);
        check_type_shape(tc, 19, 768, 9);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(tc, 11, 2048, 2);
        positive_acts = 0;
        /* block counts that are not a multiple of the SIMD step (4 blocks),
         * and float rows that end mid-vector */
        unsigned bsz = fitlm_type_get(tc->type)->block_size;
        if (bsz <= 32) {
            check_type_shape(tc, 9, 224, 3);
            check_type_shape(tc, 3, 416, 5);
            check_type_shape(tc, 4, 32, 1);
        }
        if (bsz == 1) {
            check_type_shape(tc, 6, 100, 2);
            check_type_shape(tc, 5, 7, 4);
        }
    }
    /* Q4_0 shapes the repacked layout takes (rows % 16 == 0): 1 to 9 groups
     * of 16 rows, 1 to 176 blocks, decode and token counts within and across
     * the kernel's tile of 8; plus quantizer output and all-positive
     * activations */
    {
        const type_case *q4 = &k_types[3];
        static const int64_t rp_tok[] = {1, 2, 7, 9, 16};
        for (size_t k = 0; k < sizeof rp_tok / sizeof rp_tok[0]; k++) {
            check_type_shape(q4, 16, 32, rp_tok[k]);
            check_type_shape(q4, 32, 416, rp_tok[k]);
            if (!small) check_type_shape(q4, 144, 1024, rp_tok[k]);
        }
        check_type_shape(q4, 16, 5632, 1);
        if (!small) check_type_shape(q4, 64, 2048, 3);
        use_quantizer = 1;
        check_type_shape(q4, 48, 2048, 1);
        check_type_shape(q4, 48, 2048, 5);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(q4, 16, 2048, 1);
        check_type_shape(q4, 16, 2048, 11);
        positive_acts = 0;
    }
    /* the same for Q8_0's x16 layout: every token count 1..17 on one shape,
     * group and column counts, quantizer output, all-positive activations;
     * and shapes it refuses (rows % 16) or keeps as a copy (a row longer than
     * the 64 KiB unpack buffer: 61696 columns and up) */
    {
        const type_case *q8 = &k_types[7];
        for (int64_t nt = 1; nt <= 17; nt++) check_type_shape(q8, 32, 384, nt);
        static const int64_t rp_tok[] = {1, 3, 9};
        for (size_t k = 0; k < sizeof rp_tok / sizeof rp_tok[0]; k++) {
            check_type_shape(q8, 16, 32, rp_tok[k]);
            if (!small) check_type_shape(q8, 144, 1024, rp_tok[k]);
        }
        check_type_shape(q8, 16, 5632, 1);
        check_type_shape(q8, 16, 61664, 2); /* the longest rows the layout takes */
        check_type_shape(q8, 16, 61696, 1); /* too long: copied */
        check_type_shape(q8, 12, 256, 1);   /* rows % 16: refused */
        if (!small) check_type_shape(q8, 64, 2048, 3);
        use_quantizer = 1;
        check_type_shape(q8, 48, 2048, 1);
        check_type_shape(q8, 48, 2048, 5);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(q8, 16, 2048, 1);
        check_type_shape(q8, 16, 2048, 10);
        positive_acts = 0;
    }
    /* the same for the x16 layouts of Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (one 256-column
     * super-block per group): token counts 1..17 on one shape, 1 to 22
     * super-blocks, quantizer output, all-positive activations; 12 rows
     * refused */
    static const int ktypes[] = {FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K, FITLM_TYPE_Q6_K, FITLM_TYPE_Q3_K, FITLM_TYPE_Q2_K};
    for (int kt = 0; kt < 5; kt++) {
        const type_case *q4k = NULL;
        for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++)
            if (k_types[k].type == ktypes[kt]) q4k = &k_types[k];
        for (int64_t nt = 1; nt <= 17; nt++) check_type_shape(q4k, 32, 512, nt);
        check_type_shape(q4k, 16, 256, 1);
        check_type_shape(q4k, 16, 256, 9);
        check_type_shape(q4k, 16, 5632, 1);
        if (!small) check_type_shape(q4k, 144, 1024, 3);
        check_type_shape(q4k, 12, 256, 2); /* rows % 16: refused */
        use_quantizer = 1;
        check_type_shape(q4k, 48, 2048, 1);
        check_type_shape(q4k, 48, 2048, 5);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(q4k, 16, 2048, 1);
        check_type_shape(q4k, 16, 2048, 10);
        positive_acts = 0;
    }
    /* the x16 layout of F16 and BF16 (32-column groups, the bfloat16 kernel
     * with AVX512_BF16): every token count 1..17 on one shape, 1 to 176
     * groups, the longest rows it takes (32768 columns) and the shapes it
     * refuses (rows % 16, a row over 64 KiB, columns not a multiple of 32),
     * quantizer output, all-positive activations */
    /* the x16 layouts of Q4_1, Q5_0 and Q5_1 (AVX-512): every token count
     * 1..17, 1 to 176 blocks, quantizer output, all-positive activations,
     * rows % 16 refused and rows too long kept as a copy */
    static const int ltypes[] = {FITLM_TYPE_Q4_1, FITLM_TYPE_Q5_0, FITLM_TYPE_Q5_1};
    for (int lt = 0; lt < 3; lt++) {
        const type_case *lc = NULL;
        for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++)
            if (k_types[k].type == ltypes[lt]) lc = &k_types[k];
        for (int64_t nt = 1; nt <= 17; nt++) check_type_shape(lc, 32, 384, nt);
        check_type_shape(lc, 16, 32, 1);
        check_type_shape(lc, 16, 5632, 1);
        if (!small) check_type_shape(lc, 144, 1024, 3);
        check_type_shape(lc, 12, 256, 2);      /* rows % 16: refused */
        check_type_shape(lc, 16, 32 * 3300, 1); /* a row over 64 KiB: a copy */
        use_quantizer = 1;
        check_type_shape(lc, 48, 2048, 1);
        check_type_shape(lc, 48, 2048, 9);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(lc, 16, 2048, 1);
        check_type_shape(lc, 16, 2048, 10);
        positive_acts = 0;
    }
    static const int ftypes[] = {FITLM_TYPE_F16, FITLM_TYPE_BF16};
    for (int ft = 0; ft < 2; ft++) {
        const type_case *fc = NULL;
        for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++)
            if (k_types[k].type == ftypes[ft]) fc = &k_types[k];
        for (int64_t nt = 1; nt <= 17; nt++) check_type_shape(fc, 32, 384, nt);
        check_type_shape(fc, 16, 32, 1);
        check_type_shape(fc, 16, 32, 9);
        check_type_shape(fc, 16, 5632, 1);
        if (!small) check_type_shape(fc, 144, 1024, 3);
        check_type_shape(fc, 16, 32768, 2); /* the longest rows the layout takes */
        check_type_shape(fc, 16, 32800, 1); /* too long: the file layout */
        check_type_shape(fc, 12, 256, 2);   /* rows % 16: refused */
        check_type_shape(fc, 16, 100, 3);   /* cols % 32: refused */
        use_quantizer = 1;
        check_type_shape(fc, 48, 2048, 1);
        check_type_shape(fc, 48, 2048, 5);
        use_quantizer = 0;
        positive_acts = 1;
        check_type_shape(fc, 16, 2048, 1);
        check_type_shape(fc, 16, 2048, 10);
        positive_acts = 0;
    }
    /* AMX: 16-token tiles and remainders, one to 9 groups, block counts odd
     * and even (the kernel steps two blocks at a time), quantizer output */
    {
        const type_case *q4 = &k_types[3], *q8 = &k_types[7];
        static const int64_t amx_tok[] = {16, 17, 32, 41};
        for (size_t k = 0; k < sizeof amx_tok / sizeof amx_tok[0]; k++) {
            check_type_shape(q4, 16, 32, amx_tok[k]);
            check_type_shape(q4, 48, 416, amx_tok[k]);
            check_type_shape(q8, 16, 96, amx_tok[k]);
            check_type_shape(q8, 32, 2048, amx_tok[k]);
            if (!small) check_type_shape(q4, 144, 1024, amx_tok[k]);
        }
        use_quantizer = 1;
        check_type_shape(q4, 48, 2048, 20);
        check_type_shape(q8, 48, 2048, 33);
        use_quantizer = 0;
        /* BF16: 1-9 groups of 16 rows (the 4-group step and the rest), 1-41
         * tokens (every count runs on AMX-BF16 where the CPU has it) */
        const type_case *tb = &k_types[2];
        static const int64_t bf_rows[] = {16, 48, 64, 80, 144};
        static const int64_t bf_tok[] = {1, 3, 16, 17, 41};
        for (size_t r = 0; r < sizeof bf_rows / sizeof bf_rows[0]; r++)
            for (size_t k = 0; k < sizeof bf_tok / sizeof bf_tok[0]; k++)
                if (!small || r < 3) check_type_shape(tb, bf_rows[r], 320, bf_tok[k]);
        check_type_shape(tb, 32, 2048, 18);
        /* Q4_K / Q5_K: 1-3 super-blocks (8-24 sub-blocks: the ring and the
         * units in flight cross super-blocks), random and quantized blocks,
         * all-positive activations (the minimums' term at its largest) */
        static const int amx_k[] = {10, 11}; /* k_types: Q4_K, Q5_K */
        for (int kk = 0; kk < 2; kk++) {
            const type_case *tk = &k_types[amx_k[kk]];
            for (size_t k = 0; k < sizeof amx_tok / sizeof amx_tok[0]; k++) {
                check_type_shape(tk, 16, 256, amx_tok[k]);
                check_type_shape(tk, 32, 768, amx_tok[k]);
            }
            use_quantizer = 1;
            check_type_shape(tk, 48, 2048, 19);
            use_quantizer = 0;
            positive_acts = 1;
            check_type_shape(tk, 16, 512, 16);
            positive_acts = 0;
        }
    }
    fitlm_cpu_isa_set(hw);
    if (hw >= FITLM_ISA_AVX2) CHECK(n_vnni_checks > 100, "AVX-VNNI x16 cases run: %d", n_vnni_checks);
    if (hw >= FITLM_ISA_AVX512 && fitlm_cpu_has_amx_int8()) CHECK(n_amx_checks > 40, "AMX x16 cases run: %d", n_amx_checks);
    printf("AMX x16 kernels: %d cases%s\n", n_amx_checks,
           fitlm_cpu_has_amx_int8() ? "" : " (this CPU or OS gives no AMX-INT8: not run)");
    printf("AVX-VNNI x16 kernels: %d cases, %s\n", n_vnni_checks,
           fitlm_cpu_has_avxvnni() ? "on the CPU and emulated" : "emulated in AVX2 (this CPU has no AVX-VNNI)");
    /* an unsupported type gives NaN, not garbage */
    float y[2] = {0, 0}, x[32] = {0};
    uint8_t junk[64] = {0};
    fitlm_cpu_matmul(NULL, FITLM_TYPE_IQ2_XXS, junk, 2, 32, x, 1, y);
    CHECK(isnan(y[0]) && isnan(y[1]), "unsupported type -> NaN");
    for (int p = 0; p < 3; p++) fitlm_threadpool_free(pools[p]);
    return check_report();
}
