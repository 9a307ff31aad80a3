/* The model's chat format: its Jinja template or a built-in one. */
#include "engine/chat_prompt.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

struct fitlm_chat_prompt {
    const fitlm_tokenizer *tok;
    jinja_template *jinja;      /* the model's template, or NULL */
    fitlm_chat_template builtin;
    const char *bos_text, *eos_text;
};

static const char *token_text(const fitlm_tokenizer *tok, int32_t id) {
    if (id < 0) return "";
    const char *t = fitlm_tokenizer_token_text(tok, id);
    return t ? t : "";
}

fitlm_chat_prompt *fitlm_chat_prompt_new(const fitlm_tokenizer *tok, const char *name, fitlm_error *err) {
    fitlm_chat_prompt *cp = calloc(1, sizeof *cp);
    if (!cp) return fitlm_fail(err, "out of memory"), NULL;
    cp->tok = tok;
    cp->bos_text = token_text(tok, fitlm_tokenizer_bos(tok));
    cp->eos_text = token_text(tok, fitlm_tokenizer_eos(tok));
    const char *src = fitlm_tokenizer_chat_template(tok);
    if (name) {
        cp->builtin = fitlm_chat_template_from_name(name);
        if (cp->builtin == FITLM_CHAT_NONE) {
            fitlm_fail(err, "unknown chat template '%s' (llama2, llama3, chatml, mistral)", name);
            goto fail;
        }
        return cp;
    }
    if (src && *src) {
        cp->jinja = jinja_parse(src, strlen(src), err);
        if (cp->jinja) return cp;
        fitlm_error_prefix(err, "the model's chat template");
        goto fail;
    }
    fitlm_fail(err, "the model has no chat template: choose a built-in one with --chat-template (llama2, llama3, "
                    "chatml, mistral)");
fail:
    fitlm_chat_prompt_free(cp);
    return NULL;
}

void fitlm_chat_prompt_free(fitlm_chat_prompt *cp) {
    if (!cp) return;
    jinja_template_free(cp->jinja);
    free(cp);
}

const char *fitlm_chat_prompt_describe(const fitlm_chat_prompt *cp) {
    if (cp->jinja) return "the model's chat template (Jinja)";
    switch (cp->builtin) {
    case FITLM_CHAT_LLAMA2: return "built-in llama2";
    case FITLM_CHAT_LLAMA3: return "built-in llama3";
    case FITLM_CHAT_CHATML: return "built-in chatml";
    case FITLM_CHAT_MISTRAL: return "built-in mistral";
    case FITLM_CHAT_NONE: break;
    }
    return "none";
}

bool fitlm_chat_prompt_is_jinja(const fitlm_chat_prompt *cp) {
    return cp->jinja != NULL;
}

/* [{"role": ..., "content": ...}, ...] as JSON text (caller frees). */
static char *messages_to_json(const fitlm_chat_message *msgs, size_t n) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddStringToObject(m, "role", msgs[i].role) ||
            !cJSON_AddStringToObject(m, "content", msgs[i].content)) {
            cJSON_Delete(m);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, m);
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

char *fitlm_chat_prompt_render(const fitlm_chat_prompt *cp, const fitlm_chat_message *msgs, size_t n,
                               const char *messages_json, const char *tools_json, bool add_generation_prompt,
                               fitlm_chat_status *status, fitlm_error *err) {
    fitlm_chat_status dummy;
    if (!status) status = &dummy;
    *status = FITLM_CHAT_OK;
    if (cp->jinja) {
        char *own = NULL;
        if (!messages_json) {
            own = messages_to_json(msgs, n);
            if (!own) {
                *status = FITLM_CHAT_NO_MEMORY;
                return fitlm_fail(err, "out of memory"), NULL;
            }
            messages_json = own;
        }
        fitlm_chat_request req = {.messages_json = messages_json,
                                  .messages_len = strlen(messages_json),
                                  .tools_json = tools_json,
                                  .tools_len = tools_json ? strlen(tools_json) : 0,
                                  .add_generation_prompt = add_generation_prompt,
                                  .bos_token = cp->bos_text,
                                  .eos_token = cp->eos_text};
        char *text = fitlm_chat_render_parsed(cp->jinja, &req, NULL, status, err);
        free(own);
        return text;
    }
    char *text = fitlm_chat_format(cp->builtin, msgs, n, add_generation_prompt, err);
    if (!text) *status = FITLM_CHAT_BAD_REQUEST;
    return text;
}

int fitlm_chat_prompt_tokenize(const fitlm_chat_prompt *cp, const char *text, size_t len, bool first, int32_t **ids,
                               size_t *n, fitlm_error *err) {
    size_t bl = strlen(cp->bos_text);
    bool has_bos = bl > 0 && len >= bl && !memcmp(text, cp->bos_text, bl);
    return fitlm_tokenizer_encode(cp->tok, text, len, first && !has_bos, true, ids, n, err);
}
