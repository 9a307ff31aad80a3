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

# ---- misaligned safetensors data is copied at load: the same logits as the aligned file
expect 0 "" logits -m "$OUT/hf/ok-hf-llama" --ids "1 5 9"
cp "$OUT/stdout" "$OUT/aligned.txt"
expect 0 "" logits -m "$OUT/hf/ok-hf-misaligned" --ids "1 5 9"
cmp -s "$OUT/stdout" "$OUT/aligned.txt" || bad "misaligned safetensors: logits differ from the aligned file"
grep -q "^pos 2" "$OUT/aligned.txt" || bad "logits printed no position 2"

# ---- non-finite and zero values in the small tensors: refused at load, by name
G=$OUT/gguf
expect 1 "^fitlm: error: .*run-attn-norm-nan.gguf: tensor 'blk.1.attn_norm.weight' holds the non-finite value nan at element 5" run -m "$G/run-attn-norm-nan.gguf" -n 1 -p hi
expect 1 "tensor 'rope_freqs.weight' holds the non-positive frequency factor 0" logits -m "$G/run-rope-freqs-zeros.gguf" --ids 1
expect 1 "^fitlm: error: .*rms_norm_eps|norm_eps nan" run -m "$G/model-eps-nan.gguf" -n 1 -p hi
# --check-tensors scans the big matrices: a NaN in a matrix is found on request only
"$PY" - "$SRC" "$OUT" <<'PY'
import sys, random
sys.path.insert(0, sys.argv[1] + "/tests/hostile")
import gen_gguf as g
n = 64 * 64
vals = [random.Random(5).gauss(0, 0.05) for _ in range(n)]
vals[1000] = float("nan")
open(sys.argv[2] + "/matrix-nan.gguf", "wb").write(g.tiny_model(tensor_values={"blk.0.attn_q.weight": vals}))
PY
expect 0 "" logits -m "$OUT/matrix-nan.gguf" --ids 1
expect 1 "tensor 'blk.0.attn_q.weight' holds the non-finite value nan at element 1000" logits -m "$OUT/matrix-nan.gguf" --ids 1 --check-tensors

# ---- a NUL inside a GGUF string: an error, not a cut
expect 1 "^fitlm: error: .*model-arch-nul.gguf: .*general.architecture.*NUL" inspect "$G/model-arch-nul.gguf"

# ---- config.json naming a key twice: refused (cJSON keeps the first, Python the last)
expect 1 "^fitlm: error: .*config.json: key 'hidden_size' appears twice" inspect "$OUT/hf/cfg-duplicate-key"
expect 1 "key 'factor' appears twice \(in the object 'rope_scaling'\)" run -m "$OUT/hf/cfg-duplicate-key-nested" -n 1

# ---- interrupted writes: SIGINT/SIGTERM/SIGHUP during quantize remove the
# temporary file; the input stays intact and no output appears. (convert
# writes through the same fitlm_atomic_open; its canonical tensors are too
# small here to catch it in the middle.)
"$PY" - "$SRC" "$OUT" <<'PY'
import sys
sys.path.insert(0, sys.argv[1] + "/tests/hostile")
import gen_gguf as g
big = [("x.big%d" % i, [4096, 4096], g.T_F32, bytes(4096 * 4096 * 4)) for i in range(2)]
open(sys.argv[2] + "/big.gguf", "wb").write(g.tiny_model(extra_tensors=big))
# F32 matrices are read in place from the map for as long as the runtime runs
open(sys.argv[2] + "/long.gguf", "wb").write(g.tiny_model({"llama.context_length": (g.U32, 2**16)},
                                                           matrix_type=g.T_F32))
PY
in_sum=$(md5sum <"$OUT/big.gguf")
for sig in INT TERM HUP; do
    for cmd in quantize; do
        n=$((n + 1))
        dst=$OUT/interrupted-$cmd-$sig.gguf
        case $cmd in quantize) args=(quantize "$OUT/big.gguf" "$dst" Q8_0) ;; convert) args=(convert "$OUT/big.gguf" "$dst" --type f16) ;; esac
        # a background job of a script ignores SIGINT: start fitlm with the default action
        "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
            "$BIN" "${args[@]}" >/dev/null 2>"$ERR" &
        pid=$!
        seen=0
        for _ in $(seq 500); do
            if compgen -G "$dst.tmp.*" >/dev/null; then seen=1; break; fi
            sleep 0.01
        done
        kill -s $sig $pid
        wait $pid
        rc=$?
        if [ $seen = 0 ]; then bad "$cmd: no temporary file appeared"; continue; fi
        [ $rc -ne 0 ] || { bad "$cmd finished before SIG$sig arrived (make big.gguf bigger)"; continue; }
        if compgen -G "$dst.tmp.*" >/dev/null; then bad "$cmd: SIG$sig left $(ls "$dst".tmp.*)"; rm -f "$dst".tmp.*; fi
        [ ! -e "$dst" ] || bad "$cmd: SIG$sig left an output"
    done
done
[ "$(md5sum <"$OUT/big.gguf")" = "$in_sum" ] || bad "the input changed"
rm -f "$OUT/big.gguf"

# ---- a model file truncated while it runs (SIGBUS on the mapped pages)
n=$((n + 1))
cp "$OUT/long.gguf" "$OUT/shrinking.gguf"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_sigbus=0" \
    timeout -k 1 60 "$BIN" bench -m "$OUT/shrinking.gguf" -p 16 -n 20000 -r 50 -c 65536 --membw-mib 16 \
    >/dev/null 2>"$ERR" &
pid=$!
sleep 1
truncate -s 0 "$OUT/shrinking.gguf"
wait $pid
rc=$?
[ $rc -eq 1 ] && grep -q "^fitlm: error: .*shrinking.gguf changed while in use" "$ERR" ||
    bad "truncated while running: exit $rc"

echo "$n cases, $fail failures"
[ $fail -eq 0 ]
