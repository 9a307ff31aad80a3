/* Attention for up to 8 queries that share one KV head ("lanes": query heads
 * of one group, several tokens of a prompt) with AVX2 + FMA (compiled with the
 * AVX2 flags; only called when that ISA is active): attention_avx512.c's
 * method in 8 lanes. The queries are transposed once (QT: head_dim x 8
 * floats), so a cache row against all 8 queries is head_dim fmas of a
 * broadcast K element by one QT row, no horizontal sums; scores stay
 * transposed (one 8-lane vector per position), the softmax runs lane-wise
 * down the positions (sums in double), and each lane's output accumulates
 * P x V rows with the weight broadcast. Every lane's arithmetic is the same
 * sequence of operations whatever the other lanes hold (positions outside a
 * lane's range are masked to an exact 0), so a prompt processed in tiles
 * gives the bits that token-by-token decode gives. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/attention.h"
#include "format/ggml_type.h"
#include "util/exp_avx2.h"
#include "backend/cpu/ops.h"

/* All-ones in the lanes whose range [lo, hi] holds position p. */
static inline __m256 lanes_at(__m256i lo, __m256i hi, int64_t p) {
    __m256i pv = _mm256_set1_epi32((int)p);
    __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(lo, pv), _mm256_cmpgt_epi32(pv, hi));
    return _mm256_castsi256_ps(_mm256_xor_si256(out, _mm256_set1_epi32(-1)));
}

/* Lanes l0 .. l0+nq-1 (nq <= PER): out += P[i][l] x V rows i0 .. i0+m-1; NC
 * = D / 8 vectors per row, a constant of each instance. */
static inline __attribute__((always_inline)) void av_rows(const fitlm_att_lanes *a, const float *st, const float *buf,
                                                          int64_t i0, int m, int l0, int nq, const int NC,
                                                          const int PER) {
    __m256 o[2][32];
    for (int k = 0; k < PER; k++)
        for (int c = 0; c < NC; c++) o[k][c] = k < nq ? _mm256_loadu_ps(a->out[l0 + k] + 8 * c) : _mm256_setzero_ps();
    for (int r = 0; r < m; r++) {
        const float *pr = st + (i0 + r) * 8 + l0;
        for (int c = 0; c < NC; c++) {
            __m256 v = _mm256_loadu_ps(buf + (int64_t)r * NC * 8 + 8 * c);
            for (int k = 0; k < PER; k++)
                if (k < nq) o[k][c] = _mm256_fmadd_ps(_mm256_set1_ps(pr[k]), v, o[k][c]);
        }
    }
    for (int k = 0; k < PER; k++)
        if (k < nq)
            for (int c = 0; c < NC; c++) _mm256_storeu_ps(a->out[l0 + k] + 8 * c, o[k][c]);
}

/* fitlm_att_load_rows with F16 rows converted here, 8 values per
 * instruction (exact: the same floats; see attention_avx512.c). */
static inline void load_rows(const fitlm_att_lanes *a, const uint8_t *base, int64_t p0, int m, float *buf) {
    if (a->kv_type != FITLM_TYPE_F16) {
        fitlm_att_load_rows(a, base, p0, m, buf);
        return;
    }
    const int64_t D = a->D;
    fitlm_att_prefetch_f16_ahead(a, base, p0);
    for (int r = 0; r < 8; r++) {
        float *dst = buf + (int64_t)r * D;
        if (r < m) {
            const uint16_t *src = fitlm_att_f16_row(a, base, p0 + r);
            for (int64_t d = 0; d < D; d += 8)
                _mm256_storeu_ps(dst + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + d))));
        } else {
            for (int64_t d = 0; d < D; d += 8) _mm256_storeu_ps(dst + d, _mm256_setzero_ps());
        }
    }
}

void fitlm_attention_lanes_avx2(const fitlm_att_lanes *a) {
    const int D = (int)a->D, nl = a->n_lanes;
    const int64_t plo = a->plo, n = a->phi - a->plo + 1;
    float *qt = a->scratch, *st = qt + (int64_t)D * 8, *buf = st + ((n + 7) & ~(int64_t)7) * 8;
    int32_t lo32[8], hi32[8];
    for (int l = 0; l < 8; l++) {
        lo32[l] = l < nl ? (int32_t)a->lo[l] : 1;
        hi32[l] = l < nl ? (int32_t)a->hi[l] : 0; /* an empty range: the lane is always masked */
    }
    const __m256i lo = _mm256_loadu_si256((const __m256i *)lo32), hi = _mm256_loadu_si256((const __m256i *)hi32);
    for (int d = 0; d < D; d++)
        for (int l = 0; l < 8; l++) qt[(int64_t)d * 8 + l] = l < nl ? a->q[l][d] : 0.0f;

    /* scores, 8 positions at a time: lane l of st[i] = scale x K[plo+i] . q_l */
    const __m256 scale = _mm256_set1_ps(a->scale), ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
        int m = n - i0 < 8 ? (int)(n - i0) : 8;
        load_rows(a, a->k_base, plo + i0, m, buf);
        __m256 acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
        for (int d = 0; d < D; d++) {
            __m256 qd = _mm256_loadu_ps(qt + (int64_t)d * 8);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(buf[(int64_t)r * D + d]), qd, acc[r]);
        }
        for (int r = 0; r < m; r++) {
            __m256 s = _mm256_blendv_ps(ninf, _mm256_mul_ps(acc[r], scale), lanes_at(lo, hi, plo + i0 + r));
            _mm256_storeu_ps(st + (i0 + r) * 8, s);
            mx = _mm256_max_ps(mx, s);
        }
    }
    /* softmax down each lane: e = exp(s - max) (0 outside the lane's range),
     * the sum in double, then e / sum */
    __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < n; i++) {
        __m256 e = _mm256_and_ps(lanes_at(lo, hi, plo + i), exp256(_mm256_sub_ps(_mm256_loadu_ps(st + i * 8), mx)));
        _mm256_storeu_ps(st + i * 8, e);
        sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    const __m256d one = _mm256_set1_pd(1.0);
    __m256 inv = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_div_pd(one, sum1)), _mm256_cvtpd_ps(_mm256_div_pd(one, sum0)));
    for (int64_t i = 0; i < n; i++) _mm256_storeu_ps(st + i * 8, _mm256_mul_ps(_mm256_loadu_ps(st + i * 8), inv));

    /* outputs: lane l's D floats += P[i][l] x V[plo+i], positions in order */
    const int nc = D / 8;
    for (int l = 0; l < nl; l++) memset(a->out[l], 0, (size_t)D * sizeof(float));
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
        int m = n - i0 < 8 ? (int)(n - i0) : 8;
        load_rows(a, a->v_base, plo + i0, m, buf);
        for (int l0 = 0; l0 < nl; l0 += (nc <= 8 ? 2 : 1)) {
            switch (nc) { /* the common head sizes as constants: accumulators in registers */
            case 8: av_rows(a, st, buf, i0, m, l0, nl - l0 < 2 ? nl - l0 : 2, 8, 2); break;
            case 16: av_rows(a, st, buf, i0, m, l0, 1, 16, 1); break;
            default:
                if (nc <= 8) av_rows(a, st, buf, i0, m, l0, nl - l0 < 2 ? nl - l0 : 2, nc, 2);
                else av_rows(a, st, buf, i0, m, l0, 1, nc, 1);
                break;
            }
        }
    }
}
