/* fitlm template (-m MODEL | --template FILE) --messages FILE.json [--tools FILE.json]
 *                [--add-generation-prompt] [--bos TEXT] [--eos TEXT] [--kwargs JSON]
 * Renders a conversation with a chat template (the model's own, or a Jinja
 * file) and prints the text exactly, with no newline added. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "template/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define MAX_JSON_BYTES ((size_t)64 << 20)
#define MAX_TEMPLATE_FILE ((size_t)4 << 20)

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm template (-m MODEL | --template FILE) --messages FILE.json [options]\n"
            "  -m, --model PATH           take the chat template (tokenizer.chat_template / tokenizer_config.json)\n"
            "                             and the BOS/EOS token texts from this model\n"
            "      --template FILE        a Jinja chat template file (overrides the model's)\n"
            "      --messages FILE.json   the conversation: [{\"role\": ..., \"content\": ...}, ...] ('-' = stdin)\n"
            "      --tools FILE.json      tool definitions (a JSON array), passed as `tools`\n"
            "      --add-generation-prompt  end with the start of the assistant's turn\n"
            "      --bos TEXT, --eos TEXT bos_token / eos_token (default: the model's, or empty)\n"
            "      --kwargs JSON          extra template variables, a JSON object (e.g. '{\"enable_thinking\": false}')\n"
            "Prints the rendered text exactly as the template produces it (no newline added).\n"
            "strftime_now() uses the local time, or FITLM_TEMPLATE_NOW (seconds since 1970, UTC) when set.\n");
}

static char *read_input(const char *path, size_t max, size_t *len, fitlm_error *err) {
    if (strcmp(path, "-") != 0) return fitlm_file_read_all(path, max, len, err);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) return fitlm_fail(err, "out of memory"), NULL;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= max) {
                free(buf);
                fitlm_fail(err, "<stdin>: more than %zu bytes", max);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fitlm_fail(err, "out of memory");
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *token_text(const fitlm_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= fitlm_tokenizer_vocab_size(tok)) return strdup("");
    size_t len = 0;
    const char *p = fitlm_tokenizer_piece(tok, id, true, &len);
    char *s = malloc(len + 1);
    if (!s) return NULL;
    if (len) memcpy(s, p, len);
    s[len] = 0;
    return s;
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *template_path = NULL, *messages_path = NULL, *tools_path = NULL;
    const char *bos = NULL, *eos = NULL, *kwargs = NULL;
    bool add_gen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--template") && has) template_path = argv[++i];
        else if (!strcmp(a, "--messages") && has) messages_path = argv[++i];
        else if (!strcmp(a, "--tools") && has) tools_path = argv[++i];
        else if (!strcmp(a, "--bos") && has) bos = argv[++i];
        else if (!strcmp(a, "--eos") && has) eos = argv[++i];
        else if (!strcmp(a, "--kwargs") && has) kwargs = argv[++i];
        else if (!strcmp(a, "--add-generation-prompt")) add_gen = true;
        else {
            usage(stderr);
            return fitlm_die("template: unknown or incomplete option '%s'", a);
        }
    }
    if (!model && !template_path) {
        usage(stderr);
        return fitlm_die("template: -m MODEL or --template FILE is required");
    }
    if (!messages_path) {
        usage(stderr);
        return fitlm_die("template: --messages FILE.json is required");
    }
    fitlm_error err = {{0}};
    int rc = 1;
    fitlm_tokenizer *tok = NULL;
    char *tpl = NULL, *msgs = NULL, *tools = NULL, *model_bos = NULL, *model_eos = NULL, *out = NULL;
    size_t tpl_len = 0, msgs_len = 0, tools_len = 0, out_len = 0;
    const char *tpl_name = template_path;
    if (model) {
        tok = fitlm_tokenizer_load(model, &err);
        if (!tok) goto fail;
        if (!bos) bos = model_bos = token_text(tok, fitlm_tokenizer_bos(tok));
        if (!eos) eos = model_eos = token_text(tok, fitlm_tokenizer_eos(tok));
        if (!template_path) {
            const char *t = fitlm_tokenizer_chat_template(tok);
            if (!t) {
                fitlm_fail(&err, "%s: the model has no chat template (give one with --template FILE)", model);
                goto fail;
            }
            tpl = strdup(t);
            tpl_len = strlen(t);
            tpl_name = "chat template";
        }
    }
    if (template_path && !(tpl = fitlm_file_read_all(template_path, MAX_TEMPLATE_FILE, &tpl_len, &err))) goto fail;
    if (!tpl) {
        fitlm_fail(&err, "out of memory");
        goto fail;
    }
    if (!(msgs = read_input(messages_path, MAX_JSON_BYTES, &msgs_len, &err))) goto fail;
    if (tools_path && !(tools = fitlm_file_read_all(tools_path, MAX_JSON_BYTES, &tools_len, &err))) goto fail;
    fitlm_chat_request req = {0};
    req.messages_json = msgs;
    req.messages_len = msgs_len;
    req.tools_json = tools;
    req.tools_len = tools_len;
    req.kwargs_json = kwargs;
    req.kwargs_len = kwargs ? strlen(kwargs) : 0;
    req.add_generation_prompt = add_gen;
    req.bos_token = bos;
    req.eos_token = eos;
    fitlm_chat_status st;
    out = fitlm_chat_render(tpl, tpl_len, &req, &out_len, &st, &err);
    if (!out) {
        if (st == FITLM_CHAT_BAD_REQUEST && strncmp(err.msg, "messages", 8) != 0 && strncmp(err.msg, "tools", 5) != 0 &&
            strncmp(err.msg, "kwargs", 6) != 0)
            fitlm_error_prefix(&err, messages_path);
        else if (st == FITLM_CHAT_BAD_TEMPLATE || st == FITLM_CHAT_TEMPLATE_ERROR)
            fitlm_error_prefix(&err, tpl_name);
        goto fail;
    }
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
        fitlm_fail(&err, "<stdout>: write failed");
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    fitlm_error_print(&err);
done:
    free(out);
    free(tpl);
    free(msgs);
    free(tools);
    free(model_bos);
    free(model_eos);
    fitlm_tokenizer_free(tok);
    return rc;
}
