/* Sub-block scale searches of the K-type quantizers (quantize.c).
 *
 * The bodies live in quant_search_impl.h, compiled twice: once in quantize.c
 * for any x86-64 / other CPU, once in quantize_avx2.c with AVX2. Both builds
 * use the same operations in the same order (ISO C: no FMA contraction), so
 * they produce bit-identical blocks; quantize.c picks one at run time
 * (fitlm_cpu_isa_active). A NULL weight array w means unit weights (the same
 * result as an array of 1.0f, faster). n is a multiple of 8. No allocation. */
#ifndef FITLM_QUANT_QUANT_SEARCH_H
#define FITLM_QUANT_QUANT_SEARCH_H

/* Fits x ~= scale * q - mn, q in 0..nmax, mn >= 0, minimizing
 * sum w (scale q - mn - x)^2 over n values; returns that error. */
float fitlm_fit_scale_min_avx2(const float *x, const float *w, int n, int nmax, float *scale, float *mn);

/* Fits x ~= scale * q, q in qmin..qmax (qmin = -(qmax + 1)), minimizing
 * sum w (scale q - x)^2; returns that error. */
float fitlm_fit_scale_sym_avx2(const float *x, const float *w, int n, int qmin, int qmax, float *scale);

/* Given the super-block scales d, dmin, moves the integer sub-block scale
 * *isc and min *imn (0..maxcode; on entry the nearest to scale / d, mn / dmin)
 * to the neighbour of least error with codes 0..nmax re-rounded. */
void fitlm_pick_grid_min_avx2(const float *x, const float *w, int n, int nmax, float d, float dmin, int maxcode,
                              int *isc, int *imn);

/* Same for a symmetric scale *is in lo..hi, codes qmin..-qmin-1. */
void fitlm_pick_grid_sym_avx2(const float *x, const float *w, int n, int qmin, float d, int lo, int hi, int *is);

#endif
