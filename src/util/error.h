/* Error reporting shared by every module.
 *
 * Functions that can fail take a `fitlm_error *err` (may be NULL) as their last
 * argument, return 0 / a valid pointer on success and -1 / NULL on failure, and
 * on failure write a one-line human message into err->msg. The CLI prints it as
 * "fitlm: error: <msg>" and exits with status 1.
 */
#ifndef FITLM_UTIL_ERROR_H
#define FITLM_UTIL_ERROR_H

#include <stdarg.h>

/* Also defined, identically, in the public include/fitlm.h. */
#ifndef FITLM_ERROR_DEFINED
#define FITLM_ERROR_DEFINED
typedef struct fitlm_error {
    char msg[1024];
} fitlm_error;
#endif

#if defined(__GNUC__)
#define FITLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FITLM_PRINTF(a, b)
#endif

/* Sets err->msg (if err is non-NULL). Always returns -1 so callers can write
 * `return fitlm_fail(err, "...")`. */
int fitlm_fail(fitlm_error *err, const char *fmt, ...) FITLM_PRINTF(2, 3);
int fitlm_vfail(fitlm_error *err, const char *fmt, va_list ap);

/* Prepends "prefix: " to an existing message (e.g. the file name). */
void fitlm_error_prefix(fitlm_error *err, const char *prefix);

/* Prints "fitlm: error: <msg>\n" to stderr. */
void fitlm_error_print(const fitlm_error *err);

/* Prints "fitlm: error: <formatted>\n" to stderr and returns 1 (an exit code). */
int fitlm_die(const char *fmt, ...) FITLM_PRINTF(1, 2);

#endif
