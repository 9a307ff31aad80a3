/* Placeholder until the 'run' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'run' is not implemented yet");
}
