/* Attention for up to 16 queries that share one KV head ("lanes": query heads
 * of one group, several tokens of a prompt), AVX-512 (compiled with the
 * AVX-512 flags; only called when that ISA is active).
 *
 * The queries are transposed once (QT: head_dim x 16 floats), so a cache row
 * against all 16 queries is head_dim fmas of a broadcast K element by one QT
 * row, no horizontal sums; scores stay transposed (one 16-lane vector per
 * position), the softmax runs lane-wise down the positions, and each lane's
 * output accumulates P x V rows with the weight broadcast from memory. Every
 * lane's arithmetic is the same sequence of operations whatever the other
 * lanes hold (positions outside a lane's range are masked to an exact 0), so a
 * prompt processed in tiles gives the bits that token-by-token decode gives. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/attention.h"
#include "format/ggml_type.h"
#include "backend/cpu/ops.h"

/* e^x in 16 lanes, the polynomial of ops_avx2.c's exp256 (about 1 ulp); x is
 * clamped to [-87.3, 88.37] (callers mask the lanes that must be 0). */
static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.37626f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-87.33654f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/* 8 cache rows (buf) against the 16 transposed queries: acc[r] lane l = K_r . q_l */
static inline void scores8(const float *qt, const float *buf, const int D, __m512 *acc) {
    for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        __m512 qd = _mm512_load_ps(qt + (int64_t)d * 16);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(buf[(int64_t)r * D + d]), qd, acc[r]);
    }
}

/* Lanes l0 .. l0+nq-1 (nq <= per): out += P[i][l] x V rows i0 .. i0+m-1;
 * NC = D / 16 vectors per row, a constant of each instance. */
static inline __attribute__((always_inline)) void av_rows(const fitlm_att_lanes *a, const float *st, const float *buf,
                                                          int64_t i0, int m, int l0, int nq, const int NC,
                                                          const int PER) {
    __m512 o[4][16];
    for (int k = 0; k < PER; k++)
        for (int c = 0; c < NC; c++) o[k][c] = k < nq ? _mm512_loadu_ps(a->out[l0 + k] + 16 * c) : _mm512_setzero_ps();
    for (int r = 0; r < m; r++) {
        const float *pr = st + (i0 + r) * 16 + l0;
#pragma GCC unroll 16
        for (int c = 0; c < NC; c++) {
            __m512 v = _mm512_loadu_ps(buf + (int64_t)r * NC * 16 + 16 * c);
#pragma GCC unroll 4
            for (int k = 0; k < PER; k++)
                if (k < nq) o[k][c] = _mm512_fmadd_ps(_mm512_set1_ps(pr[k]), v, o[k][c]);
        }
    }
    for (int k = 0; k < PER; k++)
        if (k < nq)
            for (int c = 0; c < NC; c++) _mm512_storeu_ps(a->out[l0 + k] + 16 * c, o[k][c]);
}

/* Lanes whose range [lo, hi] holds position p. */
static inline __mmask16 lanes_at(__m512i lo, __m512i hi, int64_t p) {
    __m512i pv = _mm512_set1_epi32((int)p);
    return _mm512_cmp_epi32_mask(lo, pv, _MM_CMPINT_LE) & _mm512_cmp_epi32_mask(pv, hi, _MM_CMPINT_LE);
}

/* fitlm_att_load_rows with F16 rows converted here, 16 values per
 * instruction (the conversion is exact: the same floats). The generic
 * routine went through a function and a type switch per row, and decode's
 * attention spent more time converting than multiplying (13 % of a decode
 * profile at 1 K positions against 8 % in the kernel). */
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
            for (int64_t d = 0; d < D; d += 16)
                _mm512_storeu_ps(dst + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + d))));
        } else {
            for (int64_t d = 0; d < D; d += 16) _mm512_storeu_ps(dst + d, _mm512_setzero_ps());
        }
    }
}

void fitlm_attention_lanes_avx512(const fitlm_att_lanes *a) {
    const int D = (int)a->D, nl = a->n_lanes;
    const int64_t plo = a->plo, n = a->phi - a->plo + 1;
    float *qt = a->scratch, *st = qt + (int64_t)D * 16, *buf = st + n * 16;
    int32_t lo32[16], hi32[16];
    for (int l = 0; l < 16; l++) {
        lo32[l] = l < nl ? (int32_t)a->lo[l] : 1;
        hi32[l] = l < nl ? (int32_t)a->hi[l] : 0; /* an empty range: the lane is always masked */
    }
    const __m512i lo = _mm512_loadu_si512(lo32), hi = _mm512_loadu_si512(hi32);
    for (int d = 0; d < D; d++)
        for (int l = 0; l < 16; l++) qt[(int64_t)d * 16 + l] = l < nl ? a->q[l][d] : 0.0f;

    /* scores, 8 positions at a time: lane l of st[i] = scale x K[plo+i] . q_l */
    const __m512 scale = _mm512_set1_ps(a->scale), ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
        int m = n - i0 < 8 ? (int)(n - i0) : 8;
        load_rows(a, a->k_base, plo + i0, m, buf);
        __m512 acc[8];
        scores8(qt, buf, D, acc);
        for (int r = 0; r < m; r++) {
            __mmask16 in = lanes_at(lo, hi, plo + i0 + r);
            __m512 s = _mm512_mask_mov_ps(ninf, in, _mm512_mul_ps(acc[r], scale));
            _mm512_store_ps(st + (i0 + r) * 16, s);
            mx = _mm512_max_ps(mx, s);
        }
    }
    /* softmax down each lane: e = exp(s - max) (0 outside the lane's range),
     * the sum in double, then e / sum */
    __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i++) {
        __mmask16 in = lanes_at(lo, hi, plo + i);
        __m512 e = _mm512_maskz_mov_ps(in, exp512(_mm512_sub_ps(_mm512_load_ps(st + i * 16), mx)));
        _mm512_store_ps(st + i * 16, e);
        sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    __m512 inv = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_div_pd(_mm512_set1_pd(1.0), sum0))),
                                    _mm512_cvtpd_ps(_mm512_div_pd(_mm512_set1_pd(1.0), sum1)), 1);
    for (int64_t i = 0; i < n; i++) _mm512_store_ps(st + i * 16, _mm512_mul_ps(_mm512_load_ps(st + i * 16), inv));

    /* outputs: lane l's D floats += P[i][l] x V[plo+i], positions in order;
     * lanes in groups whose accumulators fit the registers */
    const int nc = D / 16, per = nc <= 4 ? 4 : nc <= 8 ? 2 : 1;
    for (int l = 0; l < nl; l++) memset(a->out[l], 0, (size_t)D * sizeof(float));
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
        int m = n - i0 < 8 ? (int)(n - i0) : 8;
        load_rows(a, a->v_base, plo + i0, m, buf);
        for (int l0 = 0; l0 < nl; l0 += per) {
            int nq = nl - l0 < per ? nl - l0 : per;
            switch (nc) { /* the common head sizes as constants: accumulators in registers */
            case 4: av_rows(a, st, buf, i0, m, l0, nq, 4, 4); break;
            case 8: av_rows(a, st, buf, i0, m, l0, nq, 8, 2); break;
            default: av_rows(a, st, buf, i0, m, l0, nq, nc, per); break;
            }
        }
    }
}
