/* Token masks: which tokens of a vocabulary may come next under a grammar.
 *
 * fitlm_token_trie holds every token's text (its decoded bytes, as the
 * output text shows them) in a prefix trie laid out in depth-first order.
 * A mask walks the trie from the matcher's position, stepping the grammar
 * over one byte per trie node and skipping a whole subtree as soon as its
 * prefix cannot continue the output: far less work than vocab x token
 * length. Masks of positions seen before come from a small cache.
 *
 * Control tokens never match text. End-of-generation tokens are allowed only
 * where the grammar may end; where it must end, the constraint reports the
 * output complete (the engine then stops with finish_reason "stop").
 */
#ifndef FITLM_GRAMMAR_TOKEN_MASK_H
#define FITLM_GRAMMAR_TOKEN_MASK_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct fitlm_token_trie fitlm_token_trie;

/* Builds the trie of tok's tokens (tok is not referenced afterwards). The
 * result is immutable: many constraints on many threads may share it. Caller
 * frees with fitlm_token_trie_free(). NULL with err when out of memory. */
fitlm_token_trie *fitlm_token_trie_new(const fitlm_tokenizer *tok, fitlm_error *err);
void fitlm_token_trie_free(fitlm_token_trie *t);
int32_t fitlm_token_trie_vocab(const fitlm_token_trie *t);
uint32_t fitlm_token_trie_nodes(const fitlm_token_trie *t);

/* A grammar's state over tokens: a matcher, its position, cached masks. */
typedef struct fitlm_token_matcher fitlm_token_matcher;

/* Takes ownership of g (freed with the matcher); trie is borrowed and must
 * outlive it. Caller frees with fitlm_token_matcher_free(). NULL with err
 * (out of memory, or a grammar that matches nothing). */
fitlm_token_matcher *fitlm_token_matcher_new(fitlm_grammar *g, const fitlm_token_trie *trie, fitlm_error *err);
void fitlm_token_matcher_free(fitlm_token_matcher *m);

/* Computes the tokens allowed next into allowed (vocab bits, bit i of
 * allowed[i/64]; the buffer is owned by the matcher, valid until the next
 * call). Returns the number of allowed tokens (0: nothing can follow). */
uint32_t fitlm_token_matcher_allowed(fitlm_token_matcher *m, const uint64_t **allowed);
/* Sets the logits of tokens not allowed to -INFINITY (vocab: entries in
 * logits; ids beyond the trie's vocabulary are masked). Returns the number
 * of allowed tokens. */
uint32_t fitlm_token_matcher_mask(fitlm_token_matcher *m, float *logits, uint32_t vocab);
/* Advances over token id. Returns 1 when the output is now complete (the
 * grammar must end here, or id ends generation where the grammar may end),
 * 0 when more may follow, -1 when id cannot come next (state unchanged). */
int fitlm_token_matcher_accept(fitlm_token_matcher *m, int32_t id);
/* The output so far is a whole sentence of the grammar. */
bool fitlm_token_matcher_can_end(const fitlm_token_matcher *m);

/* An engine constraint (engine/engine.h) over the matcher: mask() as above,
 * accept() true when complete. Takes ownership of m: the engine frees it
 * through free_state once the request was submitted (see fitlm_request). */
fitlm_token_constraint fitlm_token_matcher_constraint(fitlm_token_matcher *m);

#endif
