/* libFuzzer target for the Jinja interpreter (src/template/).
 *
 * Input: byte 0 picks the mode; the rest is the payload.
 *   modes 0..191: the payload is a template: parse it (errors are fine) and
 *     render it twice with a fixed conversation and tools, under small bounds;
 *     both renders must agree (same text, or both failing).
 *   modes 192..255: the payload is a messages JSON text, rendered through the
 *     chat API with a fixed tool-calling template (errors are fine).
 * Seeds: the shared chat templates (scripts/fuzz-smoke.sh prefixes mode 0). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/chat.h"
#include "template/jinja.h"

static const char k_messages[] =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi \\u00e9 \\ud83d\\ude00\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"abcdefghi\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1.5,\"y\":[true,null]}}}]},"
    "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"abcdefghi\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"more\"}]}]";
static const char k_tools[] = "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
                              "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]";
static const char k_template[] =
    "{%- for m in messages %}<|{{ m.role }}|>{% if m.content is string %}{{ m.content | trim }}"
    "{% elif m.content %}{{ m.content | map(attribute='text') | join }}{% endif %}"
    "{% for c in m.tool_calls or [] %}{{ c.function | tojson(indent=2) }}{% endfor %}\n{% endfor %}"
    "{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

static char *render(const jinja_template *t, size_t *len, bool *ok) {
    jinja_limits lim = {1u << 20, 16u << 20, 200000, 200};
    jinja_vars *v = jinja_vars_new(&lim);
    if (!v) abort();
    fitlm_error err;
    if (jinja_vars_set_json(v, "messages", k_messages, strlen(k_messages), &err) ||
        jinja_vars_set_json(v, "tools", k_tools, strlen(k_tools), &err) ||
        jinja_vars_set_bool(v, "add_generation_prompt", true, &err) ||
        jinja_vars_set_string(v, "bos_token", "<s>", 3, &err) || jinja_vars_set_string(v, "eos_token", "</s>", 4, &err))
        abort();
    char *out = jinja_render(t, v, len, NULL, &err);
    *ok = out != NULL;
    jinja_vars_free(v);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const char *payload = (const char *)data + 1;
    size_t n = size - 1;
    fitlm_error err;
    if (mode < 192) {
        jinja_template *t = jinja_parse(payload, n, &err);
        if (!t) return 0;
        size_t l1 = 0, l2 = 0;
        bool ok1, ok2;
        char *a = render(t, &l1, &ok1), *b = render(t, &l2, &ok2);
        if (ok1 != ok2 || (ok1 && (l1 != l2 || memcmp(a, b, l1) != 0))) {
            fprintf(stderr, "fuzz_jinja: two renders of one template differ\n");
            abort();
        }
        free(a);
        free(b);
        jinja_template_free(t);
    } else {
        fitlm_chat_request req = {0};
        req.messages_json = payload;
        req.messages_len = n;
        req.add_generation_prompt = mode & 1;
        free(fitlm_chat_render(k_template, strlen(k_template), &req, NULL, NULL, &err));
    }
    return 0;
}
