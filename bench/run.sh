#!/usr/bin/env bash
# bench/run.sh — CPU speed of fitlm on a model with the shape of TinyLlama 1.1B.
#
#   bench/run.sh                      # from the repository root, after building build/fitlm
#   PRESET=small REPS=1 bench/run.sh  # a quick smoke run on a tiny model
#
# What it does:
#   1. bench/make_model.py writes a random-weight F16 GGUF with TinyLlama 1.1B's
#      shape (22 layers, hidden 2048, 32 heads, 4 KV heads, FFN 5632, vocabulary
#      32000, context 2048; weights N(0, 0.02), norms 1.0, a minimal llama
#      vocabulary) — once; it is reused while it exists;
#   2. `fitlm quantize` turns it into each of $TYPES (reused while newer than the F16 file);
#   3. `fitlm bench -m MODEL -p $PP -n $TG -r $REPS` runs on each;
#   4. a summary table is printed: type, file size (GB = 1e9 bytes), prompt
#      processing and generation tokens/s (medians), the weight bandwidth that
#      generation achieves (weight bytes streamed per token x tokens/s) and its
#      share of the memory read bandwidth fitlm bench measures on this machine,
#      and "CPUs used": CPU time / wall time of the bench run (below the thread
#      count when other processes compete for the cores); "wread" is the rate
#      at which a plain read loop reads the weights' own memory right after
#      each generation run, and "% of wread" the runs' median share of it.
# The full output of every step is kept in $BENCH_DIR/*.log.
#
# Environment:
#   FITLM      the fitlm program (default: build/fitlm in the repository)
#   BENCH_DIR  scratch folder for the model files and logs (default /tmp/fitlm-bench);
#              several GB: never point it into the repository (an ignored
#              folder such as build/ is accepted)
#   TYPES      quantization types (default "Q8_0 Q4_0 Q4_K_M"; F16 works too)
#   PP, TG     prompt and generation lengths (default 512 and 128)
#   REPS       repetitions per test (default 3)
#   THREADS    threads for quantize and bench (default: fitlm's, the physical cores)
#   PRESET     tinyllama (default), small, or llama3-8b (Llama 3 8B's shape: a 16 GB
#              F16 file plus the quantized ones; about 10 minutes on 2 cores)
#   SUMMARY_ONLY=1  only print the table again from the logs of an earlier run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FITLM="${FITLM:-$ROOT/build/fitlm}"
BENCH_DIR="${BENCH_DIR:-/tmp/fitlm-bench}"
TYPES="${TYPES:-Q8_0 Q4_0 Q4_K_M}"
PP="${PP:-512}"
TG="${TG:-128}"
REPS="${REPS:-3}"
PRESET="${PRESET:-tinyllama}"
PY=/usr/bin/python3

if [[ ! -x "$FITLM" ]]; then
    echo "bench/run.sh: $FITLM not found: build first (cmake -S . -B build && cmake --build build -j2) or set FITLM" >&2
    exit 1
fi
# model files never go into the repository (an ignored build folder is fine)
bench_abs="$(realpath -m "$BENCH_DIR")"
case "$bench_abs/" in
"$ROOT"/*)
    if ! git -C "$ROOT" check-ignore -q "$bench_abs/x.gguf" 2>/dev/null; then
        echo "bench/run.sh: BENCH_DIR must be outside the repository (or in an ignored folder such as build/)" >&2
        exit 1
    fi
    ;;
esac
mkdir -p "$BENCH_DIR"
threads=()
if [[ -n "${THREADS:-}" ]]; then threads=(-t "$THREADS"); fi

base="$BENCH_DIR/$PRESET-f16.gguf"
if [[ ! -s "$base" ]]; then
    echo "== writing $base"
    "$PY" "$ROOT/bench/make_model.py" "$base" --preset "$PRESET"
fi

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for type in $TYPES; do
    [[ -n "${SUMMARY_ONLY:-}" ]] && break
    model="$BENCH_DIR/$PRESET-$type.gguf"
    if [[ "$type" == F16 ]]; then
        model="$base"
    elif [[ ! -s "$model" || "$model" -ot "$base" ]]; then
        echo "== fitlm quantize $base $model $type"
        "$FITLM" quantize "$base" "$model" "$type" "${threads[@]}" -q 2>&1 | tee "$BENCH_DIR/quantize-$PRESET-$type.log"
    fi
    echo "== fitlm bench -m $model -p $PP -n $TG -r $REPS ${threads[*]}"
    /usr/bin/time -f "%e %U %S" -o "$BENCH_DIR/time-$PRESET-$type.txt" \
        "$FITLM" bench -m "$model" -p "$PP" -n "$TG" -r "$REPS" "${threads[@]}" | tee "$BENCH_DIR/bench-$PRESET-$type.log"
done

echo
echo "fitlm bench, $PRESET-shaped random model, -p $PP -n $TG, $REPS repetitions (medians)"
printf '| %-7s | %7s | %10s | %10s | %9s | %9s | %9s | %10s | %10s | %9s |\n' type "size GB" "pp$PP t/s" "tg$TG t/s" \
    "GB/s" "read GB/s" "% of read" "wread GB/s" "% of wread" "CPUs used"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------- --------- ------------ ------------ ----------- ----------- \
    ----------- ------------ ------------ -----------
for type in $TYPES; do
    model="$BENCH_DIR/$PRESET-$type.gguf"
    [[ "$type" == F16 ]] && model="$base"
    log="$BENCH_DIR/bench-$PRESET-$type.log"
    [[ -s "$log" && -s "$model" ]] || continue
    # table rows: | model | size | params | backend | threads | test | t/s (lo-hi) | GB/s |
    pp=$(awk -F'|' -v t="pp$PP" '$7 ~ t {split($8, a, " "); print a[1]}' "$log")
    tg=$(awk -F'|' -v t="tg$TG" '$7 ~ t {split($8, a, " "); print a[1]}' "$log")
    gbs=$(sed -n 's/^generation streams .*: \([0-9.]*\) GB\/s at .*/\1/p' "$log")
    peak=$(sed -n 's/^measured memory read bandwidth[^:]*: \([0-9.]*\) GB\/s.*/\1/p' "$log")
    pct=$(sed -n 's/^measured memory read bandwidth.*generation \(uses\|reaches\) \([0-9.]*\)% of it.*/\2/p' "$log")
    wread=$(sed -n "s/^reading the weights' own memory[^:]*: \([0-9.]*\) GB\/s.*/\1/p" "$log")
    wpct=$(sed -n "s/^reading the weights' own memory.*generation reaches \([0-9.]*\)% of it.*/\1/p" "$log")
    # CPU time / wall time of the whole bench run: how many cores it really had
    cpus=$(awk '{ if ($1 > 0) printf "%.2f", ($2 + $3) / $1 }' "$BENCH_DIR/time-$PRESET-$type.txt" 2>/dev/null || true)
    printf '| %-7s | %7.3f | %10s | %10s | %9s | %9s | %9s | %10s | %10s | %9s |\n' "$type" \
        "$(awk -v s="$(stat -c %s "$model")" 'BEGIN { print s / 1e9 }')" \
        "${pp:--}" "${tg:--}" "${gbs:--}" "${peak:--}" "${pct:--}" "${wread:--}" "${wpct:--}" "${cpus:--}"
done
