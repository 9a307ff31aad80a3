/* Body of the K-type sub-block searches; included by quantize.c and
 * quantize_avx2.c with QS_FN(name) defined to give the functions their
 * names and QS_STORAGE their linkage (see quant_search.h). Not a
 * standalone header.
 *
 * Layout: the candidate scales lie across the vector lanes. Each element is
 * read once; for each of QS_CANDS_* candidate step sizes it is rounded to its
 * code and the weighted sums of q, q^2 and q x are accumulated per candidate.
 * The least-squares scale (and offset) of each candidate, and its error in
 * closed form, then follow from those sums and from the candidate-independent
 * sums of w, w x and w x^2; the candidate of least error wins (the first on
 * ties). No horizontal reductions, no per-element division. */
#include <math.h>
#include <stddef.h>

/* No fused multiply-adds: the generic and the AVX2 build must round alike
 * (GCC does not contract in ISO C mode; clang would, within an expression). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The bodies below take `weighted`: 0 when w is NULL (unit weights, the common
 * case without an importance matrix), which the compiler folds away after
 * inlining; the results are the same as with an array of 1.0f. */
#if defined(__GNUC__)
#define QS_INLINE static inline __attribute__((always_inline))
#else
#define QS_INLINE static inline
#endif
#define QS_W(i) (weighted ? w[i] : 1.0f)

/* Sums over the elements of a sub-block (n a multiple of 8) run in QS_LANES
 * partial sums added in a fixed order, so that they vectorize and both builds
 * agree. */
#define QS_LANES 8
#define QS_CANDS_MIN 16 /* min/max types: step (max - min) / (nmax + 0.1 k), k = -8..7 */
#define QS_CANDS_SYM 24 /* symmetric types: k = -11..12 */

/* Nearest integer code of v in 0..hi (halves up); NaN and negatives give 0.
 * Branch-free so that the loops vectorize. */
static inline float qs_code(float v, float hi) {
    v = v > 0.0f ? v : 0.0f;
    v = v < hi ? v : hi;
    return (float)(int)(v + 0.5f);
}

/* Candidates: step sizes (max - min) / (nmax + 0.1 k), k = -8..7. For each
 * rounding, x ~= s q + o is solved by the 2x2 normal equations; o > 0
 * cannot be stored (the format subtracts a non-negative min), so then the
 * scale alone is fitted (o = 0). */
QS_INLINE float qs_fit_min(const float *x, const float *w, int weighted, int n, int nmax, float *scale, float *mn) {
    float vlo[QS_LANES] = {0}, vhi[QS_LANES] = {0}, vw[QS_LANES] = {0}, vx[QS_LANES] = {0}, vxx[QS_LANES] = {0};
    for (int i = 0; i < n; i += QS_LANES)
        for (int l = 0; l < QS_LANES; l++) {
            float xi = x[i + l], wx = QS_W(i + l) * xi;
            vlo[l] = xi < vlo[l] ? xi : vlo[l];
            vhi[l] = xi > vhi[l] ? xi : vhi[l];
            vw[l] += QS_W(i + l);
            vx[l] += wx;
            vxx[l] += wx * xi;
        }
    float lo = 0.0f, hi = 0.0f;
    double sw = 0, sx = 0, sxx = 0;
    for (int l = 0; l < QS_LANES; l++) {
        lo = vlo[l] < lo ? vlo[l] : lo;
        hi = vhi[l] > hi ? vhi[l] : hi;
        sw += vw[l];
        sx += vx[l];
        sxx += vxx[l];
    }
    *scale = 0.0f;
    *mn = -lo;
    if (!(hi - lo > 0.0f)) return 0.0f;
    const float fmax = (float)nmax, range = hi - lo;
    float is[QS_CANDS_MIN], aq[QS_CANDS_MIN], aqq[QS_CANDS_MIN], aqx[QS_CANDS_MIN];
    for (int c = 0; c < QS_CANDS_MIN; c++) {
        is[c] = (fmax + 0.1f * (float)(c - 8)) / range;
        aq[c] = aqq[c] = aqx[c] = 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float xi = x[i] - lo, wi = QS_W(i), wx = QS_W(i) * x[i];
        for (int c = 0; c < QS_CANDS_MIN; c++) {
            float q = qs_code(xi * is[c], fmax), wq = wi * q;
            aq[c] += wq;
            aqq[c] += wq * q;
            aqx[c] += q * wx;
        }
    }
    /* both fits of every candidate, without conditions (so that this loop
     * vectorizes; a zero determinant or sqq gives inf/NaN, never chosen) */
    double s2[QS_CANDS_MIN], o2[QS_CANDS_MIN], e2[QS_CANDS_MIN], s1[QS_CANDS_MIN], e1[QS_CANDS_MIN];
    for (int c = 0; c < QS_CANDS_MIN; c++) {
        double sq = aq[c], sqq = aqq[c], sqx = aqx[c];
        double idet = 1.0 / (sw * sqq - sq * sq);
        double s = (sw * sqx - sq * sx) * idet, o = (sqq * sx - sq * sqx) * idet;
        s2[c] = s;
        o2[c] = o;
        e2[c] = s * s * sqq + 2 * s * o * sq + o * o * sw - 2 * s * sqx - 2 * o * sx + sxx;
        s = sqx / sqq;
        s1[c] = s;
        e1[c] = s * s * sqq - 2 * s * sqx + sxx;
    }
    int best = -1;
    double best_err = INFINITY, best_s = 0, best_o = 0;
    for (int c = 0; c < QS_CANDS_MIN; c++) {
        double det = sw * aqq[c] - (double)aq[c] * aq[c];
        double s, o, e;
        if (det > 0 && o2[c] <= 0) {
            s = s2[c], o = o2[c], e = e2[c];
        } else if (aqq[c] > 0) { /* o > 0 cannot be stored: fit the scale alone */
            s = s1[c], o = 0, e = e1[c];
        } else
            continue;
        if (s >= 0 && e < best_err) {
            best = c;
            best_err = e, best_s = s, best_o = o;
        }
    }
    if (best < 0) return 0.0f; /* cannot happen for hi > lo */
    *scale = (float)best_s;
    *mn = (float)-best_o;
    return best_err > 0 ? (float)best_err : 0.0f;
}

/* Candidates: 1 / step = (qmin + (qmax - qmin) / 256 * k) / m, k = -11..12,
 * m the value of largest magnitude (so m takes a code near qmin); the
 * least-squares scale of a rounding is sqx / sqq, its error sxx - sqx^2 / sqq,
 * so the winner maximizes sqx^2 / sqq. */
QS_INLINE float qs_fit_sym(const float *x, const float *w, int weighted, int n, int qmin, int qmax, float *scale) {
    float vmax[QS_LANES] = {0}, vxx[QS_LANES] = {0};
    for (int i = 0; i < n; i += QS_LANES)
        for (int l = 0; l < QS_LANES; l++) {
            float a = fabsf(x[i + l]);
            vmax[l] = a > vmax[l] ? a : vmax[l];
            vxx[l] += QS_W(i + l) * x[i + l] * x[i + l];
        }
    float amax = 0.0f, m = 0.0f;
    double sxx = 0;
    for (int l = 0; l < QS_LANES; l++) {
        amax = vmax[l] > amax ? vmax[l] : amax;
        sxx += vxx[l];
    }
    *scale = 0.0f;
    if (!(amax > 0.0f)) return 0.0f;
    for (int i = 0; i < n; i++) /* the first value of largest magnitude */
        if (fabsf(x[i]) == amax) {
            m = x[i];
            break;
        }
    const float fqmin = (float)qmin, span = (float)(qmax - qmin), step = span / 256.0f;
    float is[QS_CANDS_SYM], aqq[QS_CANDS_SYM], aqx[QS_CANDS_SYM];
    for (int c = 0; c < QS_CANDS_SYM; c++) {
        is[c] = (fqmin + step * (float)(c - QS_CANDS_SYM / 2 + 1)) / m;
        aqq[c] = aqx[c] = 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float xi = x[i], wi = QS_W(i), wx = QS_W(i) * x[i];
        for (int c = 0; c < QS_CANDS_SYM; c++) {
            float q = qs_code(xi * is[c] - fqmin, span) + fqmin;
            aqq[c] += (wi * q) * q;
            aqx[c] += q * wx;
        }
    }
    double gain[QS_CANDS_SYM];
    for (int c = 0; c < QS_CANDS_SYM; c++) /* no condition: vectorizes; NaN if sqq = 0 */
        gain[c] = (double)aqx[c] * aqx[c] / aqq[c];
    int best = -1;
    double best_gain = -1.0;
    for (int c = 0; c < QS_CANDS_SYM; c++)
        if (aqq[c] > 0 && gain[c] > best_gain) {
            best_gain = gain[c];
            best = c;
        }
    if (best < 0) return 0.0f;
    *scale = (float)((double)aqx[best] / (double)aqq[best]);
    double e = sxx - gain[best];
    return e > 0 ? (float)e : 0.0f;
}

/* The sub-block scale (and min) found above are stored as integers times the
 * super-block scales d (and dmin). Rounding each to the nearest integer is
 * not always best once the codes are re-rounded with the stored values, so
 * the neighbours of the nearest integers (7 of the 3 x 3 for the min types,
 * 3 for the symmetric types) are tried and the one of least weighted error
 * is kept (the nearest on ties). */

/* sum w (ds q - dm - x)^2, q the code of x in 0..nmax (n a multiple of 8) */
QS_INLINE float qs_err_min(const float *x, const float *w, int weighted, int n, float ds, float dm, float fmax) {
    float ids = ds > 0 ? 1.0f / ds : 0.0f, acc[QS_LANES] = {0};
    for (int i = 0; i < n; i += QS_LANES)
        for (int l = 0; l < QS_LANES; l++) {
            float q = qs_code((x[i + l] + dm) * ids, fmax), r = ds * q - dm - x[i + l];
            acc[l] += QS_W(i + l) * r * r;
        }
    float e = 0.0f;
    for (int l = 0; l < QS_LANES; l++) e += acc[l];
    return e;
}

/* *isc, *imn: on entry the nearest integers (0..maxcode) to scale / d and
 * mn / dmin; on return the best of their neighbours. */
QS_INLINE void qs_pick_min(const float *x, const float *w, int weighted, int n, int nmax, float d, float dmin,
                           int maxcode, int *isc, int *imn) {
    const int i0 = *isc, m0 = *imn;
    const float fmax = (float)nmax;
    float best = qs_err_min(x, w, weighted, n, d * (float)i0, dmin * (float)m0, fmax);
    for (int a = -1; a <= 1; a++)
        for (int b = -1; b <= 1; b++) {
            int i1 = i0 + a, m1 = m0 + b;
            /* the anti-diagonal (scale up, min down or the reverse) seldom
             * wins: 1.3% of Q4_K sub-blocks of Gaussian rows, against 20%
             * for the diagonal */
            if (a == -b || i1 < 0 || i1 > maxcode || m1 < 0 || m1 > maxcode) continue;
            float e = qs_err_min(x, w, weighted, n, d * (float)i1, dmin * (float)m1, fmax);
            if (e < best) {
                best = e;
                *isc = i1;
                *imn = m1;
            }
        }
}

/* sum w (ds q - x)^2, q the code of x in qmin..-qmin-1 (n a multiple of 8) */
QS_INLINE float qs_err_sym(const float *x, const float *w, int weighted, int n, float ds, float fqmin) {
    float ids = ds != 0.0f ? 1.0f / ds : 0.0f, span = -2.0f * fqmin - 1.0f, acc[QS_LANES] = {0};
    for (int i = 0; i < n; i += QS_LANES)
        for (int l = 0; l < QS_LANES; l++) {
            float q = qs_code(x[i + l] * ids - fqmin, span) + fqmin, r = ds * q - x[i + l];
            acc[l] += QS_W(i + l) * r * r;
        }
    float e = 0.0f;
    for (int l = 0; l < QS_LANES; l++) e += acc[l];
    return e;
}

/* *is: on entry the nearest integer (lo..hi) to scale / d; on return the best
 * of it and its two neighbours. */
QS_INLINE void qs_pick_sym(const float *x, const float *w, int weighted, int n, int qmin, float d, int lo, int hi,
                           int *is) {
    const int s0 = *is;
    float best = qs_err_sym(x, w, weighted, n, d * (float)s0, (float)qmin);
    for (int a = -1; a <= 1; a += 2) {
        int s1 = s0 + a;
        if (s1 < lo || s1 > hi) continue;
        float e = qs_err_sym(x, w, weighted, n, d * (float)s1, (float)qmin);
        if (e < best) {
            best = e;
            *is = s1;
        }
    }
}

/* The entry points (quant_search.h): w NULL means unit weights. */
QS_STORAGE float QS_FN(fit_scale_min)(const float *x, const float *w, int n, int nmax, float *scale, float *mn) {
    return w ? qs_fit_min(x, w, 1, n, nmax, scale, mn) : qs_fit_min(x, NULL, 0, n, nmax, scale, mn);
}

QS_STORAGE float QS_FN(fit_scale_sym)(const float *x, const float *w, int n, int qmin, int qmax, float *scale) {
    return w ? qs_fit_sym(x, w, 1, n, qmin, qmax, scale) : qs_fit_sym(x, NULL, 0, n, qmin, qmax, scale);
}

QS_STORAGE void QS_FN(pick_grid_min)(const float *x, const float *w, int n, int nmax, float d, float dmin,
                                     int maxcode, int *isc, int *imn) {
    if (w) qs_pick_min(x, w, 1, n, nmax, d, dmin, maxcode, isc, imn);
    else qs_pick_min(x, NULL, 0, n, nmax, d, dmin, maxcode, isc, imn);
}

QS_STORAGE void QS_FN(pick_grid_sym)(const float *x, const float *w, int n, int qmin, float d, int lo, int hi,
                                     int *is) {
    if (w) qs_pick_sym(x, w, 1, n, qmin, d, lo, hi, is);
    else qs_pick_sym(x, NULL, 0, n, qmin, d, lo, hi, is);
}
