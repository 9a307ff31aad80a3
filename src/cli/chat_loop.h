/* Interactive chat for `fitlm run -i`: user turns from standard input, one
 * line each. Each turn submits the whole conversation's tokens to the engine
 * (the tokens of earlier turns exactly as they were generated or fed, then the
 * new part of the formatted conversation; when a template rewrites earlier
 * turns, the whole conversation re-tokenized); the engine's prefix cache finds
 * the earlier turns' KV blocks, so only the new tokens are computed. */
#ifndef FITLM_CLI_CHAT_LOOP_H
#define FITLM_CLI_CHAT_LOOP_H

#include "cli/generate.h"
#include "engine/chat_prompt.h"

/* first_user (may be NULL) is the first user turn; system (may be NULL) the
 * system message. Returns 0 at end of input, -1 with err. */
int chat_loop(fitlm_engine *e, const fitlm_tokenizer *tok, const fitlm_sampler_params *sp, const fitlm_chat_prompt *cp,
              const char *system, const char *first_user, long n_predict, bool print_ids, fitlm_error *err);

#endif
