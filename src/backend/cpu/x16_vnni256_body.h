/* The Q4_0 / Q8_0 x16 kernel with 256-bit vpdpbusd (AVX-VNNI: Intel Alder
 * Lake and later, AMD Zen 5 desktop parts without AVX-512), included by
 * dot_avxvnni.c (the VEX instruction) and by dot_avxvnni_emu_avx2.c (the same
 * body with the instruction emulated exactly in AVX2, so that machines
 * without AVX-VNNI can test it). The includer defines X16V_DPBUSD(acc, u, s)
 * (acc + the four u8 x s8 products of each 32-bit lane, no saturation) and
 * X16V_NAME(base), the suffix of the functions.
 *
 * The layout is the x16 one (kernels.h): the low 32 bytes of each 64-byte
 * vector are rows 0-7, the high 32 bytes rows 8-15, so each half is a
 * lane-per-row ymm, as in dot_avx2.c. Per token and block the half's sum is
 * the AVX-512 kernel's: 8 vpdpbusd in two chains of 4 starting from the
 * block's offset (the prep: -8 or -128 x the activation sum; codes as
 * unsigned operands, Q4_0's nibble = q + 8, Q8_0's q + 128), one add, one
 * convert and one fma. The integer sum is exact and equals the AVX2 kernel's,
 * so results are the same bits as dot_avx2.c's x16 kernel (tests check it).
 * 16 ymm registers: up to 2 tokens both halves per block (decode streams each
 * byte once), more tokens one pass per half, at most 4 tokens per pass. */
#define X16V_TOKENS 4
#define X16V_INTER 2

static inline __attribute__((always_inline)) __m256i x16v_bc4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static inline __attribute__((always_inline)) void x16v_body(int wtype, int64_t cols, const void *w, const void *a,
                                                            size_t astride, const void *prep, size_t pstride,
                                                            const int nt, float *out, size_t ostride) {
    const int64_t nb = cols / 32;
    const size_t gbytes = wtype == FITLM_TYPE_Q4_0 ? 288 : 544;
    const __m256i m4 = _mm256_set1_epi8(0x0f), sign = _mm256_set1_epi8((char)0x80);
    const int inter = nt <= X16V_INTER;
    for (int pass = 0; pass < (inter ? 1 : 2); pass++) {
        const uint8_t *g = w;
        __m256 acc[2][X16V_TOKENS];
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < nt; t++) acc[hh][t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++, g += gbytes)
            for (int hh = 0; hh < (inter ? 2 : 1); hh++) {
                if (hh == 0) fitlm_repacked_prefetch(g, gbytes, nt, fitlm_repacked_pf_simple_min());
                const int h = inter ? hh : pass;
                const __m256 wsc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
                const uint8_t *cv = g + 32 + 32 * h;
                __m256i c[8]; /* c[m]: columns 4m..4m+3 of the block, lane k = row 8h + k */
                if (wtype == FITLM_TYPE_Q4_0) {
                    for (int m = 0; m < 4; m++) { /* byte i: column i (low nibble) and i + 16 (high) */
                        __m256i raw = _mm256_loadu_si256((const __m256i *)(cv + 64 * m));
                        c[m] = _mm256_and_si256(raw, m4);
                        c[m + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    }
                } else {
                    for (int m = 0; m < 8; m++)
                        c[m] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(cv + 64 * m)), sign);
                }
                for (int t = 0; t < nt; t++) {
                    const uint8_t *row = (const uint8_t *)a + (size_t)t * astride;
                    const int8_t *aq = act_q8_qs(row) + 32 * b;
                    const int32_t *off = (const int32_t *)((const uint8_t *)prep + (size_t)t * pstride);
                    __m256i p = _mm256_set1_epi32(off[b]), q = _mm256_setzero_si256();
                    for (int m = 0; m < 4; m++) {
                        p = X16V_DPBUSD(p, c[m], x16v_bc4(aq + 4 * m));
                        q = X16V_DPBUSD(q, c[m + 4], x16v_bc4(aq + 16 + 4 * m));
                    }
                    __m256 sc = _mm256_mul_ps(wsc, _mm256_set1_ps(act_q8_d(row, nb)[b]));
                    acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(p, q)), sc, acc[hh][t]);
                }
            }
        for (int hh = 0; hh < (inter ? 2 : 1); hh++)
            for (int t = 0; t < nt; t++)
                _mm256_storeu_ps(out + (size_t)t * ostride + 8 * (inter ? hh : pass), acc[hh][t]);
    }
}

/* Token counts above X16V_TOKENS run in tiles of it; the count is a constant
 * of each instance. */
#define X16V_ENTRY(name, wt)                                                                                        \
    static void name(int64_t cols, const void *w, const void *a, size_t astride, const void *prep, size_t pstride,  \
                     int nt, float *out, size_t ostride) {                                                          \
        for (int t0 = 0; t0 < nt; t0 += X16V_TOKENS) {                                                              \
            int n = nt - t0 < X16V_TOKENS ? nt - t0 : X16V_TOKENS;                                                  \
            const void *at = (const uint8_t *)a + (size_t)t0 * astride;                                             \
            const void *pt = (const uint8_t *)prep + (size_t)t0 * pstride;                                          \
            float *o = out + (size_t)t0 * ostride;                                                                  \
            switch (n) {                                                                                            \
            case 4: x16v_body(wt, cols, w, at, astride, pt, pstride, 4, o, ostride); break;                         \
            case 3: x16v_body(wt, cols, w, at, astride, pt, pstride, 3, o, ostride); break;                         \
            case 2: x16v_body(wt, cols, w, at, astride, pt, pstride, 2, o, ostride); break;                         \
            default: x16v_body(wt, cols, w, at, astride, pt, pstride, 1, o, ostride); break;                        \
            }                                                                                                       \
        }                                                                                                           \
    }
X16V_ENTRY(X16V_NAME(rep_q4_0), FITLM_TYPE_Q4_0)
X16V_ENTRY(X16V_NAME(rep_q8_0), FITLM_TYPE_Q8_0)
