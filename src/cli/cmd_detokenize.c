/* fitlm detokenize -m MODEL [--special]
 * Reads token ids (stdin; whitespace or "[1, 2, 3]") and writes the text they decode to. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/tokenizer_opts.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* Separators between ids: whitespace, and the brackets/commas of a list. */
static int is_sep(int c) { return isspace(c) || c == ',' || c == '[' || c == ']'; }

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm detokenize -m MODEL [--special] < ids\n"
            "  -m, --model PATH  GGUF file (a vocab-only one works), Hugging Face folder or tokenizer.json\n"
            "      --special     also write control tokens (<s>, <|eot_id|>, ...) as text\n"
            "Reads token ids from stdin, separated by whitespace or commas (llama.cpp's \"[1, 2]\" form\n"
            "works too); writes the decoded bytes to stdout.\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool render_special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--special")) {
            render_special = true;
        } else {
            usage(stderr);
            return fitlm_die("detokenize: unknown or incomplete option '%s'", a);
        }
    }
    fitlm_tokenizer *tok = tokenizer_opts_open("detokenize", model, usage);
    if (!tok) return 1;
    fitlm_error err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    char word[64];
    int rc = 0;
    for (;;) {
        /* read one whitespace-separated word */
        int c;
        while ((c = getchar()) != EOF && is_sep(c)) {
        }
        if (c == EOF) break;
        size_t wl = 0;
        while (c != EOF && !is_sep(c)) {
            if (wl + 1 < sizeof word) word[wl++] = (char)c;
            else wl = sizeof word; /* too long to be an id */
            c = getchar();
        }
        if (wl >= sizeof word) {
            rc = fitlm_die("<stdin>: token id %zu is not a number", n + 1);
            break;
        }
        word[wl] = 0;
        char *end;
        errno = 0;
        long long v = strtoll(word, &end, 10);
        if (*end || errno) {
            rc = fitlm_die("<stdin>: '%s' is not a token id", word);
            break;
        }
        if (v < 0 || v >= fitlm_tokenizer_vocab_size(tok)) {
            rc = fitlm_die("%s: token id %lld is out of range (vocabulary has %d tokens)", model, v,
                           fitlm_tokenizer_vocab_size(tok));
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            int32_t *ni = realloc(ids, cap * sizeof *ids);
            if (!ni) {
                rc = fitlm_die("out of memory");
                break;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
    }
    if (rc == 0) {
        size_t len;
        char *text = fitlm_tokenizer_decode(tok, ids, n, render_special, &len, &err);
        if (!text) {
            fitlm_error_prefix(&err, model);
            fitlm_error_print(&err);
            rc = 1;
        } else {
            if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) rc = fitlm_die("<stdout>: write failed");
            free(text);
        }
    }
    free(ids);
    fitlm_tokenizer_free(tok);
    return rc;
}
