/* Writing a loaded model out as GGUF or as a Hugging Face folder.
 *
 * Q/K row order. A RoPE "adjacent" model (llama2.c, Meta checkpoints, GGUF
 * llama) rotates the pairs (x[2i], x[2i+1]) of each head; Hugging Face's
 * rotate-half code rotates (x[i], x[i + d/2]). The same network is expressed in
 * HF order by permuting the output rows of W_q and W_k inside every head
 * (d = head_dim, h = head index, 0 <= i < d/2, j in {0, 1}):
 *     half_row(h*d + j*d/2 + i) = adjacent_row(h*d + 2*i + j)
 * i.e. per head the new rows are the old rows [0, 2, 4, ..., d-2, 1, 3, ..., d-1].
 * This is the reshape (n_heads, d/2, 2, in) -> transpose(1, 2) -> (n_heads*d, in)
 * that transformers' convert_llama_weights_to_hf.py applies; GGUF converters
 * apply its inverse when going from HF to GGUF "llama". W_v, W_o and everything
 * else are unchanged; so are "qwen2" models, which use rotate-half in both formats.
 */
#ifndef FITLM_MODEL_CONVERT_H
#define FITLM_MODEL_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "format/gguf.h"
#include "model/model.h"
#include "util/error.h"

/* The source row (within a tensor of n_heads*head_dim rows) that lands on
 * destination row `row`. to_half: adjacent -> rotate-half; else the inverse. */
uint64_t fitlm_rope_perm_src_row(uint64_t row, uint32_t head_dim, bool to_half);

typedef struct fitlm_convert_opts {
    fitlm_format to; /* FITLM_FORMAT_GGUF or FITLM_FORMAT_SAFETENSORS (HF folder) */
    int type;        /* FITLM_TYPE_F32/F16/BF16 for weight matrices, or FITLM_TYPE_INVALID to keep each
                      * tensor's type. GGUF output keeps 1-D tensors (norms, biases) in F32. */
} fitlm_convert_opts;

/* Writes m (loaded with fitlm_model_load) to out: a GGUF file, or an HF folder
 * with config.json + model.safetensors (the folder must not exist yet). Output
 * goes to a temporary name renamed into place on success. Tokenizer metadata
 * (tokenizer.*) is copied when source and target are both GGUF. 0 or -1 with err. */
int fitlm_model_convert(const fitlm_model *m, const char *out, const fitlm_convert_opts *opts, fitlm_error *err);

/* ---- The GGUF export path, shared by `fitlm convert` and `fitlm quantize` ----
 * An export plan lists the tensors a GGUF (or HF) export of a model writes, in
 * order, with their target names, shapes and where each row comes from. */
typedef struct fitlm_export_tensor {
    const fitlm_tensor *src; /* NULL: generated data in gen */
    fitlm_tensor_kind kind;
    int layer;
    char name[128];   /* name in the target format */
    int type;         /* type convert stores (the opts' float type, F32 for 1-D GGUF tensors) */
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t n_elements;
    bool permute;     /* q/k rows reordered between RoPE layouts (see above) */
    float *gen;       /* owned generated F32 data (rope_freqs), NULL otherwise */
} fitlm_export_tensor;

typedef struct fitlm_export_plan {
    const fitlm_model *m;
    fitlm_rope_layout dst_layout;
    fitlm_export_tensor *t; /* owned, n entries */
    size_t n;
} fitlm_export_plan;

/* Builds the plan for writing m as opts->to with opts->type. On failure the
 * plan may be partly filled: always release it with fitlm_export_plan_free(). */
int fitlm_export_plan_build(fitlm_export_plan *p, const fitlm_model *m, const fitlm_convert_opts *opts,
                            fitlm_error *err);
void fitlm_export_plan_free(fitlm_export_plan *p);

/* Row of t->src that output row `row` of t comes from (the q/k permutation).
 * A permuted 1-D tensor (bias) is a column of one-element rows. */
uint64_t fitlm_export_src_row(const fitlm_export_plan *p, const fitlm_export_tensor *t, uint64_t row);

/* Adds the GGUF metadata convert writes for m: general.architecture/name, the
 * {arch}.* hyperparameter keys, general.file_type (when file_type >= 0, a
 * llama.cpp LLAMA_FTYPE id) and the tokenizer.* keys of a GGUF source. */
int fitlm_export_gguf_metadata(const fitlm_model *m, fitlm_gguf_writer *w, int file_type, fitlm_error *err);

#endif
