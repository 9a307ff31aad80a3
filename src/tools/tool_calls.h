/* Tool calls and reasoning in a chat model's output text.
 *
 * The formats the chat templates in ../shared/data/chat-templates define:
 *   FITLM_TOOLS_HERMES   Hermes 3, Qwen2.5, QwQ: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
 *                        (any number, anywhere in the text)
 *   FITLM_TOOLS_LLAMA3   Llama 3.1/3.2: the whole reply is {"name": ..., "parameters": {...}}
 *                        (or "arguments"), optionally after <|python_tag|>
 *   FITLM_TOOLS_MISTRAL  Mistral Nemo: [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]
 *                        (the marker may be absent from the text when it is a control token)
 * and, for every format, <think>...</think> (DeepSeek-R1, QwQ) as reasoning: the text before </think>
 * (after an opening <think>, or from the start when the prompt already opened it) is reasoning_content.
 *
 * Parsing is pure: the same text always gives the same result. For
 * streaming, parse the text so far with final = false: only what can no
 * longer change is reported (text that could still be the start of a
 * marker is held back, a call is reported once it is complete), so the
 * results of successive prefixes only ever grow and the last one (final =
 * true) is the whole answer. A call whose JSON does not parse stays text.
 */
#ifndef FITLM_TOOLS_TOOL_CALLS_H
#define FITLM_TOOLS_TOOL_CALLS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef enum fitlm_tool_format {
    FITLM_TOOLS_NONE = 0,
    FITLM_TOOLS_HERMES,
    FITLM_TOOLS_LLAMA3,
    FITLM_TOOLS_MISTRAL,
} fitlm_tool_format;

/* The format a chat template's text uses (by the markers it prints), or NONE. */
fitlm_tool_format fitlm_tool_format_detect(const char *template_text);
const char *fitlm_tool_format_name(fitlm_tool_format f);

typedef struct fitlm_tool_call {
    char *id;        /* the model's id (Mistral) or "call_N" (N from 0) */
    char *name;
    char *arguments; /* compact JSON text of the arguments object */
} fitlm_tool_call;

/* Everything malloc'd and NUL-terminated; free with fitlm_tool_parse_free. */
typedef struct fitlm_tool_parse {
    char *content;
    size_t content_len;
    char *reasoning;
    size_t reasoning_len;
    fitlm_tool_call *calls;
    size_t n_calls;
    /* fitlm_tool_parse_resume only: a call after `calls` that is still
     * being generated and whose name and the start of whose arguments object
     * are known: its name, and the arguments' bytes (compact) that came since
     * the previous call; NULL / 0 otherwise */
    char *open_name;
    char *open_args;
    size_t open_args_len;
    /* the open call whose name was reported turned out not to be a call (its
     * JSON did not parse, or the output ended before </tool_call>): its text
     * is content now */
    bool open_dropped;
} fitlm_tool_parse;

/* Where an incremental parse stands (fitlm_tool_parse_resume). Zero it
 * (= {0}) before the first call; it holds no memory. */
typedef struct fitlm_tool_resume {
    size_t pos;        /* text before pos was parsed, and what it gave was reported */
    int mode;          /* internal: start, reasoning, after </think>, body, plain text */
    size_t n_calls;    /* calls reported so far (their default ids are call_N) */
    size_t close_from; /* Hermes: where the search for the open call's </tool_call> goes on (0: from the call) */
    /* the open call's arguments (tool_calls.c): scanned up to args_pos */
    int open_state;    /* 0 none yet, 1 streaming the arguments, 2 they ended, -1 not streamable */
    size_t args_pos;
    unsigned depth;
    bool in_str, esc;
} fitlm_tool_resume;

/* Parses text (len bytes). in_think: the prompt ended inside <think> (the
 * output starts as reasoning). final: the output is complete. 0, or -1 with
 * err when out of memory (out then holds nothing to free). */
int fitlm_tool_parse_text(fitlm_tool_format f, bool in_think, const char *text, size_t len, bool final,
                          fitlm_tool_parse *out, fitlm_error *err);
/* Incremental parse for streaming: the same results as fitlm_tool_parse_text
 * on the whole text, delivered in pieces. text is the whole output so far (it
 * only grows between calls; same f and in_think each time); out gets only
 * what is new since the previous call with this r: content and reasoning
 * bytes to append, the calls completed since, and the open call's name and
 * new argument bytes (Mistral: the array's first call only). The work per call is proportional to the new
 * text (plus, once per call, the call's JSON), so parsing a stream is linear
 * in its length. 0, or -1 with err when out of memory. */
int fitlm_tool_parse_resume(fitlm_tool_format f, bool in_think, fitlm_tool_resume *r, const char *text, size_t len,
                            bool final, fitlm_tool_parse *out, fitlm_error *err);
void fitlm_tool_parse_free(fitlm_tool_parse *p);

#endif
