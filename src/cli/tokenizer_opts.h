/* Shared by the tokenizer commands (tokenize, detokenize): the required
 * -m MODEL and opening its tokenizer. */
#ifndef FITLM_CLI_TOKENIZER_OPTS_H
#define FITLM_CLI_TOKENIZER_OPTS_H

#include <stdio.h>

#include "tokenizer/tokenizer.h"

/* Opens the tokenizer of `model` (GGUF file, Hugging Face folder or
 * tokenizer.json). Without a model prints usage to stderr and
 * "fitlm: error: CMD: -m MODEL is required"; on a load error prints it. Returns
 * NULL then (exit status 1); the caller frees the tokenizer with
 * fitlm_tokenizer_free(). */
fitlm_tokenizer *tokenizer_opts_open(const char *cmd, const char *model, void (*usage)(FILE *out));

#endif
