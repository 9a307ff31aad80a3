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
#include <time.h>

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
    /* incremental (fitlm_tool_parse_resume), fed 1, 2, 3 and 7 bytes at a time: the pieces add up to the
     * final parse, and an open call's argument pieces are a prefix of its final arguments */
    for (size_t step = 1; step <= 7; step += step < 3 ? 1 : 4) {
        fitlm_tool_resume rs = {0};
        char cont[4096] = "", reas[4096] = "", args[4096] = "";
        size_t cl = 0, rl = 0, al = 0, nc = 0;
        bool ok = true, open = false;
        for (size_t k = 0; ok; k += step) {
            bool last = k >= len;
            if (last) k = len;
            fitlm_tool_parse p;
            if (fitlm_tool_parse_resume(x->f, x->in_think, &rs, x->text, k, last, &p, NULL)) {
                ok = false;
                break;
            }
            if (cl + p.content_len < sizeof cont && rl + p.reasoning_len < sizeof reas) {
                memcpy(cont + cl, p.content ? p.content : "", p.content_len);
                memcpy(reas + rl, p.reasoning ? p.reasoning : "", p.reasoning_len);
                cl += p.content_len;
                rl += p.reasoning_len;
            } else {
                ok = false;
            }
            for (size_t j = 0; ok && j < p.n_calls; j++, nc++) {
                ok = nc < fin.n_calls && !strcmp(p.calls[j].name, fin.calls[nc].name) &&
                     !strcmp(p.calls[j].arguments, fin.calls[nc].arguments) && !strcmp(p.calls[j].id, fin.calls[nc].id);
                if (ok && j == 0 && open) ok = prefix(args, al, fin.calls[nc].arguments, strlen(fin.calls[nc].arguments));
                open = false;
            }
            if (p.open_dropped) open = false;
            if (p.open_name) {
                ok = ok && nc < fin.n_calls && !strcmp(p.open_name, fin.calls[nc].name);
                open = true;
                al = 0;
            }
            if (p.open_args_len && al + p.open_args_len < sizeof args) {
                memcpy(args + al, p.open_args, p.open_args_len);
                al += p.open_args_len;
            }
            fitlm_tool_parse_free(&p);
            if (last) break;
        }
        ok = ok && nc == fin.n_calls && cl == fin.content_len && !memcmp(cont, c, cl) && rl == fin.reasoning_len &&
             !memcmp(reas, r, rl);
        CHECK(ok, "case %d: the incremental parse in steps of %zu adds up to the whole one ('%.*s')", i, step, (int)cl,
              cont);
    }
    fitlm_tool_parse_free(&fin);
}

/* The arguments go out while the call is generated: in steps of 3 bytes, the call's name is reported
 * before it is complete and its arguments come in several pieces that add up to the final ones; a call
 * that turns out broken is reported as dropped and becomes text. */
static void streams_args(void) {
    const struct {
        fitlm_tool_format f;
        const char *text;
        bool dropped;
    } cases[] = {
        {FITLM_TOOLS_HERMES, "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
                             "\"unit\": \"c\"}}\n</tool_call>", false},
        {FITLM_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": [1, 2]}}", false},
        {FITLM_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"query\": \"caf\xc3\xa9 \\u00e9\"}}",
         false},
        {FITLM_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": "
                              "\"a1b2c3d4e\"}]", false},
        {FITLM_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1} oops</tool_call>", true},
        {FITLM_TOOLS_LLAMA3, "{\"name\": \"f\", \"parameters\": {\"a\": 1}, oops}", true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *t = cases[c].text;
        size_t len = strlen(t), pieces = 0, al = 0, n_calls = 0;
        char args[512] = "", name[64] = "";
        bool dropped = false, ok = true;
        fitlm_tool_resume r = {0};
        for (size_t k = 0; ok; k += 3) {
            bool last = k >= len;
            if (last) k = len;
            fitlm_tool_parse p;
            if (fitlm_tool_parse_resume(cases[c].f, false, &r, t, k, last, &p, NULL)) break;
            if (p.open_name) snprintf(name, sizeof name, "%s", p.open_name);
            if (p.open_args_len && al + p.open_args_len < sizeof args) {
                memcpy(args + al, p.open_args, p.open_args_len);
                al += p.open_args_len;
                pieces++;
            }
            dropped = dropped || p.open_dropped;
            if (p.n_calls) {
                n_calls += p.n_calls;
                ok = !strcmp(p.calls[0].name, name) && prefix(args, al, p.calls[0].arguments, strlen(p.calls[0].arguments));
            }
            fitlm_tool_parse_free(&p);
            if (last) break;
        }
        if (cases[c].dropped)
            CHECK(dropped && n_calls == 0 && name[0], "stream case %zu: the broken call is dropped (%s)", c, name);
        else
            CHECK(ok && n_calls == 1 && pieces >= 3 && !dropped, "stream case %zu: name '%s' and %zu argument pieces '%s' "
                  "before the call completes", c, name, pieces, args);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A long Hermes output (content, then one call with an n-byte string argument) parsed as a stream in 4-byte
 * steps, incrementally and by parsing every prefix again (the way the server did before): the same calls and
 * arguments; the times printed (docs/templates.md quotes them). Returns the incremental time. */
static double long_stream(size_t n, bool compare) {
    const char *head = "Let me write that file.\n<tool_call>\n{\"name\": \"write_file\", \"arguments\": "
                       "{\"path\": \"notes.txt\", \"text\": \"";
    const char *tail = "\"}}\n</tool_call>";
    size_t hl = strlen(head), tl = strlen(tail), len = hl + n + tl;
    char *text = malloc(len + 1);
    char *args = malloc(n + 64);
    if (!text || !args) {
        free(text);
        free(args);
        CHECK(0, "out of memory");
        return 0;
    }
    memcpy(text, head, hl);
    for (size_t i = 0; i < n; i++) text[hl + i] = i % 61 == 60 ? ' ' : (char)('a' + i % 26);
    memcpy(text + hl + n, tail, tl + 1);
    size_t al = 0, ncalls = 0;
    double t0 = now_s();
    fitlm_tool_resume rs = {0};
    for (size_t k = 0;; k += 4) {
        bool last = k >= len;
        if (last) k = len;
        fitlm_tool_parse p;
        if (fitlm_tool_parse_resume(FITLM_TOOLS_HERMES, false, &rs, text, k, last, &p, NULL)) break;
        if (p.open_args_len && al + p.open_args_len <= n + 64) {
            memcpy(args + al, p.open_args, p.open_args_len);
            al += p.open_args_len;
        }
        if (p.n_calls) {
            ncalls += p.n_calls;
            size_t fl = strlen(p.calls[0].arguments);
            CHECK(fl == n + 30 && prefix(args, al, p.calls[0].arguments, fl), "long stream: the final arguments (%zu bytes) "
                  "extend the %zu streamed", fl, al);
        }
        fitlm_tool_parse_free(&p);
        if (last) break;
    }
    double t_inc = now_s() - t0;
    CHECK(ncalls == 1 && al >= n, "long stream of %zu bytes: 1 call (%zu), %zu argument bytes streamed", len, ncalls, al);
    if (compare) {
        t0 = now_s();
        size_t got = 0;
        for (size_t k = 0;; k += 4) {
            bool last = k >= len;
            if (last) k = len;
            fitlm_tool_parse p;
            if (fitlm_tool_parse_text(FITLM_TOOLS_HERMES, false, text, k, last, &p, NULL)) break;
            got = p.n_calls;
            fitlm_tool_parse_free(&p);
            if (last) break;
        }
        double t_all = now_s() - t0;
        CHECK(got == 1, "long stream: the prefix-by-prefix parse finds the call");
        printf("tool-call stream of %zu bytes in 4-byte steps: incremental %.4f s, every prefix parsed again %.4f s\n",
               len, t_inc, t_all);
    } else {
        printf("tool-call stream of %zu bytes in 4-byte steps: incremental %.4f s\n", len, t_inc);
    }
    free(text);
    free(args);
    return t_inc;
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
    streams_args();
    /* linear: 8 times the text takes nowhere near 64 times as long (quadratic would) */
    double t1 = long_stream(20000, true), t8 = long_stream(160000, false);
    CHECK(t8 < 24 * t1 + 0.5, "incremental parse time grows linearly: %.4f s for 20000 bytes, %.4f s for 160000", t1, t8);
    return check_report();
}
