/* Synthetic llama models for calibration: see synth_model.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/split.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "planner/synth_model.h"
#include "quant/quant.h"
#include "runtime/runtime.h"
#include "util/clock.h"


/* rows x cols random values in `type`, row after row (malloc'd; the caller
 * frees it); NULL with err. */
static void *random_matrix(int type, uint64_t rows, uint64_t cols, uint64_t seed, fitlm_error *err) {
    bool ok = true;
    uint64_t rb = fitlm_type_row_bytes(type, cols, &ok);
    if (!ok || rb == 0 || rows > (1ull << 40) / rb) {
        fitlm_fail(err, "synthetic model: %s cannot hold rows of %llu values", fitlm_type_name(type),
                   (unsigned long long)cols);
        return NULL;
    }
    uint8_t *out = malloc(rb * rows);
    float *row = malloc(sizeof(float) * cols);
    if (!out || !row) {
        free(out);
        free(row);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    uint64_t s = seed | 1;
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t c = 0; c < cols; c++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            row[c] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5) * 0.05f;
        }
        if (fitlm_quantize_row(type, row, out + rb * r, (int64_t)cols, NULL) < 0) {
            free(out);
            free(row);
            fitlm_fail(err, "synthetic model: cannot write %s weights", fitlm_type_name(type));
            return NULL;
        }
    }
    free(row);
    return out;
}

int fitlm_synth_model_write(const char *path, uint32_t n_layers, const fitlm_synth_shape *sh, fitlm_error *err) {
    const uint64_t D = sh->dim, F = sh->ffn, V = sh->vocab;
    const uint64_t QD = (uint64_t)sh->heads * sh->head_dim, KD = (uint64_t)sh->kv_heads * sh->head_dim;
    fitlm_gguf_writer *w = fitlm_gguf_writer_new(3, err);
    if (!w) return -1;
    /* the matrices whose rows hold D values (q, k, v, gate, up: up to
     * max(QD, F) rows), QD values (output: D rows) and F values (down: D rows);
     * the same bytes serve every layer */
    uint64_t rows_d = QD > F ? QD : F;
    void *md = random_matrix(sh->type, rows_d, D, 0x2545F4914F6CDD1Dull, err);
    void *mq = md ? random_matrix(sh->type, D, QD, 0x9E3779B97F4A7C15ull, err) : NULL;
    void *mf = mq ? random_matrix(sh->type, D, F, 0xD1B54A32D192ED03ull, err) : NULL;
    float *emb = mf ? random_matrix(FITLM_TYPE_F32, V, D, 0x94D049BB133111EBull, err) : NULL;
    float *ones = emb ? malloc(sizeof(float) * D) : NULL;
    int rc = -1;
    if (!ones) {
        if (emb) fitlm_fail(err, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < D; i++) ones[i] = 1.0f;
    if (fitlm_gguf_writer_add_str(w, "general.architecture", "llama", err) ||
        fitlm_gguf_writer_add_u32(w, "llama.block_count", n_layers, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)D, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)F, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.attention.head_count", sh->heads, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.attention.head_count_kv", sh->kv_heads, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.attention.key_length", sh->head_dim, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.attention.value_length", sh->head_dim, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.context_length", sh->ctx, err) ||
        fitlm_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)V, err) ||
        fitlm_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err))
        goto done;
    const uint64_t e_dv[2] = {D, V}, e_d[1] = {D}, e_df[2] = {D, F}, e_fd[2] = {F, D};
    const uint64_t e_dq[2] = {D, QD}, e_dk[2] = {D, KD}, e_qd[2] = {QD, D};
    if (fitlm_gguf_writer_add_tensor(w, "token_embd.weight", FITLM_TYPE_F32, 2, e_dv, emb, err) ||
        fitlm_gguf_writer_add_tensor(w, "output_norm.weight", FITLM_TYPE_F32, 1, e_d, ones, err) ||
        fitlm_gguf_writer_add_tensor(w, "output.weight", FITLM_TYPE_F32, 2, e_dv, emb, err))
        goto done;
    for (uint32_t l = 0; l < n_layers; l++) {
        static const char *const kinds[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                            "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, kinds[k]);
            bool norm = strstr(kinds[k], "norm") != NULL;
            const uint64_t *ne = norm ? e_d : k == 8 ? e_fd : k >= 6 ? e_df : k == 1 ? e_dq : k == 4 ? e_qd : e_dk;
            const void *data = norm ? (const void *)ones : k == 8 ? mf : k == 4 ? mq : md;
            if (fitlm_gguf_writer_add_tensor(w, name, norm ? FITLM_TYPE_F32 : sh->type, norm ? 1 : 2, ne, data, err))
                goto done;
        }
    }
    rc = fitlm_gguf_writer_write(w, path, NULL, NULL, err);
done:
    fitlm_gguf_writer_free(w);
    free(md);
    free(mq);
    free(mf);
    free(emb);
    free(ones);
    return rc;
}

/* The CPU backend, or the GPU backend `device` holding all n_layers layers
 * inside the layer-split backend (backend/split.h). NULL with err. */
static fitlm_backend *open_backend(const char *device, int threads, uint32_t n_layers, fitlm_error *err) {
    if (!device || !strcmp(device, "cpu")) return fitlm_backend_new("cpu", threads, err);
    fitlm_backend *gpu = fitlm_backend_new(device, threads, err);
    if (!gpu) return NULL;
    fitlm_backend *cpu = fitlm_backend_new("cpu", threads, err);
    if (!cpu) {
        gpu->free(gpu);
        return NULL;
    }
    return fitlm_backend_split_new(gpu, cpu, n_layers, n_layers, err);
}

int fitlm_synth_time(const char *path, const char *device, int threads, uint32_t n_prompt, uint32_t n_timed, int reps,
                     double *per_token, uint32_t *n_layers, fitlm_cpu_work *work, double *prompt_s, uint32_t n_alt,
                     double *alt_s, fitlm_error *err) {
    fitlm_model *m = fitlm_model_load(path, err);
    if (!m) return -1;
    int rc = -1;
    fitlm_backend *be = open_backend(device, threads, m->hp.n_layers, err);
    fitlm_runtime *rt = NULL;
    double *tt = NULL;
    int32_t *prompt = NULL;
    float *logits = NULL;
    if (!be) goto done;
    fitlm_runtime_params rp = fitlm_runtime_params_default();
    rp.n_ctx = m->hp.ctx_len;
    rt = fitlm_runtime_new(m, be, &rp, err);
    if (!rt) goto done;
    if (n_prompt + n_timed > rp.n_ctx) {
        fitlm_fail(err, "calibration model: %u + %u tokens exceed its context %u", n_prompt, n_timed, rp.n_ctx);
        goto done;
    }
    uint32_t n = n_timed;
    tt = malloc(sizeof *tt * ((size_t)(reps - 1) * n + 1));
    uint32_t n_buf = n_prompt > n_alt ? n_prompt : n_alt;
    if (n_alt > rp.n_ctx) {
        fitlm_fail(err, "calibration model: %u tokens exceed its context %u", n_alt, rp.n_ctx);
        goto done;
    }
    prompt = malloc(sizeof *prompt * (n_buf ? n_buf : 1));
    /* the last token's logits come back to the host, as a generating run's do */
    logits = malloc(sizeof *logits * m->hp.vocab_size);
    if (!tt || !prompt || !logits) {
        fitlm_fail(err, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < n_buf; i++) prompt[i] = (int32_t)((i * 40503u) % m->hp.vocab_size);
    int nt = 0;
    double best_prompt = 1e30, best_alt = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        if (n_alt) { /* in turns with the main prompt: a slow phase of a shared machine slows both */
            fitlm_runtime_reset(rt);
            double ta0 = fitlm_now_s();
            if (fitlm_runtime_eval(rt, prompt, n_alt, logits, false, err)) goto done;
            if (rep > 0 && fitlm_now_s() - ta0 < best_alt) best_alt = fitlm_now_s() - ta0;
        }
        fitlm_runtime_reset(rt);
        double tp0 = fitlm_now_s();
        if (n_prompt && fitlm_runtime_eval(rt, prompt, n_prompt, logits, false, err)) goto done;
        if (rep > 0 && fitlm_now_s() - tp0 < best_prompt) best_prompt = fitlm_now_s() - tp0;
        for (uint32_t i = 0; i < n; i++) {
            int32_t id = (int32_t)((i * 2654435761u) % m->hp.vocab_size);
            double t0 = fitlm_now_s();
            if (fitlm_runtime_eval(rt, &id, 1, logits, false, err)) goto done;
            if (rep > 0) tt[nt++] = fitlm_now_s() - t0;
        }
    }
    if (nt > 0) {
        qsort(tt, (size_t)nt, sizeof *tt, fitlm_cmp_double);
        *per_token = tt[nt / 10];
    }
    if (prompt_s) *prompt_s = best_prompt;
    if (alt_s) *alt_s = best_alt;
    *n_layers = m->hp.n_layers;
    if (work) fitlm_cpu_work_of_model(m, rp.kv_type, work);
    rc = 0;
done:
    free(tt);
    free(prompt);
    free(logits);
    if (rt) fitlm_runtime_free(rt);
    if (be) be->free(be);
    if (work) work->hp = NULL; /* the model is freed below */
    fitlm_model_free(m);
    return rc;
}

