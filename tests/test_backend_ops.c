/* CPU backend ops against straightforward double-precision computations of
 * their definitions: RMSNorm, RoPE (both layouts), SiLU*mul, softmax, the KV
 * row formats (F32, F16, Q8_0 — Q8_0 also decoded by the kernels'
 * dequantizer), the KV dot/axpy inner loops on both the scalar and AVX2 paths,
 * and the attention op (GQA, sliding window, several tokens at an offset,
 * 1 and 3 threads, F32 and F16 caches). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "check.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static uint64_t rng = 0x1234567887654321ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* element i of a KV row, decoded independently of ops.c */
static double kv_at(int type, const void *row, int64_t i) {
    if (type == FITLM_TYPE_F32) return ((const float *)row)[i];
    if (type == FITLM_TYPE_F16) return fitlm_fp16_to_fp32(((const uint16_t *)row)[i]);
    const uint8_t *blk = (const uint8_t *)row + (i / 32) * 34;
    uint16_t d;
    memcpy(&d, blk, 2);
    return (double)fitlm_fp16_to_fp32(d) * (int8_t)blk[2 + i % 32];
}

static void test_elementwise(int avx) {
    enum { N = 67 };
    float x[N], w[N], y[N], g[N], u[N], o[N];
    fitlm_ops_set_avx2(avx);
    for (int i = 0; i < N; i++) {
        x[i] = 3 * frand();
        w[i] = frand();
        g[i] = 4 * frand();
        u[i] = frand();
    }
    /* silu far out on both sides (e^-g huge or tiny) */
    g[3] = 95.0f;
    g[4] = -95.0f;
    g[5] = -30.0f;
    g[6] = 60.0f;
    fitlm_ops_rmsnorm(x, w, 1e-5f, N, y);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
    double sc = 1.0 / sqrt(ss / N + 1e-5);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(y[i] - x[i] * sc * w[i]));
    CHECK(worst < 1e-6, "rmsnorm error %g", worst);

    fitlm_ops_silu_mul(g, u, o, N);
    worst = 0;
    for (int i = 0; i < N; i++) {
        double ref = g[i] / (1 + exp(-(double)g[i])) * u[i];
        worst = fmax(worst, fabs(o[i] - ref) / fmax(1.0, fabs(ref))); /* relative above 1 */
    }
    CHECK(worst < 1e-6, "silu_mul (simd %d) error %g", avx, worst);
    /* e^x itself over the whole float range the kernels use, relative */
    if (avx && fitlm_ops_use_avx2()) {
        double wr = 0;
        for (int k = 0; k <= 20000; k++) {
            float v = -87.0f + 175.0f * (float)k / 20000.0f, e;
            fitlm_ops_exp_avx2(&v, &e, 1);
            wr = fmax(wr, fabs(e - exp((double)v)) / exp((double)v));
        }
        CHECK(wr < 3e-7, "exp relative error %g", wr);
        float bad[3] = {NAN, -200.0f, 0.0f}, eb[3];
        fitlm_ops_exp_avx2(bad, eb, 3);
        CHECK(isnan(eb[0]) && eb[1] >= 0 && eb[1] < 2e-38f && eb[2] == 1.0f, "exp of nan/-200/0: %g %g %g",
              (double)eb[0], (double)eb[1], (double)eb[2]);
    }

    memcpy(o, x, sizeof o);
    fitlm_ops_softmax(o, N);
    double mx = -1e30, z = 0, sum = 0;
    for (int i = 0; i < N; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < N; i++) z += exp(x[i] - mx);
    worst = 0;
    for (int i = 0; i < N; i++) {
        worst = fmax(worst, fabs(o[i] - exp(x[i] - mx) / z));
        sum += o[i];
    }
    CHECK(worst < 1e-6 && fabs(sum - 1) < 1e-5, "softmax (simd %d) error %g sum %g", avx, worst, sum);
    /* a long row with a wide spread (most terms far below the max) */
    enum { L = 1000 };
    static float lx[L], lo[L];
    for (int i = 0; i < L; i++) lx[i] = 40 * frand();
    memcpy(lo, lx, sizeof lo);
    fitlm_ops_softmax(lo, L);
    mx = -1e30;
    z = 0;
    for (int i = 0; i < L; i++) mx = fmax(mx, lx[i]);
    for (int i = 0; i < L; i++) z += exp(lx[i] - mx);
    worst = 0;
    for (int i = 0; i < L; i++) worst = fmax(worst, fabs(lo[i] - exp(lx[i] - mx) / z));
    CHECK(worst < 1e-6, "softmax (simd %d) of %d wide values: error %g", avx, L, worst);
    fitlm_ops_set_avx2(1);
}

static void test_rope(void) {
    enum { H = 3, D = 12 };
    float inv[D / 2];
    for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / D);
    for (int layout = 0; layout < 2; layout++) {
        float x[H * D], y[H * D];
        for (int i = 0; i < H * D; i++) x[i] = frand();
        memcpy(y, x, sizeof y);
        int64_t pos = 37;
        fitlm_ops_rope(y, H, D, pos, inv, (fitlm_rope_layout)layout);
        double worst = 0;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D / 2; i++) {
                int a = layout == FITLM_ROPE_ADJACENT ? 2 * i : i, b = layout == FITLM_ROPE_ADJACENT ? 2 * i + 1 : i + D / 2;
                double th = pos * (double)inv[i];
                double ra = x[h * D + a] * cos(th) - x[h * D + b] * sin(th);
                double rb = x[h * D + a] * sin(th) + x[h * D + b] * cos(th);
                worst = fmax(worst, fmax(fabs(ra - y[h * D + a]), fabs(rb - y[h * D + b])));
            }
        CHECK(worst < 2e-5, "rope layout %d error %g", layout, worst);
    }
}

static void test_kv_rows(void) {
    enum { N = 96 };
    float src[N];
    for (int i = 0; i < N; i++) src[i] = 5 * frand();
    src[40] = 0; /* exact zero survives */
    const int types[3] = {FITLM_TYPE_F32, FITLM_TYPE_F16, FITLM_TYPE_Q8_0};
    for (int avx = 0; avx < 2; avx++) {
        fitlm_ops_set_avx2(avx);
        for (int ti = 0; ti < 3; ti++) {
            int t = types[ti];
            uint8_t row[N * 4];
            CHECK(fitlm_ops_kv_row_bytes(t, N) == (t == FITLM_TYPE_F32 ? 384u : t == FITLM_TYPE_F16 ? 192u : 102u),
                  "row bytes type %d", t);
            fitlm_ops_kv_store_row(t, src, row, N);
            double tol = t == FITLM_TYPE_F32 ? 0 : t == FITLM_TYPE_F16 ? 5.0 / 1024 : 5.0 / 127 * 0.51;
            double worst = 0;
            for (int i = 0; i < N; i++) worst = fmax(worst, fabs(kv_at(t, row, i) - src[i]));
            CHECK(worst <= tol, "type %d avx %d: store error %g > %g", t, avx, worst, tol);
            if (t == FITLM_TYPE_F16)
                for (int i = 0; i < N; i++)
                    CHECK(((uint16_t *)row)[i] == fitlm_fp32_to_fp16(src[i]), "f16 rounding at %d", i);
            /* dot and axpy at odd offsets and lengths (crossing Q8_0 blocks) */
            const int offs[3] = {0, 5, 29}, lens[3] = {8, 27, 64};
            for (int k = 0; k < 3; k++) {
                float q[N], acc[N], acc0[N];
                for (int i = 0; i < lens[k]; i++) {
                    q[i] = frand();
                    acc[i] = acc0[i] = frand();
                }
                double want = 0, mag = 0;
                for (int i = 0; i < lens[k]; i++) {
                    want += q[i] * kv_at(t, row, offs[k] + i);
                    mag += fabs(q[i] * kv_at(t, row, offs[k] + i));
                }
                float got = fitlm_ops_kv_dot(t, row, offs[k], q, lens[k]);
                CHECK(fabs(got - want) <= 1e-6 * mag + 1e-7, "type %d avx %d dot off %d len %d: %g vs %g", t, avx,
                      offs[k], lens[k], got, want);
                fitlm_ops_kv_axpy(t, row, offs[k], 0.75f, acc, lens[k]);
                double we = 0;
                for (int i = 0; i < lens[k]; i++)
                    we = fmax(we, fabs(acc[i] - (acc0[i] + 0.75 * kv_at(t, row, offs[k] + i))));
                CHECK(we < 1e-5, "type %d avx %d axpy error %g", t, avx, we);
            }
            /* whole rows as floats (the attention lanes' loads): exactly the
             * stored values, at block-aligned offsets (the vector path) and not */
            const int roffs[3] = {0, 32, 5}, rlens[3] = {96, 64, 40};
            for (int k = 0; k < 3; k++) {
                float outv[N];
                fitlm_ops_kv_row_f32(t, row, roffs[k], outv, rlens[k]);
                int diff = 0;
                for (int i = 0; i < rlens[k]; i++) diff += outv[i] != (float)kv_at(t, row, roffs[k] + i);
                CHECK(diff == 0, "type %d avx %d row off %d len %d: %d values differ", t, avx, roffs[k], rlens[k], diff);
            }
        }
    }
    fitlm_ops_set_avx2(1);
    /* Q8_0 bytes follow the GGUF block definition: d = max|x| / 127 stored as
     * fp16, q = round(x / d) */
    uint8_t mine[102];
    fitlm_ops_quantize_q8_0(src, mine, N);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        double amax = 0;
        for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(src[b * 32 + i]));
        float d = (float)(amax / 127.0);
        uint16_t dh;
        memcpy(&dh, mine + b * 34, 2);
        if (dh != fitlm_fp32_to_fp16(d)) bad++;
        for (int i = 0; i < 32; i++) {
            int q = (int)lrintf(src[b * 32 + i] / d);
            int got = (int8_t)mine[b * 34 + 2 + i];
            if (abs(q - got) > 0 && fabs(fabs(src[b * 32 + i] / d - q) - 0.5) > 1e-3) bad++;
        }
    }
    CHECK(bad == 0, "Q8_0 blocks differ from the definition at %d places", bad);
    float back[N];
    fitlm_ops_dequantize_q8_0(mine, back, N);
    float back2[N];
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q8_0, mine, back2, N) == 0, "kernels dequantize_row Q8_0");
    CHECK(!memcmp(back, back2, sizeof back), "Q8_0 dequantization equals the kernels'");
}

/* naive attention in double from the cache contents: nt tokens of one
 * sequence at positions pos0.., position j in slot table[j >> shift] << shift
 * | (j & mask) */
static void naive_attention(int type, const uint8_t *k, const uint8_t *v, uint64_t row_bytes, const int32_t *table,
                            int shift, const float *q, int64_t nt, int64_t pos0, int H, int KV, int D,
                            uint32_t window, double *out) {
    for (int64_t t = 0; t < nt; t++)
        for (int h = 0; h < H; h++) {
            int64_t pos = pos0 + t, kvh = h / (H / KV);
            double s[256], mx = -1e300, z = 0;
            for (int64_t j = 0; j <= pos; j++) {
                bool vis = !window || pos - j < (int64_t)window;
                if (!vis) {
                    s[j] = -INFINITY;
                    continue;
                }
                int64_t slot = ((int64_t)table[j >> shift] << shift) | (j & ((1 << shift) - 1));
                double d = 0;
                for (int i = 0; i < D; i++) d += q[(t * H + h) * D + i] * kv_at(type, k + slot * row_bytes, kvh * D + i);
                s[j] = d / sqrt((double)D);
                mx = fmax(mx, s[j]);
            }
            for (int64_t j = 0; j <= pos; j++) z += isinf(s[j]) ? 0 : exp(s[j] - mx);
            for (int i = 0; i < D; i++) {
                double a = 0;
                for (int64_t j = 0; j <= pos; j++) {
                    int64_t slot = ((int64_t)table[j >> shift] << shift) | (j & ((1 << shift) - 1));
                    if (!isinf(s[j])) a += exp(s[j] - mx) / z * kv_at(type, v + slot * row_bytes, kvh * D + i);
                }
                out[(t * H + h) * D + i] = a;
            }
        }
}

/* Two sequences in one paged pool (blocks of 8 slots in a shuffled order, the
 * two sequences' blocks interleaved), queried together in one call: each
 * token's output against the naive reference through its block table, and
 * bit-identical to the same sequence's tokens queried alone. */
static void test_attention(void) {
    enum { H = 8, KV = 2, CTX = 200, SHIFT = 3, NB = 2 * CTX / 8 };
    const int types[3] = {FITLM_TYPE_F32, FITLM_TYPE_F16, FITLM_TYPE_Q8_0};
    const int threads[2] = {1, 3};
    int32_t perm[NB];
    for (int i = 0; i < NB; i++) perm[i] = i;
    for (int i = NB - 1; i > 0; i--) {
        int j = (int)(frand() * 0.5f * (float)(i + 1) + 0.5f * (float)(i + 1)) % (i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t table0[NB / 2], table1[NB / 2];
    for (int i = 0; i < NB / 2; i++) {
        table0[i] = perm[2 * i];
        table1[i] = perm[2 * i + 1];
    }
    const int32_t *tables[2] = {table0, table1};
    /* head_dim 16 (the 8-wide SIMD steps) and 12 (the generic loops); SIMD
     * and scalar ops */
    for (int variant = 0; variant < 4; variant++)
    for (int ti = 0; ti < 3; ti++)
        for (int th = 0; th < 2; th++)
            for (int wi = 0; wi < 4; wi++) {
                const int D = variant & 1 ? 12 : 16;
                if (types[ti] == FITLM_TYPE_Q8_0 && (KV * D) % 32) continue;
                fitlm_ops_set_avx2(variant & 2 ? 0 : 1);
                uint32_t window = wi & 1 ? 7 : 0;
                /* 9 tokens per sequence: whole KV groups per work item; 1 token
                 * (decode) on 3 threads: groups are split so every thread has work */
                int64_t nt = wi & 2 ? 1 : 9, pos0 = wi & 2 ? 190 : 150, pos1 = wi & 2 ? 37 : 101;
                fitlm_error err;
                fitlm_backend *be = fitlm_backend_cpu_new(threads[th], &err);
                CHECK(be != NULL, "backend: %s", err.msg);
                if (!be) return;
                CHECK(be->reserve(be, 2 * (uint32_t)nt, CTX, H, KV, D, &err) == 0, "reserve");
                fitlm_btensor kc, vc, q, o, o1, src;
                be->alloc(be, types[ti], KV * D, 2 * CTX, &kc, &err);
                be->alloc(be, types[ti], KV * D, 2 * CTX, &vc, &err);
                be->alloc(be, FITLM_TYPE_F32, H * D, 2 * nt, &q, &err);
                be->alloc(be, FITLM_TYPE_F32, H * D, 2 * nt, &o, &err);
                be->alloc(be, FITLM_TYPE_F32, H * D, nt, &o1, &err);
                be->alloc(be, FITLM_TYPE_F32, KV * D, 2 * CTX, &src, &err);
                /* positions 0..CTX-1 of both sequences, stored through their tables */
                int64_t slots[2 * CTX];
                for (int sq = 0; sq < 2; sq++)
                    for (int p = 0; p < CTX; p++)
                        slots[sq * CTX + p] = ((int64_t)tables[sq][p >> SHIFT] << SHIFT) | (p & 7);
                for (int64_t i = 0; i < 2 * CTX * KV * D; i++) ((float *)src.data)[i] = frand();
                be->kv_store(be, &kc, slots, &src, 2 * CTX);
                for (int64_t i = 0; i < 2 * CTX * KV * D; i++) ((float *)src.data)[i] = frand();
                be->kv_store(be, &vc, slots, &src, 2 * CTX);
                for (int64_t i = 0; i < 2 * nt * H * D; i++) ((float *)q.data)[i] = 2 * frand();
                int32_t pos[18], seq[18];
                for (int64_t t = 0; t < nt; t++) {
                    pos[t] = (int32_t)(pos0 + t);
                    seq[t] = 0;
                    pos[nt + t] = (int32_t)(pos1 + t);
                    seq[nt + t] = 1;
                }
                fitlm_attn_batch ab = {.n_tokens = 2 * nt, .pos = pos, .seq = seq, .block_table = tables,
                                       .block_shift = SHIFT};
                be->attention(be, &q, &kc, &vc, &ab, H, KV, D, window, &o);
                uint64_t rb = fitlm_ops_kv_row_bytes(types[ti], KV * D);
                double *want = malloc(sizeof(double) * 2 * nt * H * D);
                naive_attention(types[ti], kc.data, vc.data, rb, table0, SHIFT, q.data, nt, pos0, H, KV, D, window,
                                want);
                naive_attention(types[ti], kc.data, vc.data, rb, table1, SHIFT, (float *)q.data + nt * H * D, nt,
                                pos1, H, KV, D, window, want + nt * H * D);
                double worst = 0;
                for (int64_t i = 0; i < 2 * nt * H * D; i++) worst = fmax(worst, fabs(((float *)o.data)[i] - want[i]));
                CHECK(worst < 2e-5, "attention type %d head_dim %d simd %d threads %d window %u tokens %lld: error %g",
                      types[ti], D, !(variant & 2), threads[th], window, (long long)nt, worst);
                /* sequence 1 alone: the same bits as among sequence 0's tokens */
                fitlm_btensor q1 = fitlm_btensor_rows(&q, nt, nt);
                fitlm_attn_batch ab1 = {.n_tokens = nt, .pos = pos + nt, .seq = seq + nt, .block_table = tables,
                                        .block_shift = SHIFT};
                be->attention(be, &q1, &kc, &vc, &ab1, H, KV, D, window, &o1);
                CHECK(!memcmp(o1.data, (float *)o.data + nt * H * D, sizeof(float) * nt * H * D),
                      "attention of a sequence alone equals it among others (type %d D %d threads %d window %u)",
                      types[ti], D, threads[th], window);
                free(want);
                be->release(be, &kc);
                be->release(be, &vc);
                be->release(be, &q);
                be->release(be, &o);
                be->release(be, &o1);
                be->release(be, &src);
                be->free(be);
            }
    fitlm_ops_set_avx2(1);
}

/* get_rows and copy_slots */
static void test_rows_ops(void) {
    fitlm_error err;
    fitlm_backend *be = fitlm_backend_cpu_new(2, &err);
    CHECK(be != NULL, "backend");
    if (!be) return;
    fitlm_btensor a, b, c;
    be->alloc(be, FITLM_TYPE_F32, 5, 6, &a, &err);
    be->alloc(be, FITLM_TYPE_F32, 5, 3, &b, &err);
    be->alloc(be, FITLM_TYPE_F16, 32, 4, &c, &err);
    for (int i = 0; i < 30; i++) ((float *)a.data)[i] = (float)i;
    int32_t rows[3] = {4, 0, 4};
    be->get_rows(be, &a, rows, 3, &b);
    bool ok = true;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 5; i++) ok &= ((float *)b.data)[r * 5 + i] == (float)(rows[r] * 5 + i);
    CHECK(ok, "get_rows gathers rows 4, 0, 4");
    for (int i = 0; i < 128; i++) ((uint16_t *)c.data)[i] = (uint16_t)i;
    int64_t from[2] = {3, 1}, to[2] = {0, 2};
    be->copy_slots(be, &c, from, to, 2);
    ok = true;
    for (int i = 0; i < 32; i++)
        ok &= ((uint16_t *)c.data)[i] == 96 + i && ((uint16_t *)c.data)[64 + i] == 32 + i &&
              ((uint16_t *)c.data)[32 + i] == 32 + i && ((uint16_t *)c.data)[96 + i] == 96 + i;
    CHECK(ok, "copy_slots copies whole rows 3 -> 0 and 1 -> 2");
    be->release(be, &a);
    be->release(be, &b);
    be->release(be, &c);
    be->free(be);
}

int main(void) {
    test_elementwise(1);
    test_elementwise(0);
    test_rope();
    test_kv_rows();
    test_attention();
    test_rows_ops();
    return check_report();
}
