/* Helpers for differential tests that ask an outside reference (python, node)
 * to tokenize the same strings: record files and reading its answers. */
#ifndef FITLM_TESTS_REFIO_H
#define FITLM_TESTS_REFIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Appends one record (uint32 LE length + bytes) to f. */
void refio_write_record(FILE *f, const char *s, size_t n);

/* Parses one line "R id id ..." (R = flag written by the reference) from *p,
 * advancing it. ids (malloc'd, caller frees) and n get the ids. Returns the
 * flag, or -1 at the end of the text. */
int refio_read_line(char **p, int32_t **ids, size_t *n);

/* Runs a shell command; returns its exit status (or -1). */
int refio_run(const char *cmd);

#endif
