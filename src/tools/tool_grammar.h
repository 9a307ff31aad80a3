/* Grammars of tool calls: the text a chat model must print to call one of
 * the given tools in its template's format (tool_calls.h), with arguments
 * that validate against each tool's JSON schema (grammar/json_schema.h).
 * Used for tool_choice "required" or a named function: a token constraint
 * over this grammar makes even a random-weight model emit a valid call.
 *
 *   HERMES   <tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>, calls separated by "\n"
 *   LLAMA3   {"name": "NAME", "parameters": ARGS} (one call: the template allows no more)
 *   MISTRAL  [TOOL_CALLS][{"name": "NAME", "arguments": ARGS}, ...] (the marker optional: it is a
 *            control token in Mistral's own vocabulary, and control tokens never match text)
 */
#ifndef FITLM_TOOLS_TOOL_GRAMMAR_H
#define FITLM_TOOLS_TOOL_GRAMMAR_H

#include <stddef.h>

#include "tools/tool_calls.h"
#include "util/error.h"

#define FITLM_TOOL_NAME_MAX 64

typedef struct fitlm_tool_spec {
    const char *name;       /* [A-Za-z0-9_-]{1,64} (OpenAI's rule for function names) */
    const char *parameters; /* JSON schema text of the arguments object */
} fitlm_tool_spec;

/* A valid function name (OpenAI's rule): 1..64 of [A-Za-z0-9_-]. */
bool fitlm_tool_name_valid(const char *name);

/* GBNF (grammar.h) of 1..max_calls calls (max_calls 0: any number; LLAMA3
 * always one) of any of the n tools. Returns malloc'd text the caller frees,
 * or NULL with err (a schema fitlm cannot compile: "tool 'NAME': JSON schema:
 * ...", a bad name, an unknown format, out of memory). */
char *fitlm_tool_grammar_gbnf(fitlm_tool_format f, const fitlm_tool_spec *tools, size_t n, unsigned max_calls,
                              fitlm_error *err);

#endif
