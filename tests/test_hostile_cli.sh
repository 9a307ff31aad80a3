#!/usr/bin/env bash
# Hostile input at the command line: every malformed file from the corpus
# generators (tests/hostile/gen_*.py) must be refused by every command that
# reads a model, cleanly:
#   exit status 1, the first stderr line starts with "fitlm: error: " and names
#   the file, no sanitizer report, done within the time limit, and (outside the
#   sanitizer run) under `ulimit -v 2000000` (2 GB of address space).
# Files of layer `ok` (and `run`: describable but not runnable) must be
# accepted by `fitlm inspect`.
# Manifests: OUTDIR/*.tsv, lines "path<TAB>layer<TAB>what is wrong".
# Commands still marked "not implemented yet" are skipped.
set -u
BIN=${FITLM_BIN:?} SRC=${FITLM_SRC:?}
OUT=${FITLM_TMP:-/tmp}/hostile-cli
rm -rf "$OUT" && mkdir -p "$OUT"
PY=/usr/bin/python3
gens=0
for gen in "$SRC"/tests/hostile/gen_*.py; do
    [ -f "$gen" ] || continue
    "$PY" "$gen" "$OUT" || { echo "FAIL: $gen did not run"; exit 1; }
    gens=$((gens + 1))
done
[ "$gens" -gt 0 ] || { echo "FAIL: no generators"; exit 1; }

LIMIT=2
SANITIZED=${FITLM_SANITIZED:-0}
[ "$SANITIZED" = 1 ] && LIMIT=10 # ASan/UBSan builds run several times slower

# Which commands exist (a placeholder says "not implemented yet").
have() {
    ! "$BIN" "$1" -m /dev/null </dev/null 2>&1 | grep -q "not implemented yet"
}
cmds=(inspect)
have tokenize && cmds+=(tokenize)
have run && cmds+=(run)
echo "commands under test: ${cmds[*]}"

fail=0 checked=0
ERR=$OUT/.stderr
# run_one CMD FILE -> sets rc, fills $ERR
run_one() {
    local cmd=$1 f=$2
    local -a argv
    case $cmd in
        inspect) argv=(inspect "$f") ;;
        tokenize) argv=(tokenize -m "$f") ;;
        run) argv=(run -m "$f" -n 1) ;;
    esac
    if [ "$SANITIZED" = 1 ]; then
        echo "hello" | timeout -k 1 "$LIMIT" "$BIN" "${argv[@]}" >/dev/null 2>"$ERR"
    else
        (ulimit -v 2000000; echo "hello" | timeout -k 1 "$LIMIT" "$BIN" "${argv[@]}" >/dev/null 2>"$ERR")
    fi
    rc=$?
}

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
        for cmd in "${cmds[@]}"; do
            run_one "$cmd" "$f"
            checked=$((checked + 1))
            if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$ERR"; then
                bad "$cmd $path: sanitizer report ($what)"
                continue
            fi
            if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
                bad "$cmd $path: took longer than ${LIMIT}s ($what)"
                continue
            fi
            if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
                bad "$cmd $path: exit status $rc, a crash? ($what)"
                continue
            fi
            if [ $rc -eq 1 ]; then
                first=$(head -1 "$ERR")
                case $first in
                    "fitlm: error: "*"$path"*) ;;
                    *) bad "$cmd $path: first stderr line does not read 'fitlm: error: ...$path...' ($what)"; continue ;;
                esac
            fi
            # What must be refused: inspect refuses every defect except tokenizer
            # ones; tokenize refuses container and tokenizer defects (a broken
            # model with a fine tokenizer may still tokenize); run refuses all.
            must_fail=0
            case "$layer:$cmd" in
                ok:* | run:inspect | run:tokenize) ;;
                tokenizer:inspect) ;;
                model:tokenize | config:tokenize | llama2c:tokenize) ;;
                *) must_fail=1 ;;
            esac
            if { [ "$layer" = ok ] || [ "$layer" = run ]; } && [ "$cmd" = inspect ] && [ $rc -ne 0 ]; then
                bad "inspect $path: a valid file was refused ($what)"
            elif [ $must_fail = 1 ] && [ $rc -ne 1 ]; then
                bad "$cmd $path: accepted, should be refused ($what)"
            fi
        done
    done <"$manifest"
done
echo "$checked runs over $(cat "$OUT"/*.tsv | wc -l) files, $fail failures"
[ $fail -eq 0 ]
