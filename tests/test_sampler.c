/* Sampler: each filter against a hand-checkable distribution, the repetition
 * penalty as llama.cpp defines it, greedy ties, PCG32 against the published
 * reference output of pcg32-demo, reproducibility by seed, and the empirical
 * distribution of draws against the exact softmax. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "runtime/sampler.h"

/* probabilities 0.4, 0.3, 0.15, 0.1, 0.05 placed at shuffled ids */
static const int32_t ids_by_rank[5] = {3, 0, 4, 1, 2};
static const double probs_by_rank[5] = {0.4, 0.3, 0.15, 0.1, 0.05};

static void make_logits(float *lg) {
    for (int r = 0; r < 5; r++) lg[ids_by_rank[r]] = (float)log(probs_by_rank[r]);
}

static int has(const fitlm_candidates *c, int32_t id) {
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].id == id) return 1;
    return 0;
}

static fitlm_token_prob buf[16];

static void fresh(fitlm_candidates *c) {
    float lg[5];
    make_logits(lg);
    c->data = buf;
    fitlm_cand_from_logits(c, lg, 5);
}

/* The order every sort must give: descending logit, ascending id on ties
 * (an independent insertion sort over a copy). */
static int order_ok(const fitlm_token_prob *got, const float *lg, int n) {
    static int32_t want[40000];
    for (int i = 0; i < n; i++) {
        int32_t id = i, j = i;
        while (j > 0 && (lg[want[j - 1]] < lg[id] || (lg[want[j - 1]] == lg[id] && want[j - 1] > id))) {
            want[j] = want[j - 1];
            j--;
        }
        want[j] = id;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) bad += got[i].id != want[i] || got[i].logit != lg[want[i]];
    return bad;
}

static void check_full_sort(void) {
    /* a vocabulary-sized candidate list (the radix path) with ties, negative
     * and positive logits, -0 and +0, and -inf (a masked token) */
    enum { V = 3000 };
    static float lg[V];
    static fitlm_token_prob big[V];
    uint64_t st = 12345;
    for (int i = 0; i < V; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        int r = (int)(st >> 33) % 401;
        lg[i] = (float)(r - 200) / 16.0f; /* many exact ties */
    }
    lg[7] = -0.0f, lg[8] = 0.0f, lg[9] = -INFINITY, lg[10] = -INFINITY, lg[11] = 1e30f, lg[12] = -1e-30f;
    fitlm_candidates c = {.data = big};
    fitlm_cand_from_logits(&c, lg, V);
    fitlm_cand_top_k(&c, 0);
    CHECK(c.n == V && c.sorted, "top-k off sorts all %d", V);
    int bad = order_ok(c.data, lg, V);
    CHECK(bad == 0, "full sort: %d of %d places out of the (logit desc, id asc) order", bad, V);
    static uint64_t scratch[2 * V]; /* the sampler's way: caller-owned scratch */
    c.sort_scratch = scratch;
    fitlm_cand_from_logits(&c, lg, V);
    fitlm_cand_softmax(&c);
    bad = order_ok(c.data, lg, V);
    CHECK(bad == 0 && fabs(c.data[0].p - 1.0) < 1e-6, "softmax's sort: %d misplaced, p0 %g", bad, (double)c.data[0].p);
}

int main(void) {
    fitlm_candidates c;
    check_full_sort();

    /* softmax recovers the probabilities, sorted */
    fresh(&c);
    fitlm_cand_softmax(&c);
    for (int r = 0; r < 5; r++) {
        CHECK(c.data[r].id == ids_by_rank[r], "rank %d: id %d", r, c.data[r].id);
        CHECK(fabs(c.data[r].p - probs_by_rank[r]) < 1e-6, "rank %d: p %g", r, (double)c.data[r].p);
    }

    /* top-k */
    fresh(&c);
    fitlm_cand_top_k(&c, 2);
    CHECK(c.n == 2 && c.data[0].id == 3 && c.data[1].id == 0, "top-k 2 keeps ids 3, 0 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_top_k(&c, 0);
    CHECK(c.n == 5, "top-k 0 is off");
    fresh(&c);
    fitlm_cand_top_k(&c, 4);
    CHECK(c.n == 4 && !has(&c, 2), "top-k 4 drops only id 2");

    /* top-p: smallest prefix with cumulative >= p */
    fresh(&c);
    fitlm_cand_top_p(&c, 0.35f);
    CHECK(c.n == 1 && c.data[0].id == 3, "top-p 0.35 keeps 1 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_top_p(&c, 0.65f);
    CHECK(c.n == 2, "top-p 0.65 keeps 2 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_top_p(&c, 0.8f);
    CHECK(c.n == 3 && has(&c, 4), "top-p 0.8 keeps 3 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_top_p(&c, 0.9f);
    CHECK(c.n == 4, "top-p 0.9 keeps 4 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_top_p(&c, 1.0f);
    CHECK(c.n == 5, "top-p 1 is off");

    /* min-p: p >= min_p * p_max (p_max = 0.4) */
    fresh(&c);
    fitlm_cand_min_p(&c, 0.3f); /* threshold 0.12: keeps 0.4 0.3 0.15 */
    CHECK(c.n == 3 && has(&c, 4) && !has(&c, 1), "min-p 0.3 keeps 3 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_min_p(&c, 0.2f); /* threshold 0.08: keeps 4 */
    CHECK(c.n == 4 && has(&c, 1) && !has(&c, 2), "min-p 0.2 keeps 4 (n=%zu)", c.n);
    fresh(&c);
    fitlm_cand_min_p(&c, 1.0f);
    CHECK(c.n == 1 && c.data[0].id == 3, "min-p 1 keeps the top token");

    /* repetition penalty: positive logits divided, negative multiplied, each id once */
    {
        float lg[4] = {2.0f, -2.0f, 0.5f, 3.0f};
        fitlm_token_prob b4[4];
        uint8_t seen[4] = {0};
        fitlm_candidates d = {.data = b4};
        fitlm_cand_from_logits(&d, lg, 4);
        int32_t recent[] = {0, 1, 1, 0};
        fitlm_cand_penalize(&d, recent, 4, 2.0f, seen);
        CHECK(b4[0].logit == 1.0f && b4[1].logit == -4.0f && b4[2].logit == 0.5f && b4[3].logit == 3.0f,
              "penalty: %g %g %g %g", (double)b4[0].logit, (double)b4[1].logit, (double)b4[2].logit,
              (double)b4[3].logit);
        CHECK(!seen[0] && !seen[1], "seen scratch restored");
        /* greedy after the penalty: id 3 */
        CHECK(fitlm_cand_argmax(&d) == 3, "argmax after penalty");
    }
    /* greedy ties: lowest id */
    {
        float lg[4] = {1.0f, 5.0f, 5.0f, -1.0f};
        fitlm_token_prob b4[4];
        fitlm_candidates d = {.data = b4};
        fitlm_cand_from_logits(&d, lg, 4);
        CHECK(fitlm_cand_argmax(&d) == 1, "greedy tie -> lowest id");
    }

    /* PCG32 reference: pcg32-demo (pcg-c-basic), seeded with (42, 54), prints
     * 0xa15c02b7 0x7b47f409 0xba1d3330 0x83d2f293 0xbfa4784b 0xcbed606e */
    {
        static const uint32_t expect[6] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                                           0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
        fitlm_rng r;
        fitlm_rng_seed_stream(&r, 42u, 54u);
        for (int i = 0; i < 6; i++) {
            uint32_t v = fitlm_rng_u32(&r);
            CHECK(v == expect[i], "pcg32 output %d: %08x, expected %08x", i, v, expect[i]);
        }
    }

    /* the sampler: same seed -> same draws, different seeds -> different */
    {
        enum { V = 64, N = 200 };
        float lg[V];
        for (int i = 0; i < V; i++) lg[i] = (float)sin(i * 0.7) * 2.0f;
        fitlm_sampler_params p = fitlm_sampler_params_default();
        p.temp = 1.0f;
        p.top_k = 0;
        p.top_p = 1.0f;
        p.min_p = 0.0f;
        int32_t a[N], b[N], d[N];
        for (int run = 0; run < 3; run++) {
            p.seed = run == 2 ? 1234 : 1233;
            fitlm_sampler *s = fitlm_sampler_new(&p, V, NULL);
            CHECK(s != NULL, "sampler_new");
            if (!s) break;
            for (int i = 0; i < N; i++) (run == 0 ? a : run == 1 ? b : d)[i] = fitlm_sampler_sample(s, lg);
            fitlm_sampler_free(s);
        }
        CHECK(!memcmp(a, b, sizeof a), "same seed, same draws");
        CHECK(memcmp(a, d, sizeof a) != 0, "different seed, different draws");
    }

    /* empirical distribution at temperature 1 and 0.5 (p ~ q^2) over 200k draws */
    {
        float lg[5];
        make_logits(lg);
        for (int pass = 0; pass < 2; pass++) {
            float temp = pass ? 0.5f : 1.0f;
            fitlm_sampler_params p = fitlm_sampler_params_default();
            p.temp = temp;
            p.top_k = 0;
            p.top_p = 1.0f;
            p.min_p = 0.0f;
            p.seed = 7;
            fitlm_sampler *s = fitlm_sampler_new(&p, 5, NULL);
            if (!s) break;
            int counts[5] = {0};
            const int draws = 200000;
            for (int i = 0; i < draws; i++) counts[fitlm_sampler_sample(s, lg)]++;
            fitlm_sampler_free(s);
            double z = 0.0;
            for (int r = 0; r < 5; r++) z += pow(probs_by_rank[r], 1.0 / temp);
            for (int r = 0; r < 5; r++) {
                double expect = pow(probs_by_rank[r], 1.0 / temp) / z;
                double got = (double)counts[ids_by_rank[r]] / draws;
                double sd = sqrt(expect * (1 - expect) / draws);
                CHECK(fabs(got - expect) < 5 * sd, "temp %g rank %d: frequency %g, expected %g", (double)temp, r, got,
                      expect);
            }
        }
    }

    /* full chain: top-k 3 + min-p 0.5 leaves {0.4, 0.3}; draws only those two */
    {
        float lg[5];
        make_logits(lg);
        fitlm_sampler_params p = fitlm_sampler_params_default();
        p.temp = 1.0f;
        p.top_k = 3;
        p.top_p = 1.0f;
        p.min_p = 0.5f;
        p.seed = 3;
        fitlm_sampler *s = fitlm_sampler_new(&p, 5, NULL);
        int other = 0, first = 0;
        for (int i = 0; s && i < 20000; i++) {
            int32_t id = fitlm_sampler_sample(s, lg);
            if (id != 3 && id != 0) other++;
            if (id == 3) first++;
        }
        fitlm_sampler_free(s);
        CHECK(other == 0, "chain drew %d excluded tokens", other);
        /* renormalised: 0.4/0.7 = 0.571 */
        CHECK(fabs(first / 20000.0 - 0.4 / 0.7) < 0.02, "chain share of top token %g", first / 20000.0);
    }

    /* log-sum-exp (the normalizer of the server's logprobs) against a long
     * double sum, on the AVX2 path and the scalar one, with vocabulary-sized
     * inputs and sizes that leave a tail; greedy without a penalty reads the
     * logits directly and must pick what the candidate chain picks */
    {
        enum { NV = 32003 };
        float *x = malloc(NV * sizeof *x);
        uint64_t st = 12345;
        for (int i = 0; i < NV; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 40.0 - 25.0);
        }
        const size_t ns[] = {1, 7, 8, 9, 1000, 32000, NV};
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            size_t n = ns[k];
            long double mx = -INFINITY, z = 0;
            for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (size_t i = 0; i < n; i++) z += expl((long double)x[i] - mx);
            double ref = (double)(mx + logl(z));
            double got = fitlm_logsumexp(x, n);
            CHECK(fabs(got - ref) <= 1e-6 * (1 + fabs(ref)), "logsumexp n=%zu: %.9g vs %.9g", n, got, ref);
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
                double g2 = fitlm_logsumexp_avx2(x, n);
                CHECK(fabs(g2 - ref) <= 1e-6 * (1 + fabs(ref)), "logsumexp avx2 n=%zu: %.9g vs %.9g", n, g2, ref);
            }
        }
        float big[3] = {1000.0f, 999.0f, -1e30f};
        CHECK(fabs(fitlm_logsumexp(big, 3) - (1000.0 + log1p(exp(-1.0)))) < 1e-9, "logsumexp of large logits");
        x[777] = x[31999] = 99.0f; /* a tie: the lower id wins */
        fitlm_sampler_params gp = fitlm_sampler_params_default();
        gp.temp = 0.0f;
        fitlm_error err;
        fitlm_sampler *g = fitlm_sampler_new(&gp, NV, &err);
        CHECK(g && fitlm_sampler_sample(g, x) == 777, "greedy fast path: the highest logit, lowest id on ties");
        fitlm_candidates d = {.data = malloc(NV * sizeof(fitlm_token_prob))};
        fitlm_cand_from_logits(&d, x, NV);
        CHECK(fitlm_cand_argmax(&d) == 777, "candidate argmax agrees");
        free(d.data);
        fitlm_sampler_free(g);
        free(x);
    }

    /* parameter checks */
    {
        fitlm_sampler_params p = fitlm_sampler_params_default();
        fitlm_error err;
        p.temp = -0.1f;
        CHECK(fitlm_sampler_params_check(&p, &err) == -1, "negative temperature refused");
        p = fitlm_sampler_params_default();
        p.top_p = 1.5f;
        CHECK(fitlm_sampler_params_check(&p, &err) == -1, "top-p > 1 refused");
        p = fitlm_sampler_params_default();
        p.min_p = -0.5f;
        CHECK(fitlm_sampler_params_check(&p, &err) == -1, "negative min-p refused");
        p = fitlm_sampler_params_default();
        CHECK(fitlm_sampler_params_check(&p, &err) == 0, "defaults accepted");
    }
    return check_report();
}
