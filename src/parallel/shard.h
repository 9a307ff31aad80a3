/* Tensor-parallel slices of model tensors, made before the backend prepares
 * them (weights.c): each rank prepares, and so touches, only its part. */
#ifndef FITLM_PARALLEL_SHARD_H
#define FITLM_PARALLEL_SHARD_H

#include <stdint.h>

#include "model/model.h"
#include "util/error.h"

/* A view of rows [r0, r0+nr) of matrix t (GGUF rows = output features): the
 * same mapped bytes, no copy. For a vector (one row), elements [r0, r0+nr)
 * (F32, F16 or BF16). 0, or -1 with err. */
int fitlm_shard_rows(const fitlm_tensor *t, uint64_t r0, uint64_t nr, fitlm_tensor *view, fitlm_error *err);

/* Columns [c0, c0+nc) of every row of matrix t (input features), copied into
 * a new buffer *buf (the caller frees it once the backend no longer borrows
 * it); view describes it (file_index -1: not a file mapping). The cut must
 * fall on quantization blocks. The source's pages are dropped from this
 * process afterwards (a hint), so only the copy stays resident. 0, or -1. */
int fitlm_shard_cols(const fitlm_tensor *t, uint64_t c0, uint64_t nc, fitlm_tensor *view, void **buf,
                     fitlm_error *err);

#endif
