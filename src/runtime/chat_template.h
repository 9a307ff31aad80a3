/* Built-in chat templates (the model's Jinja template is not executed; one of
 * these is chosen by recognisable markers in it, or by name):
 *   llama2   <s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s>
 *   llama3   <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>
 *   chatml   <|im_start|>ROLE\nTEXT<|im_end|>\n          (Qwen, many others)
 *   mistral  [INST] USER [/INST]ASSISTANT</s>   (system text joins the first user turn)
 * The formatted text starts after the BOS token (the tokenizer adds BOS). */
#ifndef FITLM_RUNTIME_CHAT_TEMPLATE_H
#define FITLM_RUNTIME_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef enum fitlm_chat_template {
    FITLM_CHAT_NONE = 0,
    FITLM_CHAT_LLAMA2,
    FITLM_CHAT_LLAMA3,
    FITLM_CHAT_CHATML,
    FITLM_CHAT_MISTRAL,
} fitlm_chat_template;

typedef struct fitlm_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} fitlm_chat_message;

/* Recognises a Jinja chat template by its markers; FITLM_CHAT_NONE if none. */
fitlm_chat_template fitlm_chat_template_detect(const char *jinja);
/* "llama2", "llama3", "chatml" (alias "qwen"), "mistral"; NONE if unknown. */
fitlm_chat_template fitlm_chat_template_from_name(const char *name);
const char *fitlm_chat_template_name(fitlm_chat_template t);

/* Formats the conversation; with add_generation_prompt the text ends where the
 * assistant's reply begins. Returns a malloc'd string the caller frees, or NULL
 * with err (unknown template, bad role). */
char *fitlm_chat_format(fitlm_chat_template t, const fitlm_chat_message *msgs, size_t n, bool add_generation_prompt,
                        fitlm_error *err);

/* The system message a ChatML template inserts when the conversation has none
 * (Qwen2: "You are a helpful assistant."), read from the literal in the Jinja
 * text; NULL if the template has none. Caller frees. */
char *fitlm_chat_default_system(const char *jinja);

#endif
