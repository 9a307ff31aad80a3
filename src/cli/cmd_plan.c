/* Placeholder until the 'plan' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_plan(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'plan' is not implemented yet");
}
