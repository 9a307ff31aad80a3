/* libFuzzer target for fitlm serve's request parsing and response building
 * (src/serve/openai.c), without sockets.
 *
 * Input: byte 0 picks the endpoint (even: /v1/chat/completions, odd:
 * /v1/completions) and the served model's chat template; the rest is the
 * request body. The Llama 2 vocabulary (FITLM_SHARED or the ../shared folder
 * next to this source tree) is the tokenizer; the context is 64 tokens.
 *
 * A refused body must give status 400, 404 or 500 with a one-line message,
 * and its error JSON must parse (cJSON). An accepted body must give checked
 * parameters (1..64 prompt ids inside the vocabulary, temperature 0..2, top_p
 * in (0, 1], min_p 0..1, at most 4 non-empty valid UTF-8 stop strings,
 * top_logprobs -1..20); then a synthetic engine log built from the prompt's
 * ids (text from the tokenizer's pieces, byte tokens included, top
 * alternatives, a done event) is formatted both as a whole response and as
 * SSE chunks, and every JSON document produced must parse with cJSON. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/openai.h"
#include "tokenizer/tokenizer.h"

static fitlm_tokenizer *g_tok;
static uint32_t g_max_piece;

static void die(const char *what) {
    fprintf(stderr, "fuzz_serve_request: %s\n", what);
    abort();
}

static void init(void) {
    char path[4200];
    const char *shared = getenv("FITLM_SHARED");
    if (shared && *shared) {
        snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-llama-spm.gguf", shared);
    } else {
        snprintf(path, sizeof path, "%s", __FILE__);
        char *p = strstr(path, "/tests/fuzz/");
        if (!p) die("set FITLM_SHARED");
        snprintf(p, sizeof path - (size_t)(p - path), "/../shared/data/vocab/ggml-vocab-llama-spm.gguf");
    }
    fitlm_error err = {{0}};
    g_tok = fitlm_tokenizer_load(path, &err);
    if (!g_tok) die(err.msg);
    g_max_piece = serve_max_piece_bytes(g_tok);
}

static void must_parse(const char *json, size_t len, const char *what) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) {
        fprintf(stderr, "%s is not JSON: %.*s\n", what, (int)(len > 400 ? 400 : len), json);
        die("bad JSON output");
    }
    cJSON_Delete(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) init();
    if (size < 1) return 0;
    static const fitlm_chat_template tmpls[] = {FITLM_CHAT_LLAMA2, FITLM_CHAT_LLAMA3, FITLM_CHAT_CHATML,
                                                FITLM_CHAT_MISTRAL, FITLM_CHAT_NONE};
    serve_model_info mi = {.name = "fuzz-model", .tok = g_tok, .tmpl = tmpls[(data[0] >> 1) % 5],
                           .default_system = (data[0] & 0x40) ? "You are helpful." : NULL, .n_ctx = 64,
                           .vocab = (uint32_t)fitlm_tokenizer_vocab_size(g_tok), .max_piece_bytes = g_max_piece};
    serve_kind kind = (data[0] & 1) ? SERVE_COMPLETION : SERVE_CHAT;
    serve_gen_params p;
    serve_error e;
    memset(&e, 0, sizeof e);
    if (serve_parse_gen(&mi, kind, (const char *)data + 1, size - 1, 42, &p, &e)) {
        if (!(e.status == 400 || e.status == 404 || e.status == 500) || !e.msg[0] || strchr(e.msg, '\n'))
            die("a refusal without a proper status or message");
        serve_buf b = {0};
        serve_error_json(&e, &b);
        must_parse(b.data, b.len, "the error body");
        serve_buf_free(&b);
        return 0;
    }
    if (p.n_prompt < 1 || p.n_prompt > mi.n_ctx) die("prompt length out of range");
    for (uint32_t i = 0; i < p.n_prompt; i++)
        if (p.prompt[i] < 0 || (uint32_t)p.prompt[i] >= mi.vocab) die("prompt id out of range");
    const fitlm_sampler_params *s = &p.sampling;
    if (!(s->temp >= 0 && s->temp <= 2) || !(s->top_p > 0 && s->top_p <= 1) || !(s->min_p >= 0 && s->min_p <= 1))
        die("sampling parameter out of range");
    if (p.n_stop > SERVE_MAX_STOP) die("too many stop strings");
    for (size_t i = 0; i < p.n_stop; i++)
        if (!p.stop[i][0] || !serve_utf8_valid(p.stop[i], strlen(p.stop[i]))) die("bad stop string");
    if (p.top_logprobs < -1 || p.top_logprobs > FITLM_MAX_TOP_LOGPROBS) die("top_logprobs out of range");

    /* a synthetic generation: the prompt's ids again, then done */
    serve_gen_log g = {0};
    fitlm_top_logprob top[FITLM_MAX_TOP_LOGPROBS];
    for (uint32_t i = 0; i < p.n_prompt && i < 16; i++) {
        size_t len = 0;
        const char *piece = fitlm_tokenizer_piece(g_tok, p.prompt[i], true, &len);
        int n_top = p.top_logprobs > 0 ? p.top_logprobs : 0;
        for (int k = 0; k < n_top; k++) top[k] = (fitlm_top_logprob){(p.prompt[i] + k) % (int32_t)mi.vocab, -(float)k};
        fitlm_gen_event ev = {.token = p.prompt[i], .text = piece, .text_len = piece ? len : 0,
                              .logprob = i == 3 ? -INFINITY : -0.5f, .n_top = n_top, .top = top,
                              .n_prompt = p.n_prompt, .n_completion = i + 1};
        serve_gen_log_add(&g, &ev);
    }
    fitlm_gen_event done = {.token = -1, .text = "\xe2\x82", .text_len = 2, .done = true,
                            .finish = (data[0] & 0x80) ? FITLM_FINISH_STOP : FITLM_FINISH_LENGTH,
                            .n_prompt = p.n_prompt, .n_completion = 16};
    serve_gen_log_add(&g, &done);
    serve_resp_id rid = {"cmpl-fuzz", 1};
    serve_buf out = {0};
    serve_format_response(&mi, &p, &g, &rid, &out);
    must_parse(out.data, out.len, "the response");
    serve_buf_free(&out);
    serve_stream_state st = {0};
    serve_format_chunks(&mi, &p, &g, &rid, &st, &out);
    if (!st.finished || out.len < 14 || memcmp(out.data + out.len - 14, "data: [DONE]\n\n", 14)) die("the stream does not end");
    for (char *ev = out.data; ev < out.data + out.len;) { /* every event: "data: JSON\n\n" */
        char *end = strstr(ev, "\n\n");
        if (!end || strncmp(ev, "data: ", 6)) die("bad SSE framing");
        if (strncmp(ev + 6, "[DONE]", 6)) must_parse(ev + 6, (size_t)(end - ev - 6), "an SSE chunk");
        ev = end + 2;
    }
    serve_buf_free(&out);
    serve_stream_state_free(&st);
    serve_gen_log_free(&g);
    serve_gen_params_free(&p);
    return 0;
}
