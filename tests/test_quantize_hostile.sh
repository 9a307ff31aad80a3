#!/usr/bin/env bash
# fitlm quantize over the hostile corpora (tests/hostile/gen_*.py: malformed
# GGUF files, HF folders, safetensors, config.json, llama2.c checkpoints):
#   - exit status 0 or 1 (never a crash), within the time limit, no sanitizer report;
#   - exit 1: the first stderr line reads "fitlm: error: ...FILE..." and neither OUT
#     nor a temp file is left behind;
#   - every file the runtime would refuse (all layers but `ok` and `tokenizer`:
#     quantize copies tokenizer metadata without reading it) is refused;
#   - the valid files (`ok`) are quantized to a GGUF that fitlm inspect accepts.
# Outside the sanitizer run, under `ulimit -v 2000000` (2 GB of address space).
set -u
BIN=${FITLM_BIN:?} SRC=${FITLM_SRC:?}
OUT=${FITLM_TMP:-/tmp}/quantize-hostile
rm -rf "$OUT" && mkdir -p "$OUT/out"
PY=/usr/bin/python3
for gen in "$SRC"/tests/hostile/gen_*.py; do
    "$PY" "$gen" "$OUT" >/dev/null || { echo "FAIL: $gen did not run"; exit 1; }
done
LIMIT=5
[ "${FITLM_SANITIZED:-0}" = 1 ] && LIMIT=20
ERR=$OUT/.stderr
Q=$OUT/out/q.gguf
fail=0 checked=0 accepted=0
bad() {
    echo "FAIL: $*"
    head -3 "$ERR" | sed 's/^/    /'
    fail=$((fail + 1))
}
for manifest in "$OUT"/*.tsv; do
    while IFS=$'\t' read -r path layer what; do
        [ -n "$path" ] || continue
        case $path in \#*) continue ;; esac
        f=$OUT/$path
        if [ "${FITLM_SANITIZED:-0}" = 1 ]; then
            timeout -k 1 "$LIMIT" "$BIN" quantize "$f" "$Q" Q8_0 -q >/dev/null 2>"$ERR"
        else
            (ulimit -v 2000000; timeout -k 1 "$LIMIT" "$BIN" quantize "$f" "$Q" Q8_0 -q >/dev/null 2>"$ERR")
        fi
        rc=$?
        checked=$((checked + 1))
        if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$ERR"; then
            bad "$path: sanitizer report ($what)"
        elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            bad "$path: took longer than ${LIMIT}s ($what)"
        elif [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
            bad "$path: exit status $rc, a crash? ($what)"
        elif [ $rc -eq 1 ]; then
            case $(head -1 "$ERR") in
                "fitlm: error: "*"$path"*) ;;
                *) bad "$path: first stderr line does not read 'fitlm: error: ...$path...' ($what)" ;;
            esac
            [ -z "$(ls -A "$OUT/out")" ] || bad "$path: left $(ls "$OUT/out") behind ($what)"
            [ "$layer" = ok ] && bad "$path: a valid model was refused ($what)"
        else
            accepted=$((accepted + 1))
            case $layer in
                ok | tokenizer) "$BIN" inspect "$Q" >/dev/null 2>"$ERR" || bad "$path: the output does not load ($what)" ;;
                *) bad "$path: accepted, should be refused ($what)" ;;
            esac
        fi
        rm -f "$OUT"/out/*
    done <"$manifest"
done
echo "$checked files, $accepted quantized, $fail failures"
[ $fail -eq 0 ]
