/* Loader internals shared by the files in src/model (not for other modules). */
#ifndef FITLM_MODEL_MODEL_INTERNAL_H
#define FITLM_MODEL_MODEL_INTERNAL_H

#include "model/model.h"

/* Per-format constructors with a load mode (FITLM_LOAD_*). Same contract as
 * fitlm_model_load(): the caller frees the result with fitlm_model_free(). */
fitlm_model *fitlm_model_open_gguf(const char *path, int mode, fitlm_error *err);
fitlm_model *fitlm_model_open_hf(const char *dir_or_config, int mode, fitlm_error *err);
fitlm_model *fitlm_model_open_llama2c(const char *path, int mode, fitlm_error *err);

/* True if the first 28 bytes look like a llama2.c header (small positive sizes). */
bool fitlm_llama2c_header_plausible(const unsigned char head[28]);

/* Common tail of the loaders: validates the hyperparameters and indexes the
 * tensors as the mode asks. 0, or -1 with err (no path prefix). */
int fitlm_model_finish(fitlm_model *m, int mode, fitlm_error *err);

#endif
