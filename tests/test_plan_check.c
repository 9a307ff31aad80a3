/* The runtime's memory, predicted (runtime/mem_model.h, what the planner and
 * `bench --plan-check` print) against the runtime's own accounting
 * (fitlm_runtime_get_memory) on the real stories260K model: every component
 * within 3 % (the target), over contexts, micro-batches, thread counts
 * and KV types. Exactness is expected (same formulas), the 3 % is the
 * contract. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "planner/cpu_cost.h"
#include "runtime/kv_cache.h"
#include "runtime/mem_model.h"
#include "runtime/runtime.h"

static double rel_err(double pred, double meas) {
    if (meas == 0) return pred == 0 ? 0 : 1;
    return fabs(pred - meas) / meas;
}

static void check_one(const fitlm_model *m, int threads, uint32_t n_ctx, uint32_t ub, int kv_type) {
    fitlm_error err = {{0}};
    fitlm_backend *be = fitlm_backend_new("cpu", threads, &err);
    CHECK(be != NULL, "cpu backend: %s", err.msg);
    if (!be) return;
    fitlm_runtime_params p = fitlm_runtime_params_default();
    p.n_ctx = n_ctx;
    p.n_ubatch = ub;
    p.kv_type = kv_type;
    fitlm_runtime *rt = fitlm_runtime_new(m, be, &p, &err);
    CHECK(rt != NULL, "runtime: %s", err.msg);
    if (rt) {
        fitlm_runtime_memory mem;
        fitlm_runtime_get_memory(rt, &mem);
        fitlm_mem_model pred;
        /* the planner's weight figure: the file's tensor bytes */
        fitlm_mem_model_cpu(&m->hp, fitlm_model_tensor_bytes(m), kv_type, n_ctx, ub, threads, &pred);
        char what[96];
        snprintf(what, sizeof what, "t=%d ctx=%u ub=%u kv=%s", threads, n_ctx, ub, fitlm_type_name(kv_type));
        CHECK(pred.n_ctx == mem.n_ctx && pred.n_ubatch == mem.n_ubatch, "%s: ctx %u/%u ub %u/%u", what, pred.n_ctx,
              mem.n_ctx, pred.n_ubatch, mem.n_ubatch);
        CHECK(rel_err((double)pred.weights, (double)mem.weight_bytes) <= 0.03, "%s: weights %llu vs %llu", what,
              (unsigned long long)pred.weights, (unsigned long long)mem.weight_bytes);
        CHECK(rel_err((double)pred.kv, (double)mem.kv_bytes) <= 0.03, "%s: KV %llu vs %llu", what,
              (unsigned long long)pred.kv, (unsigned long long)mem.kv_bytes);
        CHECK(rel_err((double)pred.scratch, (double)mem.scratch_bytes) <= 0.03, "%s: scratch %llu vs %llu", what,
              (unsigned long long)pred.scratch, (unsigned long long)mem.scratch_bytes);
        double tp = (double)(pred.weights + pred.kv + pred.scratch);
        double tm = (double)(mem.weight_bytes + mem.kv_bytes + mem.scratch_bytes);
        CHECK(rel_err(tp, tm) <= 0.03, "%s: total %.0f vs %.0f", what, tp, tm);
        /* growth per position: one more block of positions adds kv_per_position x 16 to the KV cache */
        CHECK(pred.kv_per_position * (uint64_t)FITLM_RUNTIME_KV_BLOCK ==
                  fitlm_kv_cache_bytes(kv_type, FITLM_RUNTIME_KV_BLOCK, m->hp.n_layers,
                                       (int64_t)m->hp.n_kv_heads * m->hp.head_dim),
              "%s: KV per position", what);
        fitlm_runtime_free(rt);
    }
    be->free(be);
}

/* The planner's work moved to the types the backend runs (F16 matrices of
 * bfloat16 values run as BF16): the output matrix first, then layer bytes
 * with their share of the parameters; the total bytes unchanged. */
static void check_retype(void) {
    fitlm_hparams hp;
    memset(&hp, 0, sizeof hp);
    fitlm_cpu_work w;
    memset(&w, 0, sizeof w);
    w.hp = &hp;
    fitlm_cpu_work_add(&w, FITLM_TYPE_F16, 1000, 500);
    fitlm_cpu_work_add(&w, FITLM_TYPE_F32, 10, 0);
    w.output_type = FITLM_TYPE_F16;
    w.output_bytes = 200;
    w.output_params = 100;
    double total = fitlm_cpu_work_decode_bytes(&w);
    fitlm_cpu_work_retype(&w, FITLM_TYPE_F16, FITLM_TYPE_BF16, 0);
    CHECK(w.output_type == FITLM_TYPE_F16 && w.n == 2, "retype of 0 bytes changes nothing");
    fitlm_cpu_work_retype(&w, FITLM_TYPE_F16, FITLM_TYPE_BF16, 700);
    double f16 = -1, f16p = -1, bf16 = -1, bf16p = -1;
    for (int i = 0; i < w.n; i++) {
        if (w.t[i].type == FITLM_TYPE_F16) f16 = w.t[i].bytes, f16p = w.t[i].params;
        if (w.t[i].type == FITLM_TYPE_BF16) bf16 = w.t[i].bytes, bf16p = w.t[i].params;
    }
    CHECK(w.output_type == FITLM_TYPE_BF16, "the output matrix moves first");
    CHECK(f16 == 500 && f16p == 250 && bf16 == 500 && bf16p == 250, "layer bytes %g/%g params %g/%g", f16, bf16,
          f16p, bf16p);
    CHECK(fitlm_cpu_work_decode_bytes(&w) == total, "total bytes unchanged");
}

/* A batched decode step: each weight type takes the longer of one read of its
 * bytes and `batch` rows at the calibrated batched rate; without that rate
 * (an older profile) the step stays bandwidth-bound. */
static void check_batch_step(void) {
    fitlm_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layers = 1;
    hp.n_heads = hp.n_kv_heads = 1;
    hp.head_dim = 64;
    fitlm_cpu_work w;
    memset(&w, 0, sizeof w);
    w.hp = &hp;
    w.kv_type = FITLM_TYPE_F16;
    fitlm_cpu_work_add(&w, FITLM_TYPE_Q4_0, 1e8, 1.78e8);
    w.output_type = FITLM_TYPE_Q4_0;
    static fitlm_host_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.n_bw = 1;
    prof.read_bw[1] = 10e9;
    prof.threads = 1;
    prof.n_kern = 1;
    prof.kern[0] = (fitlm_kernel_rate){.type = FITLM_TYPE_Q4_0, .repacked = true, .decode_bw = 10e9,
                                       .prefill_flops = 1e11, .batch_flops = 1e10};
    prof.per_layer_s = 1e-6;
    prof.attn_decode_flops = 2e9;
    fitlm_cpu_pred tg;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 0, 0, 0, 1, &tg);
    /* one position of a further row: its KV read plus its attention (4 x q_dim
     * flops per layer at the calibrated decode rate) */
    double kv1 = (double)fitlm_kv_cache_bytes(FITLM_TYPE_F16, 1, 1, 64) / 10e9 + 4.0 * 64 / 2e9;
    CHECK(fabs(tg.attn_pos_s - kv1) < 1e-15, "attention per position: %g vs %g", tg.attn_pos_s, kv1);
    double s1 = fitlm_cpu_batch_step_s(&tg, &w, 1, 0), s16 = fitlm_cpu_batch_step_s(&tg, &w, 16, 1);
    CHECK(fabs(s1 - tg.decode_s) < 1e-12, "batch 1 = one token: %g vs %g", s1, tg.decode_s);
    double want16 = tg.decode_s - 0.01 + 2.0 * 1.78e8 * 16 / 1e10 + 15 * kv1;
    CHECK(fabs(s16 - want16) < 1e-9, "batch 16 compute-bound: %g vs %g", s16, want16);
    prof.kern[0].batch_flops = 0;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 0, 0, 0, 1, &tg);
    s16 = fitlm_cpu_batch_step_s(&tg, &w, 16, 1);
    CHECK(fabs(s16 - (tg.decode_s + 15 * kv1)) < 1e-9, "no batched rate: bandwidth-bound %g", s16);

    /* timed row counts: one row's 10 ms matrices (1e8 bytes at 10 GB/s) times
     * the ratio, linear between 2, 4, 8 .. 256 rows, proportional beyond */
    static const double ratio[FITLM_CAL_N_BATCH] = {1.5, 2, 3, 4.5, 8, 15, 29, 57};
    fitlm_cpu_pred pf_old;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 8, 8, 0, 1, &pf_old);
    memcpy(prof.kern[0].batch_ratio, ratio, sizeof ratio);
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 0, 0, 0, 1, &tg);
    CHECK(tg.batch_measured[0], "the ratios are used");
    double s3 = fitlm_cpu_batch_step_s(&tg, &w, 3, 1), s512 = fitlm_cpu_batch_step_s(&tg, &w, 512, 1);
    double want3 = tg.decode_s + 0.01 * 0.75 + 2 * kv1, want512 = tg.decode_s + 0.01 * (57 * 2 - 1) + 511 * kv1;
    CHECK(fabs(fitlm_cpu_batch_step_s(&tg, &w, 1, 0) - tg.decode_s) < 1e-12, "batch 1 with ratios = one token");
    CHECK(fabs(s3 - want3) < 1e-9, "3 rows between the timed 2 and 4: %g vs %g", s3, want3);
    CHECK(fabs(s512 - want512) < 1e-9, "512 rows: 256 rows' time x 2: %g vs %g", s512, want512);
    /* an 8-token prompt micro-batch costs the 8-row time, not the 256-row FLOP/s */
    fitlm_cpu_pred pf_new;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 8, 8, 0, 1, &pf_new);
    double d = pf_new.prefill_s - pf_old.prefill_s, want_d = 0.01 * 3 - 2.0 * 1.78e8 * 8 / 1e11;
    CHECK(fabs(d - want_d) < 1e-9, "8-row micro-batch: %g vs %g", d, want_d);
    /* at 2 threads (a 1-thread profile) the rows beyond the first take half the time */
    prof.n_bw = 2;
    prof.read_bw[2] = 20e9;
    fitlm_cpu_predict(&prof, 0, 0, &w, 2, 0, 0, 0, 1, &tg);
    s3 = fitlm_cpu_batch_step_s(&tg, &w, 3, 1);
    want3 = tg.decode_s + 0.01 * 0.75 / 2 + 2 * ((double)fitlm_kv_cache_bytes(FITLM_TYPE_F16, 1, 1, 64) / 20e9 +
                                                 4.0 * 64 / (2e9 * 2)); /* a 1-thread profile at 2 threads */
    CHECK(fabs(s3 - want3) < 1e-9, "2 threads: %g vs %g", s3, want3);
    memset(prof.kern[0].batch_ratio, 0, sizeof prof.kern[0].batch_ratio);
    prof.n_bw = 1;

    /* a prompt's attention: 4 x q_dim flops per (query, earlier position) pair
     * and layer, n^2 / 2 pairs in all whatever the micro-batches, at the
     * calibrated prompt-attention rate; without it at the F32 kernel's
     * prefill rate (the only kernel of the profile here: Q4_0, so assumed) */
    fitlm_cpu_pred a1, a2;
    prof.attn_prefill_flops = 1e9;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 64, 16, 0, 1, &a1);
    prof.attn_prefill_flops = 4e9;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 64, 16, 0, 1, &a2);
    double attn1 = 4.0 * 64 * 64.0 * 64 / 2 / 1e9;
    CHECK(fabs((a1.prefill_s - a2.prefill_s) - attn1 * 0.75) < 1e-12, "prompt attention at the calibrated rate: %g vs %g",
          a1.prefill_s - a2.prefill_s, attn1 * 0.75);
    prof.attn_prefill_flops = 0;
    fitlm_cpu_predict(&prof, 0, 0, &w, 1, 64, 16, 0, 1, &a2);
    CHECK(a2.rates.attn_flops != 1e9 && a2.rates.attn_flops > 0, "uncalibrated: another rate (%g)", a2.rates.attn_flops);
}

int main(void) {
    check_retype();
    check_batch_step();
    const char *shared = check_env_or_skip("FITLM_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", shared);
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_load(path, &err);
    if (!m) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    static const uint32_t ctxs[] = {0, 1, 17, 64, 100, 256, 512};
    static const uint32_t ubs[] = {0, 1, 7, 32, 512};
    static const int kvs[] = {FITLM_TYPE_F16, FITLM_TYPE_F32, FITLM_TYPE_Q8_0};
    for (int t = 1; t <= 3; t++)
        for (size_t c = 0; c < sizeof ctxs / sizeof ctxs[0]; c++)
            for (size_t u = 0; u < sizeof ubs / sizeof ubs[0]; u++)
                for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
                    if (kvs[k] == FITLM_TYPE_Q8_0 && (m->hp.n_kv_heads * m->hp.head_dim) % 32) continue;
                    if (ctxs[c] > m->hp.ctx_len) continue;
                    check_one(m, t, ctxs[c], ubs[u], kvs[k]);
                }
    fitlm_model_free(m);
    return check_report();
}
