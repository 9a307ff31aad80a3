/* fitlm.h — the public API of libfitlm.
 *
 * libfitlm plans, runs and measures LLaMA-family models (Llama 2/3/3.1,
 * Qwen2/2.5, Mistral, DeepSeek's dense distills). This header is the whole
 * public surface, and it reads top to bottom as a short tutorial:
 *
 *   1. errors       every call that can fail reports through fitlm_error
 *   2. models       open a GGUF file, a Hugging Face folder or a llama2.c file
 *   3. tokenizers   text <-> token ids
 *   4. inference    a backend, a runtime with its KV cache, a sampler
 *   5. planning     memory, time, cost and GPU layout, as JSON
 *
 * A complete program (link with -lfitlm -lpcre2-8 -lcjson -lpthread -lm):
 *
 *     #include <fitlm.h>
 *     int main(void) {
 *         fitlm_error err = {{0}};
 *         fitlm_model *m = fitlm_model_load("model.gguf", &err);
 *         if (!m) { fitlm_error_print(&err); return 1; }
 *         fitlm_tokenizer *tok = fitlm_tokenizer_for_model(m, &err);
 *         int32_t *ids; size_t n;
 *         fitlm_tokenizer_encode(tok, "Once upon a time", 16, true, false, &ids, &n, &err);
 *         fitlm_backend *be = fitlm_backend_cpu_new(0, &err);      // 0 = all physical cores
 *         fitlm_runtime *rt = fitlm_runtime_open(m, be, 0, &err);  // 0 = default context
 *         fitlm_sampler *s = fitlm_sampler_open(0.0f, 0, 1.0f, 0.0f, 42, fitlm_runtime_vocab(rt), &err);
 *         float *logits = malloc(sizeof(float) * fitlm_runtime_vocab(rt));
 *         fitlm_runtime_eval(rt, ids, (uint32_t)n, logits, false, &err);   // prefill
 *         for (int i = 0; i < 32; i++) {
 *             int32_t next = fitlm_sampler_sample(s, logits);           // greedy at temp 0
 *             fitlm_sampler_accept(s, next);
 *             size_t len; const char *piece = fitlm_tokenizer_piece(tok, next, false, &len);
 *             fwrite(piece, 1, len, stdout);
 *             fitlm_runtime_eval(rt, &next, 1, logits, false, &err);   // decode
 *         }
 *         // free in reverse order of creation
 *         free(logits); fitlm_sampler_free(s); fitlm_runtime_free(rt); fitlm_backend_free(be);
 *         free(ids); fitlm_tokenizer_free(tok); fitlm_model_free(m);
 *     }
 *
 * Ownership: a function that returns a new object names the function that frees
 * it; everything else returns borrowed pointers. Objects are not thread-safe
 * unless said so (a loaded tokenizer and a loaded model are immutable).
 */
#ifndef FITLM_H
#define FITLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ 1. errors
 * A failing call returns -1 or NULL and writes a one-line reason into err->msg
 * (err may be NULL when you do not care). File errors start with the path. */
#ifndef FITLM_ERROR_DEFINED
#define FITLM_ERROR_DEFINED
typedef struct fitlm_error {
    char msg[1024];
} fitlm_error;
#endif

/* Prints "fitlm: error: <msg>" on stderr. */
void fitlm_error_print(const fitlm_error *err);

/* ------------------------------------------------------------------ 2. models
 * One description for every source: the format is detected from the content.
 * Weights are memory-mapped read-only, never copied. Every size in the file is
 * checked before use: a malformed file gives an error, never a crash. */
typedef struct fitlm_model fitlm_model;

/* Opens a GGUF file, a Hugging Face folder (config.json + *.safetensors) or its
 * config.json, or a llama2.c checkpoint. Free with fitlm_model_free(). */
fitlm_model *fitlm_model_load(const char *path, fitlm_error *err);
void fitlm_model_free(fitlm_model *m);

/* What a model is, in numbers (filled by fitlm_model_get_info). */
typedef struct fitlm_model_info {
    const char *name;         /* borrowed from the model */
    const char *architecture; /* "llama", "mistral", "qwen2" */
    const char *format;       /* "gguf", "safetensors", "llama2c", "none" */
    uint32_t n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, ctx_len;
    uint64_t n_params;        /* from the hyperparameters, as model cards count them */
    uint64_t n_tensors;
    uint64_t weight_bytes;    /* exact bytes of tensor data in the file(s) */
} fitlm_model_info;

void fitlm_model_get_info(const fitlm_model *m, fitlm_model_info *out);

/* -------------------------------------------------------------- 3. tokenizers
 * SentencePiece BPE ("llama") and byte-level BPE ("gpt2", with the Llama 3,
 * Qwen2, DeepSeek and GPT-2 pre-tokenizers), from GGUF metadata or a Hugging
 * Face tokenizer.json. A loaded tokenizer may be shared between threads. */
typedef struct fitlm_tokenizer fitlm_tokenizer;

/* From a GGUF file (vocab-only files work), an HF folder or a tokenizer.json.
 * Free with fitlm_tokenizer_free(). */
fitlm_tokenizer *fitlm_tokenizer_load(const char *path, fitlm_error *err);
/* The tokenizer that came with a loaded model (llama2.c files have none: error).
 * Free with fitlm_tokenizer_free(). */
fitlm_tokenizer *fitlm_tokenizer_for_model(const fitlm_model *m, fitlm_error *err);
void fitlm_tokenizer_free(fitlm_tokenizer *t);

/* Text -> ids. add_special adds BOS/EOS as the vocabulary asks; parse_special
 * turns control-token text such as "<|begin_of_text|>" into its id. *out is
 * malloc'd: free() it. 0 or -1. */
int fitlm_tokenizer_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                           int32_t **out, size_t *n, fitlm_error *err);
/* Ids -> text, malloc'd and NUL-terminated: free() it. */
char *fitlm_tokenizer_decode(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                             size_t *out_len, fitlm_error *err);
/* The bytes of one token (borrowed, not NUL-terminated); NULL if out of range.
 * For streaming output that never splits a UTF-8 character, see the runtime's
 * fitlm_detok_stream in src/tokenizer/tokenizer.h. */
const char *fitlm_tokenizer_piece(const fitlm_tokenizer *t, int32_t id, bool render_special, size_t *len);
int32_t fitlm_tokenizer_vocab_size(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_bos(const fitlm_tokenizer *t); /* -1 if none */
int32_t fitlm_tokenizer_eos(const fitlm_tokenizer *t); /* -1 if none */

/* --------------------------------------------------------------- 4. inference
 * A backend does the arithmetic (today: the CPU, with AVX2/AVX-512 kernels for
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K weights). A runtime
 * holds one sequence: its KV cache and scratch are allocated once, up front, so
 * evaluating tokens allocates nothing. */
typedef struct fitlm_backend fitlm_backend;
typedef struct fitlm_runtime fitlm_runtime;
typedef struct fitlm_sampler fitlm_sampler;

/* CPU backend on n_threads threads (<= 0: physical cores). Free with
 * fitlm_backend_free(). */
fitlm_backend *fitlm_backend_cpu_new(int n_threads, fitlm_error *err);
void fitlm_backend_free(fitlm_backend *be);

/* A runtime for model m on backend be with an F16 KV cache of n_ctx positions
 * (0 = the smaller of the model's context and 4096). Checks first that the
 * model can run (architecture, tensors, types). m and be must outlive it.
 * Free with fitlm_runtime_free(). */
fitlm_runtime *fitlm_runtime_open(const fitlm_model *m, fitlm_backend *be, uint32_t n_ctx, fitlm_error *err);
void fitlm_runtime_free(fitlm_runtime *rt);

/* Evaluates n tokens at the next positions (a batched prefill when n > 1).
 * logits (may be NULL) receives vocab floats for the last token, or for every
 * token when all_logits. 0 or -1 (id out of range, context full). */
int fitlm_runtime_eval(fitlm_runtime *rt, const int32_t *ids, uint32_t n, float *logits, bool all_logits,
                       fitlm_error *err);
void fitlm_runtime_reset(fitlm_runtime *rt); /* start a new sequence */
uint32_t fitlm_runtime_n_past(const fitlm_runtime *rt);
uint32_t fitlm_runtime_vocab(const fitlm_runtime *rt);

/* A sampler: temp 0 = greedy; top_k 0 = off; top_p 1 = off; min_p 0 = off;
 * the same seed gives the same choices. Free with fitlm_sampler_free(). */
fitlm_sampler *fitlm_sampler_open(float temp, int32_t top_k, float top_p, float min_p, uint64_t seed, size_t vocab,
                                  fitlm_error *err);
int32_t fitlm_sampler_sample(fitlm_sampler *s, const float *logits);
void fitlm_sampler_accept(fitlm_sampler *s, int32_t id); /* for repetition penalties */
void fitlm_sampler_free(fitlm_sampler *s);

/* ---------------------------------------------------------------- 5. planning
 * What a model needs, on which GPUs, split how, at what cost: the search that
 * `fitlm plan` runs, returned as the JSON document described in
 * docs/planner.md (model.*, memory.*, compute.*, plan.*, time.*, cost.*,
 * alternatives[]). */
typedef struct fitlm_plan_query {
    const char *model;   /* preset ("llama-3-8b"), GGUF file, HF folder or config.json */
    const char *gpu;     /* "H100-SXM", "A100-80GB:4", "L40S,H100"; NULL = the whole catalog */
    const char *weights; /* "bf16", "fp8", "awq", "q4_k_m", ...; NULL = the model's own */
    const char *kv_type; /* "f16", "q8_0", "fp8", ...; NULL = f16 */
    uint32_t ctx;        /* tokens of context per sequence; 0 = default (8192 or the model's max) */
    uint32_t batch;      /* concurrent sequences; 0 = 1 */
    bool train;          /* a training plan (AdamW, mixed precision, ZeRO searched) */
} fitlm_plan_query;

/* Runs the search. Returns the JSON text (malloc'd: free() it). If nothing
 * fits, returns NULL and err says why and what would fit. */
char *fitlm_plan_query_json(const fitlm_plan_query *q, fitlm_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FITLM_H */
