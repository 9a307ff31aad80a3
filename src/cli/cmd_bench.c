/* Placeholder until the 'bench' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'bench' is not implemented yet");
}
