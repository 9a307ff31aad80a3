/* fitlm run: generate text (or token ids) from a prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/gpu_open.h"
#include "cli/plan_check.h"
#include "cli/chat_loop.h"
#include "cli/generate.h"
#include "backend/cpu/backend_cpu.h"
#include "cli/runtime_opts.h"
#include "parallel/parallel.h"
#include "grammar/json_schema.h"
#include "grammar/token_mask.h"
#include "format/gguf.h"
#include "engine/chat_prompt.h"
#include "runtime/chat_template.h"
#include "runtime/memory_report.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm run -m MODEL [-p TEXT | --ids \"1 2 3\"] [options]\n"
            "  -p, --prompt TEXT       prompt text (needs the model's tokenizer); without -p, -f\n"
            "                          or --ids the prompt is read from standard input\n"
            "  -f, --file FILE         prompt text from a file\n"
            "  --ids \"ID ...\"          prompt as token ids (the only way for llama2.c checkpoints)\n"
            "  -n, --n-predict N       tokens to generate (default 128)\n"
            "  --temp T                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K               (default 40; 0 = off)\n"
            "  --top-p P               (default 0.95; 1 = off)\n"
            "  --min-p P               (default 0.05; 0 = off)\n"
            "  --repeat-penalty R      (default 1.0 = off)\n"
            "  --repeat-last-n N       tokens the penalty looks at (default 64)\n"
            "  -s, --seed S            sampler seed (default: random, printed)\n"
            "  -t, --threads N         CPU threads (default: physical cores)\n"
            "  -c, --ctx-size N        context (default min(4096, model); 0 = the model's)\n"
            "  --kv-type f16|f32|q8_0  KV cache type (default f16)\n"
            "  --device D              cpu, vulkan or vulkan:N (default: the first discrete GPU, else cpu)\n"
            "  -ngl, --gpu-layers N    layers on the GPU (the last N, the output with them; the rest on the\n"
            "                          CPU; default: all)\n"
            "  --fit                   the most layers the GPU's memory holds, saying why\n"
            "  --batch N               prompt tokens per forward micro-batch (default 512)\n"
            "  --print-ids             print generated token ids instead of text\n"
            "  --chat                  wrap -p as a user turn in the model's chat template\n"
            "  -i, --interactive       chat: user turns from standard input, one line each\n"
            "                          (the KV cache is kept between turns; -p is the first turn)\n"
            "  --system TEXT           system message for --chat\n"
            "  --chat-template NAME    a built-in format: llama2, llama3, chatml, mistral (default: the\n"
            "                          model's own Jinja template; a built-in one only when it has none)\n"
            "  --json-schema FILE      constrain the output to JSON valid under this schema\n"
            "                          (docs/structured-output.md); the prompt is not echoed\n"
            "  --grammar FILE          constrain the output to a GBNF grammar (rule 'root')\n"
            "  --memory-report         (always printed at the end of run)\n"
            "  --plan-check            print the planner's prediction beside this run's memory and speed\n"
            "                          (--profile FILE: the host profile of 'fitlm calibrate'; with layers\n"
            "                          on a GPU, --plan-gpu NAME: the catalog card to predict the speed for,\n"
            "                          default the one the device name matches)\n");
}

#define PROMPT_MAX_BYTES (16u * 1024u * 1024u)

/* Reads all of stdin (at most max bytes) into a NUL-terminated malloc'd
 * buffer the caller frees, its length (NUL bytes inside count) in *len;
 * NULL if empty, too long or unreadable. */
static char *read_stdin(size_t max, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n + 1 == cap) {
            if (cap > max) {
                free(buf);
                return NULL;
            }
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                return NULL;
            }
            buf = g;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        if (r == 0) break;
        n += r;
    }
    if (n == 0 || n > max || ferror(stdin)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int cmd_run(int argc, char **argv) {
    runtime_opts o;
    runtime_opts_init(&o);
    o.accept_plan_check = true;
    fitlm_sampler_params sp = fitlm_sampler_params_default();
    bool seed_given = false, print_ids = false, chat = false, interactive = false, n_predict_given = false;
    const char *prompt = NULL, *ids_text = NULL, *system_msg = NULL, *template_name = NULL, *prompt_file = NULL;
    const char *schema_file = NULL, *grammar_file = NULL;
    char *prompt_buf = NULL;
    size_t prompt_len = 0; /* bytes of a prompt read from -f or stdin (it may hold NUL bytes) */
    long n_predict = 128, x;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = runtime_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(prompt_file = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ids")) {
            if (!(ids_text = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, INT32_MAX, &n_predict)) return 1;
            n_predict_given = true;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_float(a, v, 0.0, 1e6, &sp.temp)) return 1;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, INT32_MAX, &x)) return 1;
            sp.top_k = (int32_t)x;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_float(a, v, 1e-9, 1.0, &sp.top_p)) return 1;
        } else if (!strcmp(a, "--min-p")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_float(a, v, 0.0, 1.0, &sp.min_p)) return 1;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_float(a, v, 1e-6, 1e6, &sp.repeat_penalty)) return 1;
        } else if (!strcmp(a, "--repeat-last-n")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, 1 << 20, &x)) return 1;
            sp.repeat_last_n = (int32_t)x;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_u64(a, v, &sp.seed)) return 1;
            seed_given = true;
        } else if (!strcmp(a, "--print-ids")) {
            print_ids = true;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--interactive")) {
            chat = interactive = true;
        } else if (!strcmp(a, "--json-schema")) {
            if (!(schema_file = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--grammar")) {
            if (!(grammar_file = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--system")) {
            if (!(system_msg = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(template_name = opt_value(argc, argv, &i))) return 1;
            if (fitlm_chat_template_from_name(template_name) == FITLM_CHAT_NONE)
                return fitlm_die("--chat-template: unknown template '%s' (llama2, llama3, chatml, mistral)",
                                 template_name);
        } else {
            usage(stderr);
            return fitlm_die("run: unknown option '%s'", a);
        }
    }
    if (!o.model_path) return fitlm_die("run: no model given (use -m MODEL)");
    if ((prompt != NULL) + (ids_text != NULL) + (prompt_file != NULL) > 1)
        return fitlm_die("run: give only one of -p, -f and --ids");
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fitlm_error err = {{0}};
    if (fitlm_sampler_params_check(&sp, &err)) {
        fitlm_error_print(&err);
        return 1;
    }

    /* the output's grammar, compiled before the model loads: a bad one generates nothing */
    if (schema_file && grammar_file) return fitlm_die("run: give only one of --json-schema and --grammar");
    if ((schema_file || grammar_file) && interactive)
        return fitlm_die("run: --json-schema and --grammar need a single prompt, not -i");
    fitlm_grammar *grammar = NULL;
    if (schema_file || grammar_file) {
        size_t glen = 0;
        char *gtext = fitlm_file_read_all(schema_file ? schema_file : grammar_file, FITLM_GRAMMAR_MAX_TEXT, &glen, &err);
        if (gtext) grammar = schema_file ? fitlm_json_schema_grammar(gtext, glen, &err) : fitlm_grammar_parse(gtext, glen, &err);
        free(gtext);
        if (!grammar) {
            fitlm_error_prefix(&err, schema_file ? schema_file : grammar_file);
            fitlm_error_print(&err);
            return 1;
        }
    }

    int32_t *ids = NULL;
    uint32_t n_prompt = 0;
    if (ids_text && !(ids = opt_parse_ids_flag("--ids", ids_text, &n_prompt))) {
        fitlm_grammar_free(grammar);
        return 1;
    }

    runtime_session s;
    if (runtime_session_open_model(&s, &o)) {
        free(ids);
        fitlm_grammar_free(grammar);
        return 1;
    }
    fitlm_token_trie *trie = NULL;
    fitlm_token_constraint cons = {0};
    int rc = 1;
    fitlm_tokenizer *tok = NULL;
    fitlm_detok_stream *ds = NULL;
    char *chat_text = NULL;
    fitlm_chat_prompt *cp = NULL;
    gen_result res = {0};
    const fitlm_model *m = s.model;

    /* the prompt: -p, -f FILE, --ids, or (when stdin is not a terminal) stdin */
    if (prompt_file) {
        prompt = prompt_buf = fitlm_file_read_all(prompt_file, PROMPT_MAX_BYTES, &prompt_len, &err);
        if (!prompt) {
            fitlm_error_print(&err);
            goto done;
        }
    } else if (!prompt && !ids_text && !interactive && !isatty(STDIN_FILENO)) {
        prompt = prompt_buf = read_stdin(PROMPT_MAX_BYTES, &prompt_len);
        if (!prompt) {
            fitlm_die("run: cannot read the prompt from stdin (empty, or more than %u bytes)", PROMPT_MAX_BYTES);
            goto done;
        }
    }
    if (!prompt && !ids && !interactive) {
        fitlm_die("run: no prompt given (use -p TEXT, -f FILE, --ids \"1 2 3\" or standard input)");
        goto done;
    }
    if (interactive && ids) {
        fitlm_die("run: -i takes text turns, not --ids");
        goto done;
    }
    if (chat && !prompt && !interactive) {
        fitlm_die("run: --chat needs the user message as text (-p, -f or stdin)");
        goto done;
    }

    if (prompt || !print_ids || interactive) {
        tok = runtime_model_tokenizer(m, "give the prompt as token ids with --ids", &err);
        if (!tok && (prompt || interactive)) {
            fitlm_error_prefix(&err, o.model_path);
            fitlm_error_print(&err);
            goto done;
        }
        if (!tok) print_ids = true; /* --ids on a model without vocabulary: ids out */
    }
    if (tok && (uint32_t)fitlm_tokenizer_vocab_size(tok) > m->hp.vocab_size) {
        fitlm_die("%s: the tokenizer has %d tokens but the model only %u", o.model_path,
                  fitlm_tokenizer_vocab_size(tok), m->hp.vocab_size);
        goto done;
    }
    if (chat) {
        /* the model's own Jinja template; a built-in format when it has none or one is named */
        cp = fitlm_chat_prompt_new(tok, template_name, &err);
        if (!cp) {
            fitlm_error_prefix(&err, o.model_path);
            fitlm_error_print(&err);
            goto done;
        }
    }
    /* one sequence at a time through the engine: the generation loop `serve` runs */
    if (runtime_session_start_engine(&s, &o, tok, 1)) goto done;
    if (interactive) {
        /* a reply can never be longer than the context */
        uint32_t n_ctx = fitlm_engine_n_ctx(s.engine);
        if (!n_predict_given || n_predict > (long)n_ctx) n_predict = n_ctx;
        fprintf(stderr, "fitlm: chat template: %s, seed %llu; one line per turn, end with Ctrl-D\n",
                fitlm_chat_prompt_describe(cp), (unsigned long long)sp.seed);
        if (chat_loop(s.engine, tok, &sp, cp, system_msg, prompt, n_predict, print_ids, &err)) {
            fitlm_error_print(&err);
            goto done;
        }
        runtime_session_print_memory(&s, stderr);
        rc = 0;
        goto done;
    }
    if (prompt) {
        /* the prompt's bytes, NUL bytes included (tokenized as `tokenize` does) */
        const char *text = prompt;
        size_t text_len = prompt_len ? prompt_len : strlen(prompt);
        if (chat && memchr(prompt, 0, text_len)) {
            fitlm_die("run: the prompt contains a NUL byte, which a chat message cannot carry");
            goto done;
        }
        if (chat) {
            fitlm_chat_message msgs[2];
            size_t nm = 0;
            if (system_msg) msgs[nm++] = (fitlm_chat_message){"system", system_msg};
            msgs[nm++] = (fitlm_chat_message){"user", prompt};
            chat_text = fitlm_chat_prompt_render(cp, msgs, nm, NULL, NULL, true, NULL, &err);
            if (!chat_text) {
                fitlm_error_prefix(&err, "chat template");
                fitlm_error_print(&err);
                goto done;
            }
            text = chat_text;
            text_len = strlen(chat_text);
            fprintf(stderr, "fitlm: chat template: %s\n", fitlm_chat_prompt_describe(cp));
        }
        size_t n = 0;
        int enc = cp ? fitlm_chat_prompt_tokenize(cp, text, text_len, true, &ids, &n, &err)
                     : fitlm_tokenizer_encode(tok, text, text_len, true, true, &ids, &n, &err);
        if (enc) {
            fitlm_error_prefix(&err, "tokenizing the prompt");
            fitlm_error_print(&err);
            goto done;
        }
        if (n == 0) {
            fitlm_die("the prompt is empty after tokenization");
            goto done;
        }
        if (n > UINT32_MAX) {
            fitlm_die("the prompt is too long");
            goto done;
        }
        n_prompt = (uint32_t)n;
    }
    uint32_t n_ctx = fitlm_engine_n_ctx(s.engine), vocab = fitlm_engine_vocab(s.engine);
    if (n_prompt >= n_ctx) {
        fitlm_die("%s: context overflow: the prompt has %u tokens, the context holds %u (raise -c, up to the model's %u)",
                  o.model_path, n_prompt, n_ctx, m->hp.ctx_len);
        goto done;
    }
    for (uint32_t i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab) {
            fitlm_die("token id %d is outside the vocabulary (0..%u)", ids[i], vocab - 1);
            goto done;
        }
    if (grammar) {
        fitlm_token_matcher *tm = NULL;
        if (!tok) {
            fitlm_die("%s: --json-schema and --grammar need the model's vocabulary", o.model_path);
            goto done;
        }
        if (!(trie = fitlm_token_trie_new(tok, &err)) || !(tm = fitlm_token_matcher_new(grammar, trie, &err))) {
            grammar = NULL; /* the matcher took it (and freed it on failure) */
            fitlm_error_print(&err);
            goto done;
        }
        grammar = NULL;
        cons = fitlm_token_matcher_constraint(tm);
    }
    if (tok && !print_ids) {
        ds = fitlm_detok_stream_new(tok, false);
        if (!ds) {
            fitlm_die("out of memory");
            goto done;
        }
    }
    if (s.backend->device == FITLM_DEVICE_CPU)
        fprintf(stderr, "fitlm: seed %llu, %u prompt tokens, context %u, %d threads\n", (unsigned long long)sp.seed,
                n_prompt, n_ctx, backend_cpu_threads(s.backend));
    else
        fprintf(stderr, "fitlm: seed %llu, %u prompt tokens, context %u, device %s\n", (unsigned long long)sp.seed,
                n_prompt, n_ctx, s.backend->name);
    fflush(stderr);

    /* echo the prompt (not in chat mode, where the template text is noise) */
    if (ds && !chat && !cons.mask) {
        for (uint32_t i = 0; i < n_prompt; i++) {
            const char *piece;
            size_t len;
            if (fitlm_detok_stream_push(ds, ids[i], &piece, &len, &err) == 0) fwrite(piece, 1, len, stdout);
        }
        fflush(stdout);
    }
    {
        /* the echo's held-back bytes (a character split across the prompt's last tokens) */
        const char *piece;
        size_t len;
        if (ds) fitlm_detok_stream_flush(ds, &piece, &len), fwrite(piece, 1, len, stdout);
    }
    fitlm_token_constraint given = cons;
    cons = (fitlm_token_constraint){0}; /* generate_tokens owns it now */
    if (generate_tokens(s.engine, ids, n_prompt, n_predict, &sp, print_ids || !tok, given.mask ? &given : NULL, &res,
                        &err)) {
        fitlm_error_print(&err);
        goto done;
    }
    long n_gen = res.n;
    double t_gen = res.seconds, t_prompt = res.t_first;
    const char *stop_reason = res.reason;
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "\nfitlm: stopped: %s\n", stop_reason);
    fprintf(stderr, "fitlm: prompt eval: %6u tokens in %9.2f ms (%10.2f ms per token, %10.2f tokens per second)\n",
            n_prompt, t_prompt * 1e3, t_prompt * 1e3 / n_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9));
    /* the first generated token comes from the prompt's logits: the speed is
     * per decode step (llama.cpp's "eval time ... runs") */
    long n_eval = res.n_eval;
    fprintf(stderr, "fitlm: generation:  %6ld tokens in %9.2f ms (%ld decode steps: %.2f ms per token, %.2f tokens per second)\n",
            n_gen, t_gen * 1e3, n_eval, n_eval ? t_gen * 1e3 / n_eval : 0.0,
            n_eval ? n_eval / (t_gen > 0 ? t_gen : 1e-9) : 0.0);
    runtime_session_print_memory(&s, stderr);
    if (o.plan_check == 1) {
        fitlm_runtime_memory mem;
        fitlm_engine_get_memory(s.engine, &mem);
        plan_check_run pr = {.mem = &mem,
                             .peak_rss = fitlm_peak_rss_bytes(),
                             .threads = backend_cpu_threads(s.backend),
                             .embd_ids = {ids, res.ids},
                             .n_embd_ids = {n_prompt, (uint32_t)res.n_ids},
                             .positions_used = n_prompt + (uint32_t)n_gen,
                             .extra_scratch = (uint64_t)s.model->hp.vocab_size * sizeof(float),
                             .n_prompt = n_prompt,
                             .pp_tps_median = t_prompt > 0 ? n_prompt / t_prompt : 0,
                             .pp_tps_best = t_prompt > 0 ? n_prompt / t_prompt : 0,
                             .ttft_s = t_prompt,
                             .ctx0 = n_prompt,
                             .probe_now = s.backend->device == FITLM_DEVICE_CPU,
                             .gpu = gpu_device_running(s.backend),
                             .model_path = o.model_path,
                             .gpu_layers = gpu_layers_running(s.backend),
                             .plan_gpu = o.plan_gpu,
                             .tp = s.par ? s.par->tp_size : 1,
                             .pp = s.par ? s.par->pp_size : 1,
                             .turns = s.par && s.par->turns,
                             .layer0 = s.par ? s.par->layer0 : 0,
                             .layer1 = s.par ? s.par->layer1 : 0,
                             .par = s.par,
                             .n_gen = (uint32_t)n_eval,
                             .tg_tps_median = n_eval && t_gen > 0 ? n_eval / t_gen : 0,
                             .tg_tps_best = n_eval && t_gen > 0 ? n_eval / t_gen : 0};
        if (plan_check_print(stderr, s.model, o.profile_path, &pr)) goto done;
    }
    rc = 0;
done:
    if (cons.mask) cons.free_state(cons.state);
    fitlm_grammar_free(grammar);
    fitlm_token_trie_free(trie);
    free(res.ids);
    free(chat_text);
    fitlm_chat_prompt_free(cp);
    fitlm_detok_stream_free(ds);
    fitlm_tokenizer_free(tok);
    free(ids);
    free(prompt_buf);
    runtime_session_close(&s);
    return rc;
}
