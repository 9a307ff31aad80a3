/* A model's chat format for `run --chat`, `run -i` and `serve`: the model's
 * own Jinja template (tokenizer.chat_template in GGUF, chat_template in
 * tokenizer_config.json) rendered as Hugging Face's apply_chat_template does
 * (template/chat.h), or, when the model has none or a name is forced, one of
 * the built-in formats (runtime/chat_template.h). Rendered text is tokenized
 * with special tokens recognized; the tokenizer's BOS is added only when the
 * text does not already start with it (templates that print bos_token). */
#ifndef FITLM_ENGINE_CHAT_PROMPT_H
#define FITLM_ENGINE_CHAT_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/chat_template.h"
#include "template/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct fitlm_chat_prompt fitlm_chat_prompt;

/* name: NULL to use the model's template (or, without one, a built-in format
 * recognised from it), else a built-in name (llama2, llama3, chatml,
 * mistral). tok is borrowed and must outlive the result; the caller frees it
 * with fitlm_chat_prompt_free. NULL with err when there is no usable format
 * or the model's template does not parse. */
fitlm_chat_prompt *fitlm_chat_prompt_new(const fitlm_tokenizer *tok, const char *name, fitlm_error *err);
void fitlm_chat_prompt_free(fitlm_chat_prompt *cp);

/* "the model's chat template (Jinja)" or "built-in llama3" (static text). */
const char *fitlm_chat_prompt_describe(const fitlm_chat_prompt *cp);
bool fitlm_chat_prompt_is_jinja(const fitlm_chat_prompt *cp);

/* Renders a conversation. msgs/n: role and text of each message (enough for
 * the built-in formats, and turned into the messages array when
 * messages_json is NULL); messages_json (optional): the request's messages as
 * JSON text, given to a Jinja template as is (tool calls, names, parts);
 * tools_json (optional): the tools array. Returns malloc'd text the caller
 * frees, or NULL with err and *status (a template's raise_exception message
 * is err->msg exactly). */
char *fitlm_chat_prompt_render(const fitlm_chat_prompt *cp, const fitlm_chat_message *msgs, size_t n,
                               const char *messages_json, const char *tools_json, bool add_generation_prompt,
                               fitlm_chat_status *status, fitlm_error *err);

/* Tokenizes rendered text: special tokens recognized; with `first` the
 * tokenizer's BOS/EOS rules apply unless the text already starts with the BOS
 * token's text. Caller frees *ids. 0 or -1 with err. */
int fitlm_chat_prompt_tokenize(const fitlm_chat_prompt *cp, const char *text, size_t len, bool first, int32_t **ids,
                               size_t *n, fitlm_error *err);

#endif
