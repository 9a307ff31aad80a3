#!/usr/bin/env bash
# Memory budgets (docs/fuzzing.md, "Resource bounds"): a model whose
# context_length is 2^24 would need a 4-8 GiB KV cache and 2 GiB of attention
# scratch with -c 0. run, logits, perplexity and bench must compare weights +
# KV cache + scratch with the memory available before allocating:
#   - an explicit -c that does not fit: "fitlm: error: -c N needs ... -c M fits
#     in X free", exit 1;
#   - the default / -c 0: lowered to what fits, with a "fitlm: warning:".
# The bounds come from --mem-limit and (outside the sanitizer run, whose shadow
# memory needs no limit) from `ulimit -v`.
set -u
BIN=${FITLM_BIN:?} SRC=${FITLM_SRC:?}
OUT=${FITLM_TMP:-/tmp}/hostile-budget
rm -rf "$OUT" && mkdir -p "$OUT"
/usr/bin/python3 - "$SRC" "$OUT" <<'PY' || { echo "FAIL: generator"; exit 1; }
import sys
sys.path.insert(0, sys.argv[1] + "/tests/hostile")
import gen_gguf as g
open(sys.argv[2] + "/ctx24.gguf", "wb").write(g.tiny_model({"llama.context_length": (g.U32, 2**24)}))
PY
M=$OUT/ctx24.gguf
printf 'Once upon a time there was a little cat. ' >"$OUT/text.txt"
for i in 1 2 3 4 5 6; do cat "$OUT/text.txt" "$OUT/text.txt" >"$OUT/t2" && mv "$OUT/t2" "$OUT/text.txt"; done
SANITIZED=${FITLM_SANITIZED:-0}
LIMIT=10
[ "$SANITIZED" = 1 ] && LIMIT=30
fail=0
ERR=$OUT/stderr
bad() {
    echo "FAIL: $*"
    sed 's/^/    /' "$ERR" | head -5
    fail=$((fail + 1))
}
# expect RC GREP ARGS...: runs fitlm, checks the exit status and a stderr pattern
expect() {
    local want=$1 pat=$2
    shift 2
    timeout -k 1 "$LIMIT" "$BIN" "$@" >/dev/null 2>"$ERR" </dev/null
    local rc=$?
    if [ $rc -ne "$want" ]; then bad "fitlm $*: exit $rc, want $want"; return; fi
    [ -z "$pat" ] || grep -qE -- "$pat" "$ERR" || bad "fitlm $*: stderr does not match '$pat'"
    ! grep -qE "AddressSanitizer|runtime error:" "$ERR" || bad "fitlm $*: sanitizer report"
}
cmds=("run -m $M -n 2 --ids 1" "logits -m $M --ids 1" "perplexity -m $M -f $OUT/text.txt" "bench -m $M -p 4 -n 2 -r 1")
for c in "${cmds[@]}"; do
    # -c 0 (the model's 2^24) and the default are capped to what fits in 64 MiB
    # (perplexity then says that its text is shorter than one chunk)
    want=0
    case $c in perplexity*) want=1 ;; esac
    # shellcheck disable=SC2086
    expect $want "^fitlm: warning: -c 16777216 needs .* but 64.0 MiB is free \(--mem-limit\); -c [0-9]+ fits in 64.0 MiB free; using -c [0-9]+" $c -c 0 --mem-limit 64MiB
    # shellcheck disable=SC2086
    expect 1 "^fitlm: error: -c 1000000 needs .* but 64.0 MiB is free \(--mem-limit\); -c [0-9]+ fits in 64.0 MiB free" $c -c 1000000 --mem-limit 64MiB
    # nothing fits: an error even for the default
    # shellcheck disable=SC2086
    expect 1 "^fitlm: error: .*(no context fits|do not fit)" $c --mem-limit 100KiB
done
# the capped context is the one used
timeout "$LIMIT" "$BIN" run -m "$M" -c 0 --mem-limit 64MiB -n 1 --ids 1 >/dev/null 2>"$ERR"
want=$(sed -n 's/.*using -c \([0-9]*\)$/\1/p' "$ERR")
grep -q "context $want," "$ERR" || bad "run did not use the capped context $want"
# a small explicit context still runs within the limit
expect 0 "" logits -m "$M" -c 256 --mem-limit 64MiB --ids "1 5 7"
# --mem-limit values
expect 1 "^fitlm: error: --mem-limit: '12X' is not a size" logits -m "$M" --mem-limit 12X --ids 1
expect 1 "^fitlm: error: --mem-limit: must be more than 0" logits -m "$M" --mem-limit 0 --ids 1
expect 1 "^fitlm: error: --mem-limit: '-1' is not a size" logits -m "$M" --mem-limit -1 --ids 1
# ulimit -v is a bound too (the sanitizer runtime reserves terabytes of address space)
if [ "$SANITIZED" != 1 ]; then
    (ulimit -v 2000000; timeout "$LIMIT" "$BIN" logits -m "$M" -c 0 --ids 1 >/dev/null 2>"$ERR")
    rc=$?
    [ $rc -eq 0 ] && grep -q "free (ulimit -v); -c [0-9]* fits" "$ERR" || bad "-c 0 under ulimit -v 2000000: exit $rc"
    (ulimit -v 2000000; timeout "$LIMIT" "$BIN" logits -m "$M" -c 16000000 --ids 1 >/dev/null 2>"$ERR")
    rc=$?
    [ $rc -eq 1 ] && grep -q "^fitlm: error: -c 16000000 needs" "$ERR" || bad "-c 16000000 under ulimit -v: exit $rc"
fi
# input text: tokenizing peaks at ~24x the text, checked before it starts
head -c 3000000 /dev/zero | tr '\0' 'a' | fold -w 60 >"$OUT/big.txt"
expect 1 "^fitlm: error: .*big.txt: tokenizing 2.9 MiB of text takes about 24x that .* but 64.0 MiB is free \(--mem-limit\); at most 2.[0-9] MiB of text fits" perplexity -m "$M" -c 64 --mem-limit 64MiB -f "$OUT/big.txt"
echo "$fail failures"
[ $fail -eq 0 ]
