/* Placeholder until the 'detokenize' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_detokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'detokenize' is not implemented yet");
}
