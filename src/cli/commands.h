/* The subcommands of the fitlm program. Each takes the arguments after its own
 * name (argv[0] is the subcommand name) and returns the process exit status:
 * 0 on success, 1 on error (after printing "fitlm: error: ..." to stderr). */
#ifndef FITLM_CLI_COMMANDS_H
#define FITLM_CLI_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
#ifdef FITLM_HAVE_SERVE
int cmd_serve(int argc, char **argv); /* only when libmicrohttpd was found */
#endif

#endif
