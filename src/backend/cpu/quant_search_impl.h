/* Body of the K-type sub-block searches; included by quantize.c and
 * quantize_avx2.c with QS_FN(name) defined to give the functions their
 * names and QS_STORAGE their linkage (see quant_search.h). Not a
 * standalone header.
 *
 * Layout: the candidate scales lie across the vector lanes. Each element is
 * read once; for each of QS_CANDS candidate step sizes it is rounded to its
 * code and the weighted sums of q, q^2 and q x are accumulated per candidate.
 * The least-squares scale (and offset) of each candidate, and its error in
 * closed form, then follow from those sums and from the candidate-independent
 * sums of w, w x and w x^2; the candidate of least error wins (the first on
 * ties). No horizontal reductions, no per-element division. */
#include <math.h>

#define QS_CANDS 24

/* Nearest integer code of v in 0..hi (halves up); NaN and negatives give 0.
 * Branch-free so that the loops vectorize. */
static inline float qs_code(float v, float hi) {
    v = v > 0.0f ? v : 0.0f;
    v = v < hi ? v : hi;
    return (float)(int)(v + 0.5f);
}

/* Candidates: step sizes (max - min) / (nmax + 0.1 k), k = -8..15. For each
 * rounding, x ~= s q + o is solved by the 2x2 normal equations; o > 0
 * cannot be stored (the format subtracts a non-negative min), so then the
 * scale alone is fitted (o = 0). */
QS_STORAGE float QS_FN(fit_scale_min)(const float *x, const float *w, int n, int nmax, float *scale, float *mn) {
    float lo = 0.0f, hi = 0.0f;
    double sw = 0, sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sw += w[i];
        sx += (double)w[i] * x[i];
        sxx += (double)w[i] * x[i] * x[i];
    }
    *scale = 0.0f;
    *mn = -lo;
    if (!(hi - lo > 0.0f)) return 0.0f;
    const float fmax = (float)nmax, range = hi - lo;
    float is[QS_CANDS], aq[QS_CANDS], aqq[QS_CANDS], aqx[QS_CANDS];
    for (int c = 0; c < QS_CANDS; c++) {
        is[c] = (fmax + 0.1f * (float)(c - 8)) / range;
        aq[c] = aqq[c] = aqx[c] = 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float xi = x[i] - lo, wi = w[i], wx = w[i] * x[i];
        for (int c = 0; c < QS_CANDS; c++) {
            float q = qs_code(xi * is[c], fmax), wq = wi * q;
            aq[c] += wq;
            aqq[c] += wq * q;
            aqx[c] += q * wx;
        }
    }
    /* both fits of every candidate, without conditions (so that this loop
     * vectorizes; a zero determinant or sqq gives inf/NaN, never chosen) */
    double s2[QS_CANDS], o2[QS_CANDS], e2[QS_CANDS], s1[QS_CANDS], e1[QS_CANDS];
    for (int c = 0; c < QS_CANDS; c++) {
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
    for (int c = 0; c < QS_CANDS; c++) {
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
QS_STORAGE float QS_FN(fit_scale_sym)(const float *x, const float *w, int n, int qmin, int qmax, float *scale) {
    float amax = 0.0f, m = 0.0f;
    double sxx = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            m = x[i];
        }
        sxx += (double)w[i] * x[i] * x[i];
    }
    *scale = 0.0f;
    if (!(amax > 0.0f)) return 0.0f;
    const float fqmin = (float)qmin, span = (float)(qmax - qmin), step = span / 256.0f;
    float is[QS_CANDS], aqq[QS_CANDS], aqx[QS_CANDS];
    for (int c = 0; c < QS_CANDS; c++) {
        is[c] = (fqmin + step * (float)(c - 11)) / m;
        aqq[c] = aqx[c] = 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float xi = x[i], wi = w[i], wx = w[i] * x[i];
        for (int c = 0; c < QS_CANDS; c++) {
            float q = qs_code(xi * is[c] - fqmin, span) + fqmin;
            aqq[c] += (wi * q) * q;
            aqx[c] += q * wx;
        }
    }
    double gain[QS_CANDS];
    for (int c = 0; c < QS_CANDS; c++) gain[c] = (double)aqx[c] * aqx[c] / aqq[c]; /* NaN if sqq = 0 */
    int best = -1;
    for (int c = 0; c < QS_CANDS; c++)
        if (aqq[c] > 0 && (best < 0 || gain[c] > gain[best])) best = c;
    if (best < 0) return 0.0f;
    *scale = (float)((double)aqx[best] / (double)aqq[best]);
    double e = sxx - gain[best];
    return e > 0 ? (float)e : 0.0f;
}
