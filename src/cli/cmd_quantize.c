/* fitlm quantize IN OUT TYPE [-t N] [--allow-requantize] [--progress]
 * Writes IN (a GGUF file, Hugging Face folder or llama2.c checkpoint) as a GGUF
 * file OUT with weight matrices in TYPE; see src/quantize/quantize.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "format/ggml_type.h"
#include "model/model.h"
#include "util/file.h"
#include "quantize/quantize.h"

static void list_types(FILE *out) {
    const fitlm_quant_scheme *s;
    int n = fitlm_quant_schemes(&s);
    for (int i = 0; i < n; i++) fprintf(out, "  %-7s %s\n", s[i].name, s[i].desc);
}

static void usage(FILE *out) {
    fprintf(out, "usage: fitlm quantize IN OUT TYPE [-t N] [--allow-requantize] [--progress]\n"
                 "                      [--output-tensor-type T] [--token-embedding-type T]\n"
                 "  IN                  a GGUF (F32/F16/BF16), Hugging Face folder or llama2.c checkpoint\n"
                 "  OUT                 the GGUF file to write\n"
                 "  TYPE                one of:\n");
    list_types(out);
    fprintf(out, "  -t, --threads N     threads (default: physical cores)\n"
                 "  --allow-requantize  accept an already-quantized IN (dequantized, then quantized again)\n"
                 "  --output-tensor-type T    store output.weight (or a tied token_embd) as T\n"
                 "  --token-embedding-type T  store token_embd.weight as T\n"
                 "                      (T: f32, f16, bf16, q8_0, q6_k, q5_0, q4_k, q4_0)\n"
                 "  --progress          one line per tensor on stderr even when it is not a terminal\n"
                 "  -q, --quiet         no progress lines and notes\n");
}

static int bad_type(const char *t) {
    fprintf(stderr, "fitlm: error: quantize: unknown type '%s'; valid types:\n", t);
    list_types(stderr);
    return 1;
}

static void human_bytes(uint64_t b, char *buf, size_t n) {
    if (b >= (uint64_t)1 << 30) snprintf(buf, n, "%.2f GiB", (double)b / 1073741824.0);
    else if (b >= (uint64_t)1 << 20) snprintf(buf, n, "%.2f MiB", (double)b / 1048576.0);
    else if (b >= 1024) snprintf(buf, n, "%.1f KiB", (double)b / 1024.0);
    else snprintf(buf, n, "%llu B", (unsigned long long)b);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0, threads = 0;
    bool allow_requant = false, progress = false, quiet = false;
    int output_type = FITLM_TYPE_INVALID, embd_type = FITLM_TYPE_INVALID;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) return fitlm_die("quantize: %s needs a value", a);
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || v < 1 || v > 1024)
                return fitlm_die("quantize: %s must be a number of threads between 1 and 1024, not '%s'", a, argv[i]);
            threads = (int)v;
        } else if (!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) {
            if (i + 1 >= argc) return fitlm_die("quantize: %s needs a type", a);
            int t = fitlm_type_from_name(argv[++i]);
            if (!fitlm_quant_override_ok(t))
                return fitlm_die("quantize: %s must be one of f32, f16, bf16, q8_0, q6_k, q5_0, q4_k, q4_0, not '%s'",
                                 a, argv[i]);
            if (!strcmp(a, "--output-tensor-type")) output_type = t;
            else embd_type = t;
        } else if (!strcmp(a, "--allow-requantize")) {
            allow_requant = true;
        } else if (!strcmp(a, "--progress")) {
            progress = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fitlm: error: quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 1;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            return fitlm_die("quantize: unexpected argument '%s'", a);
        }
    }
    if (n_pos < 3) {
        fprintf(stderr, "fitlm: error: quantize: expected IN OUT TYPE\n");
        usage(stderr);
        return 1;
    }
    const char *in = pos[0], *out = pos[1];
    const fitlm_quant_scheme *scheme = fitlm_quant_scheme_find(pos[2]);
    if (!scheme) return bad_type(pos[2]);

    /* fail before the (possibly long) load when OUT cannot be written */
    char *dir = strdup(out);
    if (!dir) return fitlm_die("out of memory");
    const char *d = ".";
    char *slash = strrchr(dir, '/');
    if (slash == dir) {
        d = "/";
    } else if (slash) {
        *slash = 0;
        d = dir;
    }
    struct stat st_dir;
    if (stat(d, &st_dir) != 0 || !S_ISDIR(st_dir.st_mode)) {
        fitlm_die("%s: folder '%s' does not exist", out, d);
        free(dir);
        return 1;
    }
    if (fitlm_is_dir(out)) {
        free(dir);
        return fitlm_die("%s: is a folder; OUT must be a file name", out);
    }
    free(dir);

    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_load(in, &err);
    if (!m) {
        fitlm_error_print(&err);
        return 1;
    }
    fitlm_quantize_opts o = {
        .scheme = scheme,
        .n_threads = threads,
        .allow_requantize = allow_requant,
        .output_type = output_type,
        .embd_type = embd_type,
        .progress = !quiet && (progress || isatty(STDERR_FILENO)) ? stderr : NULL,
        .notes = quiet ? NULL : stderr,
    };
    fitlm_quantize_stats st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = fitlm_quantize_model(m, out, &o, &st, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != 0) {
        /* errors about the input name it; the rest (writing) name the output */
        if (strstr(err.msg, "tensor '") == err.msg) fitlm_error_prefix(&err, in);
        else if (strncmp(err.msg, out, strlen(out)) != 0) fitlm_error_prefix(&err, out);
        fitlm_error_print(&err);
        fitlm_model_free(m);
        return 1;
    }
    char ib[32], ob[32];
    human_bytes(st.in_bytes, ib, sizeof ib);
    human_bytes(st.out_file_bytes, ob, sizeof ob);
    double n = st.n_elements ? (double)st.n_elements : 1.0;
    fprintf(stderr, "fitlm: quantized %s -> %s (%s): %llu tensors, %s -> %s, %.2f -> %.2f bits per weight, %.1f s\n",
            in, out, scheme->name, (unsigned long long)st.n_tensors, ib, ob, 8.0 * (double)st.in_bytes / n,
            8.0 * (double)st.out_bytes / n, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    fitlm_model_free(m);
    return 0;
}
