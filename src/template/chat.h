/* Chat rendering with the model's own Jinja chat template, as Hugging Face's
 * apply_chat_template does it: the template gets `messages`, `tools` (none
 * when absent), `documents` (none), `add_generation_prompt`, `bos_token`,
 * `eos_token` and any extra keyword arguments.
 *
 * Used by `fitlm template` and meant for run --chat / serve: parse the template
 * once (fitlm_chat_template_parse), render per request. */
#ifndef FITLM_TEMPLATE_CHAT_H
#define FITLM_TEMPLATE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "template/jinja.h"
#include "util/error.h"

typedef struct fitlm_chat_request {
    const char *messages_json; /* required: a JSON array of {"role": ..., "content": ...} objects */
    size_t messages_len;
    const char *tools_json; /* optional (NULL): a JSON array of tool definitions */
    size_t tools_len;
    const char *kwargs_json; /* optional (NULL): a JSON object of extra variables */
    size_t kwargs_len;
    bool add_generation_prompt;
    const char *bos_token; /* NULL = "" */
    const char *eos_token; /* NULL = "" */
} fitlm_chat_request;

/* How a render failed (for an HTTP status or an exit code). */
typedef enum fitlm_chat_status {
    FITLM_CHAT_OK = 0,
    FITLM_CHAT_BAD_REQUEST,    /* malformed messages/tools/kwargs, unknown role */
    FITLM_CHAT_BAD_TEMPLATE,   /* the template does not parse */
    FITLM_CHAT_TEMPLATE_ERROR, /* the template raised (raise_exception) or failed while rendering */
    FITLM_CHAT_NO_MEMORY,
} fitlm_chat_status;

/* Checks the shape of a messages array: every item an object with a string
 * "role" among system, user, assistant, tool, ipython, developer; "content" a
 * string, null, absent or a list of {"type": ...} parts; "tool_calls" a list.
 * Returns 0, or -1 with err naming the message ("messages[2]: ..."). */
int fitlm_chat_check_messages(const char *json, size_t len, fitlm_error *err);

/* Renders a parsed template (jinja_parse) for one request. Returns the text,
 * NUL-terminated, malloc'd: the caller frees it; *len_out (optional) gets its
 * length. On failure returns NULL, sets err and *status (optional). When the
 * template called raise_exception(msg), err->msg is exactly msg. The template
 * is only read: one parsed template may serve concurrent renders. */
char *fitlm_chat_render_parsed(const jinja_template *tpl, const fitlm_chat_request *req, size_t *len_out,
                               fitlm_chat_status *status, fitlm_error *err);

/* The same from template text (parsed for this call only). */
char *fitlm_chat_render(const char *template_src, size_t template_len, const fitlm_chat_request *req, size_t *len_out,
                        fitlm_chat_status *status, fitlm_error *err);

#endif
