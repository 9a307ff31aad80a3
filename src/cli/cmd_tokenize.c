/* Placeholder until the 'tokenize' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'tokenize' is not implemented yet");
}
