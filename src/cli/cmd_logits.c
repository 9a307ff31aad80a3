/* fitlm logits: teacher-forced logits per position, in the line format of the
 * shared reference files (pos P in ID argmax A sum S sumsq Q top I:L ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/runtime_opts.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: fitlm logits -m MODEL --ids \"ID ID ...\" [--top K] [--batch N] [-t N] [-c N] [--kv-type T] [--device D]\n"
            "  Feeds the ids (teacher forcing) and prints one line per position:\n"
            "    pos P in ID argmax A sum S sumsq Q top I1:L1 ... IK:LK\n"
            "  --top K     logits listed per position (default 5)\n"
            "  --batch N   tokens per forward micro-batch (default: all at once, up to 512);\n"
            "              --batch 1 decodes one token at a time\n"
            "  --kv-type   KV cache type f16 (default), f32, q8_0\n"
            "  --device D  cpu, vulkan or vulkan:N (default: the first discrete GPU, else cpu)\n"
            "  -ngl N      layers on the GPU (the last N; the rest on the CPU; default all); --fit: as\n"
            "              many as its memory holds\n"
            "  --memory-report  weights, KV cache and scratch on stderr (under mpirun: every rank's)\n");
}

static const float *g_sort_logits;

/* Descending by logit, ties by id (stable output). */
static int by_logit_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    float lx = g_sort_logits[x], ly = g_sort_logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* order: scratch of vocab entries. */
static void print_position(uint32_t pos, int32_t in, const float *lg, uint32_t vocab, int top, uint32_t *order) {
    double sum = 0.0, sumsq = 0.0;
    uint32_t am = 0;
    for (uint32_t i = 0; i < vocab; i++) {
        sum += lg[i];
        sumsq += (double)lg[i] * lg[i];
        if (lg[i] > lg[am]) am = i;
    }
    if (top > 0) {
        for (uint32_t i = 0; i < vocab; i++) order[i] = i;
        g_sort_logits = lg;
        qsort(order, vocab, sizeof *order, by_logit_desc);
    }
    printf("pos %u in %d argmax %u sum %.6f sumsq %.6f top", pos, in, am, sum, sumsq);
    for (int j = 0; j < top && j < (int)vocab; j++) printf(" %u:%.6f", order[j], lg[order[j]]);
    printf("\n");
}

int cmd_logits(int argc, char **argv) {
    runtime_opts o;
    runtime_opts_init(&o);
    const char *ids_text = NULL;
    long top = 5;
    bool batch_one = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--batch") || !strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) {
            int r = runtime_opts_parse(&o, argc, argv, &i);
            if (r < 0) return 1;
            batch_one = o.n_ubatch == 1;
            continue;
        }
        int r = runtime_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--ids")) {
            if (!(ids_text = opt_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--top")) {
            if (!(v = opt_value(argc, argv, &i)) || opt_parse_long(a, v, 0, 1 << 24, &top)) return 1;
        } else {
            usage(stderr);
            return fitlm_die("logits: unknown option '%s'", a);
        }
    }
    if (!o.model_path) return fitlm_die("logits: no model given (use -m MODEL)");
    if (!ids_text) return fitlm_die("logits: no token ids given (use --ids \"1 2 3\")");
    fitlm_error err = {{0}};
    uint32_t n = 0;
    int32_t *ids = opt_parse_ids_flag("--ids", ids_text, &n);
    if (!ids) return 1;
    runtime_session s;
    if (runtime_session_open(&s, &o)) {
        free(ids);
        return 1;
    }
    uint32_t vocab = fitlm_runtime_vocab(s.rt);
    int rc = 0;
    float *logits = NULL;
    uint32_t *order = NULL;
    if (n > fitlm_runtime_n_ctx(s.rt)) {
        rc = fitlm_die("%s: context overflow: %u ids do not fit the context size %u (use -c, up to the model's %u)",
                       o.model_path, n, fitlm_runtime_n_ctx(s.rt), s.model->hp.ctx_len);
        goto done;
    }
    logits = malloc((size_t)n * vocab * sizeof(float));
    if (!logits) {
        rc = fitlm_die("out of memory for %u x %u logits", n, vocab);
        goto done;
    }
    if (batch_one) {
        for (uint32_t t = 0; t < n && rc == 0; t++)
            if (fitlm_runtime_eval(s.rt, ids + t, 1, logits + (size_t)t * vocab, true, &err)) rc = 1;
    } else if (fitlm_runtime_eval(s.rt, ids, n, logits, true, &err)) {
        rc = 1;
    }
    if (rc) {
        fitlm_error_print(&err);
        goto done;
    }
    order = malloc((size_t)vocab * sizeof *order);
    if (!order) {
        rc = fitlm_die("out of memory");
        goto done;
    }
    for (uint32_t t = 0; t < n; t++) print_position(t, ids[t], logits + (size_t)t * vocab, vocab, (int)top, order);
    if (o.memory_report) runtime_session_print_memory(&s, stderr);
done:
    free(order);
    free(logits);
    free(ids);
    runtime_session_close(&s);
    return rc;
}
