/* fitlm tokenize -m MODEL [--no-special] [--parse-special|--no-parse-special] [--pieces] [-p TEXT | -f FILE]
 * Reads UTF-8 text (stdin by default) and prints its token ids on one line
 * (--pieces: one "ID<TAB>'piece'" line per token instead). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/mem_budget.h"
#include "util/meminfo.h"
#include "cli/tokenizer_opts.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define MAX_INPUT_BYTES ((size_t)1 << 31)

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm tokenize -m MODEL [OPTIONS] < text\n"
            "  -m, --model PATH      GGUF file (a vocab-only one works), Hugging Face folder or tokenizer.json\n"
            "  -p, --prompt TEXT     tokenize TEXT instead of stdin\n"
            "  -f, --file PATH       tokenize the contents of PATH instead of stdin\n"
            "      --no-special      do not add BOS/EOS\n"
            "      --parse-special   recognise control tokens such as <|eot_id|> in the text (default)\n"
            "      --no-parse-special  treat them as plain text\n"
            "      --pieces          one line per token: the id, a tab and the token's text, quoted\n"
            "Prints the ids separated by single spaces on one line.\n");
}

/* Reads all of stdin into a malloc'd buffer (caller frees). */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_INPUT_BYTES) {
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Writes bytes with control characters, backslash, quote and bytes that are
 * not part of valid UTF-8 escaped (\n, \t, \xNN), so one token is one line. */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        bool ok = l > 0 && i + l <= n;
        for (size_t k = 1; ok && k < l; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (!ok) {
            printf("\\x%02X", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", stdout);
            i++;
        } else if (c == '\t') {
            fputs("\\t", stdout);
            i++;
        } else if (c == '\\' || c == '\'') {
            printf("\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            printf("\\x%02X", c);
            i++;
        } else {
            fwrite(s + i, 1, l, stdout);
            i += l;
        }
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool add_special = true, parse_special = true, pieces = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--no-special")) {
            add_special = false;
        } else if (!strcmp(a, "--parse-special")) {
            parse_special = true;
        } else if (!strcmp(a, "--no-parse-special")) {
            parse_special = false;
        } else if (!strcmp(a, "--pieces")) {
            pieces = true;
        } else {
            usage(stderr);
            return fitlm_die("tokenize: unknown or incomplete option '%s'", a);
        }
    }
    fitlm_tokenizer *tok = tokenizer_opts_open("tokenize", model, usage);
    if (!tok) return 1;
    fitlm_error err = {{0}};
    char *text = NULL;
    size_t len = 0;
    if (prompt) {
        len = strlen(prompt);
    } else if (file) {
        text = fitlm_file_read_all(file, MAX_INPUT_BYTES, &len, &err);
        if (!text) {
            fitlm_tokenizer_free(tok);
            fitlm_error_print(&err);
            return 1;
        }
    } else {
        text = read_stdin(&len);
        if (!text) {
            fitlm_tokenizer_free(tok);
            return fitlm_die("<stdin>: cannot read the input text");
        }
    }
    if (mem_budget_tokenize(file ? file : prompt ? "-p" : "<stdin>", len, FITLM_MEM_UNKNOWN)) {
        free(text);
        fitlm_tokenizer_free(tok);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = fitlm_tokenizer_encode(tok, prompt ? prompt : text, len, add_special, parse_special, &ids, &n, &err);
    free(text);
    if (rc) {
        fitlm_tokenizer_free(tok);
        fitlm_error_prefix(&err, model);
        fitlm_error_print(&err);
        return 1;
    }
    if (pieces) {
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = fitlm_tokenizer_piece(tok, ids[i], true, &pl);
            printf("%d\t'", ids[i]);
            print_escaped(p, pl);
            fputs("'\n", stdout);
        }
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    fitlm_tokenizer_free(tok);
    free(ids);
    if (fflush(stdout) != 0) return fitlm_die("<stdout>: write failed");
    return 0;
}
