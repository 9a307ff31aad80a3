/* fitlm convert IN OUT [--to gguf|hf] [--type f32|f16|bf16]
 * Converts any loadable model (llama2.c, GGUF with float tensors, HF folder) to a
 * GGUF file or a Hugging Face folder; see src/model/convert.h for the q/k row
 * permutation between RoPE layouts. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "format/ggml_type.h"
#include "model/convert.h"
#include "model/model.h"

static void usage(FILE *out) {
    fprintf(out, "usage: fitlm convert IN OUT [--to gguf|hf] [--type f32|f16|bf16]\n"
                 "  IN           a GGUF file, a Hugging Face folder or a llama2.c checkpoint\n"
                 "  OUT          the GGUF file or the (new) Hugging Face folder to write\n"
                 "  --to FORMAT  gguf (default, or when OUT ends in .gguf) or hf\n"
                 "  --type TYPE  store weight matrices as f32, f16 or bf16 (default: keep)\n");
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *to = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--to") || !strcmp(argv[i], "--type")) {
            if (i + 1 >= argc) return fitlm_die("convert: %s needs a value", argv[i]);
            if (!strcmp(argv[i], "--to")) to = argv[++i];
            else type = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "fitlm: error: convert: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return fitlm_die("convert: unexpected argument '%s'", argv[i]);
    }
    if (!in || !out) {
        usage(stderr);
        return 1;
    }
    fitlm_convert_opts o = {FITLM_FORMAT_GGUF, FITLM_TYPE_INVALID};
    if (to) {
        if (!strcmp(to, "gguf")) o.to = FITLM_FORMAT_GGUF;
        else if (!strcmp(to, "hf") || !strcmp(to, "safetensors")) o.to = FITLM_FORMAT_SAFETENSORS;
        else return fitlm_die("convert: --to must be gguf or hf, not '%s'", to);
    }
    if (type) {
        o.type = fitlm_type_from_name(type);
        if (o.type != FITLM_TYPE_F32 && o.type != FITLM_TYPE_F16 && o.type != FITLM_TYPE_BF16)
            return fitlm_die("convert: --type must be f32, f16 or bf16, not '%s'", type);
    }
    fitlm_error err = {{0}};
    fitlm_model *m = fitlm_model_load(in, &err);
    if (!m) {
        fitlm_error_print(&err);
        return 1;
    }
    int rc = fitlm_model_convert(m, out, &o, &err);
    if (rc != 0) {
        fitlm_error_prefix(&err, out);
        fitlm_error_print(&err);
    } else {
        fprintf(stderr, "fitlm: wrote %s (%s, %zu tensors)\n", out, o.to == FITLM_FORMAT_GGUF ? "GGUF" : "Hugging Face folder",
                m->n_tensors);
    }
    fitlm_model_free(m);
    return rc ? 1 : 0;
}
