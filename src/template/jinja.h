/* A Jinja interpreter for the subset chat templates use, with the settings
 * Hugging Face's apply_chat_template renders with: trim_blocks, lstrip_blocks,
 * the loopcontrols extension (break/continue), an immutable sandbox (no
 * attribute starting with "_", no mutating method on lists or dicts, range()
 * capped at 100000 items), `tojson` as json.dumps(x, ensure_ascii=False, ...),
 * and the globals raise_exception(msg) and strftime_now(fmt).
 *
 * A template is parsed once (jinja_parse) into an immutable tree that may be
 * rendered any number of times, from several threads at once. Each render gets
 * its variables from a jinja_vars (the values, and the memory every value
 * created during the render lives in), which belongs to one render at a time.
 *
 * Every render is bounded (jinja_limits): output size, memory, evaluation
 * steps, call/nesting depth. Hitting a bound is an error, never a crash.
 * See docs/templates.md for the language subset and its Python semantics. */
#ifndef FITLM_TEMPLATE_JINJA_H
#define FITLM_TEMPLATE_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct jinja_template jinja_template;
typedef struct jinja_vars jinja_vars;

typedef struct jinja_limits {
    size_t max_output;  /* bytes of rendered text (also of one string value) */
    size_t max_memory;  /* bytes allocated for values during one render, in all */
    uint64_t max_steps; /* expression and statement evaluations */
    int max_depth;      /* nested evaluations (macro recursion, nested expressions) */
} jinja_limits;

/* The defaults: 16 MiB output, 64 MiB memory, 5 million steps, depth 400. */
jinja_limits jinja_default_limits(void);

/* Parses a template (UTF-8; "\r\n" and "\r" read as "\n"; one trailing newline
 * dropped, as Jinja does). Returns a tree the caller frees with
 * jinja_template_free(), or NULL with err ("line N: reason"). The source is
 * copied: it may be freed after the call. */
jinja_template *jinja_parse(const char *src, size_t len, fitlm_error *err);
void jinja_template_free(jinja_template *t);

/* Variables for one render. `limits` NULL = jinja_default_limits(). Returns a
 * new object the caller frees with jinja_vars_free() (after the render: the
 * rendered text is a separate malloc'd buffer and stays valid), or NULL when
 * out of memory. */
jinja_vars *jinja_vars_new(const jinja_limits *limits);
void jinja_vars_free(jinja_vars *v);

/* Binds `name` to the value of a JSON text (objects keep their key order,
 * integers stay integers and 1.0 stays a float, as Python's json.loads reads
 * them). Returns 0, or -1 with err (malformed JSON: "offset N: reason"). */
int jinja_vars_set_json(jinja_vars *v, const char *name, const char *json, size_t len, fitlm_error *err);
/* Binds every key of a JSON object as a variable (extra keyword arguments). */
int jinja_vars_set_json_object(jinja_vars *v, const char *json, size_t len, fitlm_error *err);
int jinja_vars_set_string(jinja_vars *v, const char *name, const char *s, size_t len, fitlm_error *err);
int jinja_vars_set_bool(jinja_vars *v, const char *name, bool b, fitlm_error *err);
int jinja_vars_set_none(jinja_vars *v, const char *name, fitlm_error *err);

/* Renders `t` with `v` (which must not have been used for another render).
 * Returns the text, NUL-terminated (*len_out gets its length without the NUL),
 * malloc'd: the caller frees it. On error returns NULL with err; when the
 * template itself failed with raise_exception(msg), err->msg is exactly msg and
 * *raised (optional) is set to true. */
char *jinja_render(const jinja_template *t, jinja_vars *v, size_t *len_out, bool *raised, fitlm_error *err);

/* strftime_now() renders the current local time, or, when the environment
 * variable FITLM_TEMPLATE_NOW holds a number of seconds since 1970, that time
 * in UTC (for reproducible renders and tests). */
#define JINJA_NOW_ENV "FITLM_TEMPLATE_NOW"

#endif
