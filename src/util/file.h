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

/* Opens `path` for reading without ever blocking on it: O_NONBLOCK for the
 * open (a FIFO with no writer would block there), then fstat, and anything but
 * a regular file (FIFO, device, socket, directory) is refused with "PATH: not a
 * regular file"; then the descriptor is made blocking again. Returns the
 * descriptor (O_CLOEXEC; the caller closes it) or -1 with err set. */
int fitlm_file_open_regular(const char *path, fitlm_error *err);

/* A function the SIGINT/SIGTERM/SIGHUP handlers of this module call (after
 * removing temporary outputs, before dying of the signal): e.g. a distributed
 * run saying which rank was stopped. It must be async-signal-safe. NULL: none. */
void fitlm_file_set_signal_note(void (*note)(int sig));

/* fitlm_file_open_regular as a stdio stream ("rb"); the caller fcloses it. */
FILE *fitlm_file_fopen_regular(const char *path, fitlm_error *err);

/* 1 if something exists at path (stat; opens nothing, never blocks). */
int fitlm_file_exists(const char *path);

/* Maps `path` read-only (a regular file only, see fitlm_file_open_regular). Returns a new object the caller frees with
 * fitlm_file_unmap(), or NULL with err set ("PATH: reason"). */
fitlm_mapped_file *fitlm_file_map(const char *path, fitlm_error *err);
void fitlm_file_unmap(fitlm_mapped_file *f);

/* Reads a whole (small) regular file into a NUL-terminated malloc'd buffer the
 * caller frees. Refuses non-regular files and files larger than max_bytes. *len_out (optional) gets the size. */
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
