/* Model quantization: writes a loaded model as a GGUF file whose weight
 * matrices are stored in a smaller type (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16, F32
 * or the Q4_K_M mix). Used by `fitlm quantize`; see docs/quantization.md.
 *
 * Which type each tensor gets:
 *   - 1-D tensors (norms, biases, rope_freqs) stay F32;
 *   - pure schemes store every other tensor in the scheme's type;
 *   - Q4_K_M: Q4_K, except output.weight (and token_embd.weight when the output
 *     projection is tied to it) Q6_K, and attn_v / ffn_down Q6_K in the layers
 *     fitlm_quant_more_bits_layer() selects;
 *   - a row length that is not a multiple of the type's block size falls back
 *     (fitlm_quant_fallback_type): Q4_K -> Q5_0, Q6_K -> Q8_0 when rows are a
 *     multiple of 32, else F16; Q8_0/Q4_0/Q5_0 -> F16.
 * Output tensors are produced one at a time through the GGUF writer's fill
 * callback (rows spread over a thread pool), so memory stays at the size of the
 * largest output tensor plus one row per thread.
 */
#ifndef FITLM_QUANTIZE_QUANTIZE_H
#define FITLM_QUANTIZE_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "util/error.h"

/* A quantization scheme ("file type"). */
typedef struct fitlm_quant_scheme {
    const char *name; /* "Q4_K_M", "Q8_0", ... */
    int type;         /* fitlm_type of most weight matrices */
    int ftype;        /* llama.cpp LLAMA_FTYPE id stored as general.file_type */
    bool mix;         /* true for Q4_K_M (per-tensor recipe) */
    const char *desc; /* one-line description for the usage text */
} fitlm_quant_scheme;

/* Looks a scheme up by name, case-insensitively ("q4_k_m", "F16"). NULL if unknown. */
const fitlm_quant_scheme *fitlm_quant_scheme_find(const char *name);
/* The schemes, for listing: returns the count and sets *out to a static table. */
int fitlm_quant_schemes(const fitlm_quant_scheme **out);

/* Q4_K_M's "more bits" layers (attn_v, ffn_down in Q6_K): the first and last
 * eighth of the layers (l < n/8, l >= 7n/8, integer division), plus every third
 * layer in between starting at n/8 + 2 ((l - n/8) % 3 == 2). */
bool fitlm_quant_more_bits_layer(int layer, int n_layers);

/* Type a tensor gets under scheme s before the row-length fallback.
 * kind/layer as in model.h (FITLM_T_COUNT for a tensor fitlm does not know);
 * tied: the model has no output.weight (token_embd is also the output). */
int fitlm_quant_tensor_type(const fitlm_quant_scheme *s, fitlm_tensor_kind kind, int layer, int n_layers,
                            uint32_t n_dims, bool tied);

/* A type that can store rows of row_len elements: `type` itself when row_len is
 * a multiple of its block size, else its fallback (see the top of this file). */
int fitlm_quant_fallback_type(int type, uint64_t row_len);

/* True for the types an override may name: F32, F16, BF16, Q8_0, Q6_K, Q5_0, Q4_K, Q4_0. */
bool fitlm_quant_override_ok(int type);

typedef struct fitlm_quantize_opts {
    const fitlm_quant_scheme *scheme;
    int n_threads;          /* <= 0: physical cores */
    bool allow_requantize;  /* accept already-quantized input (dequantized, then quantized again) */
    /* Overrides (FITLM_TYPE_INVALID = the scheme's choice), as llama.cpp's
     * --output-tensor-type / --token-embedding-type: output.weight (and a tied
     * token_embd.weight, which is the output projection) / token_embd.weight. The
     * row-length fallback still applies. Must be a type fitlm_quant_override_ok accepts. */
    int output_type;
    int embd_type;
    FILE *progress;         /* one line per tensor here, NULL for none */
    FILE *notes;            /* fallback notes here, NULL for none */
} fitlm_quantize_opts;

typedef struct fitlm_quantize_stats {
    uint64_t n_tensors;
    uint64_t n_elements;  /* all tensors */
    uint64_t in_bytes;    /* tensor data read */
    uint64_t out_bytes;   /* tensor data written */
    uint64_t out_file_bytes;
    uint64_t n_fallbacks; /* tensors stored in a fallback type */
    uint64_t type_tensors[64]; /* tensors per output type id (< 64) */
} fitlm_quantize_stats;

/* Writes m as a GGUF file at out (temp file + rename; nothing is left behind on
 * failure). A GGUF source keeps all its metadata and tensor names and order
 * (general.file_type replaced, general.quantization_version = 2 added); other
 * sources get the metadata and names of `fitlm convert`. stats (optional) is
 * filled on success. 0 or -1 with err. */
int fitlm_quantize_model(const fitlm_model *m, const char *out, const fitlm_quantize_opts *opts,
                         fitlm_quantize_stats *stats, fitlm_error *err);

#endif
