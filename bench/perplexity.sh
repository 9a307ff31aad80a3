#!/usr/bin/env bash
# bench/perplexity.sh — perplexity of stories260K, float32 vs quantized.
#
#   bench/perplexity.sh          # from the repository root, after building build/fitlm
#
# stories260K (shared/data/stories260K, a llama2.c checkpoint trained on
# TinyStories) is quantized with `fitlm quantize` to each of $TYPES, and
# `fitlm perplexity -c $CTX --ids-file F --kv-type f32` scores two token streams:
#   bytes:   the English text $TEXT as byte-fallback tokens (id = byte + 3; the
#            model's 512-token vocabulary is not available, so its own pieces
#            cannot be used);
#   sampled: stories the float32 model writes itself (`fitlm run --ids 1
#            -n CTX-1 --temp 1 --top-k 0 --top-p 1 --min-p 0 -s SEED`, seeds 1, 2,
#            ...; only stories that do not end before CTX-1 tokens), i.e. text in
#            the model's own tokens: one chunk [BOS, story] each, as many chunks
#            as the byte stream gives.
# fitlm perplexity scores the second half of every chunk of $CTX ids. The byte
# chunks are [BOS, the next CTX-1 bytes], consecutive chunks advancing by
# CTX/2-1 bytes, so every byte after the first CTX/2 is scored exactly once,
# with at least CTX/2 bytes of context.
#
# Environment: FITLM (default build/fitlm), FITLM_SHARED (default ../shared),
# BENCH_DIR (scratch, default /tmp/fitlm-bench), TYPES (default "F32 Q8_0 Q4_K_M Q4_0"),
# CTX (default 256), TEXT (default bench/ppl/stories.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FITLM="${FITLM:-$ROOT/build/fitlm}"
SHARED="${FITLM_SHARED:-$ROOT/../shared}"
BENCH_DIR="${BENCH_DIR:-/tmp/fitlm-bench}"
TYPES="${TYPES:-F32 Q8_0 Q4_K_M Q4_0}"
CTX="${CTX:-256}"
TEXT="${TEXT:-$ROOT/bench/ppl/stories.txt}"
SRC="$SHARED/data/stories260K/stories260K.bin"
mkdir -p "$BENCH_DIR"

CHUNK_PY='
import sys
ids = open(sys.argv[1]).read().split()
c = int(sys.argv[2])
s = c // 2 - 1
k = (len(ids) - (c - 1)) // s + 1
with open(sys.argv[3], "w") as f:
    for i in range(k):
        f.write(" ".join(["1"] + ids[i * s:i * s + c - 1]) + "\n")
print("%s: %d ids -> %d chunks of %d, %d ids scored" % (sys.argv[1], len(ids), k, c, k * (c // 2 - 1)),
      file=sys.stderr)
'
chunk_ids() { /usr/bin/python3 -c "$CHUNK_PY" "$1" "$CTX" "$2"; }

for t in $TYPES; do
    "$FITLM" quantize "$SRC" "$BENCH_DIR/stories260K-$t.gguf" "$t" -q 2>"$BENCH_DIR/stories260K-$t.log"
done

# the byte stream of the text
/usr/bin/python3 -c 'import sys; print(" ".join(str(b + 3) for b in open(sys.argv[1], "rb").read()))' "$TEXT" \
    >"$BENCH_DIR/ppl-bytes-stream.txt"
chunk_ids "$BENCH_DIR/ppl-bytes-stream.txt" "$BENCH_DIR/ppl-bytes-$CTX.txt"

# stories sampled from the float32 model: one chunk per story that runs the
# full CTX-1 tokens without ending (the model does not expect a story to start
# mid-context, so shorter stories are skipped), as many chunks as the text gave
f32="$BENCH_DIR/stories260K-sampling-F32.gguf"
"$FITLM" quantize "$SRC" "$f32" F32 -q 2>/dev/null
sampled="$BENCH_DIR/ppl-sampled-$CTX.txt"
: >"$sampled"
want=$(wc -l <"$BENCH_DIR/ppl-bytes-$CTX.txt")
seed=0
while [[ $(wc -l <"$sampled") -lt $want ]]; do
    seed=$((seed + 1))
    ids=$("$FITLM" run -m "$f32" --ids 1 -n $((CTX - 1)) --temp 1 --top-k 0 --top-p 1 --min-p 0 -s "$seed" \
        --kv-type f32 --print-ids 2>/dev/null)
    if [[ $(echo "$ids" | wc -w) -eq $((CTX - 1)) ]]; then echo "1 $ids" >>"$sampled"; fi
done
echo "$sampled: $want stories of $CTX ids from seeds 1..$seed" >&2

ppl() { # MODEL IDS -> "PPL ± stderr"
    "$FITLM" perplexity -m "$1" --ids-file "$2" -c "$CTX" --kv-type f32 2>/dev/null |
        sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p'
}
echo
echo "stories260K, fitlm perplexity -c $CTX --kv-type f32; bytes: $(basename "$TEXT") as byte tokens;" \
    "sampled: $want stories of $CTX ids sampled from the F32 model"
printf '| %-7s | %9s | %5s | %18s | %18s |\n' type "file B" bpw "PPL bytes" "PPL sampled"
printf '|%s|%s|%s|%s|%s|\n' --------- ----------- ------- -------------------- --------------------
for t in $TYPES; do
    m="$BENCH_DIR/stories260K-$t.gguf"
    bpw=$(sed -n 's/.* -> \([0-9.]*\) bits per weight.*/\1/p' "$BENCH_DIR/stories260K-$t.log")
    printf '| %-7s | %9d | %5s | %18s | %18s |\n' "$t" "$(stat -c %s "$m")" "$bpw" \
        "$(ppl "$m" "$BENCH_DIR/ppl-bytes-$CTX.txt")" "$(ppl "$m" "$sampled")"
done
