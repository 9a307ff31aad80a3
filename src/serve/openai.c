/* OpenAI request parsing/validation and response building. */
#include "serve/openai.h"

#include "engine/chat_prompt.h"
#include "grammar/json_schema.h"
#include "tools/tool_grammar.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_error_set(serve_error *e, unsigned status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    for (char *c = e->msg; *c; c++) /* one line, whatever the request echoed into it */
        if ((unsigned char)*c < 0x20) *c = ' ';
    return -1;
}

void serve_json_string(serve_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    serve_buf tmp = {0};
    serve_buf_add_utf8_lossy(&tmp, s, n);
    serve_buf_add(out, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < tmp.len; i++) {
        unsigned char c = (unsigned char)tmp.data[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        serve_buf_add(out, tmp.data + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': serve_buf_add(out, "\\\"", 2); break;
        case '\\': serve_buf_add(out, "\\\\", 2); break;
        case '\n': serve_buf_add(out, "\\n", 2); break;
        case '\r': serve_buf_add(out, "\\r", 2); break;
        case '\t': serve_buf_add(out, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            serve_buf_add(out, u, 6);
        }
        }
    }
    if (tmp.len) serve_buf_add(out, tmp.data + run, tmp.len - run);
    serve_buf_add(out, "\"", 1);
    if (tmp.oom) out->oom = true;
    serve_buf_free(&tmp);
}

void serve_error_json(const serve_error *e, serve_buf *out) {
    serve_buf_str(out, "{\"error\":{\"message\":");
    serve_json_string(out, e->msg, strlen(e->msg));
    serve_buf_printf(out, ",\"type\":\"%s\",\"param\":", e->type ? e->type : "invalid_request_error");
    if (e->param) serve_buf_printf(out, "\"%s\"", e->param);
    else serve_buf_str(out, "null");
    serve_buf_str(out, ",\"code\":");
    if (e->code) serve_buf_printf(out, "\"%s\"", e->code);
    else serve_buf_str(out, "null");
    serve_buf_str(out, "}}");
}

/* ------------------------------------------------------------ request fields */

#define BAD(param, ...) serve_error_set(err, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

static bool is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* A number field in [lo, hi]; absent/null leaves *out. */
static int get_number(const cJSON *o, const char *key, double lo, double hi, float *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (is_null(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD(key, "'%s' must be a number", key);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi) return BAD(key, "'%s' must be between %g and %g", key, lo, hi);
    *out = (float)d;
    return 0;
}

/* An integer field in [lo, hi]; returns 1 if present (0 absent, -1 error). */
static int get_int(const cJSON *o, const char *key, double lo, double hi, long long *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (is_null(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD(key, "'%s' must be an integer", key);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) return BAD(key, "'%s' must be an integer", key);
    if (d < lo || d > hi) return BAD(key, "'%s' must be between %.0f and %.0f", key, lo, hi);
    /* in range of long long (beyond it, e.g. a 64-bit seed, callers read the value themselves) */
    *out = d >= 9223372036854775808.0 ? LLONG_MAX : d < -9223372036854775808.0 ? LLONG_MIN : (long long)d;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, bool *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (is_null(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD(key, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

/* A string's bytes, checked for UTF-8 (cJSON decodes \u escapes; raw bytes pass through). */
static int check_str(const cJSON *v, const char *param, serve_error *err) {
    if (!serve_utf8_valid(v->valuestring, strlen(v->valuestring)))
        return BAD(param, "'%s' is not valid UTF-8", param);
    return 0;
}

static int parse_stop(const cJSON *o, serve_gen_params *p, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (is_null(v)) return 0;
    const cJSON *items[SERVE_MAX_STOP];
    size_t n = 0;
    if (cJSON_IsString(v)) {
        items[n++] = v;
    } else if (cJSON_IsArray(v)) {
        int k = cJSON_GetArraySize(v);
        if (k > SERVE_MAX_STOP) return BAD("stop", "'stop' holds at most %d strings", SERVE_MAX_STOP);
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it)) return BAD("stop", "'stop' must be a string or an array of strings");
            items[n++] = it;
        }
    } else {
        return BAD("stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(items[i]->valuestring);
        if (check_str(items[i], "stop", err)) return -1;
        if (len == 0) return BAD("stop", "a stop string is empty");
        if (len > SERVE_MAX_STOP_BYTES) return BAD("stop", "a stop string is longer than %d bytes", SERVE_MAX_STOP_BYTES);
        p->stop[p->n_stop] = strdup(items[i]->valuestring);
        if (!p->stop[p->n_stop]) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        p->n_stop++;
    }
    return 0;
}

/* Token ids from a JSON array (every element an integer in the vocabulary). */
static int parse_ids(const serve_model_info *mi, const cJSON *arr, serve_gen_params *p, serve_error *err) {
    int k = cJSON_GetArraySize(arr);
    if (k <= 0) return BAD("prompt", "'prompt' is empty");
    if ((uint32_t)k > mi->n_ctx)
        return BAD("prompt", "the prompt has %d tokens, more than the context of %u", k, mi->n_ctx);
    p->prompt = malloc((size_t)k * sizeof *p->prompt);
    if (!p->prompt) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *it;
    uint32_t n = 0;
    cJSON_ArrayForEach(it, arr) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!cJSON_IsNumber(it) || !isfinite(d) || d != floor(d) || d < 0 || d >= (double)mi->vocab)
            return BAD("prompt", "prompt token ids must be integers in [0, %u)", mi->vocab);
        p->prompt[n++] = (int32_t)d;
    }
    p->n_prompt = n;
    return 0;
}

uint32_t serve_max_piece_bytes(const fitlm_tokenizer *tok) {
    uint32_t best = 0;
    int32_t n = tok ? fitlm_tokenizer_vocab_size(tok) : 0;
    for (int32_t id = 0; id < n; id++) {
        size_t len = 0;
        if (fitlm_tokenizer_piece(tok, id, true, &len) && len > best) best = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
    }
    return best;
}

static int encode_text(const serve_model_info *mi, const char *text, size_t len, const char *param,
                       serve_gen_params *p, serve_error *err) {
    if (!mi->tok) return BAD(param, "this model has no vocabulary: send token ids");
    /* no need to tokenize what cannot fit: every token covers at most max_piece_bytes bytes */
    if (mi->max_piece_bytes && len / mi->max_piece_bytes > mi->n_ctx)
        return serve_error_set(err, 400, "invalid_request_error", param, "context_length_exceeded",
                               "This model's maximum context length is %u tokens, but the prompt has at least %zu "
                               "tokens (%zu bytes)",
                               mi->n_ctx, len / mi->max_piece_bytes, len);
    fitlm_error e = {{0}};
    size_t n = 0;
    int32_t *ids = NULL;
    if (fitlm_tokenizer_encode(mi->tok, text, len, true, true, &ids, &n, &e))
        return serve_error_set(err, 400, "invalid_request_error", param, NULL, "tokenizing: %s", e.msg);
    if (n == 0) {
        free(ids);
        return BAD(param, "the prompt is empty after tokenization");
    }
    if (n > mi->n_ctx) {
        free(ids);
        return serve_error_set(err, 400, "invalid_request_error", param, "context_length_exceeded",
                               "This model's maximum context length is %u tokens, but the prompt has %zu tokens",
                               mi->n_ctx, n);
    }
    p->prompt = ids;
    p->n_prompt = (uint32_t)n;
    return 0;
}

static int parse_prompt(const serve_model_info *mi, const cJSON *o, serve_gen_params *p, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (is_null(v)) return BAD("prompt", "'prompt' is required");
    if (cJSON_IsArray(v)) {
        int k = cJSON_GetArraySize(v);
        if (k == 0) return BAD("prompt", "'prompt' is empty");
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        if (cJSON_IsNumber(first)) return parse_ids(mi, v, p, err);
        if (k != 1) return BAD("prompt", "only one prompt per request is supported");
        if (cJSON_IsArray(first)) return parse_ids(mi, first, p, err);
        v = first;
    }
    if (!cJSON_IsString(v))
        return BAD("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
    if (check_str(v, "prompt", err)) return -1;
    return encode_text(mi, v->valuestring, strlen(v->valuestring), "prompt", p, err);
}

/* A message's content: a string, or an array of {"type": "text", "text": ...}
 * parts joined with "\n" (as vLLM joins text parts). Caller frees *out. */
static int message_content(const cJSON *c, char **out, serve_error *err) {
    if (cJSON_IsString(c)) {
        if (check_str(c, "messages", err)) return -1;
        *out = strdup(c->valuestring);
        return *out ? 0 : serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!cJSON_IsArray(c)) return BAD("messages", "a message's content must be a string or an array of text parts");
    if (cJSON_GetArraySize(c) > SERVE_MAX_PARTS) return BAD("messages", "a message has more than %d parts", SERVE_MAX_PARTS);
    serve_buf b = {0};
    const cJSON *part;
    bool first = true;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") ||
            !cJSON_IsString(text)) {
            serve_buf_free(&b);
            return BAD("messages", "content parts must be {\"type\": \"text\", \"text\": STRING} (other types are "
                                   "not supported)");
        }
        if (check_str(text, "messages", err)) {
            serve_buf_free(&b);
            return -1;
        }
        if (!first) serve_buf_add(&b, "\n", 1);
        serve_buf_str(&b, text->valuestring);
        first = false;
    }
    serve_buf_add(&b, "", 0);
    if (b.oom) {
        serve_buf_free(&b);
        return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    *out = serve_buf_take(&b, NULL);
    return 0;
}

/* A tool message's tool_call_id: a non-empty string of at most SERVE_MAX_TOOL_CALL_ID bytes. */
static int check_tool_call_id(const cJSON *id, serve_error *err) {
    if (!cJSON_IsString(id) || !id->valuestring[0])
        return BAD("messages", "a message with role 'tool' needs a string 'tool_call_id'");
    if (strlen(id->valuestring) > SERVE_MAX_TOOL_CALL_ID)
        return BAD("messages", "a 'tool_call_id' is longer than %d bytes", SERVE_MAX_TOOL_CALL_ID);
    return check_str(id, "messages", err);
}

/* An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments": JSON text
 * of an object}}] (as OpenAI's API returns them and clients send them back). */
static int check_tool_calls(const cJSON *calls, serve_error *err) {
    if (!cJSON_IsArray(calls)) return BAD("messages", "'tool_calls' must be an array");
    int k = cJSON_GetArraySize(calls);
    if (k > SERVE_MAX_TOOL_CALLS) return BAD("messages", "a message has more than %d tool calls", SERVE_MAX_TOOL_CALLS);
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || !cJSON_IsString(name) || !name->valuestring[0] ||
            !cJSON_IsString(args) || (!is_null(type) && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))))
            return BAD("messages", "each tool call must be {\"id\", \"type\": \"function\", \"function\": "
                                   "{\"name\": STRING, \"arguments\": STRING}}");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > SERVE_MAX_TOOL_CALL_ID)
            return BAD("messages", "each tool call needs an 'id' of 1 to %d bytes", SERVE_MAX_TOOL_CALL_ID);
        if (check_str(id, "messages", err) || check_str(name, "messages", err) || check_str(args, "messages", err))
            return -1;
        cJSON *a = cJSON_Parse(args->valuestring);
        bool ok = cJSON_IsObject(a);
        cJSON_Delete(a);
        if (!ok) return BAD("messages", "a tool call's 'arguments' must be the JSON text of an object");
    }
    return 0;
}

/* A message as a Jinja template expects it (transformers and vLLM pass the
 * same): each tool call's arguments as an object, not the JSON text OpenAI's
 * clients send (Qwen2.5 and Llama 3.1 print `arguments | tojson`), and no
 * "tool_calls": null (Hermes 3 tests `is not defined`). Nonzero when out of
 * memory. */
static int template_tool_calls(cJSON *m) {
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!calls) return 0;
    if (cJSON_IsNull(calls)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "tool_calls");
        return 0;
    }
    cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(args)) continue;
        cJSON *obj = cJSON_Parse(args->valuestring);
        if (!obj || !cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", obj)) {
            cJSON_Delete(obj);
            return -1;
        }
    }
    return 0;
}

static int parse_messages(const serve_model_info *mi, const cJSON *o, const char *tools_json, serve_gen_params *p,
                          serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (is_null(v)) return BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(v)) return BAD("messages", "'messages' must be an array");
    int k = cJSON_GetArraySize(v);
    if (k == 0) return BAD("messages", "'messages' is empty");
    if (k > SERVE_MAX_MESSAGES) return BAD("messages", "more than %d messages", SERVE_MAX_MESSAGES);
    if (!mi->chat && mi->tmpl == FITLM_CHAT_NONE)
        return BAD("messages", "the model has no chat template: start the server with --chat-template "
                               "(llama2, llama3, chatml, mistral) or use /v1/completions");
    fitlm_chat_message *msgs = calloc((size_t)k + 1, sizeof *msgs);
    char **contents = calloc((size_t)k, sizeof *contents);
    int rc = -1, n = 0;
    bool has_system = false;
    bool jinja = mi->chat && fitlm_chat_prompt_is_jinja(mi->chat);
    if (!msgs || !contents) {
        serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            BAD("messages", "each message must be an object with a string 'role'");
            goto done;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system"; /* OpenAI's newer name for the system role */
        bool is_tool = !strcmp(r, "tool");
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && !is_tool) {
            BAD("messages", "unsupported role '%.40s' (system, developer, user, assistant and tool are)", r);
            goto done;
        }
        if (!strcmp(r, "system")) has_system = true;
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        bool has_calls = !is_null(calls);
        if ((is_tool || has_calls) && !jinja) {
            BAD("messages", "the model's chat template does not support tools (a message with role 'tool' or "
                            "'tool_calls')");
            goto done;
        }
        if (is_tool && check_tool_call_id(cJSON_GetObjectItemCaseSensitive(m, "tool_call_id"), err)) goto done;
        if (has_calls && (strcmp(r, "assistant") ? BAD("messages", "only assistant messages carry 'tool_calls'")
                                                 : check_tool_calls(calls, err)))
            goto done;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (has_calls && is_null(content)) { /* a message of calls alone */
            if (!(contents[n] = strdup(""))) {
                serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                goto done;
            }
        } else if (message_content(content, &contents[n], err)) {
            goto done;
        }
        msgs[n].role = r;
        msgs[n].content = contents[n];
        n++;
    }
    fitlm_chat_message *list = msgs;
    size_t nlist = (size_t)n;
    fitlm_chat_message *with_sys = NULL;
    if (!has_system && mi->default_system) {
        with_sys = malloc(((size_t)n + 1) * sizeof *with_sys);
        if (!with_sys) {
            serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
        with_sys[0] = (fitlm_chat_message){"system", mi->default_system};
        memcpy(with_sys + 1, msgs, (size_t)n * sizeof *msgs);
        list = with_sys;
        nlist++;
    }
    fitlm_error fe = {{0}};
    char *text = NULL;
    if (mi->chat) {
        /* a Jinja template sees the request's messages as sent (it may read
         * names, tool calls, parts); built-in formats the checked texts */
        char *json = NULL;
        if (jinja) {
            /* content sent as text parts reaches the template as one string
             * (the parts joined, as vLLM and llama.cpp pass them to templates
             * that expect strings) */
            cJSON *copy = cJSON_Duplicate(v, true);
            int i = 0;
            cJSON *mm;
            cJSON_ArrayForEach(mm, copy) {
                cJSON *c = cJSON_GetObjectItemCaseSensitive(mm, "content");
                if (c && cJSON_IsArray(c) && i < n) cJSON_ReplaceItemInObjectCaseSensitive(mm, "content",
                                                                                          cJSON_CreateString(contents[i]));
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(mm, "role");
                if (cJSON_IsString(r) && !strcmp(r->valuestring, "developer"))
                    cJSON_ReplaceItemInObjectCaseSensitive(mm, "role", cJSON_CreateString("system"));
                if (template_tool_calls(mm)) {
                    cJSON_Delete(copy);
                    copy = NULL;
                    break;
                }
                i++;
            }
            json = copy ? cJSON_PrintUnformatted(copy) : NULL;
            cJSON_Delete(copy);
        }
        if (jinja && !json) {
            free(with_sys);
            serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
        fitlm_chat_status st = FITLM_CHAT_OK;
        text = fitlm_chat_prompt_render(mi->chat, jinja ? msgs : list, jinja ? (size_t)n : nlist, json, tools_json,
                                        true, &st, &fe);
        free(json);
        if (!text && st == FITLM_CHAT_NO_MEMORY) {
            free(with_sys);
            serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
    } else {
        text = fitlm_chat_format(mi->tmpl, list, nlist, true, &fe);
    }
    free(with_sys);
    if (!text) {
        BAD("messages", "%s", fe.msg);
        goto done;
    }
    if (mi->chat) {
        /* special tokens recognized, BOS only when the template did not print it */
        size_t nt = 0;
        int32_t *ids = NULL;
        size_t tl = strlen(text);
        if (mi->max_piece_bytes && tl / mi->max_piece_bytes > mi->n_ctx) {
            free(text);
            serve_error_set(err, 400, "invalid_request_error", "messages", "context_length_exceeded",
                            "This model's maximum context length is %u tokens, but the prompt has at least %zu tokens",
                            mi->n_ctx, tl / mi->max_piece_bytes);
            goto done;
        }
        if (fitlm_chat_prompt_tokenize(mi->chat, text, tl, true, &ids, &nt, &fe)) {
            free(text);
            serve_error_set(err, 400, "invalid_request_error", "messages", NULL, "tokenizing: %s", fe.msg);
            goto done;
        }
        if (mi->reasoning) {
            /* the generation prompt may open <think> (QwQ, DeepSeek-R1): the output then starts as reasoning */
            const char *open = NULL;
            for (const char *q = text; (q = strstr(q, "<think>")); q++) open = q;
            p->in_think = open && !strstr(open, "</think>");
        }
        free(text);
        if (nt == 0 || nt > mi->n_ctx) {
            free(ids);
            if (nt == 0) BAD("messages", "the prompt is empty after tokenization");
            else
                serve_error_set(err, 400, "invalid_request_error", "messages", "context_length_exceeded",
                                "This model's maximum context length is %u tokens, but the prompt has %zu tokens",
                                mi->n_ctx, nt);
            goto done;
        }
        p->prompt = ids;
        p->n_prompt = (uint32_t)nt;
        rc = 0;
        goto done;
    }
    rc = encode_text(mi, text, strlen(text), "messages", p, err);
    free(text);
done:
    if (contents)
        for (int i = 0; i < n; i++) free(contents[i]);
    free(contents);
    free(msgs);
    return rc;
}

static int parse_logprobs(serve_kind kind, const cJSON *o, serve_gen_params *p, serve_error *err) {
    p->top_logprobs = -1;
    long long x = 0;
    int r;
    if (kind == SERVE_CHAT) {
        bool lp = false;
        if (get_bool(o, "logprobs", &lp, err) < 0) return -1;
        if ((r = get_int(o, "top_logprobs", 0, FITLM_MAX_TOP_LOGPROBS, &x, err)) < 0) return -1;
        if (r && !lp) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        if (lp) p->top_logprobs = (int)x;
        return 0;
    }
    if ((r = get_int(o, "logprobs", 0, SERVE_MAX_COMPLETION_LOGPROBS, &x, err)) < 0) return -1;
    if (r) p->top_logprobs = (int)x;
    return 0;
}

/* response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema",
 * "strict"}} -> a token matcher over the compiled grammar (docs/structured-output.md). */
static int parse_response_format(const serve_model_info *mi, const cJSON *o, serve_gen_params *p, serve_error *err) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(o, "response_format");
    if (is_null(rf)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return BAD("response_format", "'response_format' must be an object with a string 'type'");
    const char *t = type->valuestring;
    if (!strcmp(t, "text")) return 0;
    fitlm_error fe = {{0}};
    fitlm_grammar *g = NULL;
    if (!strcmp(t, "json_object")) {
        g = fitlm_grammar_parse(fitlm_json_object_gbnf(), strlen(fitlm_json_object_gbnf()), &fe);
    } else if (!strcmp(t, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *schema = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "schema") : NULL;
        if (!cJSON_IsObject(js)) return BAD("response_format", "'response_format.json_schema' must be an object");
        if (is_null(schema)) return BAD("response_format", "'response_format.json_schema.schema' is required");
        if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
            return BAD("response_format", "'response_format.json_schema.schema' must be a JSON schema object");
        char *text = cJSON_PrintUnformatted(schema);
        if (!text) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        g = fitlm_json_schema_grammar(text, strlen(text), &fe);
        free(text);
    } else {
        return BAD("response_format", "unsupported response_format type '%.40s' (text, json_object, json_schema)", t);
    }
    if (!g) return BAD("response_format", "%s", fe.msg);
    if (!mi->trie) {
        fitlm_grammar_free(g);
        return BAD("response_format", "this model has no vocabulary: structured output needs one");
    }
    p->matcher = fitlm_token_matcher_new(g, mi->trie, &fe); /* takes g */
    if (!p->matcher) return BAD("response_format", "%s", fe.msg);
    return 0;
}

void serve_model_tool_setup(serve_model_info *mi) {
    mi->tool_format = FITLM_TOOLS_NONE;
    mi->reasoning = false;
    if (!mi->chat || !mi->tok || !fitlm_chat_prompt_is_jinja(mi->chat)) return;
    const char *t = fitlm_tokenizer_chat_template(mi->tok);
    mi->tool_format = fitlm_tool_format_detect(t);
    mi->reasoning = t && strstr(t, "</think>");
}

/* The call grammar of tool_choice "required" (all tools) or a named function (named: its index), as a token
 * matcher in p->matcher. tools: the checked, normalised array. */
static int tool_constraint(const serve_model_info *mi, const cJSON *tools, int named, bool parallel,
                           serve_gen_params *p, serve_error *err) {
    int n = cJSON_GetArraySize(tools), k = 0;
    fitlm_tool_spec *specs = calloc((size_t)n, sizeof *specs);
    char **params = calloc((size_t)n, sizeof *params);
    int rc = -1;
    if (!specs || !params) {
        serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools) {
        if (named < 0 || i == named) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            specs[k].name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
            params[k] = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(fn, "parameters"));
            if (!params[k]) {
                serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                goto done;
            }
            specs[k].parameters = params[k];
            k++;
        }
        i++;
    }
    fitlm_error fe = {{0}};
    char *gbnf = fitlm_tool_grammar_gbnf(mi->tool_format, specs, (size_t)k, parallel && named < 0 ? 0 : 1, &fe);
    if (!gbnf) {
        BAD("tools", "%s", fe.msg);
        goto done;
    }
    fitlm_grammar *g = fitlm_grammar_parse(gbnf, strlen(gbnf), &fe);
    free(gbnf);
    if (!g) {
        BAD("tools", "the tools' call grammar: %s", fe.msg);
        goto done;
    }
    if (!mi->trie) {
        fitlm_grammar_free(g);
        BAD("tool_choice", "this model has no vocabulary: constrained tool calls need one");
        goto done;
    }
    p->matcher = fitlm_token_matcher_new(g, mi->trie, &fe); /* takes g */
    if (!p->matcher) {
        BAD("tools", "%s", fe.msg);
        goto done;
    }
    rc = 0;
done:
    for (int j = 0; params && j < k; j++) free(params[j]);
    free(params);
    free(specs);
    return rc;
}

/* tools and tool_choice (chat). Sets *tools_json (the checked tools as JSON text for the template, malloc'd,
 * caller frees; NULL without tools), p->tool_format and, for tool_choice "required" or a named function,
 * p->matcher. */
static int parse_tools(const serve_model_info *mi, const cJSON *o, serve_gen_params *p, char **tools_json,
                       serve_error *err) {
    *tools_json = NULL;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(o, "tools");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(o, "tool_choice");
    bool parallel = true;
    if (get_bool(o, "parallel_tool_calls", &parallel, err) < 0) return -1;
    if (is_null(tools)) {
        if (!is_null(tc)) return BAD("tool_choice", "'tool_choice' is only allowed when 'tools' are given");
        return 0;
    }
    if (!cJSON_IsArray(tools)) return BAD("tools", "'tools' must be an array");
    int n = cJSON_GetArraySize(tools);
    if (n == 0) return BAD("tools", "'tools' is empty");
    if (n > SERVE_MAX_TOOLS) return BAD("tools", "more than %d tools", SERVE_MAX_TOOLS);
    if (!mi->chat || !fitlm_chat_prompt_is_jinja(mi->chat) || mi->tool_format == FITLM_TOOLS_NONE)
        return BAD("tools", "the model's chat template does not support tools");
    cJSON *norm = cJSON_CreateArray();
    int rc = -1, named = -1;
    if (!norm) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
            !cJSON_IsObject(fn)) {
            BAD("tools", "each tool must be {\"type\": \"function\", \"function\": {\"name\", \"description\", "
                         "\"parameters\"}}");
            goto done;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (!cJSON_IsString(name) || !fitlm_tool_name_valid(name->valuestring)) {
            BAD("tools", "a function's 'name' must be 1 to %d of a-z, A-Z, 0-9, '_' and '-'", FITLM_TOOL_NAME_MAX);
            goto done;
        }
        if (!is_null(desc) && (!cJSON_IsString(desc) || check_str(desc, "tools", err))) {
            if (!cJSON_IsString(desc)) BAD("tools", "a function's 'description' must be a string");
            goto done;
        }
        if (!is_null(params) && !cJSON_IsObject(params)) {
            BAD("tools", "a function's 'parameters' must be a JSON schema object");
            goto done;
        }
        const cJSON *prev;
        cJSON_ArrayForEach(prev, norm) {
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(prev, "function"), "name")
                            ->valuestring,
                        name->valuestring)) {
                BAD("tools", "two tools are named '%s'", name->valuestring);
                goto done;
            }
        }
        /* as sent, with the parameters OpenAI implies when they are absent (templates read them) */
        cJSON *f2 = cJSON_Duplicate(fn, true), *t2 = cJSON_CreateObject();
        bool ok = f2 && t2 && cJSON_AddStringToObject(t2, "type", "function");
        if (ok && is_null(params)) {
            cJSON_DeleteItemFromObjectCaseSensitive(f2, "parameters");
            cJSON *ps = cJSON_Parse("{\"type\": \"object\", \"properties\": {}}");
            ok = ps && cJSON_AddItemToObject(f2, "parameters", ps);
            if (!ok) cJSON_Delete(ps);
        }
        if (ok && cJSON_AddItemToObject(t2, "function", f2)) f2 = NULL;
        else ok = false;
        if (ok) cJSON_AddItemToArray(norm, t2);
        else cJSON_Delete(t2);
        cJSON_Delete(f2);
        if (!ok) {
            serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
    }
    /* tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name"}} */
    bool required = false, none = false;
    if (cJSON_IsString(tc)) {
        const char *c = tc->valuestring;
        none = !strcmp(c, "none");
        required = !strcmp(c, "required");
        if (!none && !required && strcmp(c, "auto")) {
            BAD("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                               "\"function\": {\"name\": ...}}");
            goto done;
        }
    } else if (!is_null(tc)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsObject(tc) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
            !cJSON_IsObject(fn) || !cJSON_IsString(name)) {
            BAD("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                               "\"function\": {\"name\": ...}}");
            goto done;
        }
        int i = 0;
        cJSON_ArrayForEach(t, norm) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
            if (!strcmp(nm->valuestring, name->valuestring)) named = i;
            i++;
        }
        if (named < 0) {
            BAD("tool_choice", "'tool_choice' names the function '%.64s', which is not among the tools",
                name->valuestring);
            goto done;
        }
    }
    p->tool_format = none ? FITLM_TOOLS_NONE : mi->tool_format;
    if (required || named >= 0) {
        if (p->matcher) {
            BAD("tool_choice", "'response_format' cannot be combined with tool_choice \"required\" or a named "
                               "function");
            goto done;
        }
        if (tool_constraint(mi, norm, named, parallel, p, err)) goto done;
    }
    *tools_json = cJSON_PrintUnformatted(norm);
    if (!*tools_json) {
        serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    if (!serve_utf8_valid(*tools_json, strlen(*tools_json))) {
        free(*tools_json);
        *tools_json = NULL;
        BAD("tools", "'tools' is not valid UTF-8");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(norm);
    return rc;
}

int serve_parse_gen(const serve_model_info *mi, serve_kind kind, const char *body, size_t len, uint64_t random_seed,
                    serve_gen_params *out, serve_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    if (!serve_utf8_valid(body, len)) return BAD(NULL, "the request body is not valid UTF-8");
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o) return BAD(NULL, "the request body is not valid JSON");
    int rc = -1;
    char *tools_json = NULL;
    if (!cJSON_IsObject(o)) {
        BAD(NULL, "the request body must be a JSON object");
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!is_null(model)) {
        if (!cJSON_IsString(model)) {
            BAD("model", "'model' must be a string");
            goto done;
        }
        if (strcmp(model->valuestring, mi->name)) {
            serve_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                            "The model '%.200s' does not exist (this server serves '%s')", model->valuestring,
                            mi->name);
            goto done;
        }
    }
    long long x;
    int r;
    if ((r = get_int(o, "n", 1, 1e9, &x, err)) < 0) goto done;
    if (r && x != 1) {
        BAD("n", "only n = 1 is supported");
        goto done;
    }
    fitlm_sampler_params *sp = &out->sampling;
    *sp = fitlm_sampler_params_default();
    sp->temp = 1.0f; /* OpenAI's default */
    sp->top_k = 0;
    sp->seed = random_seed;
    if (get_number(o, "temperature", 0, 2, &sp->temp, err) || get_number(o, "top_p", 0, 1, &sp->top_p, err) ||
        get_number(o, "min_p", 0, 1, &sp->min_p, err) ||
        get_number(o, "repetition_penalty", 0, 10, &sp->repeat_penalty, err))
        goto done;
    if (sp->top_p <= 0) {
        BAD("top_p", "'top_p' must be greater than 0");
        goto done;
    }
    if (sp->repeat_penalty <= 0) {
        BAD("repetition_penalty", "'repetition_penalty' must be greater than 0");
        goto done;
    }
    if ((r = get_int(o, "top_k", -1, INT32_MAX, &x, err)) < 0) goto done;
    if (r) sp->top_k = x < 0 ? 0 : (int32_t)x;
    /* seeds are 64-bit: up to the largest double below 2^64 (converting 2^64 itself is undefined) */
    if ((r = get_int(o, "seed", -9223372036854775808.0, 18446744073709549568.0, &x, err)) < 0) goto done;
    if (r) {
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(o, "seed");
        sp->seed = sv->valuedouble < 0 ? (uint64_t)(long long)sv->valuedouble : (uint64_t)sv->valuedouble;
    }
    static const char *const k_penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        float pen = 0;
        if (get_number(o, k_penalties[i], -2, 2, &pen, err)) goto done;
        if (pen != 0) {
            BAD(k_penalties[i], "'%s' is not supported (use repetition_penalty)", k_penalties[i]);
            goto done;
        }
    }
    /* max_tokens (max_completion_tokens, chat's newer name, wins) */
    out->max_tokens = kind == SERVE_COMPLETION ? 16 : 0; /* OpenAI: 16 for completions; chat: until the context ends */
    if ((r = get_int(o, "max_tokens", 1, INT32_MAX, &x, err)) < 0) goto done;
    if (r) out->max_tokens = (uint32_t)x;
    if ((r = get_int(o, "max_completion_tokens", 1, INT32_MAX, &x, err)) < 0) goto done;
    if (r) out->max_tokens = (uint32_t)x;
    if (get_bool(o, "ignore_eos", &out->ignore_eos, err) < 0 ||
        get_bool(o, "return_tokens_as_token_ids", &out->tokens_as_ids, err) < 0)
        goto done;
    if (get_bool(o, "stream", &out->stream, err) < 0) goto done;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (!is_null(so)) {
        if (!cJSON_IsObject(so)) {
            BAD("stream_options", "'stream_options' must be an object");
            goto done;
        }
        if (!out->stream) {
            BAD("stream_options", "'stream_options' is only allowed when 'stream' is true");
            goto done;
        }
        if (get_bool(so, "include_usage", &out->include_usage, err) < 0) goto done;
    }
    if (parse_logprobs(kind, o, out, err) || parse_stop(o, out, err) || parse_response_format(mi, o, out, err))
        goto done;
    if (kind == SERVE_CHAT) {
        if (parse_tools(mi, o, out, &tools_json, err) || parse_messages(mi, o, tools_json, out, err)) goto done;
        out->reasoning = mi->reasoning;
        out->parse = out->tool_format != FITLM_TOOLS_NONE || mi->reasoning;
    } else if (parse_prompt(mi, o, out, err)) {
        goto done;
    }
    rc = 0;
done:
    free(tools_json);
    cJSON_Delete(o);
    if (rc) serve_gen_params_free(out);
    return rc;
}

void serve_gen_params_free(serve_gen_params *p) {
    free(p->prompt);
    for (size_t i = 0; i < p->n_stop; i++) free(p->stop[i]);
    fitlm_token_matcher_free(p->matcher);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ the event log */

int serve_gen_log_add(serve_gen_log *g, const fitlm_gen_event *ev) {
    bool has_tok = ev->token >= 0;
    if (has_tok || ev->text_len) {
        if (g->n_toks == g->cap_toks) {
            size_t cap = g->cap_toks ? g->cap_toks * 2 : 64;
            serve_tok *t = realloc(g->toks, cap * sizeof *t);
            if (!t) goto oom;
            g->toks = t;
            g->cap_toks = cap;
        }
        int n_top = ev->n_top > 0 ? (ev->n_top > FITLM_MAX_TOP_LOGPROBS ? FITLM_MAX_TOP_LOGPROBS : ev->n_top) : 0;
        if (g->n_tops + (size_t)n_top > g->cap_tops) {
            size_t cap = g->cap_tops ? g->cap_tops * 2 : 256;
            while (cap < g->n_tops + (size_t)n_top) cap *= 2;
            fitlm_top_logprob *t = realloc(g->tops, cap * sizeof *t);
            if (!t) goto oom;
            g->tops = t;
            g->cap_tops = cap;
        }
        serve_tok *t = &g->toks[g->n_toks];
        t->id = has_tok ? ev->token : -1;
        t->logprob = ev->logprob;
        t->n_top = n_top;
        t->top_off = g->n_tops;
        if (n_top) memcpy(g->tops + g->n_tops, ev->top, (size_t)n_top * sizeof *ev->top);
        g->n_tops += (size_t)n_top;
        t->text_off = g->text.len;
        t->text_len = ev->text_len;
        if (serve_buf_add(&g->text, ev->text_len ? ev->text : "", ev->text_len)) goto oom;
        g->n_toks++;
    }
    g->n_prompt = ev->n_prompt;
    g->n_cached = ev->n_cached;
    g->n_completion = ev->n_completion;
    if (ev->done) {
        g->done = true;
        g->finish = ev->finish;
        if (ev->error) snprintf(g->error, sizeof g->error, "%s", ev->error);
    }
    return 0;
oom:
    g->done = true;
    g->finish = FITLM_FINISH_ERROR;
    snprintf(g->error, sizeof g->error, "out of memory");
    return -1;
}

void serve_gen_log_free(serve_gen_log *g) {
    free(g->toks);
    free(g->tops);
    serve_buf_free(&g->text);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------ responses */

static const char *finish_name(fitlm_finish_reason r) { return r == FITLM_FINISH_LENGTH ? "length" : "stop"; }

static void json_token_bytes(serve_buf *out, const char *piece, size_t n) {
    serve_buf_str(out, "[");
    for (size_t i = 0; i < n; i++) serve_buf_printf(out, i ? ",%u" : "%u", (unsigned char)piece[i]);
    serve_buf_str(out, "]");
}

/* The text of a token in logprobs: its piece (special tokens rendered), or
 * "token_id:N" (return_tokens_as_token_ids; buf holds it). */
static const char *piece_of(const serve_model_info *mi, bool as_id, int32_t id, size_t *len, char buf[32]) {
    if (as_id || !mi->tok) {
        *len = (size_t)snprintf(buf, 32, "token_id:%d", id);
        return buf;
    }
    const char *p = fitlm_tokenizer_piece(mi->tok, id, true, len);
    if (!p) {
        *len = 0;
        return "";
    }
    return p;
}

static void json_logprob(serve_buf *out, float lp) {
    if (isfinite(lp)) serve_buf_printf(out, "%.9g", (double)lp);
    else serve_buf_str(out, "-9999.0"); /* JSON has no -inf (OpenAI's clients get a very small number) */
}

/* Chat: {"token", "logprob", "bytes", "top_logprobs": [...]} for one token. */
static void chat_logprob_entry(const serve_model_info *mi, bool as_id, const serve_gen_log *g, const serve_tok *t,
                               serve_buf *out) {
    size_t len;
    char ib[32], ib2[32];
    const char *piece = piece_of(mi, as_id, t->id, &len, ib);
    serve_buf_str(out, "{\"token\":");
    serve_json_string(out, piece, len);
    serve_buf_str(out, ",\"logprob\":");
    json_logprob(out, t->logprob);
    serve_buf_str(out, ",\"bytes\":");
    json_token_bytes(out, piece, len);
    serve_buf_str(out, ",\"top_logprobs\":[");
    for (int k = 0; k < t->n_top; k++) {
        const fitlm_top_logprob *tp = &g->tops[t->top_off + (size_t)k];
        const char *pk = piece_of(mi, as_id, tp->id, &len, ib2);
        serve_buf_str(out, k ? ",{\"token\":" : "{\"token\":");
        serve_json_string(out, pk, len);
        serve_buf_str(out, ",\"logprob\":");
        json_logprob(out, tp->logprob);
        serve_buf_str(out, ",\"bytes\":");
        json_token_bytes(out, pk, len);
        serve_buf_str(out, "}");
    }
    serve_buf_str(out, "]}");
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} over toks [a, b). */
static void completion_logprobs(const serve_model_info *mi, bool as_id, const serve_gen_log *g, size_t a, size_t b,
                                serve_buf *out) {
    size_t len, n = 0;
    char ib[32];
    serve_buf_str(out, "{\"tokens\":[");
    for (size_t i = a; i < b; i++) {
        if (g->toks[i].id < 0) continue;
        const char *piece = piece_of(mi, as_id, g->toks[i].id, &len, ib);
        if (n++) serve_buf_str(out, ",");
        serve_json_string(out, piece, len);
    }
    serve_buf_str(out, "],\"token_logprobs\":[");
    n = 0;
    for (size_t i = a; i < b; i++) {
        if (g->toks[i].id < 0) continue;
        if (n++) serve_buf_str(out, ",");
        json_logprob(out, g->toks[i].logprob);
    }
    serve_buf_str(out, "],\"top_logprobs\":[");
    n = 0;
    for (size_t i = a; i < b; i++) {
        const serve_tok *t = &g->toks[i];
        if (t->id < 0) continue;
        serve_buf_str(out, n++ ? ",{" : "{");
        for (int k = 0; k < t->n_top; k++) {
            const fitlm_top_logprob *tp = &g->tops[t->top_off + (size_t)k];
            const char *pk = piece_of(mi, as_id, tp->id, &len, ib);
            if (k) serve_buf_str(out, ",");
            serve_json_string(out, pk, len);
            serve_buf_str(out, ":");
            json_logprob(out, tp->logprob);
        }
        serve_buf_str(out, "}");
    }
    serve_buf_str(out, "],\"text_offset\":[");
    n = 0;
    for (size_t i = a; i < b; i++) {
        if (g->toks[i].id < 0) continue;
        if (n++) serve_buf_str(out, ",");
        serve_buf_printf(out, "%zu", g->toks[i].text_off);
    }
    serve_buf_str(out, "]}");
}

static void usage_json(const serve_gen_log *g, serve_buf *out) {
    serve_buf_printf(out,
                     "{\"prompt_tokens\":%u,\"completion_tokens\":%u,\"total_tokens\":%u,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":%u}}",
                     g->n_prompt, g->n_completion, g->n_prompt + g->n_completion, g->n_cached);
}

static void head_json(const serve_model_info *mi, const serve_resp_id *rid, const char *object, serve_buf *out) {
    serve_buf_printf(out, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", rid->id, object,
                     rid->created);
    serve_json_string(out, mi->name, strlen(mi->name));
}

/* ------------------------------------------------------------ parsed chat output (tools, reasoning) */

static bool all_ws(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') return false;
    return true;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The id of a response's i-th tool call: "call_" and 24 letters and digits,
 * or (Mistral, whose template refuses other ids) 9 letters and digits. Drawn
 * from the response's random id, so every parse of a stream agrees. */
static void call_id(const serve_gen_params *p, const serve_resp_id *rid, size_t i, char out[40]) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t h = 1469598103934665603ull;
    for (const char *c = rid->id; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    h = mix64(h ^ (uint64_t)(i + 1) * 0xD1B54A32D192ED03ull);
    bool mistral = p->tool_format == FITLM_TOOLS_MISTRAL;
    size_t n = mistral ? 9 : 24, k = 0;
    if (!mistral) {
        memcpy(out, "call_", 5);
        k = 5;
    }
    for (size_t j = 0; j < n; j++) {
        h = mix64(h);
        out[k++] = al[h % 62];
    }
    out[k] = 0;
}

/* The log's text split into content / reasoning / calls (final: the whole output). 0, or -1 out of memory. */
static int parse_output(const serve_gen_params *p, const serve_gen_log *g, bool final, fitlm_tool_parse *tp) {
    fitlm_error fe = {{0}};
    return fitlm_tool_parse_text(p->tool_format, p->in_think, g->text.data ? g->text.data : "", g->text.len, final,
                                 tp, &fe);
}

/* "message": {"role", "content" (null when there are only calls), "reasoning_content", "tool_calls"}. */
static void parsed_message(const serve_gen_params *p, const serve_resp_id *rid, const fitlm_tool_parse *tp,
                           serve_buf *out) {
    serve_buf_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
    if (tp->n_calls && all_ws(tp->content, tp->content_len)) serve_buf_str(out, "null");
    else serve_json_string(out, tp->content ? tp->content : "", tp->content_len);
    if (p->reasoning) {
        serve_buf_str(out, ",\"reasoning_content\":");
        if (tp->reasoning_len) serve_json_string(out, tp->reasoning, tp->reasoning_len);
        else serve_buf_str(out, "null");
    }
    if (tp->n_calls) {
        serve_buf_str(out, ",\"tool_calls\":[");
        for (size_t i = 0; i < tp->n_calls; i++) {
            char id[40];
            call_id(p, rid, i, id);
            serve_buf_printf(out, "%s{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":", i ? "," : "", id);
            serve_json_string(out, tp->calls[i].name, strlen(tp->calls[i].name));
            serve_buf_str(out, ",\"arguments\":");
            serve_json_string(out, tp->calls[i].arguments, strlen(tp->calls[i].arguments));
            serve_buf_str(out, "}}");
        }
        serve_buf_str(out, "]");
    }
    serve_buf_str(out, "}");
}

void serve_format_response(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                           const serve_resp_id *rid, serve_buf *out) {
    bool chat = p->kind == SERVE_CHAT;
    const char *finish = finish_name(g->finish);
    head_json(mi, rid, chat ? "chat.completion" : "text_completion", out);
    serve_buf_str(out, ",\"choices\":[{\"index\":0,");
    if (chat) {
        if (p->parse) {
            fitlm_tool_parse tp;
            if (parse_output(p, g, true, &tp)) {
                out->oom = true;
                return;
            }
            parsed_message(p, rid, &tp, out);
            if (tp.n_calls) finish = "tool_calls";
            fitlm_tool_parse_free(&tp);
        } else {
            serve_buf_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
            serve_json_string(out, g->text.data ? g->text.data : "", g->text.len);
            serve_buf_str(out, "}");
        }
        serve_buf_str(out, ",\"logprobs\":");
        if (p->top_logprobs >= 0) {
            serve_buf_str(out, "{\"content\":[");
            size_t n = 0;
            for (size_t i = 0; i < g->n_toks; i++) {
                if (g->toks[i].id < 0) continue;
                if (n++) serve_buf_str(out, ",");
                chat_logprob_entry(mi, p->tokens_as_ids, g, &g->toks[i], out);
            }
            serve_buf_str(out, "]}");
        } else {
            serve_buf_str(out, "null");
        }
    } else {
        serve_buf_str(out, "\"text\":");
        serve_json_string(out, g->text.data ? g->text.data : "", g->text.len);
        serve_buf_str(out, ",\"logprobs\":");
        if (p->top_logprobs >= 0) completion_logprobs(mi, p->tokens_as_ids, g, 0, g->n_toks, out);
        else serve_buf_str(out, "null");
    }
    serve_buf_printf(out, ",\"finish_reason\":\"%s\"}],\"usage\":", finish);
    usage_json(g, out);
    serve_buf_str(out, "}");
}

/* A chat chunk's "logprobs" value for toks [a, b): {"content": [...]} when
 * asked for and there are tokens, else null. */
static void chat_logprobs_json(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g, size_t a,
                               size_t b, serve_buf *out) {
    if (p->top_logprobs < 0 || a >= b) {
        serve_buf_str(out, "null");
        return;
    }
    serve_buf_str(out, "{\"content\":[");
    size_t n = 0;
    for (size_t i = a; i < b; i++) {
        if (g->toks[i].id < 0) continue;
        if (n++) serve_buf_str(out, ",");
        chat_logprob_entry(mi, p->tokens_as_ids, g, &g->toks[i], out);
    }
    serve_buf_str(out, "]}");
}

/* One SSE chunk for toks [a, b) (text joined), or the final chunk when a == b and finish is set. */
static void chunk(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                  const serve_resp_id *rid, size_t a, size_t b, const char *role, const char *finish, serve_buf *out) {
    bool chat = p->kind == SERVE_CHAT;
    serve_buf_str(out, "data: ");
    head_json(mi, rid, chat ? "chat.completion.chunk" : "text_completion", out);
    serve_buf_str(out, ",\"choices\":[{\"index\":0,");
    const char *text = a < b ? g->text.data + g->toks[a].text_off : "";
    size_t text_len = a < b ? g->toks[b - 1].text_off + g->toks[b - 1].text_len - g->toks[a].text_off : 0;
    if (chat) {
        serve_buf_str(out, "\"delta\":{");
        if (role) serve_buf_printf(out, "\"role\":\"%s\"%s", role, a < b || !finish ? "," : "");
        if (a < b || (role && !finish)) {
            serve_buf_str(out, "\"content\":");
            serve_json_string(out, text, text_len);
        }
        serve_buf_str(out, "},\"logprobs\":");
        chat_logprobs_json(mi, p, g, a, b, out);
    } else {
        serve_buf_str(out, "\"text\":");
        serve_json_string(out, text, text_len);
        serve_buf_str(out, ",\"logprobs\":");
        if (p->top_logprobs >= 0 && a < b) completion_logprobs(mi, p->tokens_as_ids, g, a, b, out);
        else serve_buf_str(out, "null");
    }
    if (finish) serve_buf_printf(out, ",\"finish_reason\":\"%s\"}]", finish);
    else serve_buf_str(out, ",\"finish_reason\":null}]");
    if (p->include_usage) serve_buf_str(out, ",\"usage\":null");
    serve_buf_str(out, "}\n\n");
}

/* A chat chunk's start, up to the delta's fields: data: {..., "choices": [{"index": 0, "delta": { */
static void delta_open(const serve_model_info *mi, const serve_resp_id *rid, serve_buf *out) {
    serve_buf_str(out, "data: ");
    head_json(mi, rid, "chat.completion.chunk", out);
    serve_buf_str(out, ",\"choices\":[{\"index\":0,\"delta\":{");
}

/* Closes a delta_open chunk: the logprobs of toks [a, b) (when asked for), no finish_reason. */
static void delta_close(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g, size_t a,
                        size_t b, serve_buf *out) {
    serve_buf_str(out, "},\"logprobs\":");
    chat_logprobs_json(mi, p, g, a, b, out);
    serve_buf_str(out, ",\"finish_reason\":null}]");
    if (p->include_usage) serve_buf_str(out, ",\"usage\":null");
    serve_buf_str(out, "}\n\n");
}

/* A delta with a tool call's first fields: index, id, type, name, arguments "". */
static void call_head(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                      const serve_resp_id *rid, size_t i, const char *name, serve_buf *out) {
    char id[40];
    call_id(p, rid, i, id);
    delta_open(mi, rid, out);
    serve_buf_printf(out, "\"tool_calls\":[{\"index\":%zu,\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":",
                     i, id);
    serve_json_string(out, name, strlen(name));
    serve_buf_str(out, ",\"arguments\":\"\"}}]");
    delta_close(mi, p, g, 0, 0, out);
}

/* A delta with a piece of call i's arguments. */
static void call_args(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                      const serve_resp_id *rid, size_t i, const char *args, size_t n, serve_buf *out) {
    delta_open(mi, rid, out);
    serve_buf_printf(out, "\"tool_calls\":[{\"index\":%zu,\"function\":{\"arguments\":", i);
    serve_json_string(out, args, n);
    serve_buf_str(out, "}}]");
    delta_close(mi, p, g, 0, 0, out);
}

void serve_stream_state_free(serve_stream_state *st) {
    if (st) serve_buf_free(&st->held);
}

/* The chunks of a parsed chat stream: the text that came since the last call is parsed on (st->tr) and what
 * became final goes out (reasoning_content, content, each call's first delta once its name is known, its
 * arguments as they come, the rest of them when it is complete). */
static void parsed_chunks(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                          const serve_resp_id *rid, serve_stream_state *st, serve_buf *out) {
    bool final = g->done && (g->finish == FITLM_FINISH_STOP || g->finish == FITLM_FINISH_LENGTH);
    if (st->next == g->n_toks && !final) return;
    fitlm_tool_parse tp;
    fitlm_error fe = {{0}};
    if (fitlm_tool_parse_resume(p->tool_format, p->in_think, &st->tr, g->text.data ? g->text.data : "", g->text.len,
                                final, &tp, &fe)) {
        out->oom = true;
        return;
    }
    size_t a = st->next, b = g->n_toks;
    bool lp = false;
    for (size_t i = a; i < b && p->top_logprobs >= 0; i++) lp = lp || g->toks[i].id >= 0;
    if (tp.reasoning_len) {
        delta_open(mi, rid, out);
        serve_buf_str(out, "\"reasoning_content\":");
        serve_json_string(out, tp.reasoning, tp.reasoning_len);
        delta_close(mi, p, g, 0, 0, out);
    }
    /* white space alone waits: around calls it is no content (the whole response says null) */
    if (tp.content_len) {
        serve_buf_add(&st->held, tp.content, tp.content_len);
        if (!all_ws(tp.content, tp.content_len)) st->content_started = true;
    }
    bool any_call = st->calls_sent + tp.n_calls > 0 || st->open_sent || tp.open_name;
    bool hold = !st->content_started && (!final || any_call);
    size_t cn = hold ? 0 : st->held.len;
    if (cn || lp) {
        delta_open(mi, rid, out);
        serve_buf_str(out, "\"content\":");
        serve_json_string(out, cn ? st->held.data : "", cn);
        delta_close(mi, p, g, a, b, out);
        serve_buf_consume(&st->held, cn);
    }
    if (tp.open_dropped && st->open_sent) {
        /* its deltas went out: the index stays taken (the call as sent, arguments cut short) */
        st->open_sent = false;
        st->calls_sent++;
    }
    for (size_t k = 0; k < tp.n_calls; k++) {
        size_t i = st->calls_sent + k;
        const char *args = tp.calls[k].arguments;
        size_t al = strlen(args), from = 0;
        if (k == 0 && st->open_sent) {
            /* its first delta and the start of its arguments went out already: the rest */
            from = st->open_args_sent <= al ? st->open_args_sent : al;
            st->open_sent = false;
        } else {
            call_head(mi, p, g, rid, i, tp.calls[k].name, out);
        }
        if (al > from) call_args(mi, p, g, rid, i, args + from, al - from, out);
    }
    st->calls_sent += tp.n_calls;
    if (tp.open_name) {
        call_head(mi, p, g, rid, st->calls_sent, tp.open_name, out);
        st->open_sent = true;
        st->open_args_sent = 0;
    }
    if (tp.open_args_len && st->open_sent) {
        call_args(mi, p, g, rid, st->calls_sent, tp.open_args, tp.open_args_len, out);
        st->open_args_sent += tp.open_args_len;
    }
    st->next = b;
    fitlm_tool_parse_free(&tp);
}

void serve_format_chunks(const serve_model_info *mi, const serve_gen_params *p, const serve_gen_log *g,
                         const serve_resp_id *rid, serve_stream_state *st, serve_buf *out) {
    if (st->finished) return;
    bool chat = p->kind == SERVE_CHAT;
    if (chat && !st->role_sent) {
        chunk(mi, p, g, rid, 0, 0, "assistant", NULL, out);
        st->role_sent = true;
    }
    if (chat && p->parse) {
        parsed_chunks(mi, p, g, rid, st, out);
    } else {
        for (size_t i = st->next; i < g->n_toks; i++) {
            /* a chunk per token event that carries text (or a logprob to report) */
            bool has_lp = p->top_logprobs >= 0 && g->toks[i].id >= 0;
            if (g->toks[i].text_len || has_lp) chunk(mi, p, g, rid, i, i + 1, NULL, NULL, out);
        }
        st->next = g->n_toks;
    }
    if (!g->done) return;
    if (g->finish == FITLM_FINISH_STOP || g->finish == FITLM_FINISH_LENGTH) {
        chunk(mi, p, g, rid, 0, 0, NULL, st->calls_sent ? "tool_calls" : finish_name(g->finish), out);
        if (p->include_usage) {
            serve_buf_str(out, "data: ");
            head_json(mi, rid, chat ? "chat.completion.chunk" : "text_completion", out);
            serve_buf_str(out, ",\"choices\":[],\"usage\":");
            usage_json(g, out);
            serve_buf_str(out, "}\n\n");
        }
    } else {
        /* cancelled (the server is shutting down) or an engine error: an error event, as OpenAI streams them */
        serve_error e;
        if (g->finish == FITLM_FINISH_CANCELLED)
            serve_error_set(&e, 503, "server_error", NULL, NULL, "the request was cancelled: the server is shutting down");
        else
            serve_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", g->error);
        serve_buf_str(out, "data: ");
        serve_error_json(&e, out);
        serve_buf_str(out, "\n\n");
    }
    serve_buf_str(out, "data: [DONE]\n\n");
    st->finished = true;
}
