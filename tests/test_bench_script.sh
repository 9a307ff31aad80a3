#!/usr/bin/env bash
# bench/run.sh end to end on its small preset: bench/make_model.py writes a model
# fitlm loads (hyperparameters as written, a vocabulary that tokenizes and
# detokenizes text), fitlm quantize makes Q8_0/Q4_0/Q4_K_M, fitlm bench runs on
# each, and the summary table has a row of numbers per type. Files stay in
# $FITLM_TMP.
set -u
FITLM="${FITLM_BIN:-build/fitlm}"
SRC="${FITLM_SRC:-.}"
DIR="${FITLM_TMP:-/tmp}/test_bench_script"
rm -rf "$DIR"
mkdir -p "$DIR"
fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}

out=$(FITLM="$FITLM" BENCH_DIR="$DIR" PRESET=small REPS=1 PP=16 TG=4 THREADS=2 bash "$SRC/bench/run.sh" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || bad "bench/run.sh exited $rc: $out"
for t in Q8_0 Q4_0 Q4_K_M; do
    row=$(echo "$out" | grep -E "^\| $t +\|")
    # | type | size | pp | tg | GB/s | ...: size, pp and tg must be positive numbers
    echo "$row" | awk -F'|' '{ exit !($3 > 0 && $4 > 0 && $5 > 0) }' || bad "no figures for $t: '$row'"
    [[ -s "$DIR/small-$t.gguf" ]] || bad "small-$t.gguf missing"
done

# the model as written: hyperparameters and the vocabulary
"$FITLM" inspect "$DIR/small-f16.gguf" --json 2>&1 | /usr/bin/python3 -c '
import json, sys
h = json.load(sys.stdin)["hparams"]
want = dict(n_layers=2, dim=256, n_heads=4, n_kv_heads=2, ffn_dim=512, vocab_size=512, ctx_len=256)
bad = {k: h.get(k) for k, v in want.items() if h.get(k) != v}
sys.exit("hparams differ: %s" % bad if bad else 0)' || bad "inspect --json"
ids=$("$FITLM" tokenize -m "$DIR/small-f16.gguf" -p "Once upon a time" 2>&1)
[[ "$ids" =~ ^1\ [0-9\ ]+$ ]] || bad "tokenize: '$ids'"
text=$(echo "$ids" | cut -d' ' -f2- | "$FITLM" detokenize -m "$DIR/small-f16.gguf" 2>&1)
[[ "$text" == *"Once upon a time"* ]] || bad "detokenize gave '$text'"
"$FITLM" run -m "$DIR/small-Q4_K_M.gguf" -p "Once upon a time" -n 4 --temp 0 >/dev/null 2>&1 || bad "fitlm run failed"

# BENCH_DIR inside the repository is refused
FITLM="$FITLM" BENCH_DIR="$SRC/bench/tmp" PRESET=small bash "$SRC/bench/run.sh" >/dev/null 2>&1 && bad "BENCH_DIR in the repo accepted"
[[ -e "$SRC/bench/tmp" ]] && bad "bench/tmp created"

rm -rf "$DIR"
echo "test_bench_script: $([[ $fail -eq 0 ]] && echo ok || echo FAILED)"
exit $fail
