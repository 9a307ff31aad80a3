/* Reference quantizers.
 *  - Q8_0 / Q4_0 / Q5_0 / Q4_1 / Q5_1 follow their block definitions exactly:
 *    the stored scale is fp16(max|x|/127), fp16(m/-8), ... and every code is
 *    the nearest integer (checked element by element, in double, allowing
 *    only exact ties).
 *  - every quantizer: dequantize(quantize(x)) error, as RMSE relative to the
 *    signal RMS on Gaussian data with outliers, must stay under a bound set by
 *    the code width (the figures are printed; docs/kernels.md records them),
 *    and the K types must not be worse than the plain min/max scheme with the
 *    same bits.
 *  - an importance matrix lowers the error where it puts weight.
 *  - the AVX2 build of the K-type scale searches writes the same bytes as the
 *    generic build (so a file does not depend on the CPU that made it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "check.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static uint64_t rs = 0x853c49e6748fea9bull;
static double urand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) {
    double g = sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
    if (urand() < 0.005) g *= 6.0; /* outliers, as in real weight matrices */
    return (float)g;
}

static double rel_rmse(const float *x, const float *y, int64_t n, const float *wt) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = wt ? wt[i] : 1.0;
        e += w * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += w * (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static uint16_t get_half(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

/* |v - round(v)| is not an exact tie: the code must equal round(v) */
static int code_ok(double v, int code, int lo, int hi) {
    double r = floor(v + 0.5);
    if (fabs(v - floor(v) - 0.5) < 1e-4) return code == (int)floor(v) || code == (int)ceil(v) || code == lo || code == hi;
    int want = (int)r < lo ? lo : (int)r > hi ? hi : (int)r;
    return code == want;
}

static void check_exact_definitions(void) {
    float x[32];
    uint8_t blk[64];
    for (int trial = 0; trial < 200; trial++) {
        for (int j = 0; j < 32; j++) x[j] = gauss() * (float)(0.01 + urand());
        /* Q8_0 */
        fitlm_quantize_row(FITLM_TYPE_Q8_0, x, blk, 32, NULL);
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(x[j]));
        float d = (float)amax / 127.0f;
        CHECK(get_half(blk) == fitlm_fp32_to_fp16(d), "q8_0 scale");
        int bad = 0;
        for (int j = 0; j < 32; j++) bad += !code_ok((double)x[j] / (double)d, (int8_t)blk[2 + j], -127, 127);
        CHECK(bad == 0, "q8_0 codes: %d not nearest", bad);
        /* Q4_0 / Q5_0: d = m / -8 (-16), m the value of largest magnitude */
        for (int five = 0; five < 2; five++) {
            int type = five ? FITLM_TYPE_Q5_0 : FITLM_TYPE_Q4_0, half = five ? 16 : 8;
            fitlm_quantize_row(type, x, blk, 32, NULL);
            int jm = 0;
            for (int j = 1; j < 32; j++)
                if (fabsf(x[j]) > fabsf(x[jm])) jm = j;
            float dd = x[jm] / (float)-half;
            CHECK(get_half(blk) == fitlm_fp32_to_fp16(dd), "%s scale", fitlm_type_name(type));
            uint32_t qh = 0;
            if (five) memcpy(&qh, blk + 2, 4);
            const uint8_t *qs = blk + (five ? 6 : 2);
            bad = 0;
            for (int j = 0; j < 32; j++) {
                int code = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
                if (five) code |= (int)((qh >> j) & 1) << 4;
                bad += !code_ok((double)x[j] / (double)dd + half, code, 0, 2 * half - 1);
            }
            CHECK(bad == 0, "%s codes: %d not nearest", fitlm_type_name(type), bad);
        }
        /* Q4_1: d = (max - min) / 15, m = min */
        fitlm_quantize_row(FITLM_TYPE_Q4_1, x, blk, 32, NULL);
        float mn = x[0], mx = x[0];
        for (int j = 1; j < 32; j++) {
            mn = fminf(mn, x[j]);
            mx = fmaxf(mx, x[j]);
        }
        CHECK(get_half(blk) == fitlm_fp32_to_fp16((mx - mn) / 15.0f) && get_half(blk + 2) == fitlm_fp32_to_fp16(mn),
              "q4_1 scale/min");
    }
}

/* K types through the generic and the AVX2 searches: identical blocks */
static void check_isa_identical(const float *x, int64_t n, const float *imat) {
    if (fitlm_cpu_isa_detect() < FITLM_ISA_AVX2) return;
    const int types[] = {FITLM_TYPE_Q2_K, FITLM_TYPE_Q3_K, FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K, FITLM_TYPE_Q6_K};
    fitlm_cpu_isa was = fitlm_cpu_isa_active();
    uint8_t *a = malloc((size_t)n * 2), *b = malloc((size_t)n * 2);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (int w = 0; w < 2; w++) {
            fitlm_cpu_isa_set(FITLM_ISA_SCALAR);
            int64_t na = fitlm_quantize_row(types[t], x, a, n, w ? imat : NULL);
            fitlm_cpu_isa_set(FITLM_ISA_AVX2);
            int64_t nb = fitlm_quantize_row(types[t], x, b, n, w ? imat : NULL);
            CHECK(na == nb && na > 0 && memcmp(a, b, (size_t)na) == 0, "%s%s: AVX2 and generic blocks differ",
                  fitlm_type_name(types[t]), w ? " with imatrix" : "");
        }
    fitlm_cpu_isa_set(was);
    free(a);
    free(b);
}

typedef struct {
    int type;
    double bound; /* relative RMSE bound on the test distribution */
} qcase;

int main(void) {
    check_exact_definitions();
    const int64_t n = 256 * 64;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *imat = malloc(sizeof(float) * n);
    uint8_t *q = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) x[i] = gauss();
    /* bounds: about 1.15 x the figures measured when the quantizers were
     * written (docs/kernels.md; the K types' as of their faster search,
     * docs/quantization.md). The uniform-step estimate step/sqrt(12) with
     * step = max|x|/127 (Q8_0) or max|x|/8 (Q4_0) over 32 Gaussian values gives
     * 0.005 and 0.08 before outliers; a broken layout or search lands far above */
    const qcase cases[] = {
        {FITLM_TYPE_Q8_0, 0.0080}, {FITLM_TYPE_Q6_K, 0.0234}, {FITLM_TYPE_Q5_1, 0.0480},
        {FITLM_TYPE_Q5_0, 0.0610}, {FITLM_TYPE_Q5_K, 0.0446}, {FITLM_TYPE_Q4_1, 0.0980},
        {FITLM_TYPE_Q4_0, 0.1250}, {FITLM_TYPE_Q4_K, 0.0889}, {FITLM_TYPE_Q3_K, 0.188}, {FITLM_TYPE_Q2_K, 0.317},
    };
    double err[64] = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int type = cases[c].type;
        int64_t bytes = fitlm_quantize_row(type, x, q, n, NULL);
        bool ok;
        CHECK(bytes == (int64_t)fitlm_type_row_bytes(type, (uint64_t)n, &ok), "%s size", fitlm_type_name(type));
        CHECK(fitlm_dequantize_row(type, q, y, n) == 0, "dequant");
        double e = rel_rmse(x, y, n, NULL);
        err[type] = e;
        printf("%-5s %.2f bpw  relative RMSE %.4f\n", fitlm_type_name(type), fitlm_type_bpw(type), e);
        CHECK(e < cases[c].bound, "%s relative RMSE %.4f above %.4f", fitlm_type_name(type), e, cases[c].bound);
        /* importance weights: 16x weight on every 4th column */
        if (type == FITLM_TYPE_Q4_K || type == FITLM_TYPE_Q6_K || type == FITLM_TYPE_Q5_K || type == FITLM_TYPE_Q3_K ||
            type == FITLM_TYPE_Q2_K) {
            for (int64_t i = 0; i < n; i++) imat[i] = i % 4 == 0 ? 16.0f : 1.0f;
            fitlm_quantize_row(type, x, q, n, imat);
            fitlm_dequantize_row(type, q, y, n);
            double ew = rel_rmse(x, y, n, imat);
            fitlm_quantize_row(type, x, q, n, NULL);
            fitlm_dequantize_row(type, q, y, n);
            double eu = rel_rmse(x, y, n, imat);
            printf("      weighted error with imatrix %.4f, without %.4f\n", ew, eu);
            CHECK(ew < eu, "%s imatrix does not help (%.4f vs %.4f)", fitlm_type_name(type), ew, eu);
        }
    }
    for (int64_t i = 0; i < n; i++) imat[i] = (float)(0.1 + 4.0 * urand());
    check_isa_identical(x, n, imat);
    CHECK(err[FITLM_TYPE_Q4_K] < err[FITLM_TYPE_Q4_1], "Q4_K (%.4f) worse than Q4_1 (%.4f)", err[FITLM_TYPE_Q4_K],
          err[FITLM_TYPE_Q4_1]);
    CHECK(err[FITLM_TYPE_Q5_K] < err[FITLM_TYPE_Q5_1], "Q5_K (%.4f) worse than Q5_1 (%.4f)", err[FITLM_TYPE_Q5_K],
          err[FITLM_TYPE_Q5_1]);
    CHECK(err[FITLM_TYPE_Q6_K] < err[FITLM_TYPE_Q5_K] && err[FITLM_TYPE_Q8_0] < err[FITLM_TYPE_Q6_K] &&
              err[FITLM_TYPE_Q4_K] < err[FITLM_TYPE_Q3_K] && err[FITLM_TYPE_Q3_K] < err[FITLM_TYPE_Q2_K],
          "bits order");
    /* all-zero and constant inputs quantize without NaN */
    memset(x, 0, sizeof(float) * 256);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fitlm_quantize_row(cases[c].type, x, q, 256, NULL);
        fitlm_dequantize_row(cases[c].type, q, y, 256);
        int bad = 0;
        for (int i = 0; i < 256; i++) bad += y[i] != 0.0f;
        CHECK(bad == 0, "%s zeros -> %d non-zero", fitlm_type_name(cases[c].type), bad);
    }
    /* degenerate super-blocks the K searches must still fit (a zero
     * determinant in the scale/min solve, one non-zero value): a constant
     * block and a lone spike are representable up to the fp16 rounding of
     * the scales (< 2^-11 relative each), so 0.1% */
    const int ktypes[] = {FITLM_TYPE_Q2_K, FITLM_TYPE_Q3_K, FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K, FITLM_TYPE_Q6_K};
    for (int shape = 0; shape < 3; shape++) {
        for (int i = 0; i < 256; i++) x[i] = shape == 0 ? 0.5f : shape == 1 ? -0.5f : i == 77 ? 1.0f : 0.0f;
        for (size_t t = 0; t < sizeof ktypes / sizeof ktypes[0]; t++) {
            fitlm_quantize_row(ktypes[t], x, q, 256, NULL);
            fitlm_dequantize_row(ktypes[t], q, y, 256);
            double e = rel_rmse(x, y, 256, NULL);
            CHECK(e < 1e-3, "%s: %s block relative RMSE %.5f", fitlm_type_name(ktypes[t]),
                  shape == 0 ? "constant +0.5" : shape == 1 ? "constant -0.5" : "single spike", e);
        }
    }
    CHECK(fitlm_quantize_row(FITLM_TYPE_Q4_K, x, q, 100, NULL) == -1, "partial block refused");
    CHECK(fitlm_quantize_row(FITLM_TYPE_IQ2_XXS, x, q, 256, NULL) == -1, "unsupported refused");
    free(x);
    free(y);
    free(imat);
    free(q);
    return check_report();
}
