/* Grammars for constrained generation (structured output).
 *
 *     GBNF text  --fitlm_grammar_parse-->  fitlm_grammar (compiled, immutable)
 *     JSON schema --fitlm_json_schema_to_gbnf (json_schema.h)--> GBNF text
 *     fitlm_grammar + token trie --fitlm_grammar_constraint_new (token_mask.h)-->
 *         an engine constraint that masks tokens which cannot continue a
 *         valid output
 *
 * The grammar language is the GBNF of llama.cpp (docs/structured-output.md):
 *
 *     root   ::= "{" ws pair ("," ws pair)* "}"     # comments run to the end of a line
 *     pair   ::= [a-z]+ ":" ws [0-9]{1,3}
 *     ws     ::= [ \t\n]*
 *
 * rules `name ::= alternatives` (names of letters, digits, '-' and '_'),
 * alternatives separated by '|', sequences of: "literals" (escapes \n \r \t
 * \\ \" \' \[ \] \xHH \uHHHH \UHHHHHHHH), character classes [a-z_] and [^...]
 * over Unicode code points, '.' (any character), rule names, ( groups ), and
 * the postfix operators * + ? {m} {m,} {m,n}. A rule ends where the next
 * `name ::=` begins. The start rule is "root".
 *
 * A compiled grammar is immutable and may be shared by many matchers on many
 * threads. Limits (refused with an error, never a giant allocation): the text
 * at most FITLM_GRAMMAR_MAX_TEXT bytes, FITLM_GRAMMAR_MAX_ELEMS elements after
 * repetitions are expanded, FITLM_GRAMMAR_MAX_RULES rules, nesting of groups
 * at most FITLM_GRAMMAR_MAX_NEST. Left recursion (a rule that can reach itself
 * without consuming a character) and rules that can never finish are errors.
 */
#ifndef FITLM_GRAMMAR_GRAMMAR_H
#define FITLM_GRAMMAR_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define FITLM_GRAMMAR_MAX_TEXT (1u << 20)
#define FITLM_GRAMMAR_MAX_ELEMS (1u << 20)
#define FITLM_GRAMMAR_MAX_RULES 65536
#define FITLM_GRAMMAR_MAX_NEST 64
#define FITLM_GRAMMAR_MAX_REPEAT 1000 /* the largest m or n of {m,n} */

typedef struct fitlm_grammar fitlm_grammar;

/* Parses and checks GBNF text (len bytes; need not be NUL-terminated).
 * Returns a grammar the caller frees with fitlm_grammar_free(), or NULL with
 * err set to "grammar: line L: reason". */
fitlm_grammar *fitlm_grammar_parse(const char *text, size_t len, fitlm_error *err);
void fitlm_grammar_free(fitlm_grammar *g);

/* Number of rules and elements (after repetitions are expanded). */
uint32_t fitlm_grammar_n_rules(const fitlm_grammar *g);
uint32_t fitlm_grammar_n_elems(const fitlm_grammar *g);

/* ---- matching text (the matcher works on bytes; characters are UTF-8) ---- */

typedef struct fitlm_grammar_matcher fitlm_grammar_matcher;

/* A matcher at the start of g (borrowed: g must outlive it). Caller frees
 * with fitlm_grammar_matcher_free(). NULL only when out of memory. */
fitlm_grammar_matcher *fitlm_grammar_matcher_new(const fitlm_grammar *g);
void fitlm_grammar_matcher_free(fitlm_grammar_matcher *m);

/* The matcher's position, as an opaque value: positions compare equal iff
 * the same texts may follow them. FITLM_GRAMMAR_DEAD: no text is valid. */
typedef uint64_t fitlm_grammar_state;
#define FITLM_GRAMMAR_DEAD UINT64_MAX

/* The start position. */
fitlm_grammar_state fitlm_grammar_start(fitlm_grammar_matcher *m);
/* The position after byte b (FITLM_GRAMMAR_DEAD when b cannot come next).
 * Memoized: a transition computed once costs one hash lookup afterwards. */
fitlm_grammar_state fitlm_grammar_step(fitlm_grammar_matcher *m, fitlm_grammar_state s, uint8_t b);
/* The position after n bytes (DEAD if any cannot come next). */
fitlm_grammar_state fitlm_grammar_step_bytes(fitlm_grammar_matcher *m, fitlm_grammar_state s, const char *p,
                                             size_t n);
/* The text so far is a whole sentence of the grammar (it may end here). */
bool fitlm_grammar_can_end(fitlm_grammar_matcher *m, fitlm_grammar_state s);
/* Nothing more may follow: the text must end here. */
bool fitlm_grammar_must_end(fitlm_grammar_matcher *m, fitlm_grammar_state s);

/* Whole-text check: s is a sentence of g. */
bool fitlm_grammar_matches(const fitlm_grammar *g, const char *s, size_t n);

/* The matcher's memo tables grow with the positions it visits. Entries in
 * them (nodes, sets, transitions). */
uint64_t fitlm_grammar_memo_size(const fitlm_grammar_matcher *m);
#define FITLM_GRAMMAR_MEMO_LIMIT (1u << 22)
/* When the tables hold more than FITLM_GRAMMAR_MEMO_LIMIT entries, rebuilds
 * them around position s alone and returns s's new value (every other state
 * value is invalid afterwards); otherwise returns s. */
fitlm_grammar_state fitlm_grammar_gc(fitlm_grammar_matcher *m, fitlm_grammar_state s);

#endif
