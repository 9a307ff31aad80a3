/* safetensors reader and writer.
 *
 * File layout (huggingface/safetensors): an 8-byte little-endian header length
 * N, N bytes of JSON (an object: tensor name -> {"dtype", "shape", "data_offsets":
 * [begin, end]} plus an optional "__metadata__" string map), then the data
 * section. Offsets are relative to the data section; shapes are outermost
 * first (a PyTorch Linear weight is [out_features, in_features]).
 *
 * The reader checks everything before trusting it: the header length against
 * the file size (and a 100 MB cap), JSON nesting depth, every dtype, shape
 * product (overflow-checked), offsets inside the data section with
 * end - begin == elements * dtype size, and that the tensors tile the data
 * section exactly (no overlap, no gap), as the format requires.
 */
#ifndef FITLM_FORMAT_SAFETENSORS_H
#define FITLM_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define FITLM_ST_MAX_DIMS 4
#define FITLM_ST_MAX_HEADER (100u * 1000u * 1000u)
#define FITLM_ST_MAX_DEPTH 8
/* JSON values a header may hold (a tensor entry is about 7: its object,
 * dtype, shape and offsets): 2^21 values cover about 300,000 tensors, far
 * beyond any published checkpoint (DeepSeek-V3: about 92,000), and bound the
 * parse tree to about FITLM_ST_NODE_BYTES x 2^21 = 256 MiB. */
#define FITLM_ST_MAX_NODES (1u << 21)
#define FITLM_ST_NODE_BYTES 128u

typedef struct fitlm_st_tensor {
    char *name;       /* owned by the fitlm_safetensors object */
    int type;         /* fitlm_type id (F32, F16, BF16, F64, I64, I32, I16, I8, U8, F8_E4M3, F8_E5M2) */
    uint32_t n_dims;  /* 0 for a scalar */
    uint64_t shape[FITLM_ST_MAX_DIMS]; /* as stored: shape[0] is the outermost dimension */
    uint64_t n_elements;
    uint64_t offset;  /* absolute offset from the start of the file */
    uint64_t nbytes;
} fitlm_st_tensor;

typedef struct fitlm_safetensors {
    uint64_t header_len;
    uint64_t data_offset; /* 8 + header_len */
    size_t n_tensors;
    fitlm_st_tensor *tensors; /* owned, in header order */
} fitlm_safetensors;

/* Parses and validates the header of a safetensors file held in memory (e.g. a
 * mapped file). Does not copy the data. Returns an object the caller frees with
 * fitlm_safetensors_free(), or NULL with err set (no path prefix). */
fitlm_safetensors *fitlm_safetensors_parse(const uint8_t *data, uint64_t size, fitlm_error *err);
void fitlm_safetensors_free(fitlm_safetensors *st);

/* dtype strings ("F32", "BF16", ...) <-> fitlm_type ids; FITLM_TYPE_INVALID / NULL if unknown. */
int fitlm_safetensors_dtype_from_name(const char *name);
const char *fitlm_safetensors_dtype_name(int type);

/* ---- writer ---- */
typedef struct fitlm_st_out_tensor {
    const char *name;
    int type;         /* F32, F16, BF16, ... (must have a safetensors dtype) */
    uint32_t n_dims;
    uint64_t shape[FITLM_ST_MAX_DIMS]; /* outermost first */
    const void *data; /* NULL: produced by the fill callback */
} fitlm_st_out_tensor;

/* Produces tensor i's bytes into buf (exactly nbytes). 0 or -1 with err. */
typedef int (*fitlm_st_fill_fn)(void *user, size_t index, void *buf, uint64_t nbytes, fitlm_error *err);

/* Writes a safetensors file (temp file + rename). Tensors are stored in the
 * given order; the header is padded with spaces to a multiple of 8 bytes and
 * carries __metadata__ {"format": "pt"}. 0 or -1 with err. */
int fitlm_safetensors_write(const char *path, const fitlm_st_out_tensor *tensors, size_t n, fitlm_st_fill_fn fill,
                            void *user, fitlm_error *err);

#endif
