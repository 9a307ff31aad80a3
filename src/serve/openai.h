/* The OpenAI API's JSON: requests of /v1/chat/completions and /v1/completions
 * parsed and checked into engine requests, and the answers (whole responses
 * and server-sent-event chunks) built from what the engine reported.
 *
 * Everything a client sends is bounded and validated here: a bad field gives
 * a serve_error (HTTP status, OpenAI error type, the field, a message) and no
 * engine request. */
#ifndef FITLM_SERVE_OPENAI_H
#define FITLM_SERVE_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "grammar/token_mask.h"
#include "runtime/chat_template.h"
#include "serve/buf.h"
#include "tokenizer/tokenizer.h"
#include "tools/tool_calls.h"

#define SERVE_MAX_STOP 4            /* stop strings per request (OpenAI's limit) */
#define SERVE_MAX_STOP_BYTES 256    /* bytes per stop string */
#define SERVE_MAX_MESSAGES 4096     /* messages per chat request */
#define SERVE_MAX_PARTS 256         /* content parts per message */
#define SERVE_MAX_COMPLETION_LOGPROBS 5
#define SERVE_MAX_TOOLS 128             /* tools per request (OpenAI's limit) */
#define SERVE_MAX_TOOL_CALLS 128        /* tool_calls per assistant message */
#define SERVE_MAX_TOOL_CALL_ID 256      /* bytes of a tool_call_id */

typedef enum serve_kind { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

/* An error answer: {"error": {"message", "type", "param", "code"}}. */
typedef struct serve_error {
    unsigned status;   /* HTTP status */
    const char *type;  /* "invalid_request_error", "not_found_error", "server_error", ... (static) */
    const char *param; /* the offending field or NULL (static) */
    const char *code;  /* OpenAI's error code or NULL (static) */
    char msg[512];
} serve_error;

int serve_error_set(serve_error *e, unsigned status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) FITLM_PRINTF(6, 7);
/* Appends the error body as JSON. */
void serve_error_json(const serve_error *e, serve_buf *out);

/* What the parser needs to know about the served model. */
typedef struct serve_model_info {
    const char *name;            /* the id in /v1/models; a request naming another model gets 404 */
    const fitlm_tokenizer *tok;
    const struct fitlm_chat_prompt *chat; /* the model's chat format (engine/chat_prompt.h); NULL: chat requests
                                    get 400 */
    fitlm_chat_template tmpl;    /* unused when chat is set */
    const char *default_system;  /* ChatML's implicit system message, or NULL */
    uint32_t n_ctx, vocab;
    uint32_t max_piece_bytes;    /* longest token text (0: unknown): a prompt of B bytes has at least
                                    B / max_piece_bytes tokens, so longer ones are refused untokenized */
    const fitlm_token_trie *trie; /* the vocabulary's token trie (grammar/token_mask.h) for response_format;
                                    NULL: structured output requests get 400 */
    fitlm_tool_format tool_format; /* the tool-call format of the chat template (tools/tool_calls.h), from
                                    serve_model_tool_setup; NONE: requests with tools get 400 */
    bool reasoning;              /* the template knows <think>...</think>: reasoning_content is split off */
} serve_model_info;

/* Sets mi->tool_format and mi->reasoning from the model's Jinja template
 * (nothing for a built-in format). */
void serve_model_tool_setup(serve_model_info *mi);

/* The longest text any token of tok stands for (special tokens included). */
uint32_t serve_max_piece_bytes(const fitlm_tokenizer *tok);

/* A checked generation request. Owns prompt and stop (serve_gen_params_free). */
typedef struct serve_gen_params {
    serve_kind kind;
    int32_t *prompt;
    uint32_t n_prompt;
    uint32_t max_tokens;          /* 0 = until the context is full */
    fitlm_sampler_params sampling;
    char *stop[SERVE_MAX_STOP];
    size_t n_stop;
    bool ignore_eos;
    bool stream, include_usage;
    int top_logprobs;             /* -1: no logprobs */
    bool tokens_as_ids;           /* vLLM's return_tokens_as_token_ids: logprob tokens as "token_id:N" */
    fitlm_token_matcher *matcher; /* response_format's constraint, or NULL; owned until handed to the engine
                                    (fitlm_token_matcher_constraint), else freed by serve_gen_params_free;
                                    also tool_choice "required" / a named function's call grammar */
    /* chat output parsing (docs/serving.md#tool-calls): parse is false for plain text */
    bool parse;                   /* split the output into content / reasoning_content / tool_calls */
    fitlm_tool_format tool_format;/* the calls to look for (NONE: tools absent or tool_choice "none") */
    bool in_think;                /* the prompt ends inside <think>: the output starts as reasoning */
    bool reasoning;               /* the response carries reasoning_content */
} serve_gen_params;

/* Parses and checks a request body; tokenizes its prompt (chat: the messages
 * rendered with the chat template). 0, or -1 with *err filled (and *out left
 * with nothing to free). `random_seed` is used when the request has no seed. */
int serve_parse_gen(const serve_model_info *mi, serve_kind kind, const char *body, size_t len, uint64_t random_seed,
                    serve_gen_params *out, serve_error *err);
void serve_gen_params_free(serve_gen_params *p);

/* What the engine reported for one request, copied out of its events. */
typedef struct serve_tok {
    int32_t id;           /* -1: a final event's text, not a token */
    float logprob;
    int n_top;
    size_t top_off;       /* into serve_gen_log.tops */
    size_t text_off, text_len; /* into serve_gen_log.text */
} serve_tok;

typedef struct serve_gen_log {
    serve_tok *toks;
    size_t n_toks, cap_toks;
    fitlm_top_logprob *tops;
    size_t n_tops, cap_tops;
    serve_buf text;
    bool done;
    fitlm_finish_reason finish;
    char error[256];
    uint32_t n_prompt, n_cached, n_completion;
} serve_gen_log;

/* Copies an event in (0, or -1 when out of memory: the log is then marked
 * done with FITLM_FINISH_ERROR). */
int serve_gen_log_add(serve_gen_log *g, const fitlm_gen_event *ev);
void serve_gen_log_free(serve_gen_log *g);

/* Identity of one response: "chatcmpl-..." / "cmpl-..." and its creation time. */
typedef struct serve_resp_id {
    char id[48];
    long long created;
} serve_resp_id;

/* The whole non-streaming response (log must be done with STOP or LENGTH). */
void serve_format_response(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                           const serve_resp_id *rid, serve_buf *out);

/* What a stream has sent so far (zero-initialised at the start). */
typedef struct serve_stream_state {
    size_t next;            /* log entries already formatted */
    bool role_sent;         /* the chat role chunk went out */
    bool finished;          /* the final chunks and [DONE] went out */
    /* p->parse: the incremental parse of the output (tools/tool_calls.h) */
    fitlm_tool_resume tr;
    serve_buf held;         /* content not sent yet: white space only, which is no content around calls */
    bool content_started;   /* content other than white space went out */
    size_t calls_sent;      /* complete calls sent */
    bool open_sent;         /* the call being generated (index calls_sent) had its first delta */
    size_t open_args_sent;  /* bytes of its arguments sent */
} serve_stream_state;

/* Frees what a serve_stream_state holds (not the struct). */
void serve_stream_state_free(serve_stream_state *st);

/* Appends the SSE chunks for toks [st->next, n_toks) and, once the log is
 * done, the final chunk, the usage chunk (include_usage) and "data: [DONE]";
 * sets st->finished when those were written. With p->parse the text so far
 * is parsed (tools/tool_calls.h) and only what can no longer change is sent:
 * reasoning_content and content deltas without markup, and each tool call
 * as OpenAI streams them (index, id, type, name and arguments "", then the
 * arguments in pieces as they are generated). The parse is incremental
 * (st->tr): the work per call follows the new text, not all of it. */
void serve_format_chunks(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                         const serve_resp_id *rid, serve_stream_state *st, serve_buf *out);

/* JSON string of bytes (invalid UTF-8 replaced by U+FFFD), appended with quotes. */
void serve_json_string(serve_buf *out, const char *s, size_t n);

#endif
