/* Placeholder until the 'quantize' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_quantize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'quantize' is not implemented yet");
}
