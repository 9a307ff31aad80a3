/* The generation of `fitlm run` through the engine. */
#include "cli/generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double gen_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct printer {
    gen_result *r;
    long cap;
    bool print_ids, done;
    double t_first, t_done;
    fitlm_finish_reason finish;
    char error[512];
} printer;

static void on_event(void *user, const fitlm_gen_event *ev) {
    printer *p = user;
    gen_result *r = p->r;
    if (ev->token >= 0) {
        if (r->n_ids == 0) p->t_first = gen_now_s();
        if (r->n_ids < p->cap) r->ids[r->n_ids++] = ev->token;
        if (ev->eog) {
            r->stop_id = ev->token;
        } else {
            if (p->print_ids) printf("%s%d", r->n > 0 ? " " : "", ev->token);
            r->n++;
        }
    }
    if (!p->print_ids && ev->text_len) fwrite(ev->text, 1, ev->text_len, stdout);
    fflush(stdout);
    if (ev->done) {
        p->done = true;
        p->finish = ev->finish;
        p->t_done = gen_now_s();
        if (ev->error) snprintf(p->error, sizeof p->error, "%s", ev->error);
    }
}

int generate_tokens(fitlm_engine *e, const int32_t *prompt, uint32_t n_prompt, long n_predict,
                    const fitlm_sampler_params *sp, bool print_ids, fitlm_token_constraint *constraint,
                    gen_result *r, fitlm_error *err) {
    fitlm_token_constraint cons = {0};
    if (constraint) cons = *constraint;
    memset(r, 0, sizeof *r);
    r->stop_id = -1;
    r->reason = "token limit";
    uint32_t n_ctx = fitlm_engine_n_ctx(e);
    if (n_prompt >= n_ctx) {
        if (cons.mask) cons.free_state(cons.state);
        return fitlm_fail(err, "context overflow: the prompt has %u tokens, the context holds %u", n_prompt, n_ctx);
    }
    bool capped = false;
    if (n_predict > (long)(n_ctx - n_prompt)) {
        n_predict = (long)(n_ctx - n_prompt); /* what the context allows */
        capped = true;
    }
    printer p = {.r = r, .cap = n_predict + 1, .print_ids = print_ids};
    r->ids = n_predict > 0 ? malloc((size_t)p.cap * sizeof *r->ids) : NULL;
    if (n_predict <= 0 || !r->ids) {
        if (cons.mask) cons.free_state(cons.state);
        return n_predict <= 0 ? 0 : fitlm_fail(err, "out of memory");
    }
    fitlm_request q = {.prompt = prompt,
                       .n_prompt = n_prompt,
                       .max_tokens = (uint32_t)n_predict,
                       .sampling = *sp,
                       .top_logprobs = -1,
                       .constraint = cons,
                       .cb = on_event,
                       .user = &p};
    double t0 = gen_now_s();
    uint64_t id;
    if (fitlm_engine_submit(e, &q, &id, err)) {
        if (cons.mask) cons.free_state(cons.state); /* the engine owns it only once submitted */
        return -1;
    }
    if (fitlm_engine_run_until_idle(e, err)) return -1;
    if (p.finish == FITLM_FINISH_ERROR) return fitlm_fail(err, "%s", p.error);
    if (r->stop_id >= 0) r->reason = "end of generation token";
    else if (capped && r->n == n_predict) r->reason = "context full";
    else if (p.finish == FITLM_FINISH_STOP && cons.mask) r->reason = "output complete";
    r->n_eval = r->n_ids > 0 ? r->n_ids - 1 : 0;
    r->t_first = r->n_ids ? p.t_first - t0 : p.t_done - t0;
    r->seconds = r->n_ids ? p.t_done - p.t_first : 0.0;
    return 0;
}
