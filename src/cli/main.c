/* fitlm: plan, run and measure LLaMA-family models. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "parallel/comm.h"
#include "parallel/parallel.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command k_commands[] = {
    {"plan", cmd_plan, "memory, time, cost and the best GPU layout for a model (inference or training)"},
    {"inspect", cmd_inspect, "describe a model file or folder (GGUF, Hugging Face, llama2.c)"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text"},
    {"run", cmd_run, "generate text"},
    {"logits", cmd_logits, "teacher-forced logits per position (for checking against references)"},
    {"perplexity", cmd_perplexity, "perplexity of a model over a text file"},
    {"quantize", cmd_quantize, "write a quantized GGUF (Q8_0, Q4_0, Q4_K, Q6_K, Q4_K_M)"},
    {"convert", cmd_convert, "convert a model between GGUF, Hugging Face safetensors and llama2.c"},
    {"template", cmd_template, "render a conversation with a chat template (the model's own Jinja, or a file)"},
    {"bench", cmd_bench, "prompt-processing and generation speed, bandwidth"},
    {"calibrate", cmd_calibrate, "measure this machine for the planner's cost model (writes a host profile)"},
    {"devices", cmd_devices, "the devices --device accepts (CPU, Vulkan GPUs)"},
#ifdef FITLM_HAVE_SERVE
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (continuous batching, paged KV cache)"},
#endif
};

static void usage(FILE *out) {
    fprintf(out, "usage: fitlm COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(out, "  %-11s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(out, "\nRun 'fitlm COMMAND --help' for the options of a command.\n");
}

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("fitlm 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(cmd, k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "fitlm: error: unknown command '%s' (see 'fitlm --help')\n", cmd);
    return 1;
}

int main(int argc, char **argv) {
    /* under mpirun every rank runs the same command line (parallel/parallel.h) */
    fitlm_error err = {{0}};
    if (fitlm_comm_world_init(&argc, &argv, &err)) {
        fitlm_error_print(&err);
        return fitlm_comm_world_finalize(1);
    }
    int rc = run_command(argc, argv);
    /* a rank that served another rank's steps exits with its serving status */
    if (fitlm_parallel_worker_status() >= 0) rc = fitlm_parallel_worker_status();
    return fitlm_comm_world_finalize(rc);
}
