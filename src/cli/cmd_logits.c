/* Placeholder until the 'logits' command lands. */
#include "cli/commands.h"
#include "util/error.h"

int cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return fitlm_die("'logits' is not implemented yet");
}
