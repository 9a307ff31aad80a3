/* Chat templates. Run without arguments: built-in checks (detection markers,
 * names, bad roles). Run as `test_chat_template --render` it is the helper of
 * test_chat_jinja.py: reads {"template": NAME, "jinja": TEXT, "messages":
 * [{"role", "content"}...], "add_generation_prompt": BOOL} on stdin and prints
 * {"text": FORMATTED, "detected": NAME, "default_system": TEXT|null}, which the
 * Python test compares with jinja2 rendering the published templates. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/chat_template.h"

static int render(void) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return 2;
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *g = realloc(buf, cap * 2);
            if (!g) return 2;
            buf = g;
            cap *= 2;
        }
    }
    buf[n] = 0;
    cJSON *in = cJSON_Parse(buf);
    free(buf);
    if (!in) return 2;
    const cJSON *jt = cJSON_GetObjectItem(in, "template"), *jj = cJSON_GetObjectItem(in, "jinja");
    const cJSON *jm = cJSON_GetObjectItem(in, "messages"), *jg = cJSON_GetObjectItem(in, "add_generation_prompt");
    const char *jinja = cJSON_IsString(jj) ? jj->valuestring : NULL;
    fitlm_chat_template t = cJSON_IsString(jt) ? fitlm_chat_template_from_name(jt->valuestring)
                                               : fitlm_chat_template_detect(jinja);
    int nm = cJSON_GetArraySize(jm);
    fitlm_chat_message *msgs = calloc((size_t)nm + 1, sizeof *msgs);
    for (int i = 0; i < nm; i++) {
        const cJSON *m = cJSON_GetArrayItem(jm, i);
        msgs[i].role = cJSON_GetObjectItem(m, "role")->valuestring;
        msgs[i].content = cJSON_GetObjectItem(m, "content")->valuestring;
    }
    fitlm_error err;
    char *text = fitlm_chat_format(t, msgs, (size_t)nm, cJSON_IsTrue(jg), &err);
    char *def = fitlm_chat_default_system(jinja);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "text", text ? text : "");
    cJSON_AddStringToObject(out, "detected", fitlm_chat_template_name(fitlm_chat_template_detect(jinja)));
    if (def)
        cJSON_AddStringToObject(out, "default_system", def);
    else
        cJSON_AddNullToObject(out, "default_system");
    char *s = cJSON_PrintUnformatted(out);
    fputs(s, stdout);
    free(s);
    cJSON_Delete(out);
    free(def);
    free(text);
    free(msgs);
    cJSON_Delete(in);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--render")) return render();

    CHECK(fitlm_chat_template_detect("{{ '<|start_header_id|>' + role }}") == FITLM_CHAT_LLAMA3, "llama3 marker");
    CHECK(fitlm_chat_template_detect("{{'<|im_start|>' + message['role']}}") == FITLM_CHAT_CHATML, "chatml marker");
    CHECK(fitlm_chat_template_detect("[INST] <<SYS>>") == FITLM_CHAT_LLAMA2, "llama2 markers");
    CHECK(fitlm_chat_template_detect("{{ '[INST] ' + message['content'] }}") == FITLM_CHAT_MISTRAL, "mistral marker");
    CHECK(fitlm_chat_template_detect("{{ messages }}") == FITLM_CHAT_NONE, "unknown template");
    CHECK(fitlm_chat_template_detect(NULL) == FITLM_CHAT_NONE, "no template");
    CHECK(fitlm_chat_template_from_name("qwen") == FITLM_CHAT_CHATML, "qwen alias");
    CHECK(fitlm_chat_template_from_name("LLAMA3") == FITLM_CHAT_LLAMA3, "names are case-insensitive");
    CHECK(fitlm_chat_template_from_name("vicuna") == FITLM_CHAT_NONE, "unknown name");

    fitlm_error err;
    fitlm_chat_message bad[] = {{"tool", "x"}};
    CHECK(fitlm_chat_format(FITLM_CHAT_CHATML, bad, 1, true, &err) == NULL, "bad role refused");
    fitlm_chat_message ok[] = {{"user", "hi"}};
    CHECK(fitlm_chat_format(FITLM_CHAT_NONE, ok, 1, true, &err) == NULL, "no template refused");
    char *s = fitlm_chat_format(FITLM_CHAT_CHATML, ok, 1, true, &err);
    CHECK(s && !strcmp(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"), "chatml text: %s", s ? s : "");
    free(s);
    char *d = fitlm_chat_default_system("{{ '<|im_start|>system\\n' + messages[0]['content'] }}");
    CHECK(d == NULL, "an expression is not a default system message");
    free(d);
    return check_report();
}
