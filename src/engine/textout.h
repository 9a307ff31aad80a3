/* A generated sequence's text: token pieces through the streaming
 * detokenizer (whole UTF-8 characters only), then stop strings — text that
 * could still turn into a stop string is held back until it cannot, and a
 * match ends the text right before it (the stop string itself is never
 * emitted). The text continues the prompt: the first token's leading space
 * is kept (a completion of "Once upon a" starts " time"). Shared by the CLI's
 * generation loop and the serving engine.
 */
#ifndef FITLM_ENGINE_TEXTOUT_H
#define FITLM_ENGINE_TEXTOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct fitlm_textout fitlm_textout;

/* Stop strings: at most this many, each 1..FITLM_STOP_MAX_BYTES bytes of valid UTF-8. */
#define FITLM_STOP_MAX 16
#define FITLM_STOP_MAX_BYTES 512

/* Checks stop strings (count, length, valid UTF-8, non-empty). 0 or -1 with err. */
int fitlm_textout_check_stops(const char *const *stop, size_t n_stop, fitlm_error *err);

/* A new text stream over tok (borrowed; must outlive it) with copies of the
 * stop strings (checked with fitlm_textout_check_stops). Caller frees with
 * fitlm_textout_free. NULL with err. */
fitlm_textout *fitlm_textout_new(const fitlm_tokenizer *tok, const char *const *stop, size_t n_stop,
                                 fitlm_error *err);
void fitlm_textout_free(fitlm_textout *t);

/* Adds a generated token. text and len receive the text that can now be
 * emitted (valid until the next call on t); *stopped is set when a stop
 * string matched (then *text ends right before it and nothing more should be
 * pushed). 0 or -1 with err (detokenizer failure). */
int fitlm_textout_push(fitlm_textout *t, int32_t id, const char **text, size_t *len, bool *stopped,
                       fitlm_error *err);

/* The end without a stop match: whatever was held back (an incomplete UTF-8
 * tail is rendered as the detokenizer's flush does). Valid until the next
 * call on t. */
void fitlm_textout_finish(fitlm_textout *t, const char **text, size_t *len);

#endif
