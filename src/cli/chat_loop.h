/* Interactive chat for `fitlm run -i`: user turns from standard input, one
 * line each, answered with the KV cache kept between turns (each turn feeds
 * only the new part of the formatted conversation). */
#ifndef FITLM_CLI_CHAT_LOOP_H
#define FITLM_CLI_CHAT_LOOP_H

#include "cli/generate.h"
#include "runtime/chat_template.h"

/* g->out must hold n_predict ids; g->ds is ignored (one stream per turn, or
 * ids printed with print_ids).
 * first_user (may be NULL) is the first user turn; system (may be NULL) the
 * system message. Returns 0 at end of input, -1 with err. */
int chat_loop(gen_ctx *g, fitlm_chat_template t, const char *system, const char *first_user, long n_predict,
              bool print_ids, fitlm_error *err);

#endif
