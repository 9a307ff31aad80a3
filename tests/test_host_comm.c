/* The host's MPI communication figures in the planner (planner/host_comm.h):
 * comm_bench's all-reduce alpha / bandwidth written into the host profile and
 * read back, the assumed figures without them, and the per-step
 * communication the planner adds to tensor / pipeline parallel CPU plans,
 * checked against the formulas written out by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "planner/host_comm.h"

static bool near(double a, double b) {
    return fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b));
}

int main(void) {
    /* assumed without a profile, or with a profile that lacks either figure */
    fitlm_host_comm c;
    fitlm_host_comm_of(NULL, &c);
    CHECK(!c.measured && c.alpha_s == FITLM_ASSUMED_ALLREDUCE_ALPHA_S && c.bw == FITLM_ASSUMED_ALLREDUCE_BW,
          "no profile: assumed figures (%g, %g)", c.alpha_s, c.bw);
    fitlm_host_profile p;
    memset(&p, 0, sizeof p);
    p.allreduce_alpha_s = 1e-6;
    fitlm_host_comm_of(&p, &c);
    CHECK(!c.measured, "alpha without bandwidth is not a measurement");
    p.allreduce_bw = 5e9;
    fitlm_host_comm_of(&p, &c);
    CHECK(c.measured && c.alpha_s == 1e-6 && c.bw == 5e9, "measured figures used (%g, %g)", c.alpha_s, c.bw);

    /* one all-reduce: 2 ranks are exactly the fit T = alpha + m / bw; 4 ranks
     * a ring of 2(n-1) = 6 steps of alpha/2 moving 2(n-1)/n = 1.5 m */
    CHECK(near(fitlm_host_allreduce_s(&c, 8192, 2), 1e-6 + 8192 / 5e9), "2 ranks: %g",
          fitlm_host_allreduce_s(&c, 8192, 2));
    CHECK(near(fitlm_host_allreduce_s(&c, 8192, 4), 6 * 0.5e-6 + 1.5 * 8192 / 5e9), "4 ranks: %g",
          fitlm_host_allreduce_s(&c, 8192, 4));
    CHECK(fitlm_host_allreduce_s(&c, 8192, 1) == 0, "one rank: no communication");

    /* a forward step of a TinyLlama-shaped model (22 layers, dim 2048) */
    fitlm_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layers = 22;
    hp.dim = 2048;
    double row = 2048 * 4.0;
    CHECK(near(fitlm_host_step_comm_s(&c, &hp, 2, 1, 1), 2 * 22 * (1e-6 + row / 5e9)), "TP 2, one token: %g",
          fitlm_host_step_comm_s(&c, &hp, 2, 1, 1));
    CHECK(near(fitlm_host_step_comm_s(&c, &hp, 1, 2, 4), 0.5e-6 + 4 * row / 5e9), "PP 2, four tokens: %g",
          fitlm_host_step_comm_s(&c, &hp, 1, 2, 4));
    CHECK(near(fitlm_host_step_comm_s(&c, &hp, 2, 2, 1), 2 * 22 * (1e-6 + row / 5e9) + 0.5e-6 + row / 5e9),
          "TP 2 x PP 2: %g", fitlm_host_step_comm_s(&c, &hp, 2, 2, 1));
    CHECK(fitlm_host_step_comm_s(&c, &hp, 1, 1, 512) == 0, "one process: no communication");

    /* comm_bench's write: a new profile from this machine's facts, then an
     * update that keeps the other fields */
    const char *tmp = getenv("FITLM_TMP");
    char path[4096];
    snprintf(path, sizeof path, "%s/host-comm-%ld.json", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    unlink(path);
    fitlm_error err = {{0}};
    CHECK(fitlm_host_profile_set_comm(path, 7.5e-7, 5.25e9, &err) == 0, "new profile: %s", err.msg);
    fitlm_host_profile q;
    CHECK(fitlm_host_profile_load(&q, path, &err) == 0, "load: %s", err.msg);
    CHECK(q.allreduce_alpha_s == 7.5e-7 && q.allreduce_bw == 5.25e9, "read back (%g, %g)", q.allreduce_alpha_s,
          q.allreduce_bw);
    CHECK(q.physical_cores >= 1 && q.created[0], "the machine's facts are in it (%d cores, '%s')", q.physical_cores,
          q.created);
    q.per_layer_s = 3.25e-5; /* as if fitlm calibrate had measured it */
    CHECK(fitlm_host_profile_save(&q, path, &err) == 0, "save: %s", err.msg);
    CHECK(fitlm_host_profile_set_comm(path, 9e-7, 4e9, &err) == 0, "update: %s", err.msg);
    CHECK(fitlm_host_profile_load(&q, path, &err) == 0, "load: %s", err.msg);
    CHECK(q.allreduce_alpha_s == 9e-7 && q.allreduce_bw == 4e9 && q.per_layer_s == 3.25e-5,
          "updated, other fields kept (%g, %g, %g)", q.allreduce_alpha_s, q.allreduce_bw, q.per_layer_s);
    fitlm_host_comm_of(&q, &c);
    CHECK(c.measured && c.alpha_s == 9e-7, "the planner reads the written figures");
    /* refused: figures out of range, a profile that is not one */
    CHECK(fitlm_host_profile_set_comm(path, 0, 4e9, &err) != 0 && strstr(err.msg, "out of range"), "alpha 0: %s",
          err.msg);
    CHECK(fitlm_host_profile_set_comm(path, 1e-6, -1, &err) != 0, "negative bandwidth refused");
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"version\": 1, \"cpu\": ", f);
        fclose(f);
    }
    CHECK(fitlm_host_profile_set_comm(path, 1e-6, 4e9, &err) != 0, "a broken profile is not overwritten");
    unlink(path);
    return check_report();
}
