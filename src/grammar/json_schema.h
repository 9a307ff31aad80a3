/* JSON Schema -> GBNF (grammar.h): a grammar whose sentences are exactly
 * JSON texts that validate against the schema (for the subset supported).
 *
 * Supported: "type" (a name or an array of names: object, array, string,
 * number, integer, boolean, null), "properties", "required",
 * "additionalProperties" (false, true or a schema: with "properties" only the
 * listed properties are generated, which every value of additionalProperties
 * allows; without them, any keys with values of that schema), "items",
 * "minItems"/"maxItems", "minLength"/"maxLength", "enum", "const", "anyOf",
 * local "$ref"s to "#/$defs/NAME" or "#/definitions/NAME" (recursion allowed),
 * and the boolean schemas true/false. Annotations ("title", "description",
 * "default", "examples", "$schema", "$id", "$comment", "format"-free
 * metadata) are ignored.
 *
 * Refused with an error, since the output could then not be guaranteed to
 * validate: "pattern", "format", "minimum"/"maximum" and their exclusive
 * forms, "multipleOf", "oneOf", "allOf", "not", "if"/"then"/"else",
 * "prefixItems", "uniqueItems", "contains", "patternProperties",
 * "propertyNames", "minProperties"/"maxProperties", "dependentRequired",
 * "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", any other
 * "$ref", an unknown "type", a schema nested deeper than
 * FITLM_JSON_SCHEMA_MAX_DEPTH, more than FITLM_JSON_SCHEMA_MAX_NODES
 * subschemas, and lengths/counts above FITLM_GRAMMAR_MAX_REPEAT.
 *
 * The generated text has no whitespace before the value and none after it
 * (so an object or array ends the output); inside, at most one space or a
 * newline and up to 20 spaces/tabs between tokens. Properties appear in the
 * schema's order. Numbers have at most 16 integer digits, 16 fraction digits
 * and a 2-digit exponent.
 */
#ifndef FITLM_GRAMMAR_JSON_SCHEMA_H
#define FITLM_GRAMMAR_JSON_SCHEMA_H

#include <stddef.h>

#include "util/error.h"

#define FITLM_JSON_SCHEMA_MAX_DEPTH 64
#define FITLM_JSON_SCHEMA_MAX_NODES 10000
#define FITLM_JSON_SCHEMA_MAX_BYTES (1u << 20)

/* GBNF for the JSON schema in text (len bytes). Returns a malloc'd
 * NUL-terminated string the caller frees, or NULL with err set to
 * "JSON schema: reason" (with the JSON pointer of the offending subschema). */
char *fitlm_json_schema_to_gbnf(const char *text, size_t len, fitlm_error *err);

/* The compiled grammar of a JSON schema (the two steps above). Caller frees
 * with fitlm_grammar_free(); NULL with err. */
struct fitlm_grammar;
struct fitlm_grammar *fitlm_json_schema_grammar(const char *text, size_t len, fitlm_error *err);

/* GBNF for any JSON object (response_format {"type": "json_object"}); a
 * static string. */
const char *fitlm_json_object_gbnf(void);

#endif
