/* Strictness checks on parsed JSON (cJSON) that the parser does not make. */
#ifndef FITLM_FORMAT_JSON_STRICT_H
#define FITLM_FORMAT_JSON_STRICT_H

#include <cjson/cJSON.h>

#include "util/error.h"

/* Refuses an object (at any depth) that names a key twice: cJSON's lookups
 * return the first, Python's json and serde keep the last, so two tools would
 * read two different files. Linear time (a keyed hash set per object).
 * what: the file, for the message ("config.json: key 'hidden_size' appears
 * twice (in the top-level object)"). 0 or -1 with err. */
int fitlm_json_check_unique_keys(const cJSON *root, const char *what, fitlm_error *err);

#endif
