/* MPI communication costs of the host for the planner (host_comm.h). */
#include "planner/host_comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "parallel/layout.h"
#include "planner/planner.h"
#include "sys/threadpool.h"
#include "util/file.h"

void fitlm_host_comm_of(const fitlm_host_profile *p, fitlm_host_comm *c) {
    if (p && p->allreduce_alpha_s > 0 && p->allreduce_bw > 0) {
        c->alpha_s = p->allreduce_alpha_s;
        c->bw = p->allreduce_bw;
        c->measured = true;
    } else {
        c->alpha_s = FITLM_ASSUMED_ALLREDUCE_ALPHA_S;
        c->bw = FITLM_ASSUMED_ALLREDUCE_BW;
        c->measured = false;
    }
}

int fitlm_host_link_parse(const char *spec, double *alpha_s, double *bw, char *name, size_t cap, fitlm_error *err) {
    static const struct {
        const char *name;
        double gbps, alpha_us;
    } presets[] = {{"10gbe", 10, 30}, {"25gbe", 25, 30}, {"100gbe", 100, 20}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcasecmp(spec, presets[i].name)) {
            *alpha_s = presets[i].alpha_us * 1e-6;
            *bw = presets[i].gbps * 1e9 / 8 * FITLM_LINK_GOODPUT;
            snprintf(name, cap, "%s", presets[i].name);
            return 0;
        }
    char *end;
    double gbps = strtod(spec, &end);
    if (end != spec && *end == ':') {
        const char *a = end + 1;
        double us = strtod(a, &end);
        if (end != a && !*end && isfinite(gbps) && isfinite(us) && gbps >= 0.01 && gbps <= 100000 && us > 0 &&
            us <= 1e6) {
            *alpha_s = us * 1e-6;
            *bw = gbps * 1e9 / 8 * FITLM_LINK_GOODPUT;
            snprintf(name, cap, "%g Gb/s, %g us", gbps, us);
            return 0;
        }
    }
    return fitlm_fail(err, "--nodes-link: expected 10gbe, 25gbe, 100gbe or GBPS:ALPHA_US (e.g. 40:20), got '%s'",
                      spec);
}

void fitlm_host_comm_for(const fitlm_host_profile *p, double link_alpha_s, double link_bw, fitlm_host_comm *c) {
    if (link_bw > 0 && link_alpha_s > 0) {
        c->alpha_s = link_alpha_s;
        c->bw = link_bw;
        c->measured = false;
        return;
    }
    fitlm_host_comm_of(p, c);
}

double fitlm_host_allreduce_s(const fitlm_host_comm *c, double bytes, int n) {
    if (n < 2) return 0;
    return fitlm_allreduce_time(bytes, n, c->alpha_s / 2, c->bw);
}

double fitlm_host_step_comm_s(const fitlm_host_comm *c, const fitlm_hparams *hp, int T, int P, double rows) {
    double bytes = rows * hp->dim * 4.0;
    double t = T > 1 ? 2.0 * hp->n_layers * fitlm_host_allreduce_s(c, bytes, T) : 0;
    if (P > 1) t += (P - 1) * (c->alpha_s / 2 + bytes / c->bw);
    return t;
}

int fitlm_host_profile_set_comm(const char *path, double alpha_s, double bw, fitlm_error *err) {
    if (!(alpha_s > 0 && alpha_s <= 10) || !(bw > 0 && bw <= 1e14))
        return fitlm_fail(err, "all-reduce figures out of range (alpha %g s, bandwidth %g bytes/s)", alpha_s, bw);
    fitlm_host_profile *p = malloc(sizeof *p);
    if (!p) return fitlm_fail(err, "out of memory");
    if (fitlm_file_exists(path)) {
        if (fitlm_host_profile_load(p, path, err)) {
            free(p);
            return -1;
        }
    } else { /* no calibration yet: this machine's facts and the link figures */
        fitlm_host_facts(p);
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(p->created, sizeof p->created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    }
    p->allreduce_alpha_s = alpha_s;
    p->allreduce_bw = bw;
    int rc = fitlm_host_profile_save(p, path, err);
    free(p);
    return rc;
}

void fitlm_host_pipeline_predict(const fitlm_host_profile *prof, double host_bw, double host_flops,
                                 const fitlm_cpu_work *w, int threads, int P, uint32_t n_prompt, uint32_t ub,
                                 double max_stage, uint32_t ctx0, uint32_t n_gen, fitlm_cpu_pred *pp,
                                 fitlm_cpu_pred *tg) {
    if (P < 2) {
        fitlm_cpu_predict(prof, host_bw, host_flops, w, threads, n_prompt, ub, 0, 0, pp);
        fitlm_cpu_predict(prof, host_bw, host_flops, w, threads, 0, ub, ctx0, n_gen, tg);
        return;
    }
    if (threads <= 0) threads = prof && prof->threads > 0 ? prof->threads : fitlm_physical_cores();
    int stage_threads = threads / P > 0 ? threads / P : 1;
    /* the catalog's whole-host figures (no profile) in proportion to the threads */
    double share = (double)stage_threads / threads;
    double st_bw = host_bw * share, st_flops = host_flops * share;
    fitlm_cpu_predict(prof, st_bw, st_flops, w, stage_threads, n_prompt, ub, 0, 0, pp);
    if (n_prompt > 0 && pp->prefill_s > 0) {
        uint32_t u = ub ? ub : n_prompt;
        double chunks = ceil((double)n_prompt / u);
        double k = fitlm_pp_micro_batches((int64_t)(n_prompt / chunks), (uint32_t)P);
        double f = max_stage >= 1.0 / P && max_stage <= 1 ? max_stage : 1.0 / P;
        pp->prefill_s *= ((k - 1) * f + 1) / k;
        pp->ttft_s = pp->prefill_s;
        pp->pp_tps = n_prompt / pp->prefill_s;
    }
    fitlm_cpu_predict(prof, st_bw, st_flops, w, stage_threads, 0, ub, ctx0, n_gen, tg);
}

double fitlm_host_pipeline_step_s(const fitlm_cpu_pred *tg, const fitlm_cpu_work *w, int P, double max_stage,
                                  double seqs, double ctx) {
    if (P < 2) return fitlm_cpu_batch_step_s(tg, w, seqs, ctx);
    if (seqs < P) return fitlm_cpu_batch_step_s(tg, w, 1, ctx);
    double f = max_stage >= 1.0 / P && max_stage <= 1 ? max_stage : 1.0 / P;
    return P * f * fitlm_cpu_batch_step_s(tg, w, seqs / P, ctx);
}
