/* src/tools/: tool calls and reasoning parsed from the output formats the
 * real chat templates define (Hermes 3 / Qwen2.5 <tool_call> blocks, Llama
 * 3.1 JSON and <|python_tag|>, Mistral [TOOL_CALLS], DeepSeek-R1/QwQ
 * <think>), whole and streamed: every prefix of the text, split at every
 * byte, parses to a prefix of the final result (content, reasoning, calls). */
#include "check.h"

#include "grammar/grammar.h"
#include "tools/tool_calls.h"
#include "tools/tool_grammar.h"

#include <stdlib.h>
#include <string.h>

typedef struct expect {
    fitlm_tool_format f;
    bool in_think;
    const char *text;
    const char *content;
    const char *reasoning;
    int n_calls;
    const char *name0, *args0, *id0;
} expect;

static bool prefix(const char *a, size_t al, const char *b, size_t bl) { return al <= bl && !memcmp(a, b, al); }

static void run(const expect *x, int i) {
    fitlm_tool_parse fin;
    size_t len = strlen(x->text);
    CHECK(fitlm_tool_parse_text(x->f, x->in_think, x->text, len, true, &fin, NULL) == 0, "parse %d", i);
    const char *c = fin.content ? fin.content : "", *r = fin.reasoning ? fin.reasoning : "";
    CHECK(!strcmp(c, x->content), "case %d content %s == %s", i, c, x->content);
    CHECK(!strcmp(r, x->reasoning), "case %d reasoning %s == %s", i, r, x->reasoning);
    CHECK((int)fin.n_calls == x->n_calls, "case %d calls %zu == %d", i, fin.n_calls, x->n_calls);
    if (x->n_calls && fin.n_calls) {
        CHECK(!strcmp(fin.calls[0].name, x->name0) && !strcmp(fin.calls[0].arguments, x->args0) &&
                  !strcmp(fin.calls[0].id, x->id0),
              "case %d call 0: %s %s %s", i, fin.calls[0].name, fin.calls[0].arguments, fin.calls[0].id);
    }
    /* streaming: every prefix gives a prefix of the final answer */
    int bad = 0;
    for (size_t k = 0; k <= len; k++) {
        fitlm_tool_parse p;
        if (fitlm_tool_parse_text(x->f, x->in_think, x->text, k, false, &p, NULL)) {
            bad++;
            continue;
        }
        bool ok = prefix(p.content ? p.content : "", p.content_len, c, fin.content_len) &&
                  prefix(p.reasoning ? p.reasoning : "", p.reasoning_len, r, fin.reasoning_len) &&
                  p.n_calls <= fin.n_calls;
        for (size_t j = 0; ok && j < p.n_calls; j++)
            ok = !strcmp(p.calls[j].name, fin.calls[j].name) && !strcmp(p.calls[j].arguments, fin.calls[j].arguments) &&
                 !strcmp(p.calls[j].id, fin.calls[j].id);
        if (!ok) {
            if (!bad) fprintf(stderr, "case %d: prefix %zu gives content '%s'\n", i, k, p.content ? p.content : "");
            bad++;
        }
        fitlm_tool_parse_free(&p);
    }
    CHECK(bad == 0, "case %d: %d prefixes are not prefixes of the final parse", i, bad);
    fitlm_tool_parse_free(&fin);
}

/* The call grammars (tool_grammar.h): what each format must print, parsed back by the parser. */
static void grammars(void) {
    const fitlm_tool_spec tools[] = {
        {"get_weather", "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": "
                        "{\"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\", \"unit\"], "
                        "\"additionalProperties\": false}"},
        {"now", NULL},
    };
    const struct {
        fitlm_tool_format f;
        unsigned max_calls;
        const char *text;
        bool ok;
        int n_calls;
    } cases[] = {
        {FITLM_TOOLS_HERMES, 0,
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\",\"unit\":\"c\"}}\n</tool_call>\n"
         "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>",
         true, 2},
        {FITLM_TOOLS_HERMES, 1,
         "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", "
         "\"arguments\": {}}\n</tool_call>",
         false, 2},
        {FITLM_TOOLS_HERMES, 0, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>",
         false, 1}, /* unit is required */
        {FITLM_TOOLS_HERMES, 0, "<tool_call>\n{\"name\": \"other\", \"arguments\": {}}\n</tool_call>", false, 1},
        {FITLM_TOOLS_LLAMA3, 0, "{\"name\": \"get_weather\", \"parameters\": {\"city\":\"x\",\"unit\":\"f\"}}", true, 1},
        {FITLM_TOOLS_LLAMA3, 0, "{\"name\": \"now\", \"arguments\": {}}", false, 1},
        {FITLM_TOOLS_MISTRAL, 0,
         "[TOOL_CALLS][{\"name\": \"now\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": "
         "{\"city\":\"\",\"unit\":\"c\"}}]",
         true, 2},
        {FITLM_TOOLS_MISTRAL, 0, "[{\"name\": \"now\", \"arguments\": {}}]", true, 1}, /* the marker a control token */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fitlm_error err = {{0}};
        char *gbnf = fitlm_tool_grammar_gbnf(cases[i].f, tools, 2, cases[i].max_calls, &err);
        CHECK(gbnf != NULL, "grammar %zu: %s", i, err.msg);
        if (!gbnf) continue;
        fitlm_grammar *g = fitlm_grammar_parse(gbnf, strlen(gbnf), &err);
        CHECK(g != NULL, "grammar %zu parses: %s\n%s", i, err.msg, gbnf);
        free(gbnf);
        if (!g) continue;
        const char *t = cases[i].text;
        CHECK(fitlm_grammar_matches(g, t, strlen(t)) == cases[i].ok, "grammar %zu %s %s", i,
              cases[i].ok ? "accepts" : "refuses", t);
        if (cases[i].ok) { /* and the parser reads the calls back */
            fitlm_tool_parse p;
            CHECK(fitlm_tool_parse_text(cases[i].f, false, t, strlen(t), true, &p, NULL) == 0 &&
                      (int)p.n_calls == cases[i].n_calls &&
                      strspn(p.content ? p.content : "", "\n") == p.content_len, /* only the separators */
                  "grammar %zu: the parser finds %d calls (%zu)", i, cases[i].n_calls, p.n_calls);
            fitlm_tool_parse_free(&p);
        }
        fitlm_grammar_free(g);
    }
    fitlm_error err = {{0}};
    fitlm_tool_spec bad[] = {{"a b", NULL}};
    CHECK(!fitlm_tool_grammar_gbnf(FITLM_TOOLS_HERMES, bad, 1, 0, &err) && strstr(err.msg, "name"), "bad name: %s",
          err.msg);
    fitlm_tool_spec pat[] = {{"f", "{\"type\": \"string\", \"pattern\": \"a\"}"}};
    CHECK(!fitlm_tool_grammar_gbnf(FITLM_TOOLS_HERMES, pat, 1, 0, &err) && strstr(err.msg, "tool 'f': JSON schema"),
          "uncompilable schema: %s", err.msg);
    CHECK(!fitlm_tool_grammar_gbnf(FITLM_TOOLS_NONE, tools, 2, 0, &err), "no format");
    CHECK(fitlm_tool_name_valid("get_weather-2") && !fitlm_tool_name_valid("") && !fitlm_tool_name_valid("a.b"),
          "names");
}

int main(void) {
    const expect cases[] = {
        /* Hermes 3 / Qwen2.5: text, then calls (the template's own example format) */
        {FITLM_TOOLS_HERMES, false,
         "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
         "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
         "Let me check.\n\n", "", 2, "get_weather", "{\"city\":\"Paris\",\"unit\":\"c\"}", "call_0"},
        /* QwQ: reasoning first */
        {FITLM_TOOLS_HERMES, false,
         "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
         "{\"city\": \"Tokyo\"}}\n</tool_call>",
         "", "\nThe user wants the weather.\n", 1, "get_weather", "{\"city\":\"Tokyo\"}", "call_0"},
        /* a block that is not JSON stays text; an unclosed one too */
        {FITLM_TOOLS_HERMES, false, "a <tool_call>{oops}</tool_call> b <tool_call>{\"name\"",
         "a <tool_call>{oops}</tool_call> b <tool_call>{\"name\"", "", 0, NULL, NULL, NULL},
        {FITLM_TOOLS_HERMES, false, "No tools needed: 2 < 3 <tool", "No tools needed: 2 < 3 <tool", "", 0, NULL, NULL, NULL},
        /* Llama 3.1: JSON reply (parameters), with and without <|python_tag|> */
        {FITLM_TOOLS_LLAMA3, false, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", "", 1,
         "get_weather", "{\"city\":\"Paris\"}", "call_0"},
        {FITLM_TOOLS_LLAMA3, false, "<|python_tag|>{\"name\": \"brave_search\", \"parameters\": {\"query\": \"x\"}}", "",
         "", 1, "brave_search", "{\"query\":\"x\"}", "call_0"},
        {FITLM_TOOLS_LLAMA3, false, "{not a call} but text", "{not a call} but text", "", 0, NULL, NULL, NULL},
        {FITLM_TOOLS_LLAMA3, false, "Hello! How can I help?", "Hello! How can I help?", "", 0, NULL, NULL, NULL},
        /* Mistral Nemo */
        {FITLM_TOOLS_MISTRAL, false,
         "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}, "
         "{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}, \"id\": \"f5g6h7i8j\"}]",
         "", "", 2, "get_weather", "{\"city\":\"Paris\"}", "a1b2c3d4e"},
        {FITLM_TOOLS_MISTRAL, false, "[{\"name\": \"f\", \"arguments\": {}}]", "", "", 1, "f", "{}", "call_0"},
        {FITLM_TOOLS_MISTRAL, false, "[1, 2] are numbers", "[1, 2] are numbers", "", 0, NULL, NULL, NULL},
        /* DeepSeek-R1: the prompt opened <think> */
        {FITLM_TOOLS_NONE, true, "The user asks 2+2.\n</think>\n\nThe answer is 4.", "The answer is 4.",
         "The user asks 2+2.\n", 0, NULL, NULL, NULL},
        {FITLM_TOOLS_NONE, true, "still thinking </thi", "", "still thinking </thi", 0, NULL, NULL, NULL},
        {FITLM_TOOLS_NONE, false, "plain <think>not at start</think>", "plain <think>not at start</think>", "", 0, NULL,
         NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run(&cases[i], (int)i);
    CHECK(fitlm_tool_format_detect("{{- '<tool_call>\\n' }}") == FITLM_TOOLS_HERMES &&
              fitlm_tool_format_detect("{{ '[TOOL_CALLS]' }}") == FITLM_TOOLS_MISTRAL &&
              fitlm_tool_format_detect("<|start_header_id|>ipython<|end_header_id|>") == FITLM_TOOLS_LLAMA3 &&
              fitlm_tool_format_detect("{{ bos_token }}") == FITLM_TOOLS_NONE,
          "format detection");
    /* the real templates' markers */
    const char *shared = getenv("FITLM_SHARED");
    if (shared) {
        const char *files[][2] = {{"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes"},
                                  {"Qwen-Qwen2.5-7B-Instruct.jinja", "hermes"},
                                  {"meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"},
                                  {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral"}};
        for (size_t i = 0; i < 4; i++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/data/chat-templates/%s", shared, files[i][0]);
            FILE *fp = fopen(path, "rb");
            if (!fp) {
                printf("note: %s not found\n", path);
                continue;
            }
            static char buf[1 << 20];
            size_t n = fread(buf, 1, sizeof buf - 1, fp);
            buf[n] = 0;
            fclose(fp);
            CHECK(!strcmp(fitlm_tool_format_name(fitlm_tool_format_detect(buf)), files[i][1]), "%s is %s", files[i][0],
                  files[i][1]);
        }
    }
    grammars();
    return check_report();
}
