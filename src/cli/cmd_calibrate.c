/* fitlm calibrate: measures this machine for the CPU cost model the planner
 * and `--plan-check` share (planner/cpu_cost.h) and writes the host profile. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "planner/cpu_cost.h"
#include "planner/gpu_cost.h"
#include "util/error.h"
#include "util/file.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm calibrate [-t N] [--profile FILE] [-m MODEL] [--device D] [--quick] [--print]\n"
            "  Measures this machine (about 100 s; --quick a few seconds) and writes the host profile the\n"
            "  planner and --plan-check read:\n"
            "    read bandwidth with 1..N threads (default N: physical cores),\n"
            "    decode bandwidth and prefill FLOP/s of the real CPU matmul kernels per weight type,\n"
            "    and their time for 2, 4 .. 256 token rows against one row (batched decode, prompts),\n"
            "    the thread-pool dispatch and from it the fixed costs per layer and per token\n"
            "    (-m MODEL: fitted instead from a decode run of that model; a small one is best).\n"
            "  --device D      also measure the GPU D (vulkan, vulkan:N) through fitlm's GPU backend: the\n"
            "                  decode bandwidth and prompt FLOP/s of its kernels per weight type and its fixed\n"
            "                  costs per layer and step (a minute or two), which plan checks on that device use;\n"
            "                  GPUs measured before are kept\n"
            "  --profile FILE  where to write (default $XDG_CACHE_HOME/fitlm/host.json,\n"
            "                  else ~/.cache/fitlm/host.json)\n"
            "  --print         also print the profile (JSON) on stdout\n");
}

int cmd_calibrate(int argc, char **argv) {
    const char *path = NULL, *model = NULL, *device = NULL;
    long threads = 0;
    bool quick = false, print = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = true;
        } else if (!strcmp(a, "--print")) {
            print = true;
        } else if (!strcmp(a, "--profile") || !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-t") ||
                   !strcmp(a, "--threads") || !strcmp(a, "--device")) {
            if (i + 1 >= argc) return fitlm_die("calibrate: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--profile")) path = v;
            else if (!strcmp(a, "--device")) device = v;
            else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
            else {
                char *end;
                threads = strtol(v, &end, 10);
                if (*end || end == v || threads < 1 || threads > FITLM_PROFILE_MAX_THREADS)
                    return fitlm_die("calibrate: %s: '%s' is not a thread count from 1 to %d", a, v,
                                     FITLM_PROFILE_MAX_THREADS);
            }
        } else {
            usage(stderr);
            return fitlm_die("calibrate: unknown option '%s'", a);
        }
    }
    char def[PATH_MAX];
    if (!path) {
        if (fitlm_host_profile_default_path(def, sizeof def))
            return fitlm_die("calibrate: neither XDG_CACHE_HOME nor HOME is set: give --profile FILE");
        path = def;
    }
    fitlm_host_profile *p = calloc(1, sizeof *p), *gp = calloc(1, sizeof *gp);
    if (!p || !gp) {
        free(p);
        free(gp);
        return fitlm_die("out of memory");
    }
    fitlm_error err = {{0}};
    int rc = 1;
    FILE *log = print ? stderr : stdout;
    /* the GPU first: a wrong --device fails before the host's minute and a half */
    if (device && fitlm_calibrate_device(gp, device, (int)threads, quick, log, &err)) goto fail;
    if (fitlm_calibrate_host(p, (int)threads, quick, log, &err)) goto fail;
    if (model && fitlm_calibrate_overheads_with_model(p, model, log, &err)) goto fail;
    { /* keep the MPI all-reduce figures comm_bench wrote (measured separately, under mpirun) */
        fitlm_host_profile *old = malloc(sizeof *old);
        fitlm_error ignored = {{0}};
        if (old && fitlm_file_exists(path) && fitlm_host_profile_load(old, path, &ignored) == 0) {
            p->allreduce_alpha_s = old->allreduce_alpha_s;
            p->allreduce_bw = old->allreduce_bw;
            /* and the GPUs measured before (one measured now replaces its entry) */
            p->n_dev = old->n_dev;
            memcpy(p->dev, old->dev, sizeof p->dev);
        }
        free(old);
    }
    for (int i = 0; i < gp->n_dev; i++) fitlm_host_profile_put_device(p, &gp->dev[i]);
    if (fitlm_host_profile_save(p, path, &err)) goto fail;
    fprintf(log, "wrote %s\n", path);
    if (print) {
        char *s = fitlm_host_profile_json(p);
        if (!s) {
            fitlm_die("out of memory");
            goto done;
        }
        printf("%s\n", s);
        free(s);
    }
    rc = 0;
    goto done;
fail:
    fitlm_error_print(&err);
done:
    free(p);
    free(gp);
    return rc;
}
