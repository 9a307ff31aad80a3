/* Placeholder until the 'perplexity' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'perplexity' is not implemented yet");
}
