/* Chat rendering with the model's Jinja template (apply_chat_template's
 * variables), and the shape check of a messages array. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/chat.h"

static const char *const k_roles[] = {"system", "user", "assistant", "tool", "ipython", "developer", NULL};

int fitlm_chat_check_messages(const char *json, size_t len, fitlm_error *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return fitlm_fail(err, "messages: not valid JSON");
    int rc = 0;
    if (!cJSON_IsArray(root)) {
        rc = fitlm_fail(err, "messages: expected a JSON array of messages");
        goto done;
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, root) {
        if (!cJSON_IsObject(m)) {
            rc = fitlm_fail(err, "messages[%d]: expected an object", i);
            goto done;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) {
            rc = fitlm_fail(err, "messages[%d]: \"role\" must be a string", i);
            goto done;
        }
        bool known = false;
        for (const char *const *r = k_roles; *r; r++) known |= !strcmp(role->valuestring, *r);
        if (!known) {
            rc = fitlm_fail(err, "messages[%d]: unknown role '%.64s' (system, user, assistant, tool, ipython, developer)",
                            i, role->valuestring);
            goto done;
        }
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
            if (!cJSON_IsArray(content)) {
                rc = fitlm_fail(err, "messages[%d]: \"content\" must be a string, null or a list of parts", i);
                goto done;
            }
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                if (!cJSON_IsObject(part) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(part, "type"))) {
                    rc = fitlm_fail(err, "messages[%d]: each content part must be an object with a string \"type\"", i);
                    goto done;
                }
            }
        }
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (calls && !cJSON_IsArray(calls) && !cJSON_IsNull(calls)) {
            rc = fitlm_fail(err, "messages[%d]: \"tool_calls\" must be a list", i);
            goto done;
        }
        i++;
    }
done:
    cJSON_Delete(root);
    return rc;
}

static int check_kwargs(const char *json, size_t len, fitlm_error *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return fitlm_fail(err, "kwargs: not valid JSON");
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = fitlm_fail(err, "kwargs: expected a JSON object");
    } else {
        static const char *const reserved[] = {"messages", "tools", "documents", "add_generation_prompt", NULL};
        for (const char *const *k = reserved; *k && !rc; k++)
            if (cJSON_GetObjectItemCaseSensitive(root, *k))
                rc = fitlm_fail(err, "kwargs: '%s' has its own option and cannot be a keyword argument", *k);
    }
    cJSON_Delete(root);
    return rc;
}

char *fitlm_chat_render_parsed(const jinja_template *tpl, const fitlm_chat_request *req, size_t *len_out,
                               fitlm_chat_status *status, fitlm_error *err) {
    fitlm_chat_status st = FITLM_CHAT_BAD_REQUEST;
    char *out = NULL;
    jinja_vars *v = NULL;
    if (!req->messages_json) {
        fitlm_fail(err, "messages: missing");
        goto done;
    }
    if (fitlm_chat_check_messages(req->messages_json, req->messages_len, err)) goto done;
    if (req->kwargs_json && check_kwargs(req->kwargs_json, req->kwargs_len, err)) goto done;
    v = jinja_vars_new(NULL);
    if (!v) {
        st = FITLM_CHAT_NO_MEMORY;
        fitlm_fail(err, "out of memory");
        goto done;
    }
    const char *bos = req->bos_token ? req->bos_token : "", *eos = req->eos_token ? req->eos_token : "";
    if (jinja_vars_set_json(v, "messages", req->messages_json, req->messages_len, err)) {
        fitlm_error_prefix(err, "messages");
        goto done;
    }
    if (req->tools_json) {
        if (jinja_vars_set_json(v, "tools", req->tools_json, req->tools_len, err)) {
            fitlm_error_prefix(err, "tools");
            goto done;
        }
    } else if (jinja_vars_set_none(v, "tools", err)) {
        goto done;
    }
    if (jinja_vars_set_none(v, "documents", err) ||
        jinja_vars_set_bool(v, "add_generation_prompt", req->add_generation_prompt, err) ||
        jinja_vars_set_string(v, "bos_token", bos, strlen(bos), err) ||
        jinja_vars_set_string(v, "eos_token", eos, strlen(eos), err))
        goto done;
    if (req->kwargs_json && jinja_vars_set_json_object(v, req->kwargs_json, req->kwargs_len, err)) {
        fitlm_error_prefix(err, "kwargs");
        goto done;
    }
    bool raised = false;
    out = jinja_render(tpl, v, len_out, &raised, err);
    st = out ? FITLM_CHAT_OK : FITLM_CHAT_TEMPLATE_ERROR;
done:
    jinja_vars_free(v);
    if (status) *status = st;
    return out;
}

char *fitlm_chat_render(const char *template_src, size_t template_len, const fitlm_chat_request *req, size_t *len_out,
                        fitlm_chat_status *status, fitlm_error *err) {
    jinja_template *t = jinja_parse(template_src, template_len, err);
    if (!t) {
        if (status) *status = FITLM_CHAT_BAD_TEMPLATE;
        return NULL;
    }
    char *out = fitlm_chat_render_parsed(t, req, len_out, status, err);
    jinja_template_free(t);
    return out;
}
