/* Tokenizers: text <-> token ids for LLaMA-family models.
 *
 * Two algorithms, selected by the vocabulary:
 *   FITLM_TOK_SPM  "llama": SentencePiece BPE. Text is escaped (' ' -> U+2581 "▁",
 *                  optional dummy prefix), then adjacent pieces are merged by the
 *                  highest vocabulary score; unknown characters fall back to
 *                  <0xNN> byte tokens.
 *   FITLM_TOK_BPE  "gpt2": byte-level BPE. Text is split by a pre-tokenizer
 *                  (PCRE2 regexes chosen by tokenizer.ggml.pre), each piece's
 *                  bytes are mapped to printable code points, and pairs are
 *                  merged by merge rank. A Hugging Face tokenizer.json whose
 *                  BPE is not byte-level (Llama-2 style, "▁" + byte fallback)
 *                  also loads as FITLM_TOK_BPE with char-level symbols.
 * Special tokens (control and user-defined) are split out of the text before the
 * algorithm runs; see fitlm_tokenizer_encode. docs/tokenizers.md has the details.
 *
 * A loaded tokenizer is immutable: every function taking `const fitlm_tokenizer *`
 * may be called from several threads at once.
 */
#ifndef FITLM_TOKENIZER_TOKENIZER_H
#define FITLM_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "util/error.h"

typedef struct fitlm_tokenizer fitlm_tokenizer;

typedef enum fitlm_tokenizer_type {
    FITLM_TOK_SPM = 1, /* tokenizer.ggml.model "llama" */
    FITLM_TOK_BPE = 2, /* tokenizer.ggml.model "gpt2" (and HF tokenizer.json BPE) */
} fitlm_tokenizer_type;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
typedef enum fitlm_token_type {
    FITLM_TOKEN_UNDEFINED = 0,
    FITLM_TOKEN_NORMAL = 1,
    FITLM_TOKEN_UNKNOWN = 2,
    FITLM_TOKEN_CONTROL = 3,
    FITLM_TOKEN_USER_DEFINED = 4,
    FITLM_TOKEN_UNUSED = 5,
    FITLM_TOKEN_BYTE = 6,
} fitlm_token_type;

/* ---- loading ---- */

/* Loads a tokenizer from a GGUF file (only the tokenizer.ggml.* metadata is
 * read; a vocab-only file without tensors works), a Hugging Face folder
 * (tokenizer.json + optional tokenizer_config.json) or a tokenizer.json file.
 * Returns an object the caller frees with fitlm_tokenizer_free(), or NULL with
 * err set to "PATH: reason". */
fitlm_tokenizer *fitlm_tokenizer_load(const char *path, fitlm_error *err);

/* Builds a tokenizer from an already opened GGUF file's metadata. The result
 * copies what it needs and does not reference `g` afterwards. Caller frees with
 * fitlm_tokenizer_free(). On error returns NULL, err has the reason (no path). */
fitlm_tokenizer *fitlm_tokenizer_from_gguf(const fitlm_gguf *g, fitlm_error *err);

/* Builds a tokenizer from the text of a tokenizer.json and, optionally (may be
 * NULL), of a tokenizer_config.json (add_bos_token, add_eos_token, bos_token,
 * eos_token, chat_template). Caller frees with fitlm_tokenizer_free(). */
fitlm_tokenizer *fitlm_tokenizer_from_hf_json(const char *tokenizer_json, size_t len, const char *config_json,
                                              fitlm_error *err);

/* The tokenizer of a loaded model: its GGUF metadata, or tokenizer.json in its
 * Hugging Face folder. llama2.c checkpoints carry no vocabulary: error. Caller
 * frees with fitlm_tokenizer_free(); err gets "PATH: reason". */
struct fitlm_model;
fitlm_tokenizer *fitlm_tokenizer_for_model(const struct fitlm_model *m, fitlm_error *err);

void fitlm_tokenizer_free(fitlm_tokenizer *t);

/* ---- encoding ---- */

/* Tokenizes `len` bytes of `text` (UTF-8; invalid bytes are accepted: SPM turns
 * each into U+FFFD as SentencePiece does, byte-level BPE keeps the raw bytes).
 *   add_special:   prepend BOS / append EOS as the vocabulary asks
 *                  (fitlm_tokenizer_add_bos/add_eos).
 *   parse_special: recognise control tokens (e.g. "<|begin_of_text|>", "<s>")
 *                  written in the text. User-defined tokens are always
 *                  recognised (as llama.cpp does).
 * On success *out is a malloc'd array of *n ids (the caller frees it; it may be
 * NULL when *n is 0) and 0 is returned; on failure -1 with err set. */
int fitlm_tokenizer_encode(const fitlm_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                           int32_t **out, size_t *n, fitlm_error *err);

/* ---- decoding ---- */

/* The bytes token `id` stands for: "▁" becomes ' ', <0xNN> the byte NN, byte-level
 * code points their bytes. Control tokens give their text if render_special,
 * otherwise nothing. Returns a pointer owned by the tokenizer (not NUL-terminated)
 * and its length in *len, or NULL if id is out of range. */
const char *fitlm_tokenizer_piece(const fitlm_tokenizer *t, int32_t id, bool render_special, size_t *len);

/* Decodes a whole sequence. For SPM vocabularies with a dummy prefix the one
 * leading space of the first text token (at the start, or right after BOS) is
 * removed, as SentencePiece / Hugging Face do, so decode(encode(x)) == x.
 * Returns a malloc'd NUL-terminated buffer (caller frees) with its length in
 * *out_len (optional), or NULL with err set if an id is out of range. */
char *fitlm_tokenizer_decode(const fitlm_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                             size_t *out_len, fitlm_error *err);

/* Streaming decoder for generation: feed ids one at a time and get the bytes
 * that are ready. An incomplete UTF-8 sequence at the end is held back until it
 * completes (bytes that can never complete a sequence are released at once), so
 * every chunk ends on a character boundary. The concatenation of all chunks
 * plus fitlm_detok_stream_flush() equals fitlm_tokenizer_decode() of the same ids. */
typedef struct fitlm_detok_stream fitlm_detok_stream;

/* Returns a new stream the caller frees with fitlm_detok_stream_free(); the
 * tokenizer must outlive it. NULL only on allocation failure. */
fitlm_detok_stream *fitlm_detok_stream_new(const fitlm_tokenizer *t, bool render_special);
/* Marks the stream as continuing text that came before it (a completion of a
 * prompt): the first token's leading space is kept, as it would be inside a
 * whole decode of prompt + completion. Call before the first push. */
void fitlm_detok_stream_continue(fitlm_detok_stream *s);
/* Feeds one id. On success *out and *out_len get the bytes now ready (possibly 0);
 * the pointer is owned by the stream and valid until the next call. Returns -1
 * with err set if id is out of range (the stream is unchanged). */
int fitlm_detok_stream_push(fitlm_detok_stream *s, int32_t id, const char **out, size_t *out_len, fitlm_error *err);
/* Releases whatever is held back (an unfinished sequence at the very end). */
void fitlm_detok_stream_flush(fitlm_detok_stream *s, const char **out, size_t *out_len);
void fitlm_detok_stream_free(fitlm_detok_stream *s);

/* ---- accessors ---- */

fitlm_tokenizer_type fitlm_tokenizer_get_type(const fitlm_tokenizer *t);
/* "llama" or "gpt2" (the GGUF tokenizer.ggml.model value). */
const char *fitlm_tokenizer_model_name(const fitlm_tokenizer *t);
/* Pre-tokenizer name ("default", "gpt-2", "llama-bpe", "qwen2", ..., "hf-json"). */
const char *fitlm_tokenizer_pre_name(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_vocab_size(const fitlm_tokenizer *t);
/* Special ids, -1 when the vocabulary has none. */
int32_t fitlm_tokenizer_bos(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_eos(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_eot(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_pad(const fitlm_tokenizer *t);
int32_t fitlm_tokenizer_unk(const fitlm_tokenizer *t);
bool fitlm_tokenizer_add_bos(const fitlm_tokenizer *t);
bool fitlm_tokenizer_add_eos(const fitlm_tokenizer *t);
/* Token type (FITLM_TOKEN_*) or -1 if id is out of range. */
int fitlm_tokenizer_token_type(const fitlm_tokenizer *t, int32_t id);
bool fitlm_tokenizer_is_control(const fitlm_tokenizer *t, int32_t id);
/* End of generation: EOS, EOT, EOM and the usual end-of-turn control tokens. */
bool fitlm_tokenizer_is_eog(const fitlm_tokenizer *t, int32_t id);
/* The vocabulary string of a token (as stored: "▁the", "Ġthe", "<0x0A>"),
 * NUL-terminated, owned by the tokenizer; NULL if out of range. */
const char *fitlm_tokenizer_token_text(const fitlm_tokenizer *t, int32_t id);
/* Id of an exact vocabulary string, -1 if absent. */
int32_t fitlm_tokenizer_find(const fitlm_tokenizer *t, const char *text, size_t len);
/* tokenizer.chat_template / tokenizer_config.json chat_template, or NULL. */
const char *fitlm_tokenizer_chat_template(const fitlm_tokenizer *t);

#endif
