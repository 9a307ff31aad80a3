/* Files: read-only memory maps and crash-safe output (temp file + rename). */
#ifndef FITLM_UTIL_FILE_H
#define FITLM_UTIL_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

/* A read-only mapping of a whole file. `data` is NULL for an empty file. */
typedef struct fitlm_mapped_file {
    char *path;          /* owned copy of the path */
    const uint8_t *data; /* mapping (PROT_READ) */
    uint64_t size;       /* file size in bytes */
} fitlm_mapped_file;

/* Maps `path` read-only. Returns a new object the caller frees with
 * fitlm_file_unmap(), or NULL with err set ("PATH: reason"). */
fitlm_mapped_file *fitlm_file_map(const char *path, fitlm_error *err);
void fitlm_file_unmap(fitlm_mapped_file *f);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer the caller
 * frees. Refuses files larger than max_bytes. *len_out (optional) gets the size. */
char *fitlm_file_read_all(const char *path, size_t max_bytes, size_t *len_out, fitlm_error *err);

/* Atomic output: opens "<path>.tmp.<pid>" for writing. On success call
 * fitlm_atomic_commit() (fclose + rename onto path); on failure call
 * fitlm_atomic_abort() (fclose + unlink). Both free the object. */
typedef struct fitlm_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} fitlm_atomic_file;

fitlm_atomic_file *fitlm_atomic_open(const char *path, fitlm_error *err);
int fitlm_atomic_commit(fitlm_atomic_file *f, fitlm_error *err);
void fitlm_atomic_abort(fitlm_atomic_file *f);

/* 1 if path is a directory, 0 otherwise. */
int fitlm_is_dir(const char *path);

/* Joins dir + "/" + name into a malloc'd string (caller frees). */
char *fitlm_path_join(const char *dir, const char *name);

#endif
