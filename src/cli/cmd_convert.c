/* Placeholder until the 'convert' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_convert(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'convert' is not implemented yet");
}
