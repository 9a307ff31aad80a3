/* Placeholder until the 'inspect' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'inspect' is not implemented yet");
}
