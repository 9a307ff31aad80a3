#!/usr/bin/env bash
# Hostile values that used to be accepted silently, block, or crash (issue 13):
# non-regular files, misaligned data, non-finite weights, NUL bytes in strings,
# duplicate JSON keys, GPU catalog shadowing, interrupted writes, a model file
# truncated while in use. Each case: the exit status, the first stderr line,
# a time limit, and no sanitizer report.
set -u
BIN=${FITLM_BIN:?} SRC=${FITLM_SRC:?}
OUT=${FITLM_TMP:-/tmp}/hostile-values
rm -rf "$OUT" && mkdir -p "$OUT"
PY=/usr/bin/python3
"$PY" "$SRC/tests/hostile/gen_gguf.py" "$OUT/gguf" >/dev/null || { echo "FAIL: gen_gguf"; exit 1; }
"$PY" "$SRC/tests/hostile/gen_hf.py" "$OUT/hf" >/dev/null || { echo "FAIL: gen_hf"; exit 1; }
M=$OUT/gguf/valid-tiny-llama.gguf
LIMIT=3
[ "${FITLM_SANITIZED:-0}" = 1 ] && LIMIT=15
fail=0 n=0
ERR=$OUT/stderr
bad() {
    echo "FAIL: $*"
    head -3 "$ERR" | sed 's/^/    /'
    fail=$((fail + 1))
}
# expect RC PATTERN ARGS...: exit status RC and the first stderr line matching PATTERN
expect() {
    local want=$1 pat=$2
    shift 2
    n=$((n + 1))
    timeout -k 1 "$LIMIT" "$BIN" "$@" >"$OUT/stdout" 2>"$ERR" </dev/null
    local rc=$?
    if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$ERR"; then bad "fitlm $*: sanitizer report"; return; fi
    if [ $rc -ne "$want" ]; then bad "fitlm $*: exit $rc, want $want"; return; fi
    [ -z "$pat" ] || head -1 "$ERR" | grep -qE -- "$pat" || bad "fitlm $*: first stderr line does not match '$pat'"
}

# ---- non-regular files: never opened for reading, so never blocking
mkfifo "$OUT/fifo"
NR="^fitlm: error: .*: not a regular file"
expect 1 "$NR" inspect "$OUT/fifo"
expect 1 "$NR" run -m "$OUT/fifo" -n 1
expect 1 "$NR" run -m /dev/zero -n 1
expect 1 "$NR" run -m "$M" -f "$OUT/fifo" -n 1
expect 1 "$NR" tokenize -m "$M" -f "$OUT/fifo"
expect 1 "$NR" perplexity -m "$M" -f "$OUT/fifo"
expect 1 "$NR" plan llama-3-8b --gpus-file "$OUT/fifo"
expect 1 "$NR" quantize "$OUT/fifo" "$OUT/q.gguf" Q8_0
for f in config.json model.safetensors tokenizer.json; do
    d=$OUT/hf-fifo-${f%%.*}
    cp -r "$OUT/hf/ok-hf-llama" "$d"
    rm -f "$d/$f" && mkfifo "$d/$f"
    # (inspect describes a folder without reading its tokenizer.json)
    [ $f = tokenizer.json ] || expect 1 "$NR" inspect "$d"
    expect 1 "$NR" run -m "$d" -n 1 -p hi
done

echo "$n cases, $fail failures"
[ $fail -eq 0 ]
