#!/usr/bin/env bash
# bench/vs_llamacpp.sh — fitlm and llama.cpp side by side on the same GGUF
# files, interleaved (fitlm, llama.cpp, fitlm, llama.cpp, ...), so that both
# see the same machine state; prints the median tokens/s of each and the ratio.
#
#   bench/vs_llamacpp.sh MODEL.gguf [MODEL.gguf ...]
#
# llama.cpp is the prebuilt build that the npm package node-llama-cpp@3.21.1
# ships (CPU only; ggml picks the CPU variant for this processor): installed
# into bench/llamacpp/node_modules on first use (needs the npm registry).
# LLAMA_BENCH=/path/to/llama-bench uses a llama.cpp you built instead.
# Environment: FITLM (default build/fitlm), P (512), N (128), T (threads,
# default: fitlm's default, the physical cores), REPS (3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FITLM="${FITLM:-$ROOT/build/fitlm}"
P="${P:-512}" N="${N:-128}" REPS="${REPS:-3}"
T="${T:-$(nproc)}"
[ $# -ge 1 ] || { echo "usage: bench/vs_llamacpp.sh MODEL.gguf [...]" >&2; exit 2; }
if [ -z "${LLAMA_BENCH:-}" ] && [ ! -d "$ROOT/bench/llamacpp/node_modules/node-llama-cpp" ]; then
  (cd "$ROOT/bench/llamacpp" && npm install --no-audit --no-fund >/dev/null)
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

printf '| model | test | fitlm t/s | llama.cpp t/s | fitlm / llama.cpp |\n|---|---|---|---|---|\n'
for model in "$@"; do
  : >"$tmp/f_pp"; : >"$tmp/f_tg"; : >"$tmp/l_pp"; : >"$tmp/l_tg"
  for _ in $(seq "$REPS"); do
    # fitlm bench prints a markdown table: the test name, then "median (range)" tokens/s
    "$FITLM" bench -m "$model" -p "$P" -n "$N" -t "$T" -r 1 --membw-mib 0 2>/dev/null |
      awk -F'|' -v pp="pp$P" -v tg="tg$N" -v fpp="$tmp/f_pp" -v ftg="$tmp/f_tg" '
        { t = $8; gsub(/ /, "", t); split(t, v, "("); name = $7; gsub(/ /, "", name) }
        name == pp { print v[1] >> fpp }
        name == tg { print v[1] >> ftg }'
    if [ -n "${LLAMA_BENCH:-}" ]; then
      "$LLAMA_BENCH" -m "$model" -p "$P" -n "$N" -t "$T" -r 1 -o csv 2>/dev/null |
        awk -F',' -v fpp="$tmp/l_pp" -v ftg="$tmp/l_tg" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
          { gsub(/"/, ""); if ($c["\"n_prompt\""] + 0 > 0) print $c["\"avg_ts\""] >> fpp; else print $c["\"avg_ts\""] >> ftg }'
    else
      node "$ROOT/bench/llamacpp/llamacpp_bench.mjs" "$model" -p "$P" -n "$N" -t "$T" -r 1 |
        python3 -c 'import json,sys; d=json.load(sys.stdin); open(sys.argv[1],"a").write("".join("%f\n"%x for x in d["pp"])); open(sys.argv[2],"a").write("".join("%f\n"%x for x in d["tg"]))' "$tmp/l_pp" "$tmp/l_tg"
    fi
  done
  for test in pp tg; do
    f=$(median <"$tmp/f_$test"); l=$(median <"$tmp/l_$test")
    n=$([ "$test" = pp ] && echo "$P" || echo "$N")
    printf '| %s | %s%s | %.1f | %.1f | %.2f |\n' "$(basename "$model")" "$test" "$n" "$f" "$l" "$(awk -v a="$f" -v b="$l" 'BEGIN{print (b > 0 ? a / b : 0)}')"
  done
done
