/* fitlm_fake_serve: `fitlm serve` over the test double of the engine
 * (fake_engine.c) for the HTTP layer's tests. Same arguments as fitlm serve
 * (the model is opened as usual: its tokenizer is used, its weights are not). */
#include "cli/commands.h"

int main(int argc, char **argv) { return cmd_serve(argc, argv); }
