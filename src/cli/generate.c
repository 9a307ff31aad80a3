/* The token generation loop of `fitlm run`. */
#include "cli/generate.h"

#include <stdio.h>
#include <time.h>

double gen_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool is_end(const gen_ctx *g, int32_t id) {
    if (g->tok) return fitlm_tokenizer_is_eog(g->tok, id);
    return id == 1 || id == 2; /* llama2.c: BOS delimits stories (as run.c stops), EOS */
}

int generate_tokens(gen_ctx *g, long n_predict, bool feed_last, gen_result *r, fitlm_error *err) {
    r->n = 0;
    r->n_eval = 0;
    r->stop_id = -1;
    r->reason = "token limit";
    if (n_predict > g->out_cap) n_predict = g->out_cap;
    uint32_t n_ctx = fitlm_runtime_n_ctx(g->rt);
    double t0 = gen_now_s();
    int32_t pending = -1; /* sampled but not yet evaluated */
    while (r->n < n_predict) {
        int32_t next = fitlm_sampler_sample(g->smp, g->logits);
        if (is_end(g, next)) {
            r->reason = "end of generation token";
            r->stop_id = next;
            pending = next;
            break;
        }
        g->out[r->n++] = next;
        fitlm_sampler_accept(g->smp, next);
        if (!g->ds) {
            printf("%s%d", r->n > 1 ? " " : "", next);
        } else {
            const char *piece;
            size_t len;
            if (fitlm_detok_stream_push(g->ds, next, &piece, &len, err)) return -1;
            fwrite(piece, 1, len, stdout);
        }
        fflush(stdout);
        pending = next;
        if (r->n == n_predict) break;
        if (fitlm_runtime_n_past(g->rt) >= n_ctx) {
            r->reason = "context full";
            break;
        }
        if (fitlm_runtime_eval(g->rt, &next, 1, g->logits, false, err)) return -1;
        r->n_eval++;
        pending = -1;
    }
    if (feed_last && pending >= 0 && fitlm_runtime_n_past(g->rt) < n_ctx) {
        if (fitlm_runtime_eval(g->rt, &pending, 1, g->logits, false, err)) return -1;
        r->n_eval++;
    }
    if (g->ds) {
        const char *piece;
        size_t len;
        fitlm_detok_stream_flush(g->ds, &piece, &len);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    r->seconds = gen_now_s() - t0;
    return 0;
}
