/* Shared by the tokenizer commands: the required model and its tokenizer. */
#include "cli/tokenizer_opts.h"

#include "util/error.h"

fitlm_tokenizer *tokenizer_opts_open(const char *cmd, const char *model, void (*usage)(FILE *out)) {
    if (!model) {
        usage(stderr);
        fitlm_die("%s: -m MODEL is required", cmd);
        return NULL;
    }
    fitlm_error err = {{0}};
    fitlm_tokenizer *tok = fitlm_tokenizer_load(model, &err);
    if (!tok) fitlm_error_print(&err);
    return tok;
}
