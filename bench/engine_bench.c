/* build/bench/engine_bench -m MODEL.gguf [-t THREADS] [-c CONCURRENCY,...] [-p PROMPT] [-n GEN]
 *
 * The serving engine without HTTP: for each concurrency C, C greedy requests
 * (prompts of PROMPT random ids, GEN tokens each, --ignore-eos) are submitted
 * at once and run to completion; prints wall time, aggregate output tokens/s,
 * steps and mean tokens per step, mean time to first token and mean time per
 * output token after the first (TPOT, as `vllm bench serve`). Batched decode
 * reads each weight once per step for all running sequences, so the
 * aggregate rate should grow far faster than the per-step time. The last
 * column is the planner's decode step for C sequences at the mean context
 * (fitlm_cpu_batch_step_s with the host profile of `fitlm calibrate`, or
 * --profile FILE; "-" without one), beside the measured TPOT. With --probe,
 * a last column gives the same step with the rates that drift on a shared
 * machine measured again right after each concurrency's run
 * (fitlm_host_profile_now: read bandwidth, the model's kernels and the
 * decode attention rate).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "engine/engine.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "planner/cpu_cost.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    double t_first, t_done;
    long n;
} req_times;

static void on_event(void *user, const fitlm_gen_event *ev) {
    req_times *r = user;
    if (ev->token >= 0 && r->n++ == 0) r->t_first = now_s();
    if (ev->done) r->t_done = now_s();
}

int main(int argc, char **argv) {
    const char *model = NULL, *conc = "1,4,16,64", *profile = NULL;
    int threads = 0;
    long prompt = 64, gen = 64;
    bool probe = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) conc = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) prompt = atol(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) gen = atol(argv[++i]);
        else if (!strcmp(argv[i], "--profile") && i + 1 < argc) profile = argv[++i];
        else if (!strcmp(argv[i], "--probe")) probe = true;
        else {
            fprintf(stderr, "usage: engine_bench -m MODEL [-t THREADS] [-c 1,4,16,64] [-p PROMPT] [-n GEN] "
                            "[--profile HOST.json] [--probe]\n");
            return 1;
        }
    }
    if (!model || prompt < 1 || gen < 1 || prompt > 100000 || gen > 100000) {
        fprintf(stderr, "engine_bench: -m MODEL is required; -p and -n from 1\n");
        return 1;
    }
    fitlm_error err;
    fitlm_model *m = fitlm_model_load(model, &err);
    if (!m) {
        fprintf(stderr, "engine_bench: %s\n", err.msg);
        return 1;
    }
    fitlm_backend *be = fitlm_backend_new("cpu", threads, &err);
    if (!be) {
        fprintf(stderr, "engine_bench: %s\n", err.msg);
        return 1;
    }
    /* the planner's step: the host profile (named, else the default file if any) */
    static fitlm_host_profile prof;
    char def[4096];
    bool have_prof = false;
    if (!profile && fitlm_host_profile_default_path(def, sizeof def) == 0) {
        FILE *f = fopen(def, "r");
        if (f) {
            fclose(f);
            profile = def;
        }
    }
    if (profile) {
        if (fitlm_host_profile_load(&prof, profile, &err)) fprintf(stderr, "engine_bench: %s (no prediction)\n", err.msg);
        else have_prof = true;
    }
    fitlm_cpu_work work;
    fitlm_cpu_work_of_model(m, fitlm_engine_params_default().kv_type, &work);
    fitlm_cpu_pred tg;
    double mean_ctx = prompt + gen / 2.0;
    fitlm_cpu_predict(have_prof ? &prof : NULL, 0, 0, &work, threads, 0, 0, (uint32_t)mean_ctx, 1, &tg);
    probe = probe && have_prof;
    printf("%-6s %9s %10s %7s %9s %12s %12s %12s%s\n", "conc", "wall s", "out tok/s", "steps", "tok/step",
           "mean TTFT s", "mean TPOT ms", "planned ms", probe ? "  planned now" : "");
    bool retyped = false;
    char *list = strdup(conc);
    for (char *tokp = strtok(list, ","); tokp; tokp = strtok(NULL, ",")) {
        int c = atoi(tokp);
        if (c < 1 || c > 4096) continue;
        fitlm_engine_params ep = fitlm_engine_params_default();
        ep.n_parallel = (uint32_t)c;
        ep.n_ctx = (uint32_t)(prompt + gen + 1);
        if (ep.n_ctx > m->hp.ctx_len) ep.n_ctx = m->hp.ctx_len;
        ep.max_batch_tokens = 512;
        ep.no_prefix_cache = true; /* distinct work per request */
        fitlm_engine *e = fitlm_engine_new(m, NULL, be, &ep, &err);
        if (!e) {
            fprintf(stderr, "engine_bench: %s\n", err.msg);
            return 1;
        }
        if (!retyped) {
            /* the types the backend runs: F16 matrices of bfloat16 values run as BF16 */
            fitlm_runtime_memory mem;
            fitlm_engine_get_memory(e, &mem);
            fitlm_cpu_work_retype(&work, FITLM_TYPE_F16, FITLM_TYPE_BF16, (double)mem.bf16_from_f16_bytes);
            fitlm_cpu_predict(have_prof ? &prof : NULL, 0, 0, &work, threads, 0, 0, (uint32_t)mean_ctx, 1, &tg);
            retyped = true;
        }
        int32_t *ids = malloc((size_t)prompt * sizeof *ids);
        req_times *rt = calloc((size_t)c, sizeof *rt);
        double t0 = now_s();
        for (int r = 0; r < c; r++) {
            for (long k = 0; k < prompt; k++) ids[k] = (int32_t)((r * 7919 + k * 104729) % (long)m->hp.vocab_size);
            fitlm_request q = {.prompt = ids, .n_prompt = (uint32_t)prompt, .max_tokens = (uint32_t)gen,
                               .top_logprobs = -1, .ignore_eos = true, .cb = on_event, .user = &rt[r]};
            q.sampling = fitlm_sampler_params_default();
            q.sampling.temp = 0.0f;
            uint64_t id;
            if (fitlm_engine_submit(e, &q, &id, &err)) {
                fprintf(stderr, "engine_bench: %s\n", err.msg);
                return 1;
            }
        }
        if (fitlm_engine_run_until_idle(e, &err)) {
            fprintf(stderr, "engine_bench: %s\n", err.msg);
            return 1;
        }
        double t1 = now_s(), ttft = 0, tpot = 0;
        long out = 0;
        for (int r = 0; r < c; r++) {
            out += rt[r].n;
            ttft += rt[r].t_first - t0;
            if (rt[r].n > 1) tpot += (rt[r].t_done - rt[r].t_first) / (double)(rt[r].n - 1);
        }
        fitlm_engine_stats st;
        fitlm_engine_get_stats(e, &st);
        char planned[32] = "-";
        if (have_prof) snprintf(planned, sizeof planned, "%.2f", fitlm_cpu_batch_step_s(&tg, &work, c, mean_ctx) * 1e3);
        fitlm_engine_free(e);
        e = NULL;
        char planned_now[64] = "";
        if (probe) {
            static fitlm_host_profile now;
            fitlm_cpu_pred tg_now;
            if (fitlm_host_profile_now(&prof, threads, 0, &work, &now, &err)) {
                fprintf(stderr, "engine_bench: %s\n", err.msg);
                return 1;
            }
            fitlm_cpu_predict(&now, 0, 0, &work, threads, 0, 0, (uint32_t)mean_ctx, 1, &tg_now);
            snprintf(planned_now, sizeof planned_now, " %12.2f", fitlm_cpu_batch_step_s(&tg_now, &work, c, mean_ctx) * 1e3);
        }
        printf("%-6d %9.2f %10.1f %7llu %9.1f %12.3f %12.2f %12s%s\n", c, t1 - t0, out / (t1 - t0),
               (unsigned long long)st.steps, (double)(st.prompt_tokens + st.generated_tokens) / (double)st.steps,
               ttft / c, tpot / c * 1e3, planned, planned_now);
        fflush(stdout);
        free(ids);
        free(rt);
    }
    free(list);
    be->free(be);
    fitlm_model_free(m);
    return 0;
}
