/* The one model description shared by the planner and the runtime.
 *
 * A fitlm_model is built from any supported source — a GGUF file, a Hugging Face
 * folder (config.json + safetensors), a llama2.c checkpoint, or (for the planner)
 * a built-in preset / bare config.json without weights — and carries:
 *   - the architecture and hyperparameters (fitlm_hparams),
 *   - the tensor table under canonical (GGUF-style) names, each with its type,
 *     shape, exact byte size and location (file + offset + mapped pointer).
 * Shapes follow the GGUF convention: ne[0] is the row length (input features of a
 * weight matrix), ne[1] the number of rows (output features).
 */
#ifndef FITLM_MODEL_MODEL_H
#define FITLM_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/file.h"

typedef enum fitlm_arch {
    FITLM_ARCH_UNKNOWN = 0,
    FITLM_ARCH_LLAMA,   /* Llama 1/2/3/3.x, DeepSeek-R1-Distill-Llama, TinyLlama */
    FITLM_ARCH_MISTRAL, /* llama + sliding-window attention */
    FITLM_ARCH_QWEN2,   /* QKV bias, rotate-half RoPE; DeepSeek-R1-Distill-Qwen */
    FITLM_ARCH_QWEN3,   /* no QKV bias; per-head RMSNorm on Q and K before RoPE; rotate-half RoPE */
} fitlm_arch;

typedef enum fitlm_rope_layout {
    FITLM_ROPE_ADJACENT = 0, /* rotate pairs (x[2i], x[2i+1]): GGUF "llama", llama2.c */
    FITLM_ROPE_HALF = 1,     /* rotate (x[i], x[i+d/2]): HF rotate_half, GGUF "neox" (qwen2) */
} fitlm_rope_layout;

typedef enum fitlm_rope_scaling {
    FITLM_ROPE_SCALING_NONE = 0,
    FITLM_ROPE_SCALING_LINEAR,
    FITLM_ROPE_SCALING_LLAMA3, /* Llama 3.1 frequency-dependent scaling */
    FITLM_ROPE_SCALING_YARN,
} fitlm_rope_scaling;

typedef enum fitlm_format {
    FITLM_FORMAT_NONE = 0, /* preset or config-only: no weights */
    FITLM_FORMAT_GGUF,
    FITLM_FORMAT_SAFETENSORS, /* Hugging Face folder */
    FITLM_FORMAT_LLAMA2C,
} fitlm_format;

typedef struct fitlm_hparams {
    fitlm_arch arch;
    uint32_t n_layers;
    uint32_t dim;        /* hidden size */
    uint32_t n_heads;
    uint32_t n_kv_heads;
    uint32_t head_dim;   /* usually dim / n_heads, but taken from config when given */
    uint32_t ffn_dim;    /* intermediate size */
    uint32_t vocab_size;
    uint32_t ctx_len;    /* max position embeddings / context_length */
    float norm_eps;      /* RMSNorm epsilon */
    float rope_theta;
    fitlm_rope_layout rope_layout;
    fitlm_rope_scaling rope_scaling;
    float rope_factor;           /* scaling factor (linear, llama3, yarn) */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    uint32_t rope_orig_ctx;      /* original_max_position_embeddings */
    uint32_t sliding_window;     /* 0 = full attention */
    bool qkv_bias;
    bool qk_norm;         /* per-head RMSNorm of Q and K (weights of head_dim) before RoPE: qwen3 */
    bool tied_embeddings; /* output projection shares token_embd */
} fitlm_hparams;

/* Canonical tensor kinds per layer (GGUF names in comments). */
typedef enum fitlm_tensor_kind {
    FITLM_T_TOKEN_EMBD = 0, /* token_embd.weight        (dim, vocab) */
    FITLM_T_OUTPUT_NORM,    /* output_norm.weight       (dim) */
    FITLM_T_OUTPUT,         /* output.weight            (dim, vocab) */
    FITLM_T_ATTN_NORM,      /* blk.N.attn_norm.weight   (dim) */
    FITLM_T_ATTN_Q,         /* blk.N.attn_q.weight      (dim, n_heads*head_dim) */
    FITLM_T_ATTN_K,         /* blk.N.attn_k.weight      (dim, n_kv_heads*head_dim) */
    FITLM_T_ATTN_V,         /* blk.N.attn_v.weight      (dim, n_kv_heads*head_dim) */
    FITLM_T_ATTN_Q_BIAS,    /* blk.N.attn_q.bias */
    FITLM_T_ATTN_K_BIAS,    /* blk.N.attn_k.bias */
    FITLM_T_ATTN_V_BIAS,    /* blk.N.attn_v.bias */
    FITLM_T_ATTN_OUT,       /* blk.N.attn_output.weight (n_heads*head_dim, dim) */
    FITLM_T_FFN_NORM,       /* blk.N.ffn_norm.weight    (dim) */
    FITLM_T_FFN_GATE,       /* blk.N.ffn_gate.weight    (dim, ffn) */
    FITLM_T_FFN_UP,         /* blk.N.ffn_up.weight      (dim, ffn) */
    FITLM_T_FFN_DOWN,       /* blk.N.ffn_down.weight    (ffn, dim) */
    FITLM_T_ROPE_FREQS,     /* rope_freqs.weight (optional, GGUF llama3 scaling) */
    FITLM_T_ATTN_Q_NORM,    /* blk.N.attn_q_norm.weight (head_dim): qwen3 */
    FITLM_T_ATTN_K_NORM,    /* blk.N.attn_k_norm.weight (head_dim): qwen3 */
    FITLM_T_COUNT
} fitlm_tensor_kind;

typedef struct fitlm_tensor {
    char *name;       /* canonical GGUF-style name, owned */
    char *src_name;   /* name in the source file (HF name etc.), owned */
    int type;         /* fitlm_type (ggml id) */
    uint32_t n_dims;
    uint64_t ne[4];   /* ne[0] = row length; unused dims = 1 */
    uint64_t n_elements;
    uint64_t nbytes;  /* exact bytes in the file */
    int file_index;   /* index into fitlm_model.files (data is a read-only file mapping); -1 if no
                       * data or data the caller owns (backends then never madvise it) */
    uint64_t offset;  /* absolute offset in that file */
    const void *data; /* into the mapped file, NULL if no data */
    fitlm_tensor_kind kind;
    int layer;        /* -1 for non-layer tensors */
    void *owned_data; /* an aligned copy of data that was misaligned in its file (safetensors whose
                         offsets are not multiples of the element size), owned and freed by
                         fitlm_model_free; `data` then points here. NULL otherwise. */
} fitlm_tensor;

typedef struct fitlm_model {
    char *name;           /* general.name, folder name or preset name; owned */
    char *path;           /* what was opened; owned */
    fitlm_format format;
    fitlm_hparams hp;
    size_t n_tensors;
    fitlm_tensor *tensors; /* owned */
    size_t n_files;
    fitlm_mapped_file **files; /* maps (safetensors shards, llama2.c: owned; GGUF splits: borrowed from the readers) */
    /* Per-layer lookup filled by fitlm_model_index(): layer_tensors[l][kind], NULL
     * if absent; global ones in global_tensors[kind]. */
    fitlm_tensor *global_tensors[FITLM_T_COUNT];
    fitlm_tensor *(*layer_tensors)[FITLM_T_COUNT]; /* owned, n_layers rows */
    void *gguf;     /* fitlm_gguf* if format == GGUF (owned; metadata for inspect and tokenizer).
                     * Its map is files[0] (borrowed: freed by the reader). */
    char *hf_dir;   /* HF folder (for tokenizer.json), owned */
    /* Added by the model loader (all optional for other code): */
    char *arch_str;     /* architecture exactly as the file names it ("llama", "gpt2", ...), owned */
    bool hp_valid;      /* hp passed fitlm_hparams_validate (false: vocab-only/unknown arch, inspect mode) */
    bool packed_quant;  /* GPTQ/AWQ packed tensors (qweight/qzeros/scales) present: inspect only */
    int dtype;          /* HF torch_dtype as fitlm_type (F32/F16/BF16), FITLM_TYPE_INVALID if unknown */
    /* Split GGUF (llama.cpp gguf-split, "NAME-00001-of-0000N.gguf"): the readers of
     * splits 2..N (owned; `gguf` is split 1 and carries the metadata). files[i] is
     * split i+1's map, borrowed from its reader. */
    void **gguf_splits;
    size_t n_gguf_splits;
} fitlm_model;

/* Load modes for fitlm_model_open(). */
enum {
    FITLM_LOAD_RUN = 0,     /* what the runtime needs: supported arch, valid hparams, every tensor */
    FITLM_LOAD_INSPECT = 1, /* describe what is there: vocab-only GGUF, unknown architectures and
                             * GPTQ/AWQ packed tensors are accepted; anything malformed still fails */
};

/* Like fitlm_model_load() (which is fitlm_model_open(path, FITLM_LOAD_RUN, err)). */
fitlm_model *fitlm_model_open(const char *path, int mode, fitlm_error *err);

/* Opens a model from a GGUF file, an HF folder (or its config.json), or a
 * llama2.c checkpoint (.bin), detected by content. Validates hyperparameters
 * against each other and against tensor shapes. Returns a model the caller
 * frees with fitlm_model_free(), or NULL with err set to "PATH: reason". */
fitlm_model *fitlm_model_load(const char *path, fitlm_error *err);

/* Per-format constructors (used by fitlm_model_load). Same contract. */
fitlm_model *fitlm_model_load_gguf(const char *path, fitlm_error *err);
fitlm_model *fitlm_model_load_hf(const char *dir_or_config, fitlm_error *err);
fitlm_model *fitlm_model_load_llama2c(const char *path, fitlm_error *err);

/* A model with hyperparameters only (no tensors): from an HF config.json text. */
fitlm_model *fitlm_model_from_hf_config_json(const char *json_text, const char *name, fitlm_error *err);

void fitlm_model_free(fitlm_model *m);

/* Fills defaults (head_dim = dim/n_heads etc.) and checks the hyperparameters
 * against each other: heads divide hidden size (unless head_dim is explicit), KV
 * heads divide heads, sizes non-zero and bounded. 0 ok, -1 with err. */
int fitlm_hparams_validate(fitlm_hparams *hp, fitlm_error *err);

/* Builds layer_tensors/global_tensors from the canonical names and checks every
 * required tensor exists with the shape the hyperparameters imply. */
int fitlm_model_index(fitlm_model *m, fitlm_error *err);

/* Runtime check: 0 if every tensor the runtime reads is present and of a
 * type it can use (refuses GPTQ/AWQ packed weights with a clear message), and
 * the small tensors hold sane values (fitlm_model_check_values(m, false)). */
int fitlm_model_check_runnable(const fitlm_model *m, fitlm_error *err);

/* Values the forward pass cannot survive: NaN/Inf in the norm weights, the
 * QKV biases or rope_freqs, and a rope_freqs factor <= 0 (RoPE divides by it).
 * With all (--check-tensors), every F32/F16/BF16 matrix is scanned too, and
 * the scales of block-quantized ones. Reads only; 0 or -1 with err naming the
 * tensor and element. */
int fitlm_model_check_values(const fitlm_model *m, bool all, fitlm_error *err);

/* Parameter count from the hyperparameters (what a published model card says). */
uint64_t fitlm_hparams_param_count(const fitlm_hparams *hp);

/* Sum of tensor elements (if tensors are present). */
uint64_t fitlm_model_tensor_elements(const fitlm_model *m);
uint64_t fitlm_model_tensor_bytes(const fitlm_model *m);
/* Gives back this process's pages of t's data in the mapped model file
 * (MADV_DONTNEED, the whole pages inside it) once a copy holds what it needs:
 * a dropped page is read back from the file if ever touched again, and it
 * stays in the page cache. Nothing for tensors not in a file mapping
 * (file_index < 0). A hint: failure only leaves the pages resident. */
void fitlm_tensor_drop_pages(const fitlm_tensor *t);

/* Canonical names. Returns 0 and writes "blk.3.attn_q.weight" etc. into buf. */
int fitlm_tensor_name(fitlm_tensor_kind kind, int layer, char *buf, size_t bufsize);
/* Parses a canonical GGUF name; returns 0 with kind/layer, -1 if not a known name. */
int fitlm_tensor_parse_gguf_name(const char *name, fitlm_tensor_kind *kind, int *layer);
/* Writes the HF name of a canonical tensor ("model.layers.3.self_attn.q_proj.weight");
 * -1 if the kind has no HF name (rope_freqs). */
int fitlm_tensor_hf_name(fitlm_tensor_kind kind, int layer, char *buf, size_t bufsize);
/* Maps an HF name ("model.layers.3.self_attn.q_proj.weight") to kind/layer. */
int fitlm_tensor_parse_hf_name(const char *name, fitlm_tensor_kind *kind, int *layer);

const char *fitlm_arch_name(fitlm_arch a); /* "llama", "mistral", "qwen2", "qwen3" */
fitlm_arch fitlm_arch_from_name(const char *s);
const char *fitlm_format_name(fitlm_format f);
const char *fitlm_rope_layout_name(fitlm_rope_layout l);   /* "adjacent", "half" */
const char *fitlm_rope_scaling_name(fitlm_rope_scaling s); /* "none", "linear", "llama3", "yarn" */

/* Appends a tensor to m->tensors (name/src_name copied; kind/layer parsed from
 * the canonical name, FITLM_T_COUNT if it is not a known one). Returns the new
 * tensor or NULL on out-of-memory. Used by the loaders. */
fitlm_tensor *fitlm_model_add_tensor(fitlm_model *m, const char *name, const char *src_name, fitlm_error *err);

/* Llama 3.1 per-dimension frequency divisors (what GGUF stores in rope_freqs.weight):
 * writes head_dim/2 floats into out. Needs rope_scaling == LLAMA3 with its factors. */
int fitlm_llama3_rope_freqs(const fitlm_hparams *hp, float *out, fitlm_error *err);

#endif
