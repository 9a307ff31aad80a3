/* fitlm bench: prompt-processing (pp) and token-generation (tg) speed, in the
 * spirit of llama-bench, plus the weight bandwidth generation achieves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kernels.h"
#include "cli/commands.h"
#include "cli/plan_check.h"
#include "cli/gpu_open.h"
#include "cli/runtime_opts.h"
#include "parallel/parallel.h"
#include "planner/cpu_cost.h"
#include "runtime/memory_report.h"
#include "runtime/sampler.h"

/* The kernels' bandwidth probe (backend/cpu/membw.c), when this tree has it. */
#if defined(__has_include)
#if __has_include("sys/membw.h")
#include "sys/membw.h"
#include "util/clock.h"
#define FITLM_HAVE_MEMBW 1
#endif
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm bench -m MODEL [-p 512] [-n 128] [-t N] [-r REPS] [--kv-type T] [--batch N] [--membw-mib N]\n"
            "                   [--device D] [-ngl N] [--fit]   D: cpu, vulkan or vulkan:N (default: the first discrete GPU, else cpu)\n"
            "  pp: evaluate -p random tokens as one prompt from an empty cache\n"
            "  tg: decode -n tokens one at a time from an empty cache\n"
            "  Each test runs REPS times (default 5) after a warm-up; the table shows the\n"
            "  median tokens/s (and the spread of the runs). For tg it also shows the weight\n"
            "  bytes streamed per token x tokens/s, as GB/s and as a share of the measured\n"
            "  memory read bandwidth (measured over --membw-mib MiB, default 512; 0 skips it),\n"
            "  and against a plain read of the weights' own memory right after each run.\n"
            "  At the end (unless --no-plan-check) the planner's prediction beside the measurement,\n"
            "  per component, with the error (--profile FILE: the host profile from 'fitlm calibrate';\n"
            "  default $XDG_CACHE_HOME/fitlm/host.json or ~/.cache/fitlm/host.json). With layers on a GPU\n"
            "  the speed is the GPU planner's for the catalog card the device name matches\n"
            "  (--plan-gpu NAME: that card of 'fitlm plan --list-gpus' instead).\n");
}


static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, fitlm_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    if (s && s[1]) return s + 1;
    return p;
}

int cmd_bench(int argc, char **argv) {
    runtime_opts o;
    runtime_opts_init(&o);
    o.accept_plan_check = true;
    long n_pp = 512, n_tg = 128, reps = 5, membw_mib = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        /* -p / -n are token counts here, not a prompt */
        if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, INT32_MAX, &n_pp)) return 1;
            continue;
        }
        if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, INT32_MAX, &n_tg)) return 1;
            continue;
        }
        if (!strcmp(a, "--membw-mib")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, 1 << 20, &membw_mib)) return 1;
            continue;
        }
        if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 1, 1000, &reps)) return 1;
            continue;
        }
        int r = runtime_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        usage(stderr);
        return fitlm_die("bench: unknown option '%s'", a);
    }
    if (!o.model_path) return fitlm_die("bench: no model given (use -m MODEL)");
    if (n_pp == 0 && n_tg == 0) return fitlm_die("bench: nothing to do (-p 0 and -n 0)");
    uint32_t need = (uint32_t)(n_pp > n_tg ? n_pp : n_tg);
    if (o.n_ctx == 0) o.n_ctx = need;
    else if (o.n_ctx != UINT32_MAX && o.n_ctx < need)
        return fitlm_die("bench: -c %u is smaller than the %u tokens a test needs", o.n_ctx, need);

    runtime_session s;
    if (runtime_session_open(&s, &o)) return 1;
    int rc = 1;
    fitlm_error err = {{0}};
    const fitlm_model *m = s.model;
    uint32_t vocab = fitlm_runtime_vocab(s.rt);
    int32_t *toks = malloc((size_t)need * sizeof *toks);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    double *tps = malloc((size_t)reps * sizeof *tps);
    /* after each generation run: how fast a plain read loop reads the same
     * weight bytes at that moment (wbw), and the run's share of it (wshare) */
    double *wbw = calloc((size_t)reps, sizeof *wbw), *wshare = calloc((size_t)reps, sizeof *wshare);
    size_t n_regions = fitlm_runtime_weight_regions(s.rt, NULL, NULL, 0);
    const void **reg_addr = malloc((n_regions + 1) * sizeof *reg_addr);
    uint64_t *reg_bytes = malloc((n_regions + 1) * sizeof *reg_bytes);
    if (!toks || !logits || !tps || !wbw || !wshare || !reg_addr || !reg_bytes) {
        fitlm_die("out of memory");
        goto done;
    }
    fitlm_rng rng;
    fitlm_rng_seed(&rng, 42);
    for (uint32_t i = 0; i < need; i++) toks[i] = (int32_t)(fitlm_rng_u32(&rng) % vocab);

    /* warm-up: touches the mapped weights and spins up the threads */
    fitlm_runtime_reset(s.rt);
    if (fitlm_runtime_eval(s.rt, toks, need < 8 ? need : 8, logits, false, &err)) goto fail_err;

    fitlm_runtime_memory mem;
    fitlm_runtime_get_memory(s.rt, &mem);
    int threads = backend_cpu_threads(s.backend);
    /* weight bytes per decoded token: the planner's count (one function for
     * both); a rank of a distributed run reads its share (the runtime's count) */
    fitlm_cpu_work work;
    fitlm_cpu_work_of_model(m, mem.kv_type, &work);
    double per_tok = s.par ? (double)mem.weight_read_per_token : fitlm_cpu_work_decode_bytes(&work);
    printf("| %-20s | %10s | %10s | %-7s | %7s | %-7s | %20s | %12s |\n", "model", "size MiB", "params M", "backend",
           "threads", "test", "t/s", "weights GB/s");
    printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------", "------------", "------------", "---------",
           "---------", "---------", "----------------------", "--------------");
    double tg_median = 0.0, med_of[2] = {0, 0}, best_of[2] = {0, 0};
    /* distributed: what rank 0 communicated per token, and the time it spent in the calls */
    double comm_kib[2] = {0, 0}, comm_ms[2] = {0, 0}, comm_share[2] = {0, 0};
    /* distributed: the plain probe would measure rank 0's threads alone (the
     * plan check's host-now probe measures the whole run's, the others asleep) */
    const bool probe_host = membw_mib > 0 && s.backend->device == FITLM_DEVICE_CPU;
    if (s.par) membw_mib = 0;
    for (int test = 0; test < 2; test++) {
        long n = test == 0 ? n_pp : n_tg;
        if (n == 0) continue;
        fitlm_comm_stats c0 = {0}, c1 = {0};
        double t_all = 0.0;
        if (s.par) fitlm_parallel_stats(s.par, &c0);
        for (long r = 0; r < reps; r++) {
            fitlm_runtime_reset(s.rt);
            double t0 = fitlm_now_s();
            if (test == 0) {
                if (fitlm_runtime_eval(s.rt, toks, (uint32_t)n, logits, false, &err)) goto fail_err;
            } else {
                for (long i = 0; i < n; i++)
                    if (fitlm_runtime_eval(s.rt, toks + i, 1, logits, false, &err)) goto fail_err;
            }
            double dt = fitlm_now_s() - t0;
            t_all += dt;
            tps[r] = (double)n / (dt > 0 ? dt : 1e-9);
#ifdef FITLM_HAVE_MEMBW
            if (test == 1 && membw_mib > 0 && s.backend->device == FITLM_DEVICE_CPU) {
                fitlm_runtime_weight_regions(s.rt, reg_addr, reg_bytes, n_regions);
                wbw[r] = fitlm_measure_read_bandwidth_of(fitlm_backend_cpu_pool(s.backend), reg_addr, reg_bytes,
                                                         n_regions, 2);
                double run_gbs = tps[r] * per_tok / 1e9;
                wshare[r] = wbw[r] > 0 ? run_gbs / wbw[r] : 0.0;
            }
#endif
        }
        if (s.par) {
            fitlm_parallel_stats(s.par, &c1);
            double toks_all = (double)n * (double)reps;
            comm_kib[test] = (double)(c1.bytes - c0.bytes) / 1024.0 / toks_all;
            comm_ms[test] = (c1.seconds - c0.seconds) * 1e3 / toks_all;
            comm_share[test] = t_all > 0 ? (c1.seconds - c0.seconds) / t_all : 0.0;
        }
        double lo = tps[0], hi = tps[0];
        for (long r = 1; r < reps; r++) {
            if (tps[r] < lo) lo = tps[r];
            if (tps[r] > hi) hi = tps[r];
        }
        double med = median(tps, (int)reps);
        med_of[test] = med;
        best_of[test] = hi;
        char tname[32], tcell[64], bw[32];
        snprintf(tname, sizeof tname, "%s%ld", test == 0 ? "pp" : "tg", n);
        snprintf(tcell, sizeof tcell, "%.2f (%.0f-%.0f)", med, lo, hi);
        if (test == 1) {
            tg_median = med;
            snprintf(bw, sizeof bw, "%.2f", med * per_tok / 1e9);
        } else {
            snprintf(bw, sizeof bw, "-");
        }
        printf("| %-20.20s | %10.2f | %10.3f | %-7s | %7d | %-7s | %20s | %12s |\n", base_name(o.model_path),
               (double)mem.weight_bytes / (1024.0 * 1024.0), (double)fitlm_model_tensor_elements(m) / 1e6, s.backend->name,
               threads, tname, tcell, bw);
        fflush(stdout);
    }
    if (s.par) {
        printf("\ndistributed: --tp %u x --pp %u, %d threads per rank%s; rank 0 = tensor rank 0 of stage 0 "
               "(layers %u-%u); weights GB/s counts rank 0's share\n",
               s.par->tp_size, s.par->pp_size, threads, s.par->turns ? ", the stages in turns" : "", s.par->layer0,
               s.par->layer1 - 1);
        for (int test = 0; test < 2; test++)
            if (test == 0 ? n_pp : n_tg)
                printf("communication (rank 0), %s: %.2f KiB sent per token, %.4f ms per token in the calls "
                       "(%.1f%% of the time, waiting for the other ranks included)\n",
                       test == 0 ? "prompt" : "generation", comm_kib[test], comm_ms[test], 100.0 * comm_share[test]);
    }
    double gbs = 0, bw_now = 0;
    if (n_tg > 0) {
        gbs = tg_median * per_tok / 1e9;
        printf("\ngeneration streams %.3f MB of weights per token: %.2f GB/s at %.2f tokens/s\n", per_tok / 1e6, gbs,
               tg_median);
    }
    /* the memory report comes before the bandwidth probe, whose buffer would
     * otherwise show in the peak RSS */
    fitlm_runtime_get_memory(s.rt, &mem);
    fitlm_memory_report_print(stdout, &mem, &m->hp);
    uint64_t peak_rss = fitlm_peak_rss_bytes();
    gpu_print_memory(stdout, s.backend, m->hp.n_layers);
#ifdef FITLM_HAVE_MEMBW
    if (n_tg > 0 && membw_mib > 0 && s.backend->device == FITLM_DEVICE_CPU) {
        double peak = fitlm_measure_read_bandwidth(fitlm_backend_cpu_pool(s.backend), (size_t)membw_mib << 20);
        bw_now = peak > 0 ? peak * 1e9 : 0;
        if (peak > 0)
            printf("\nmeasured memory read bandwidth (%d threads, %ld MiB): %.2f GB/s; generation reaches %.1f%% of it\n",
                   threads, membw_mib, peak, 100.0 * gbs / peak);
        else
            printf("\nmemory read bandwidth: could not allocate %ld MiB to measure it\n", membw_mib);
        /* the same comparison, run by run, against the weights' own memory read
         * by a plain loop right after the run (same pages, same threads, same
         * moment: the machine's bandwidth moves between runs on shared hosts) */
        if (wbw[0] > 0) {
            double mb = median(wbw, (int)reps), ms = median(wshare, (int)reps);
            printf("reading the weights' own memory with a plain loop after each run: %.2f GB/s (median of %ld); "
                   "generation reaches %.1f%% of it (median of the runs' shares)\n",
                   mb, reps, 100.0 * ms);
        }
    }
#else
    (void)membw_mib;
    (void)gbs;
#endif
    if (o.plan_check != 0) {
        /* the token ids the runs looked up (the embedding rows touched) */
        plan_check_run pr = {.mem = &mem,
                             .peak_rss = peak_rss,
                             .threads = threads,
                             .embd_ids = {toks},
                             .n_embd_ids = {need},
                             .positions_used = need,
                             .n_prompt = (uint32_t)n_pp,
                             .pp_tps_median = med_of[0],
                             .pp_tps_best = best_of[0],
                             .ctx0 = 0,
                             .n_gen = (uint32_t)n_tg,
                             .tg_tps_median = med_of[1],
                             .tg_tps_best = best_of[1],
                             .probe_now = s.par ? probe_host && n_tg > 0 : bw_now > 0,
                             .read_bw_now = bw_now,
                             .tp = s.par ? s.par->tp_size : 1,
                             .pp = s.par ? s.par->pp_size : 1,
                             .turns = s.par && s.par->turns,
                             .layer0 = s.par ? s.par->layer0 : 0,
                             .layer1 = s.par ? s.par->layer1 : 0,
                             .par = s.par,
                             .gpu = gpu_device_running(s.backend),
                             .model_path = o.model_path,
                             .gpu_layers = gpu_layers_running(s.backend),
                             .plan_gpu = o.plan_gpu};
        if (plan_check_print(stdout, m, o.profile_path, &pr)) goto done;
    }
    rc = 0;
    goto done;
fail_err:
    fitlm_error_print(&err);
done:
    free(toks);
    free(logits);
    free(tps);
    free(wbw);
    free(wshare);
    free(reg_addr);
    free(reg_bytes);
    runtime_session_close(&s);
    return rc;
}
