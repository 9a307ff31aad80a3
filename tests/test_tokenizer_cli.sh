#!/usr/bin/env bash
# fitlm tokenize / detokenize from the command line: ids on one line, BOS/EOS
# flags, special-token parsing, round trips through both commands for every
# shared vocabulary, a Hugging Face folder, and errors ("fitlm: error: FILE:
# reason", exit status 1).
set -u
fail=0
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: expected '$2', got '$3'"; fail=1; fi
}
V="$FITLM_SHARED/data/vocab"
SPM="$V/ggml-vocab-llama-spm.gguf"
T="$FITLM_TMP/cli"
mkdir -p "$T"

check "tokenize adds BOS" "1 15043 3186" "$(printf 'Hello world' | "$FITLM_BIN" tokenize -m "$SPM")"
check "tokenize --no-special" "15043 3186" "$(printf 'Hello world' | "$FITLM_BIN" tokenize -m "$SPM" --no-special)"
check "tokenize -p" "15043 3186" "$("$FITLM_BIN" tokenize -m "$SPM" --no-special -p 'Hello world')"
check "empty input gives an empty line" "" "$(printf '' | "$FITLM_BIN" tokenize -m "$SPM" --no-special)"
check "empty line exists" "1" "$(printf '' | "$FITLM_BIN" tokenize -m "$SPM" --no-special | wc -l)"
check "parse special (default)" "1 15043" "$(printf '<s>Hello' | "$FITLM_BIN" tokenize -m "$SPM" --no-special)"
check "--no-parse-special" "529 29879 29958 10994" \
  "$(printf '<s>Hello' | "$FITLM_BIN" tokenize -m "$SPM" --no-special --no-parse-special)"
check "gpt-2 has no BOS by default" "15496 995" "$(printf 'Hello world' | "$FITLM_BIN" tokenize -m "$V/ggml-vocab-gpt-2.gguf")"
check "detokenize" "Hello world" "$(printf '1 15043\n 3186\n' | "$FITLM_BIN" detokenize -m "$SPM")"
check "detokenize accepts llama.cpp's [a, b] form" "Hello world" "$(printf '[1, 15043, 3186]' | "$FITLM_BIN" detokenize -m "$SPM")"
check "--pieces" "$(printf "1\t'<s>'\n15043\t' Hello'\n13\t'\\\\n'\n29871\t' '\n243\t'\\\\xF0'\n162\t'\\\\x9F'\n169\t'\\\\xA6'\n156\t'\\\\x99'")" \
  "$(printf 'Hello\n \xf0\x9f\xa6\x99' | "$FITLM_BIN" tokenize -m "$SPM" --pieces)"
check "detokenize --special" "<s>Hello world" "$(printf '1 15043 3186' | "$FITLM_BIN" detokenize -m "$SPM" --special)"

# round trip through both commands on every test input of every vocabulary
for v in llama-spm phi-3 gpt-2 deepseek-llm; do
  "$FITLM_BIN" tokenize -m "$V/ggml-vocab-$v.gguf" --no-special < "$V/ggml-vocab-$v.gguf.inp" > "$T/$v.ids" || fail=1
  "$FITLM_BIN" detokenize -m "$V/ggml-vocab-$v.gguf" < "$T/$v.ids" > "$T/$v.txt" || fail=1
  if cmp -s "$T/$v.txt" "$V/ggml-vocab-$v.gguf.inp"; then echo "ok: $v round trip"; else echo "FAIL: $v round trip"; fail=1; fi
done

# a Hugging Face folder
mkdir -p "$T/hf"
cat > "$T/hf/tokenizer.json" <<'JSON'
{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4},
 "merges": ["a b", "\u0120 ab"]}, "pre_tokenizer": {"type": "ByteLevel"},
 "added_tokens": [{"id": 5, "content": "<|bos|>", "special": true}]}
JSON
echo '{"bos_token": "<|bos|>", "add_bos_token": true}' > "$T/hf/tokenizer_config.json"
check "HF folder" "5 2 4" "$(printf 'ab ab' | "$FITLM_BIN" tokenize -m "$T/hf")"
check "HF tokenizer.json" "5 2 4" "$(printf 'ab ab' | "$FITLM_BIN" tokenize -m "$T/hf/tokenizer.json")"

# errors
err=$(printf '32000' | "$FITLM_BIN" detokenize -m "$SPM" 2>&1 >/dev/null); rc=$?
check "id out of range: status" "1" "$rc"
check "id out of range: message" "fitlm: error: $SPM: token id 32000 is out of range (vocabulary has 32000 tokens)" "$err"
err=$(printf '12 x7' | "$FITLM_BIN" detokenize -m "$SPM" 2>&1 >/dev/null); rc=$?
check "not a number" "1:fitlm: error: <stdin>: 'x7' is not a token id" "$rc:$err"
err=$(printf '%s' -1 | "$FITLM_BIN" detokenize -m "$SPM" 2>&1 >/dev/null); rc=$?
check "negative id" "1" "$rc"
err=$(printf 'x' | "$FITLM_BIN" tokenize -m "$T/nope.gguf" 2>&1 >/dev/null); rc=$?
check "missing model" "1:fitlm: error: $T/nope.gguf: cannot open" "$rc:$err"
err=$("$FITLM_BIN" tokenize 2>&1 >/dev/null); rc=$?
check "no -m" "1" "$rc"
case "$err" in *"fitlm: error: tokenize: -m MODEL is required"*) echo "ok: no -m message";; *) echo "FAIL: no -m message: $err"; fail=1;; esac
exit $fail
