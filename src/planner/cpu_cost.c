/* The CPU cost model (cpu_cost.h): prediction from a host profile, and the
 * calibration that measures the profile with the real kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "format/ggml_type.h"
#include "planner/cpu_cost.h"
#include "planner/synth_model.h"
#include "quant/quant.h"
#include "runtime/kv_cache.h"
#include "runtime/memory_report.h"
#include "runtime/runtime.h"
#include "sys/membw.h"
#include "sys/threadpool.h"
#include <unistd.h>
#include "format/gguf.h"
#include "util/clock.h"

/* ---------------------------------------------------------------- work */

void fitlm_cpu_work_add(fitlm_cpu_work *w, int type, double bytes, double params) {
    for (int i = 0; i < w->n; i++)
        if (w->t[i].type == type) {
            w->t[i].bytes += bytes;
            w->t[i].params += params;
            return;
        }
    int i = w->n < FITLM_PROFILE_MAX_TYPES ? w->n++ : FITLM_PROFILE_MAX_TYPES - 1;
    if (i == w->n - 1 && w->t[i].bytes == 0) w->t[i].type = type;
    w->t[i].bytes += bytes;
    w->t[i].params += params;
}

void fitlm_cpu_work_of_model(const fitlm_model *m, int kv_type, fitlm_cpu_work *w) {
    memset(w, 0, sizeof *w);
    w->hp = &m->hp;
    w->kv_type = kv_type;
    static const fitlm_tensor_kind mats[] = {FITLM_T_ATTN_Q,   FITLM_T_ATTN_K,  FITLM_T_ATTN_V,   FITLM_T_ATTN_OUT,
                                             FITLM_T_FFN_GATE, FITLM_T_FFN_UP,  FITLM_T_FFN_DOWN};
    static const fitlm_tensor_kind vecs[] = {FITLM_T_ATTN_NORM,   FITLM_T_FFN_NORM,    FITLM_T_ATTN_Q_BIAS,
                                             FITLM_T_ATTN_K_BIAS, FITLM_T_ATTN_V_BIAS, FITLM_T_ATTN_Q_NORM,
                                             FITLM_T_ATTN_K_NORM};
    for (uint32_t l = 0; l < m->hp.n_layers && m->layer_tensors; l++) {
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            const fitlm_tensor *t = m->layer_tensors[l][mats[i]];
            if (t) fitlm_cpu_work_add(w, t->type, (double)t->nbytes, (double)t->n_elements);
        }
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
            const fitlm_tensor *t = m->layer_tensors[l][vecs[i]];
            if (t) fitlm_cpu_work_add(w, FITLM_TYPE_F32, (double)t->nbytes, 0);
        }
    }
    const fitlm_tensor *onorm = m->global_tensors[FITLM_T_OUTPUT_NORM];
    if (onorm) fitlm_cpu_work_add(w, FITLM_TYPE_F32, (double)onorm->nbytes, 0);
    const fitlm_tensor *out = m->global_tensors[FITLM_T_OUTPUT] ? m->global_tensors[FITLM_T_OUTPUT]
                                                                 : m->global_tensors[FITLM_T_TOKEN_EMBD];
    if (out) {
        w->output_type = out->type;
        w->output_bytes = (double)out->nbytes;
        w->output_params = (double)out->n_elements;
    }
}

double fitlm_cpu_work_decode_bytes(const fitlm_cpu_work *w) {
    double b = w->output_bytes;
    for (int i = 0; i < w->n; i++) b += w->t[i].bytes;
    return b;
}

void fitlm_cpu_work_retype(fitlm_cpu_work *w, int from, int to, double bytes) {
    if (bytes <= 0) return;
    if (w->output_type == from && w->output_bytes > 0 && bytes >= w->output_bytes) {
        w->output_type = to;
        bytes -= w->output_bytes;
    }
    for (int i = 0; i < w->n && bytes > 0; i++) {
        if (w->t[i].type != from || w->t[i].bytes <= 0) continue;
        double b = bytes < w->t[i].bytes ? bytes : w->t[i].bytes;
        double pr = w->t[i].params * b / w->t[i].bytes;
        w->t[i].bytes -= b;
        w->t[i].params -= pr;
        fitlm_cpu_work_add(w, to, b, pr);
        bytes -= b;
    }
}

/* ---------------------------------------------------------------- prediction */

static const fitlm_kernel_rate *find_kern(const fitlm_host_profile *p, int type) {
    if (!p) return NULL;
    for (int i = 0; i < p->n_kern; i++)
        if (p->kern[i].type == type) return &p->kern[i];
    return NULL;
}

static void note(char *dst, size_t cap, const char *what) {
    if (strstr(dst, what)) return;
    size_t n = strlen(dst);
    snprintf(dst + n, cap - n, "%s%s", n ? "; " : "", what);
}

static double bw_at(const fitlm_host_profile *p, int threads) {
    if (!p || p->n_bw < 1) return 0;
    if (threads > p->n_bw) threads = p->n_bw;
    if (threads < 1) threads = 1;
    return p->read_bw[threads];
}

/* The profile's kernel figures were measured at p->threads: at `threads`
 * bandwidth scales by the read bandwidths' ratio, FLOP/s by the threads'
 * (1 and 1 at the profile's threads or without a profile). */
static void thread_scales(const fitlm_host_profile *p, int threads, double *bw_scale, double *fl_scale) {
    *bw_scale = 1, *fl_scale = 1;
    if (!p || p->threads <= 0 || threads == p->threads) return;
    double b0 = bw_at(p, p->threads), b1 = bw_at(p, threads);
    if (b0 > 0 && b1 > 0) *bw_scale = b1 / b0;
    *fl_scale = (double)threads / p->threads;
}

const int fitlm_cal_batch_rows[FITLM_CAL_N_BATCH] = {2, 4, 8, 16, 32, 64, 128, 256};

/* Seconds beyond one row's (one_s) of `rows` rows through a matrix whose
 * extra[k] are those of fitlm_cal_batch_rows[k] rows: linear between the
 * timed counts (and 0 at one row), proportional to the rows beyond the last. */
static double rows_extra_s(const double *extra, double one_s, double rows) {
    if (rows <= 1) return 0;
    double r0 = 1, e0 = 0;
    for (int k = 0; k < FITLM_CAL_N_BATCH; k++) {
        double r1 = fitlm_cal_batch_rows[k], e1 = extra[k];
        if (rows <= r1) return e0 + (e1 - e0) * (rows - r0) / (r1 - r0);
        r0 = r1, e0 = e1;
    }
    return (one_s + e0) * rows / r0 - one_s;
}

void fitlm_cpu_predict(const fitlm_host_profile *prof, double host_bw, double host_flops, const fitlm_cpu_work *w,
                       int threads, uint32_t n_prompt, uint32_t ub, uint32_t ctx0, uint32_t n_gen,
                       fitlm_cpu_pred *out) {
    memset(out, 0, sizeof *out);
    const fitlm_hparams *hp = w->hp;
    if (threads <= 0) threads = prof && prof->threads > 0 ? prof->threads : fitlm_physical_cores();
    if (threads < 1) threads = 1;
    fitlm_cpu_rates *r = &out->rates;
    r->threads = threads;
    r->read_bw = bw_at(prof, threads);
    r->read_bw_measured = r->read_bw > 0;
    if (!r->read_bw_measured) {
        r->read_bw = host_bw > 0 ? host_bw : fmin(FITLM_ASSUMED_BW_PER_CORE * threads, FITLM_ASSUMED_BW_CAP);
        note(out->assumed, sizeof out->assumed, "read bandwidth");
    }
    double bw_scale, fl_scale;
    thread_scales(prof, threads, &bw_scale, &fl_scale);
    double flops_assumed = host_flops > 0 ? host_flops * FITLM_ASSUMED_PREFILL_EFF
                                          : threads * 2.5e9 * 2 * 16 * 2 * FITLM_ASSUMED_PREFILL_EFF;
    out->kernels_measured = true;
    double dec_bw[FITLM_PROFILE_MAX_TYPES + 1], pf_flops[FITLM_PROFILE_MAX_TYPES + 1];
    double *b_flops = out->batch_flops;
    for (int i = 0; i <= w->n; i++) {
        int type = i < w->n ? w->t[i].type : w->output_type;
        const fitlm_kernel_rate *k = find_kern(prof, type);
        if (k && k->decode_bw > 0 && k->prefill_flops > 0) {
            dec_bw[i] = k->decode_bw * bw_scale;
            pf_flops[i] = k->prefill_flops * fl_scale;
            b_flops[i] = k->batch_flops * fl_scale; /* 0: not measured, the step stays bandwidth-bound */
            /* rows beyond the first cost compute: their time at the profile's
             * threads scales with the thread ratio, one row's with the bandwidth */
            double bytes = i < w->n ? w->t[i].bytes : w->output_bytes;
            bool all = true;
            for (int j = 0; j < FITLM_CAL_N_BATCH; j++) {
                if (k->batch_ratio[j] < 1) all = false;
                out->batch_extra_s[i][j] = all ? bytes / k->decode_bw * (k->batch_ratio[j] - 1) / fl_scale : 0;
            }
            out->batch_measured[i] = all;
        } else {
            bool params = i < w->n ? w->t[i].params > 0 : w->output_bytes > 0;
            if (params) {
                out->kernels_measured = false;
                char what[64];
                snprintf(what, sizeof what, "%s kernel rates", fitlm_type_name(type));
                note(out->assumed, sizeof out->assumed, what);
            }
            dec_bw[i] = r->read_bw * FITLM_ASSUMED_DECODE_EFF;
            pf_flops[i] = flops_assumed;
            b_flops[i] = flops_assumed;
        }
    }
    const fitlm_kernel_rate *kf = find_kern(prof, FITLM_TYPE_F32);
    /* a prompt's attention: calibrated (its own kernel, queries side by side
     * in the lanes), else the F32 matmul kernel's prefill rate */
    if (prof && prof->attn_prefill_flops > 0) r->attn_flops = prof->attn_prefill_flops * fl_scale;
    else r->attn_flops = kf && kf->prefill_flops > 0 ? kf->prefill_flops * fl_scale : flops_assumed;
    /* a decode row's attention: calibrated (a single query per sequence keeps
     * most of the attention's lanes empty), else the prompt's rate */
    r->attn_decode_measured = prof && prof->attn_decode_flops > 0;
    r->attn_decode_flops = r->attn_decode_measured ? prof->attn_decode_flops * fl_scale : r->attn_flops;
    if (prof && (prof->per_layer_s > 0 || prof->per_token_s > 0)) {
        r->per_layer_s = prof->per_layer_s;
        r->per_token_s = prof->per_token_s;
        r->matmul_call_s = prof->matmul_call_s;
        r->overhead_measured = true;
    } else {
        r->per_layer_s = FITLM_ASSUMED_PER_LAYER_S;
        r->per_token_s = FITLM_ASSUMED_PER_TOKEN_S;
        note(out->assumed, sizeof out->assumed, "fixed costs per layer and token");
    }
    r->process_base = prof && prof->process_base_bytes > 0 ? prof->process_base_bytes : FITLM_ASSUMED_PROCESS_BASE;

    double L = hp->n_layers, q_dim = (double)hp->n_heads * hp->head_dim;
    double kv_pos = (double)fitlm_kv_cache_bytes(w->kv_type, 1, hp->n_layers, (int64_t)hp->n_kv_heads * hp->head_dim);
    double fixed = L * r->per_layer_s + r->per_token_s + (L * FITLM_MATMUL_CALLS_PER_LAYER + 1) * r->matmul_call_s;
    double out_s = w->output_bytes / dec_bw[w->n];

    /* prefill: micro-batches of ub tokens; each reads every matrix at least once */
    if (n_prompt > 0) {
        if (ub == 0) ub = FITLM_DEFAULT_UBATCH;
        double t = 0;
        for (uint32_t p0 = 0; p0 < n_prompt; p0 += ub) {
            double nc = n_prompt - p0 < ub ? n_prompt - p0 : ub;
            for (int i = 0; i < w->n; i++) {
                double mat = w->t[i].bytes / dec_bw[i];
                /* the timed row counts (the weights from DRAM, as a prompt's
                 * micro-batch reads them), in proportion beyond the last */
                if (out->batch_measured[i])
                    t += mat + rows_extra_s(out->batch_extra_s[i], mat, nc);
                else
                    t += fmax(2.0 * w->t[i].params * nc / pf_flops[i], mat);
            }
            t += 4.0 * L * q_dim * nc * (p0 + nc / 2.0) / r->attn_flops;
            t += kv_pos * (p0 + nc) / r->read_bw;
            t += fixed;
        }
        t += out_s;
        out->prefill_s = t;
        out->pp_tps = n_prompt / t;
        out->ttft_s = t;
    }
    /* decode: one token at the mean context of the generated span */
    double d = fixed + out_s;
    for (int i = 0; i < w->n; i++) {
        out->mat_s[i] = w->t[i].bytes / dec_bw[i];
        d += out->mat_s[i];
    }
    out->mat_s[w->n] = out_s;
    double mean_ctx = ctx0 + (n_gen > 0 ? (n_gen + 1) / 2.0 : 1);
    out->attn_pos_s = kv_pos / r->read_bw + 4.0 * L * q_dim / r->attn_decode_flops;
    d += out->attn_pos_s * mean_ctx;
    out->decode_s = d;
    out->tg_tps = 1.0 / d;
}

double fitlm_cpu_batch_step_s(const fitlm_cpu_pred *tg, const fitlm_cpu_work *w, double batch, double ctx) {
    double others = batch > 1 ? batch - 1 : 0;
    double step = tg->decode_s + others * tg->attn_pos_s * ctx;
    for (int i = 0; i <= w->n && batch > 1; i++) {
        if (tg->batch_measured[i]) {
            step += rows_extra_s(tg->batch_extra_s[i], tg->mat_s[i], batch);
            continue;
        }
        double params = i < w->n ? w->t[i].params : w->output_params;
        if (tg->batch_flops[i] <= 0 || params <= 0) continue;
        double compute = 2.0 * params * batch / tg->batch_flops[i];
        if (compute > tg->mat_s[i]) step += compute - tg->mat_s[i];
    }
    return step;
}

/* ---------------------------------------------------------------- calibration */


static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, fitlm_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void empty_job(void *arg, int ith, int nth) {
    (void)arg;
    (void)ith;
    (void)nth;
}

/* Fills *copies* copies of a random rows x cols matrix of `type` in the
 * layout the CPU backend holds it (repacked where it repacks it), enough of
 * them to fill pool_mib MiB so that matvecs over them stream from DRAM.
 * Returns the malloc'd copies (the caller frees them with free()) and sets
 * *mbytes, *copies and *repacked; NULL when out of memory or not quantizable. */
static uint8_t *make_copies(fitlm_threadpool *pool, int type, int64_t rows, int64_t cols, size_t pool_mib,
                            size_t *mbytes, int *copies, bool *repacked) {
    bool ok = true;
    size_t rb = (size_t)fitlm_type_row_bytes(type, (uint64_t)cols, &ok);
    if (!ok || rb == 0) return NULL;
    size_t mb = rb * (size_t)rows;
    int n = (int)((pool_mib << 20) / mb) + 1;
    uint8_t *plain = malloc(mb);
    float *row = malloc(sizeof(float) * (size_t)cols);
    uint8_t *w = NULL;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    if (!plain || !row) goto done;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            row[c] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5) * 0.04f;
        }
        if (fitlm_quantize_row(type, row, plain + (size_t)r * rb, cols, NULL) < 0) goto done;
    }
    *repacked = fitlm_cpu_repackable(type, rows, cols);
    w = fitlm_cpu_alloc_weights(mb * (size_t)n);
    if (!w) goto done;
    if (*repacked && fitlm_cpu_repack(pool, type, plain, rows, cols, w) != 0) *repacked = false;
    if (!*repacked) memcpy(w, plain, mb);
    for (int c = 1; c < n; c++) memcpy(w + mb * (size_t)c, w, mb);
    *mbytes = mb;
    *copies = n;
done:
    free(plain);
    free(row);
    return w;
}

/* Seconds of the fastest of `passes` one-token passes over all copies (as
 * decode streams a model's matrices one after another). The whole pass is
 * timed, not its fastest stretch: this VM's memory speed differs between
 * regions of physical memory, and a model's weights span many of them. */
static double time_decode_passes(fitlm_threadpool *pool, int type, const uint8_t *w, size_t mbytes, int copies,
                                 bool repacked, int64_t rows, int64_t cols, const float *x, float *y, int passes) {
    double best = 1e30;
    for (int ps = 0; ps < passes; ps++) {
        double t0 = fitlm_now_s();
        for (int c = 0; c < copies; c++) {
            const uint8_t *wc = w + mbytes * (size_t)c;
            if (repacked) fitlm_cpu_matmul_repacked(pool, type, wc, rows, cols, x, 1, y);
            else fitlm_cpu_matmul(pool, type, wc, rows, cols, x, 1, y);
        }
        double t = fitlm_now_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* Times 1 row and each of fitlm_cal_batch_rows up to max_rows rows over the
 * copies from DRAM, in turns (the VM's drifting memory speed then moves them
 * together), the fastest of `passes` passes of each, per copy: tb[0] one row,
 * tb[j + 1] fitlm_cal_batch_rows[j] rows (1e30 where not timed). From 64 rows
 * on (compute takes far longer than the read) a quarter of the copies, still
 * far beyond the caches; quick: one copy. x holds max_rows rows of cols. */
static void time_rows(fitlm_threadpool *pool, int type, const uint8_t *w, size_t mbytes, int copies, bool repacked,
                      int64_t rows, int64_t cols, const float *x, float *y, int max_rows, int passes, bool quick,
                      double tb[FITLM_CAL_N_BATCH + 1]) {
    for (int j = 0; j <= FITLM_CAL_N_BATCH; j++) tb[j] = 1e30;
    for (int ps = 0; ps < passes; ps++)
        for (int j = 0; j <= FITLM_CAL_N_BATCH; j++) {
            int nr = j == 0 ? 1 : fitlm_cal_batch_rows[j - 1];
            int nc = quick ? 1 : nr >= 64 && copies >= 16 ? copies / 4 : copies;
            if (nr > max_rows) break;
            double t0 = fitlm_now_s();
            for (int c = 0; c < nc; c++) {
                const uint8_t *wc = w + mbytes * (size_t)c;
                if (repacked) fitlm_cpu_matmul_repacked(pool, type, wc, rows, cols, x, nr, y);
                else fitlm_cpu_matmul(pool, type, wc, rows, cols, x, nr, y);
            }
            double tt = (fitlm_now_s() - t0) / nc;
            if (tt < tb[j]) tb[j] = tt;
        }
}

/* One kernel type: a matrix of the shape of a TinyLlama FFN projection (rows
 * x cols), in as many copies as fill 384 MiB (quick: 128 MiB) so the decode
 * matvecs stream it from DRAM; repacked where the CPU backend repacks it. */
static int time_kernel(fitlm_threadpool *pool, int type, bool quick, fitlm_kernel_rate *out) {
    const int64_t rows = 2048, cols = 5632;
    size_t mbytes = 0;
    int copies = 0;
    bool repacked = false;
    uint8_t *w = make_copies(pool, type, rows, cols, quick ? 128 : 384, &mbytes, &copies, &repacked);
    if (!w) return -1;
    out->type = type;
    out->repacked = repacked;
    /* quick (for tests): 64-token prefill, batched rows up to 64 over one copy */
    int ntok = quick ? 64 : FITLM_CAL_PREFILL_TOKENS;
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)ntok);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)ntok);
    if (!x || !y) {
        free(x);
        free(y);
        free(w);
        return -1;
    }
    for (int64_t i = 0; i < cols * ntok; i++) x[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
    double t = time_decode_passes(pool, type, w, mbytes, copies, repacked, rows, cols, x, y, quick ? 2 : 4);
    out->decode_bw = (double)mbytes * copies / t;
    /* batched rows: the ratios to one row (time_rows) */
    double tb[FITLM_CAL_N_BATCH + 1];
    time_rows(pool, type, w, mbytes, copies, repacked, rows, cols, x, y, ntok, quick ? 1 : 2, quick, tb);
    for (int j = 0; j < FITLM_CAL_N_BATCH; j++) {
        out->batch_ratio[j] = tb[j + 1] < 1e29 ? tb[j + 1] / tb[0] : 0;
        /* quick: the row counts beyond the x buffer in proportion to the last timed one */
        if (out->batch_ratio[j] == 0 && j > 0)
            out->batch_ratio[j] = out->batch_ratio[j - 1] * fitlm_cal_batch_rows[j] / fitlm_cal_batch_rows[j - 1];
        if (fitlm_cal_batch_rows[j] == FITLM_CAL_BATCH_ROWS)
            out->batch_flops = 2.0 * (double)rows * (double)cols * FITLM_CAL_BATCH_ROWS / tb[j + 1];
    }
    /* prefill: ntok tokens on one copy, the median of three */
    double pt[3];
    for (int rep = 0; rep < 3; rep++) {
        double t0 = fitlm_now_s();
        if (repacked) fitlm_cpu_matmul_repacked(pool, type, w, rows, cols, x, ntok, y);
        else fitlm_cpu_matmul(pool, type, w, rows, cols, x, ntok, y);
        pt[rep] = fitlm_now_s() - t0;
    }
    qsort(pt, 3, sizeof pt[0], fitlm_cmp_double);
    out->prefill_flops = 2.0 * (double)rows * (double)cols * ntok / pt[1];
    free(x);
    free(y);
    free(w);
    return 0;
}

/* The fixed cost of one decode matmul call beyond its bytes, from two shapes
 * streamed from DRAM in alternating passes (a 256 x 2048 matrix, the shape of
 * TinyLlama's K and V projections, and a 2048 x 5632 one): per call
 * t = call + bytes / bw, solved from the two. 0 when the type cannot be timed
 * or the fit is not positive (a disturbed run). */
static double time_matmul_call(fitlm_threadpool *pool, int type, bool quick) {
    const int64_t rows[2] = {256, 2048}, cols[2] = {2048, 5632};
    size_t mbytes[2] = {0, 0};
    int copies[2] = {0, 0};
    bool repacked[2] = {false, false};
    uint8_t *w[2] = {NULL, NULL};
    float *x = malloc(sizeof(float) * 5632), *y = malloc(sizeof(float) * 2048);
    double call = 0;
    for (int k = 0; k < 2; k++)
        w[k] = make_copies(pool, type, rows[k], cols[k], quick ? 128 : 256, &mbytes[k], &copies[k], &repacked[k]);
    if (w[0] && w[1] && x && y) {
        for (int64_t i = 0; i < 5632; i++) x[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
        double best[2] = {1e30, 1e30};
        for (int ps = 0; ps < (quick ? 2 : 4); ps++)
            for (int k = 0; k < 2; k++) {
                double t = time_decode_passes(pool, type, w[k], mbytes[k], copies[k], repacked[k], rows[k], cols[k],
                                              x, y, 1) / copies[k];
                if (t < best[k]) best[k] = t;
            }
        double db = (double)mbytes[1] - (double)mbytes[0], dt = best[1] - best[0];
        if (dt > 0) {
            double bw = db / dt;
            call = best[0] - (double)mbytes[0] / bw;
        }
        if (call < 0) call = 0;
    }
    free(x);
    free(y);
    free(w[0]);
    free(w[1]);
    return call;
}

static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double v = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            v = strtod(line + 6, NULL) * 1024.0;
            break;
        }
    fclose(f);
    return v;
}

int fitlm_calibrate_host(fitlm_host_profile *p, int max_threads, bool quick, FILE *log, fitlm_error *err) {
    fitlm_host_facts(p);
    p->quick = quick;
    p->process_base_bytes = rss_bytes();
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(p->created, sizeof p->created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    if (max_threads <= 0) max_threads = p->physical_cores;
    if (max_threads > FITLM_PROFILE_MAX_THREADS) max_threads = FITLM_PROFILE_MAX_THREADS;
    if (log) fprintf(log, "host: %s, %d physical cores, %d logical CPUs, kernels %s\n", p->cpu, p->physical_cores,
                     p->logical_cpus, p->isa);
    /* read bandwidth with every thread count: the best of three probes (each
     * already the best 64 MiB segment of three passes) */
    size_t probe = (size_t)(quick ? 128 : 512) << 20;
    for (int t = 1; t <= max_threads; t++) {
        fitlm_threadpool *pool = fitlm_threadpool_new(t);
        if (!pool) return fitlm_fail(err, "cannot start %d threads", t);
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            double g = fitlm_measure_read_bandwidth(pool, probe);
            if (g > best) best = g;
        }
        fitlm_threadpool_free(pool);
        if (best <= 0) return fitlm_fail(err, "cannot allocate %zu MiB for the bandwidth probe", probe >> 20);
        p->read_bw[t] = best * 1e9;
        p->n_bw = t;
        if (log) fprintf(log, "read bandwidth, %3d thread(s): %7.1f GB/s\n", t, best);
    }
    p->threads = max_threads;
    fitlm_threadpool *pool = fitlm_threadpool_new(max_threads);
    if (!pool) return fitlm_fail(err, "cannot start %d threads", max_threads);
    /* thread-pool dispatch: median of many empty jobs */
    enum { ND = 2001 };
    double *dt = malloc(ND * sizeof *dt);
    if (!dt) {
        fitlm_threadpool_free(pool);
        return fitlm_fail(err, "out of memory");
    }
    for (int i = 0; i < ND; i++) {
        double t0 = fitlm_now_s();
        fitlm_threadpool_run(pool, empty_job, NULL);
        dt[i] = fitlm_now_s() - t0;
    }
    p->dispatch_s = median_of(dt, ND);
    free(dt);
    if (log) fprintf(log, "thread-pool dispatch, %d threads: %.2f us\n", max_threads, p->dispatch_s * 1e6);
    if (fitlm_calibrate_overheads(p, err)) {
        fitlm_threadpool_free(pool);
        return -1;
    }
    if (log)
        fprintf(log, "fixed costs (%s): %.2f us per layer, %.2f us per step\n", p->overhead_source,
                p->per_layer_s * 1e6, p->per_token_s * 1e6);
    /* the attention is timed once per round of the kernels below, and its
     * figures are the medians of the rounds: on a shared host its speed
     * drifts by 2x from one minute to the next (the shared L3 and memory
     * bandwidth), and a run is planned for a typical minute, not one */
    enum { MAX_ROUNDS = 3 };
    double attn_dec[MAX_ROUNDS], attn_pre[MAX_ROUNDS];
    int n_attn_dec = 0, n_attn_pre = 0;
    static const int types[] = {FITLM_TYPE_F32,  FITLM_TYPE_F16,  FITLM_TYPE_BF16, FITLM_TYPE_Q8_0, FITLM_TYPE_Q4_0,
                                FITLM_TYPE_Q4_1, FITLM_TYPE_Q5_0, FITLM_TYPE_Q4_K, FITLM_TYPE_Q5_K, FITLM_TYPE_Q6_K,
                                FITLM_TYPE_Q3_K, FITLM_TYPE_Q2_K};
    /* rounds over all types, the median figure of each: a burst of other work
     * on a shared machine then spoils one round of a type, not its figure,
     * and the figure is a typical minute's (the best of the rounds made every
     * TinyLlama prompt planned 5-37 % faster than `bench` then measured it) */
    int rounds = quick ? 1 : MAX_ROUNDS;
    double ratios[FITLM_PROFILE_MAX_TYPES][FITLM_CAL_N_BATCH][MAX_ROUNDS] = {{{0}}};
    double speeds[FITLM_PROFILE_MAX_TYPES][3][MAX_ROUNDS] = {{{0}}};
    int n_ratios[FITLM_PROFILE_MAX_TYPES] = {0};
    for (int round = 0; round < rounds; round++) {
        fitlm_host_profile a;
        memset(&a, 0, sizeof a);
        a.threads = p->threads;
        if (fitlm_calibrate_attention(&a, quick, err)) {
            fitlm_threadpool_free(pool);
            return -1;
        }
        if (a.attn_decode_flops > 0) attn_dec[n_attn_dec++] = a.attn_decode_flops;
        if (a.attn_prefill_flops > 0) attn_pre[n_attn_pre++] = a.attn_prefill_flops;
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (!fitlm_cpu_type_supported(types[i])) continue;
            fitlm_kernel_rate k;
            memset(&k, 0, sizeof k);
            if (time_kernel(pool, types[i], quick, &k)) continue;
            fitlm_kernel_rate *slot = NULL;
            for (int j = 0; j < p->n_kern; j++)
                if (p->kern[j].type == k.type) slot = &p->kern[j];
            if (!slot) {
                if (p->n_kern >= FITLM_PROFILE_MAX_TYPES) continue;
                slot = &p->kern[p->n_kern++];
                *slot = k;
            }
            int si = (int)(slot - p->kern);
            if (n_ratios[si] >= MAX_ROUNDS) continue;
            for (int j = 0; j < FITLM_CAL_N_BATCH; j++) ratios[si][j][n_ratios[si]] = k.batch_ratio[j];
            speeds[si][0][n_ratios[si]] = k.decode_bw;
            speeds[si][1][n_ratios[si]] = k.prefill_flops;
            speeds[si][2][n_ratios[si]] = k.batch_flops;
            n_ratios[si]++;
        }
    }
    for (int si = 0; si < p->n_kern; si++)
        if (n_ratios[si]) {
            p->kern[si].decode_bw = median_of(speeds[si][0], n_ratios[si]);
            p->kern[si].prefill_flops = median_of(speeds[si][1], n_ratios[si]);
            p->kern[si].batch_flops = median_of(speeds[si][2], n_ratios[si]);
        }
    p->attn_decode_flops = n_attn_dec ? median_of(attn_dec, n_attn_dec) : 0;
    p->attn_prefill_flops = n_attn_pre ? median_of(attn_pre, n_attn_pre) : 0;
    if (log)
        fprintf(log, "decode attention (32 query heads of 64 over 4 KV heads, F16 cache): %.1f GFLOP/s, "
                     "%.0f ns per cached position and layer of a 2048-wide query (median of %d rounds)\n",
                p->attn_decode_flops / 1e9, p->attn_decode_flops > 0 ? 4.0 * 2048 / p->attn_decode_flops * 1e9 : 0,
                n_attn_dec);
    if (log)
        fprintf(log, "prompt attention (the same heads, all of a prompt's queries): %.1f GFLOP/s (median of %d rounds)\n",
                p->attn_prefill_flops / 1e9, n_attn_pre);
    /* the ratios to one row: a ratio, not a speed, so the median of the
     * rounds (the best would pair a fast batched pass with a slow single one) */
    for (int si = 0; si < p->n_kern; si++)
        for (int j = 0; j < FITLM_CAL_N_BATCH; j++)
            if (n_ratios[si]) {
                /* more rows never cost less time than fewer */
                double r = median_of(ratios[si][j], n_ratios[si]), prev = j ? p->kern[si].batch_ratio[j - 1] : 1;
                p->kern[si].batch_ratio[j] = r > prev ? r : prev;
            } else {
                p->kern[si].batch_ratio[j] = 0;
            }
    /* the fixed cost of a decode matmul call, with the first of Q4_0, Q8_0,
     * F32 this CPU runs (one figure: it is the threads' first reads from DRAM
     * and the closing barrier, not the kernel's arithmetic); the smallest of
     * the rounds' positive fits */
    static const int call_types[] = {FITLM_TYPE_Q4_0, FITLM_TYPE_Q8_0, FITLM_TYPE_F32};
    p->matmul_call_s = 0;
    for (size_t i = 0; i < sizeof call_types / sizeof call_types[0]; i++) {
        if (!fitlm_cpu_type_supported(call_types[i])) continue;
        double best = 0;
        for (int round = 0; round < rounds; round++) {
            double c = time_matmul_call(pool, call_types[i], quick);
            if (c > 0 && (best == 0 || c < best)) best = c;
        }
        p->matmul_call_s = best;
        if (log)
            fprintf(log, "decode matmul call (%s from DRAM, %d threads): %.2f us beyond its bytes\n",
                    fitlm_type_name(call_types[i]), max_threads, best * 1e6);
        break;
    }
    for (int j = 0; j < p->n_kern && log; j++) {
        const fitlm_kernel_rate *k = &p->kern[j];
        fprintf(log,
                "kernel %-5s %-7s %d threads: decode %6.1f GB/s, %d-row decode %6.1f GFLOP/s, prefill %7.1f GFLOP/s "
                "(median of %d rounds); rows",
                fitlm_type_name(k->type),
                k->repacked ? (fitlm_cpu_amx_active(k->type) ? "rep+amx" : "repack") : fitlm_cpu_kernel_isa_name(k->type),
                max_threads,
                k->decode_bw / 1e9, FITLM_CAL_BATCH_ROWS, k->batch_flops / 1e9, k->prefill_flops / 1e9, rounds);
        for (int r = 0; r < FITLM_CAL_N_BATCH; r++) fprintf(log, " %d:x%.2f", fitlm_cal_batch_rows[r], k->batch_ratio[r]);
        fprintf(log, " of one row's time\n");
    }
    fitlm_threadpool_free(pool);
    if (p->n_kern == 0) return fitlm_fail(err, "no CPU kernel could be timed");
    return 0;
}

/* ---- fixed costs from the real runtime on two tiny synthetic models ---- */

/* The head layout of a synthetic model: query heads, KV heads, head
 * dimension, context (planner/synth_model.h writes it: hidden 128, FFN 256,
 * vocabulary 256, F32, its weights in the caches). */
typedef struct {
    uint32_t heads, kv_heads, head_dim, ctx;
} tiny_attn;
static const tiny_attn TINY_FIXED = {4, 4, 32, 64};

static int write_tiny_model(const char *path, uint32_t n_layers, tiny_attn a, fitlm_error *err) {
    fitlm_synth_shape sh = {.dim = 128, .ffn = 256, .vocab = 256, .heads = a.heads, .kv_heads = a.kv_heads,
                            .head_dim = a.head_dim, .ctx = a.ctx, .type = FITLM_TYPE_F32};
    return fitlm_synth_model_write(path, n_layers, &sh, err);
}

static int time_decode(const char *path, int threads, uint32_t n_prompt, uint32_t n_timed, int reps,
                       double *per_token, uint32_t *n_layers, fitlm_cpu_work *work, double *prompt_s,
                       uint32_t n_alt, double *alt_s, fitlm_error *err) {
    return fitlm_synth_time(path, NULL, threads, n_prompt, n_timed, reps, per_token, n_layers, work, prompt_s, n_alt,
                            alt_s, err);
}

int fitlm_calibrate_overheads(fitlm_host_profile *p, fitlm_error *err) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[2][1024];
    static const uint32_t layers[2] = {1, 9};
    double t[2] = {0, 0};
    int rc = -1;
    for (int k = 0; k < 2; k++) {
        snprintf(path[k], sizeof path[k], "%s/fitlm-calibrate-%ld-%d.gguf", dir, (long)getpid(), k);
        if (write_tiny_model(path[k], layers[k], TINY_FIXED, err)) {
            remove(path[k]);
            if (k) remove(path[0]);
            return -1;
        }
    }
    /* the 8 extra layers are tens of us a token: a slow phase of a shared
     * machine during the 1-layer model's turn can hide them; both again (up
     * to 3 times) before leaving the cost per layer at 0 */
    for (int attempt = 0; attempt < 4 && (attempt == 0 || t[1] <= t[0]); attempt++)
        for (int k = 0; k < 2; k++) {
            uint32_t nl = 0;
            if (time_decode(path[k], p->threads, 0, 48, 6, &t[k], &nl, NULL, NULL, 0, NULL, err)) {
                remove(path[0]);
                remove(path[1]);
                return -1;
            }
        }
    remove(path[0]);
    remove(path[1]);
    double per_layer = (t[1] - t[0]) / (layers[1] - layers[0]);
    if (per_layer < 0) per_layer = 0;
    double per_token = t[0] - per_layer;
    if (per_token < 0) per_token = 0;
    p->per_layer_s = per_layer;
    p->per_token_s = per_token;
    snprintf(p->overhead_source, sizeof p->overhead_source,
             "decode of synthetic 1- and 9-layer models: %.1f and %.1f us per token", t[0] * 1e6, t[1] * 1e6);
    rc = 0;
    return rc;
}

/* One decode row's attention over its cached positions: a synthetic L-layer
 * model whose matrices stay in the caches (hidden 128) but whose heads are
 * those of TinyLlama (32 query heads of 64 over 4 KV heads, F16 cache),
 * decoded after a prompt of 16 and of n_long tokens; the extra time per
 * position and layer, as 4 x q_dim flops per position and layer (the scores'
 * and the weighted sum's multiply-adds). calibrate: 16 layers and 1024
 * positions (quick: 4 and 256). */
static int attention_probe(fitlm_host_profile *p, int threads, uint32_t L, uint32_t n_long, int reps,
                           const fitlm_hparams *hp, fitlm_error *err) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    const uint32_t n_short = 16, n_timed = 32;
    tiny_attn a = {32, 4, 64, n_long + n_timed};
    /* a model's own heads when given and wide enough to time (the lanes share
     * each K/V row among the query heads of its group, so the rate per flop
     * depends on the grouping and the head size) */
    if (hp && hp->n_heads * hp->head_dim >= 1024 && hp->n_kv_heads && hp->n_heads % hp->n_kv_heads == 0 &&
        hp->n_heads <= 128 && hp->head_dim <= 256)
        a.heads = hp->n_heads, a.kv_heads = hp->n_kv_heads, a.head_dim = hp->head_dim;
    char path[1024];
    snprintf(path, sizeof path, "%s/fitlm-calibrate-attn-%ld.gguf", dir, (long)getpid());
    double t[2] = {0, 0}, tp[2] = {0, 0};
    uint32_t nl = 0, n_quarter = n_long / 4;
    int rc = write_tiny_model(path, L, a, err);
    /* prompts: time(n) = lin * n + sq * n^2, where the square is the attention
     * of every query over the positions before it, 2 x L x q_dim x n^2 flops
     * as the planner counts it (4 x q_dim per pair and layer, n^2 / 2 pairs):
     * the long prompt is the one the decode probe evaluates anyway */
    if (!rc) rc = time_decode(path, threads, n_short, n_timed, reps, &t[0], &nl, NULL, NULL, 0, NULL, err);
    if (!rc)
        rc = time_decode(path, threads, n_long, n_timed, reps, &t[1], &nl, NULL, &tp[1], n_quarter, &tp[0], err);
    /* a decode row after the long prompt must take longer than after the
     * short one; when a slow phase says otherwise, both again (up to 3 times) */
    for (int retry = 0; !rc && t[1] <= t[0] && retry < 3; retry++) {
        rc = time_decode(path, threads, n_short, n_timed, reps, &t[0], &nl, NULL, NULL, 0, NULL, err);
        if (!rc) rc = time_decode(path, threads, n_long, n_timed, reps, &t[1], &nl, NULL, NULL, 0, NULL, err);
    }
    double sq = rc ? 0 : (tp[1] / n_long - tp[0] / n_quarter) / (double)(n_long - n_quarter);
    /* the square is a few tens of percent of a prompt's time at these
     * lengths: a slow phase of a shared machine can hide it; the prompts
     * alone again, with more turns, before leaving the rate unmeasured */
    for (int retry = 0; !rc && sq <= 0 && retry < 3; retry++) {
        rc = time_decode(path, threads, n_long, 0, 2 * reps, NULL, &nl, NULL, &tp[1], n_quarter, &tp[0], err);
        if (!rc) sq = (tp[1] / n_long - tp[0] / n_quarter) / (double)(n_long - n_quarter);
    }
    remove(path);
    if (rc) return -1;
    double per_pos_layer = (t[1] - t[0]) / ((double)(n_long - n_short) * L);
    p->attn_decode_flops = per_pos_layer > 0 ? 4.0 * a.heads * a.head_dim / per_pos_layer : 0;
    p->attn_prefill_flops = sq > 0 ? 2.0 * L * a.heads * a.head_dim / sq : 0;
    return 0;
}

int fitlm_calibrate_attention(fitlm_host_profile *p, bool quick, fitlm_error *err) {
    return quick ? attention_probe(p, p->threads, 4, 256, 3, NULL, err)
                 : attention_probe(p, p->threads, 16, 1024, 4, NULL, err);
}

/* One type's matmuls timed again as calibrate times them, over 256 MiB of
 * copies from DRAM: one row and each of fitlm_cal_batch_rows rows (the
 * batched decode rows, then the prompt's micro-batches up to 256 rows, on a
 * quarter of the copies from 64 rows on), in turns, the best of three passes
 * of each. Sets *bw (bytes/s of one row) and ratio[j] (the time of those rows
 * over one row's). -1 when the type cannot be timed. */
#define NOW_MAX_ROWS 256
/* a quick profile's probe (calibrate --quick): rows up to 64 over one copy of 128 MiB, two passes */
#define NOW_QUICK_MAX_ROWS 64
static int decode_rows_now(fitlm_threadpool *pool, int type, bool quick, double *bw,
                           double ratio[FITLM_CAL_N_BATCH]) {
    const int64_t rows = 2048, cols = 5632;
    size_t mbytes = 0;
    int copies = 0;
    bool repacked = false;
    if (!fitlm_cpu_type_supported(type)) return -1;
    int max_rows = quick ? NOW_QUICK_MAX_ROWS : NOW_MAX_ROWS;
    uint8_t *w = make_copies(pool, type, rows, cols, quick ? 128 : 256, &mbytes, &copies, &repacked);
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)max_rows);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)max_rows);
    int rc = -1;
    if (w && x && y) {
        for (int64_t i = 0; i < cols * max_rows; i++) x[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
        double tb[FITLM_CAL_N_BATCH + 1];
        time_rows(pool, type, w, mbytes, copies, repacked, rows, cols, x, y, max_rows, quick ? 2 : 3, quick, tb);
        /* quick: the rows' times over one copy as calibrate --quick has them, one row's bytes/s over every
         * copy from DRAM (one copy of a 4-bit type stays in the caches) */
        *bw = quick ? (double)mbytes * copies / time_decode_passes(pool, type, w, mbytes, copies, repacked, rows, cols,
                                                                   x, y, 2)
                    : (double)mbytes / tb[0];
        for (int j = 0; j < FITLM_CAL_N_BATCH; j++) {
            ratio[j] = tb[j + 1] < 1e29 ? tb[j + 1] / tb[0] : 0;
            /* quick: the row counts beyond the timed ones in proportion to the last timed one (as
             * calibrate --quick) */
            if (ratio[j] == 0 && j > 0 && ratio[j - 1] > 0)
                ratio[j] = ratio[j - 1] * fitlm_cal_batch_rows[j] / fitlm_cal_batch_rows[j - 1];
        }
        rc = 0;
    }
    free(w);
    free(x);
    free(y);
    return rc;
}

static bool work_uses(const fitlm_cpu_work *w, int type) {
    if (!w) return true;
    if (w->output_bytes > 0 && w->output_type == type) return true;
    for (int i = 0; i < w->n; i++)
        if (w->t[i].type == type && w->t[i].bytes > 0) return true;
    return false;
}

int fitlm_host_profile_now(const fitlm_host_profile *prof, int threads, double read_bw_now, const fitlm_cpu_work *work,
                           fitlm_host_profile *now, fitlm_error *err) {
    *now = *prof;
    if (threads <= 0) threads = prof->threads > 0 ? prof->threads : 1;
    int tp = threads <= prof->n_bw ? threads : prof->n_bw;
    if (tp < 1 || prof->read_bw[tp] <= 0) return fitlm_fail(err, "the host profile has no read bandwidth to rescale");
    fitlm_threadpool *pool = fitlm_threadpool_new(threads);
    if (!pool) return fitlm_fail(err, "cannot start %d threads", threads);
    double bw = read_bw_now;
    /* calibrate's probe: the best of three, each the best 64 MiB segment (a quick profile's: of 128 MiB) */
    for (int rep = 0; rep < 3 && read_bw_now <= 0; rep++) {
        double g = fitlm_measure_read_bandwidth(pool, (size_t)(prof->quick ? 128 : 512) << 20);
        if (g * 1e9 > bw) bw = g * 1e9;
    }
    if (bw <= 0) {
        fitlm_threadpool_free(pool);
        return fitlm_fail(err, "cannot allocate %d MiB for the bandwidth probe", prof->quick ? 128 : 512);
    }
    double scale = bw / prof->read_bw[tp];
    for (int t = 1; t <= now->n_bw; t++) now->read_bw[t] *= scale;
    /* The kernels and the attention are timed at the run's threads. The
     * profile keeps figures at its own threads, which the prediction scales
     * to the run's (thread_scales: decode by the read bandwidths' ratio, the
     * rows beyond one and the attention by the threads' ratio): what is
     * measured now is stored divided by those scales, so that the prediction at `threads`
     * gives it back (a thread does not read at exactly its share of the
     * bandwidth; the probe at the run's threads says what it does). */
    double bw_scale, fl_scale;
    thread_scales(prof, threads, &bw_scale, &fl_scale);
    /* the kernels the model runs are timed again, one row, the batched
     * decode rows and the prompt's micro-batches up to 256 rows from DRAM (in
     * a slow minute they lose more than a plain read does, rows cost more or
     * less beyond one row's time depending on how much compute the slower
     * stream hides, and the compute itself slows with the neighbours'
     * traffic); the others follow the read bandwidth, their time beyond one
     * row the profile's: t_k = t_1 + (r_k - 1) t_1,profile, r_k' = 1 + (r_k -
     * 1) s, s the read's speed-up. */
    for (int k = 0; k < now->n_kern; k++) {
        fitlm_kernel_rate *kr = &now->kern[k];
        double s = scale, b = 0, rt[FITLM_CAL_N_BATCH] = {0};
        bool timed = work_uses(work, kr->type) && kr->decode_bw > 0 &&
                     decode_rows_now(pool, kr->type, prof->quick, &b, rt) == 0 && b > 0;
        if (timed) s = b / bw_scale / kr->decode_bw;
        kr->decode_bw *= s;
        for (int j = 0; j < FITLM_CAL_N_BATCH; j++) {
            if (timed && rt[j] > 0) {
                /* more rows never cost less time than fewer */
                double r = 1.0 + (rt[j] - 1.0) * fl_scale / bw_scale;
                kr->batch_ratio[j] = fmax(r, j ? kr->batch_ratio[j - 1] : 1.0);
            } else if (kr->batch_ratio[j] > 0) {
                kr->batch_ratio[j] = fmax(1.0 + (kr->batch_ratio[j] - 1.0) * s, j ? kr->batch_ratio[j - 1] : 1.0);
            }
        }
    }
    fitlm_threadpool_free(pool);
    /* between calibrate's quick probe (4 layers, 256 positions: too little
     * signal for one figure) and its full one (16 layers, 1024: seconds of
     * prompt): 8 layers and 512 positions, about 0.3 ms of attention per token
     * at TinyLlama's heads; with the model's own heads where they are wide
     * enough (a query 1024 wide or more) */
    if (prof->attn_decode_flops > 0) {
        if (attention_probe(now, threads, prof->quick ? 4 : 8, prof->quick ? 256 : 512, 3, work ? work->hp : NULL, err))
            return -1;
        now->attn_decode_flops /= fl_scale;
    }
    time_t t = time(NULL);
    struct tm tmv;
    gmtime_r(&t, &tmv);
    strftime(now->created, sizeof now->created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    return 0;
}

int fitlm_calibrate_overheads_with_model(fitlm_host_profile *p, const char *model_path, FILE *log, fitlm_error *err) {
    fitlm_model *m = fitlm_model_load(model_path, err);
    if (!m) return -1;
    int rc = -1;
    fitlm_backend *be = fitlm_backend_new("cpu", p->threads, err);
    fitlm_runtime *rt = NULL;
    int32_t *ids = NULL;
    if (!be) goto done;
    fitlm_runtime_params rp = fitlm_runtime_params_default();
    rp.n_ctx = m->hp.ctx_len < 64 ? m->hp.ctx_len : 64;
    rt = fitlm_runtime_new(m, be, &rp, err);
    if (!rt) goto done;
    uint32_t n = rp.n_ctx;
    ids = malloc(n * sizeof *ids);
    if (!ids) {
        fitlm_fail(err, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 2654435761u) % m->hp.vocab_size);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        fitlm_runtime_reset(rt);
        double t0 = fitlm_now_s();
        for (uint32_t i = 0; i < n; i++)
            if (fitlm_runtime_eval(rt, ids + i, 1, NULL, false, err)) goto done;
        double t = (fitlm_now_s() - t0) / n;
        if (rep > 0 && t < best) best = t; /* the first run warms up */
    }
    /* what the kernels alone predict, without fixed costs */
    fitlm_host_profile q = *p;
    q.per_token_s = 0;
    q.per_layer_s = 1e-30; /* non-zero: the predictor takes the profile's (near-zero) fixed costs */
    fitlm_cpu_work w;
    fitlm_cpu_work_of_model(m, rp.kv_type, &w);
    fitlm_cpu_pred pr;
    fitlm_cpu_predict(&q, 0, 0, &w, p->threads, 0, 0, 0, n, &pr);
    double resid = best - pr.decode_s;
    if (resid < 0) resid = 0;
    /* split as the dispatch counts do */
    double units = FITLM_DISPATCHES_PER_LAYER * (double)m->hp.n_layers + FITLM_DISPATCHES_PER_TOKEN;
    p->per_layer_s = resid / units * FITLM_DISPATCHES_PER_LAYER;
    p->per_token_s = resid / units * FITLM_DISPATCHES_PER_TOKEN;
    snprintf(p->overhead_source, sizeof p->overhead_source, "decode of %.100s: %.1f us/token over the kernels",
             model_path, resid * 1e6);
    if (log)
        fprintf(log, "fixed costs from %s (%u layers): %.1f us per token above the kernels: %.2f us per layer, "
                     "%.2f us per step\n",
                model_path, m->hp.n_layers, resid * 1e6, p->per_layer_s * 1e6, p->per_token_s * 1e6);
    rc = 0;
done:
    free(ids);
    if (rt) fitlm_runtime_free(rt);
    if (be) be->free(be);
    fitlm_model_free(m);
    return rc;
}
