#!/usr/bin/env bash
# Linear time on hostile files (docs/fuzzing.md, "Resource bounds"): inputs
# that once took from 17 s to an hour (tests/hostile/make_slow.py) must be
# processed within LIMIT seconds on the release build (a few times that under
# ASan/UBSan), with exit status 0 and no sanitizer report.
set -u
BIN=${FITLM_BIN:?} SRC=${FITLM_SRC:?}
OUT=${FITLM_TMP:-/tmp}/hostile-time
rm -rf "$OUT" && mkdir -p "$OUT"
/usr/bin/python3 "$SRC/tests/hostile/make_slow.py" "$OUT" || { echo "FAIL: make_slow.py"; exit 1; }
LIMIT=3
[ "${FITLM_SANITIZED:-0}" = 1 ] && LIMIT=15
fail=0
ERR=$OUT/stderr
# timed WHAT ARGS...: must exit 0; timed_refused WHAT ARGS...: must exit 1
# with a "fitlm: error:" line (a clean refusal), both within LIMIT
WANT_RC=0
timed_refused() {
    WANT_RC=1
    timed "$@"
    WANT_RC=0
}
timed() {
    local what=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    timeout -k 1 "$LIMIT" "$BIN" "$@" >"$OUT/stdout" 2>"$ERR" </dev/null
    local rc=$?
    t1=$(date +%s.%N)
    printf '%-45s %5.2f s (exit %d)\n' "$what" "$(echo "$t1 - $t0" | bc)" $rc
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "FAIL: $what: took longer than ${LIMIT}s"
        fail=$((fail + 1))
    elif [ $rc -ne $WANT_RC ] || grep -qE "AddressSanitizer|runtime error:" "$ERR" ||
        { [ $WANT_RC -ne 0 ] && ! grep -q "^fitlm: error:" "$ERR"; }; then
        echo "FAIL: $what: exit $rc"
        head -3 "$ERR" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
}
timed "quantize, 10^5 extra keys" quantize "$OUT/keys-1e5.gguf" "$OUT/q1.gguf" Q8_0
timed "quantize, 10^5 extra tensors" quantize "$OUT/tensors-1e5.gguf" "$OUT/q2.gguf" Q8_0
# the model's template is rendered (4 MiB of text: far more than the context,
# refused as a context overflow after a linear render and tokenization)
timed_refused "run --chat, 4 MiB template without an end" run -m "$OUT/chat-no-end.gguf" --chat -p hi -n 1 -c 64
timed_refused "run --chat, 4 MiB template spoiled" run -m "$OUT/chat-spoiled.gguf" --chat -p hi -n 1 -c 64
# a named built-in format leaves the model's template alone
timed "run --chat --chat-template chatml, 4 MiB" run -m "$OUT/chat-no-end.gguf" --chat --chat-template chatml -p hi -n 1 -c 64
timed_refused "inspect, safetensors header of 2.2M JSON values" inspect "$OUT/st-nodes"
grep -q "JSON values" "$ERR" || { echo "FAIL: the safetensors header is refused for its size: $(head -1 "$ERR")"; fail=$((fail + 1)); }
timed "tokenize, 200k-token vocabulary" tokenize -m "$OUT/vocab-200k.gguf" -p "t000001 t199996"
# the vocabulary really loaded
out=$(echo 199999 | "$BIN" detokenize -m "$OUT/vocab-200k.gguf" 2>&1)
[ "$out" = " t199996" ] || [ "$out" = "t199996" ] || { echo "FAIL: id 199999 is '$out'"; fail=$((fail + 1)); }
# the copies keep every key and tensor
"$BIN" inspect "$OUT/q1.gguf" --json 2>/dev/null | grep -q '"x.k99999"' || { echo "FAIL: q1.gguf lost x.k99999"; fail=$((fail + 1)); }
echo "$fail failures"
[ $fail -eq 0 ]
