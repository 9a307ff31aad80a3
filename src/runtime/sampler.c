/* Token sampling: repetition penalty, greedy, top-k, top-p, min-p, temperature. */
#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

fitlm_sampler_params fitlm_sampler_params_default(void) {
    fitlm_sampler_params p = {.temp = 0.8f,
                              .top_k = 40,
                              .top_p = 0.95f,
                              .min_p = 0.05f,
                              .repeat_penalty = 1.0f,
                              .repeat_last_n = 64,
                              .seed = 0};
    return p;
}

int fitlm_sampler_params_check(const fitlm_sampler_params *p, fitlm_error *err) {
    if (!(p->temp >= 0.0f) || !isfinite(p->temp)) return fitlm_fail(err, "temperature must be >= 0 (got %g)", (double)p->temp);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) return fitlm_fail(err, "top-p must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) return fitlm_fail(err, "min-p must be in [0, 1] (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return fitlm_fail(err, "repeat penalty must be > 0 (got %g)", (double)p->repeat_penalty);
    if (p->repeat_last_n < 0) return fitlm_fail(err, "repeat-last-n must be >= 0 (got %d)", p->repeat_last_n);
    return 0;
}

/* ---- PCG32 ---- */

void fitlm_rng_seed_stream(fitlm_rng *r, uint64_t initstate, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1) | 1u;
    fitlm_rng_u32(r);
    r->state += initstate;
    fitlm_rng_u32(r);
}

void fitlm_rng_seed(fitlm_rng *r, uint64_t seed) {
    fitlm_rng_seed_stream(r, seed ^ 0x853c49e6748fea9bull, seed);
}

uint32_t fitlm_rng_u32(fitlm_rng *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ull + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32 - rot) & 31));
}

float fitlm_rng_uniform(fitlm_rng *r) {
    return (float)(fitlm_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* ---- candidates ---- */

void fitlm_cand_from_logits(fitlm_candidates *c, const float *logits, size_t vocab) {
    for (size_t i = 0; i < vocab; i++) {
        c->data[i].id = (int32_t)i;
        c->data[i].logit = logits[i];
        c->data[i].p = 0.0f;
    }
    c->n = vocab;
    c->sorted = false;
}

void fitlm_cand_penalize(fitlm_candidates *c, const int32_t *recent, size_t n_recent, float penalty, uint8_t *seen) {
    if (penalty == 1.0f) return;
    for (size_t i = 0; i < n_recent; i++) {
        int32_t id = recent[i];
        if (id < 0 || (size_t)id >= c->n || seen[id]) continue;
        seen[id] = 1;
        float *l = &c->data[id].logit;
        if (*l > 0.0f)
            *l /= penalty;
        else
            *l *= penalty;
    }
    for (size_t i = 0; i < n_recent; i++)
        if (recent[i] >= 0 && (size_t)recent[i] < c->n) seen[recent[i]] = 0;
}

int32_t fitlm_cand_argmax(const fitlm_candidates *c) {
    size_t best = 0;
    for (size_t i = 1; i < c->n; i++) {
        const fitlm_token_prob *a = &c->data[i], *b = &c->data[best];
        if (a->logit > b->logit || (a->logit == b->logit && a->id < b->id)) best = i;
    }
    return c->data[best].id;
}

/* Descending logit, ascending id on ties (a total order: reproducible). */
static int cmp_desc(const void *x, const void *y) {
    const fitlm_token_prob *a = x, *b = y;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

/* Sorts c->data in cmp_desc's order (descending logit, ascending id): an
 * LSD radix sort of 64-bit keys (the logit's order-preserving bits inverted,
 * then the id) in 11-bit digits, skipping digits every key shares; about 10x
 * faster than qsort over a 32k-128k vocabulary (a full sort per token is what
 * sampling without top-k costs). Uses c->sort_scratch when given; falls back
 * to qsort when ids are negative, a logit is NaN or no scratch can be had.
 * The p fields are zeroed (every caller recomputes them after sorting). */
static void sort_desc(fitlm_candidates *c) {
    enum { BITS = 11, BUCKETS = 1 << BITS };
    size_t n = c->n;
    uint64_t *key = n > 64 ? c->sort_scratch : NULL, *own = NULL;
    if (n > 64 && !key) key = own = malloc(2 * n * sizeof *key);
    bool ok = key != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const fitlm_token_prob *t = &c->data[i];
        if (t->id < 0 || isnan(t->logit)) {
            ok = false;
            break;
        }
        uint32_t b;
        memcpy(&b, &t->logit, sizeof b);
        if (b == 0x80000000u) b = 0; /* -0 ties with +0, as in cmp_desc */
        b = (b & 0x80000000u) ? ~b : (b | 0x80000000u); /* ascending with the float */
        key[i] = ((uint64_t)~b << 32) | (uint32_t)t->id;
    }
    if (!ok) {
        free(own);
        qsort(c->data, n, sizeof *c->data, cmp_desc);
        return;
    }
    uint32_t count[BUCKETS];
    uint64_t *src = key, *dst = key + n;
    for (int shift = 0; shift < 64; shift += BITS) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++) count[(src[i] >> shift) & (BUCKETS - 1)]++;
        if (count[(src[0] >> shift) & (BUCKETS - 1)] == n) continue; /* one digit value: nothing moves */
        uint32_t sum = 0;
        for (size_t d = 0; d < BUCKETS; d++) {
            uint32_t k = count[d];
            count[d] = sum;
            sum += k;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & (BUCKETS - 1)]++] = src[i];
        uint64_t *t = src;
        src = dst, dst = t;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t b = ~(uint32_t)(src[i] >> 32);
        b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
        c->data[i].id = (int32_t)(uint32_t)src[i];
        memcpy(&c->data[i].logit, &b, sizeof b);
        c->data[i].p = 0.0f;
    }
    free(own);
}

static bool before(const fitlm_token_prob *a, const fitlm_token_prob *b) {
    return cmp_desc(a, b) < 0;
}

/* Min-heap on "before" order: the root is the worst of the kept k. */
static void heap_down(fitlm_token_prob *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && before(&h[w], &h[l])) w = l;
        if (r < n && before(&h[w], &h[r])) w = r;
        if (w == i) return;
        fitlm_token_prob t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

void fitlm_cand_top_k(fitlm_candidates *c, int32_t k) {
    if (k <= 0 || (size_t)k >= c->n) {
        if (!c->sorted) sort_desc(c);
        c->sorted = true;
        return;
    }
    if (!c->sorted) {
        /* keep the best k in a heap at the front, then sort just those */
        size_t kk = (size_t)k;
        for (size_t i = kk / 2; i-- > 0;) heap_down(c->data, kk, i);
        for (size_t i = kk; i < c->n; i++) {
            if (before(&c->data[i], &c->data[0])) {
                c->data[0] = c->data[i];
                heap_down(c->data, kk, 0);
            }
        }
        qsort(c->data, kk, sizeof *c->data, cmp_desc);
        c->sorted = true;
    }
    c->n = (size_t)k;
}

void fitlm_cand_softmax(fitlm_candidates *c) {
    if (!c->sorted) {
        sort_desc(c);
        c->sorted = true;
    }
    float mx = c->data[0].logit;
    double sum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        c->data[i].p = expf(c->data[i].logit - mx);
        sum += c->data[i].p;
    }
    for (size_t i = 0; i < c->n; i++) c->data[i].p = (float)(c->data[i].p / sum);
}

void fitlm_cand_top_p(fitlm_candidates *c, float top_p) {
    if (top_p >= 1.0f) return;
    fitlm_cand_softmax(c);
    double cum = 0.0;
    size_t keep = c->n;
    for (size_t i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (cum >= top_p) {
            keep = i + 1;
            break;
        }
    }
    c->n = keep;
}

void fitlm_cand_min_p(fitlm_candidates *c, float min_p) {
    if (min_p <= 0.0f) return;
    fitlm_cand_softmax(c);
    float thr = min_p * c->data[0].p;
    size_t keep = 1;
    while (keep < c->n && c->data[keep].p >= thr) keep++;
    c->n = keep;
}

int32_t fitlm_cand_sample(fitlm_candidates *c, float temp, fitlm_rng *rng) {
    for (size_t i = 0; i < c->n; i++) c->data[i].logit /= temp;
    fitlm_cand_softmax(c);
    float u = fitlm_rng_uniform(rng);
    double cum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (u < cum) return c->data[i].id;
    }
    return c->data[c->n - 1].id; /* rounding: u just below 1 */
}

/* ---- sampler ---- */

struct fitlm_sampler {
    fitlm_sampler_params p;
    size_t vocab;
    fitlm_token_prob *cand; /* vocab entries */
    uint64_t *sort_scratch; /* 2 x vocab keys for the full sort */
    uint8_t *seen;          /* vocab bytes */
    int32_t *recent;        /* ring of repeat_last_n ids */
    size_t n_recent, head;
    fitlm_rng rng;
};

fitlm_sampler *fitlm_sampler_new(const fitlm_sampler_params *p, size_t vocab, fitlm_error *err) {
    if (fitlm_sampler_params_check(p, err)) return NULL;
    if (vocab == 0) {
        fitlm_fail(err, "empty vocabulary");
        return NULL;
    }
    fitlm_sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    s->vocab = vocab;
    s->cand = malloc(vocab * sizeof *s->cand);
    s->sort_scratch = malloc(2 * vocab * sizeof *s->sort_scratch);
    s->seen = calloc(vocab, 1);
    s->recent = malloc(((size_t)p->repeat_last_n + 1) * sizeof *s->recent);
    if (!s->cand || !s->sort_scratch || !s->seen || !s->recent) goto oom;
    fitlm_rng_seed(&s->rng, p->seed);
    return s;
oom:
    fitlm_sampler_free(s);
    fitlm_fail(err, "out of memory for the sampler");
    return NULL;
}

void fitlm_sampler_free(fitlm_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->sort_scratch);
    free(s->seen);
    free(s->recent);
    free(s);
}

void fitlm_sampler_accept(fitlm_sampler *s, int32_t id) {
    size_t cap = (size_t)s->p.repeat_last_n;
    if (cap == 0) return;
    s->recent[s->head] = id;
    s->head = (s->head + 1) % cap;
    if (s->n_recent < cap) s->n_recent++;
}

/* Greedy without a penalty: the highest logit, lowest id on ties (what
 * fitlm_cand_argmax picks), read straight from the logits. */
static int32_t argmax_logits(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

double fitlm_logsumexp(const float *x, size_t n) {
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fitlm_logsumexp_avx2(x, n);
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double z = 0;
    for (size_t i = 0; i < n; i++) z += exp((double)x[i] - mx);
    return mx + log(z);
}

int32_t fitlm_sampler_sample(fitlm_sampler *s, const float *logits) {
    if (s->p.temp <= 0.0f && (s->p.repeat_penalty == 1.0f || s->n_recent == 0)) return argmax_logits(logits, s->vocab);
    fitlm_candidates c = {.data = s->cand, .sort_scratch = s->sort_scratch};
    fitlm_cand_from_logits(&c, logits, s->vocab);
    /* the ring holds the last n_recent ids (order does not matter) */
    fitlm_cand_penalize(&c, s->recent, s->n_recent, s->p.repeat_penalty, s->seen);
    if (s->p.temp <= 0.0f) return fitlm_cand_argmax(&c);
    fitlm_cand_top_k(&c, s->p.top_k);
    fitlm_cand_top_p(&c, s->p.top_p);
    fitlm_cand_min_p(&c, s->p.min_p);
    return fitlm_cand_sample(&c, s->p.temp, &s->rng);
}
