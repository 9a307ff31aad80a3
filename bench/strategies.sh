#!/usr/bin/env bash
# bench/strategies.sh — one model, several deployment strategies, one table:
# memory, tokens/s, TTFT and perplexity change, each measured cell with the
# planner's prediction beside it (from `fitlm bench`'s plan check, i.e. the
# host profile of `fitlm calibrate` when there is one), plus an SVG chart.
#
#   bench/strategies.sh                       # stories260K (shared data), fast
#   MODEL=path/to/model-f16.gguf bench/strategies.sh
#
# Strategies: weights F16, Q8_0, Q4_K_M, Q4_0 with an F16 KV cache; Q4_0 with a
# Q8_0 KV cache; Q4_0 with F16 KV and 8-token micro-batches (--batch 8, the
# prompt in batches of 8); Q4_0 split over two MPI ranks, tensor parallel and
# pipeline parallel (SPLIT=0 leaves them out; skipped without mpirun or an MPI
# build); Q4_0 served to SERVE_CLIENTS (default 8; 0 leaves it out) concurrent
# streaming clients by `fitlm serve` (bench/serve_bench.py: prompts of 16 to P
# tokens, N to 2N output tokens, two requests per client), its tg cell the
# aggregate decode throughput beside the server's plan check at the measured
# concurrency. Each is quantized from MODEL with `fitlm quantize`,
# benchmarked with `fitlm bench -p P -n N -r R -c C`, and scored with
# `fitlm perplexity --ids-file` over the bytes of $TEXT as byte-fallback token
# ids (id = byte + 3, BOS first; the change is against the F16 row).
#
# Environment: FITLM (default build/fitlm), MODEL (default
# ../shared/data/stories260K/stories260K.bin), OUT (default
# /tmp/fitlm-strategies), P N R C (default 64 32 3 256), TEXT (default
# bench/ppl/stories.txt), PROFILE (a host profile for --profile; default: the
# user's, if any). Writes OUT/strategies.md and OUT/strategies.svg.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FITLM="${FITLM:-$ROOT/build/fitlm}"
MODEL="${MODEL:-$ROOT/../shared/data/stories260K/stories260K.bin}"
OUT="${OUT:-/tmp/fitlm-strategies}"
P="${P:-64}"; N="${N:-32}"; R="${R:-3}"; C="${C:-256}"
TEXT="${TEXT:-$ROOT/bench/ppl/stories.txt}"
PY="${PYTHON:-python3}"
SPLIT="${SPLIT:-1}"; SERVE_CLIENTS="${SERVE_CLIENTS:-8}"
VOCAB="$("$FITLM" inspect "$MODEL" | sed -n 's/^ *vocab_size *\([0-9]*\).*/\1/p' | head -1)"
mkdir -p "$OUT"
prof=()
[ -n "${PROFILE:-}" ] && prof=(--profile "$PROFILE")

# byte-fallback ids of the text, BOS first
ids="$OUT/text.ids"
"$PY" -c 'import sys; d=open(sys.argv[1],"rb").read(); print(" ".join(["1"]+[str(b+3) for b in d]))' "$TEXT" > "$ids"

rows="$OUT/rows.tsv"
: > "$rows"
for spec in "F16 f16 0" "Q8_0 f16 0" "Q4_K_M f16 0" "Q4_0 f16 0" "Q4_0 q8_0 0" "Q4_0 f16 8"; do
  set -- $spec
  q=$1; kv=$2; ub=$3
  m="$OUT/model-$q.gguf"
  [ -f "$m" ] || "$FITLM" quantize "$MODEL" "$m" "$q" > /dev/null
  extra=(); name="$q, KV ${kv^^}"
  if [ "$ub" != 0 ]; then extra=(--batch "$ub"); name="$name, batch $ub"; fi
  log="$OUT/bench-$q-$kv-$ub.log"
  "$FITLM" bench -m "$m" -p "$P" -n "$N" -r "$R" -c "$C" --kv-type "$kv" --membw-mib 0 "${extra[@]}" "${prof[@]}" > "$log"
  ppl=$("$FITLM" perplexity -m "$m" --ids-file "$ids" -c "$C" --kv-type "$kv" "${extra[@]}" 2>&1 |
        sed -n 's/.*[Ff]inal estimate: PPL = \([0-9.]*\).*/\1/p; s/^perplexity: \([0-9.]*\).*/\1/p' | tail -1)
  printf '%s\t%s\t%s\tbench\n' "$name" "$log" "${ppl:-nan}" >> "$rows"
done

# split over two MPI ranks on the same cores (1 thread each): tensor parallel
# and pipeline parallel, Q4_0 with an F16 KV cache (bench's plan check predicts
# the split: rank 0's share of the weights, the all-reduces and sends timed by
# the host profile's alpha/beta)
if [ "$SPLIT" != 0 ] && command -v mpirun > /dev/null; then
  mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)
  for lay in tp pp; do
    m="$OUT/model-Q4_0.gguf"
    log="$OUT/bench-Q4_0-$lay.log"
    if ! "${mpi[@]}" "$FITLM" bench -m "$m" -p "$P" -n "$N" -r "$R" -c "$C" -t 1 --"$lay" 2 --membw-mib 0 \
         "${prof[@]}" > "$log" 2> "$log.err"; then
      echo "strategies: skipping the split rows (mpirun -np 2 fitlm bench --$lay 2 failed: $(tail -1 "$log.err"))" >&2
      break
    fi
    ppl=$("${mpi[@]}" "$FITLM" perplexity -m "$m" --ids-file "$ids" -c "$C" -t 1 --"$lay" 2 2>&1 |
          sed -n 's/.*[Ff]inal estimate: PPL = \([0-9.]*\).*/\1/p; s/^perplexity: \([0-9.]*\).*/\1/p' | tail -1)
    printf '%s\t%s\t%s\tbench\n' "Q4_0, KV F16, ${lay^^} 2 (2 ranks x 1 thread)" "$log" "${ppl:-nan}" >> "$rows"
  done
fi

# batched serving: `fitlm serve` with SERVE_CLIENTS concurrent streaming
# clients (bench/serve_bench.py, decode-heavy requests); the server's plan
# check predicts the aggregate decode throughput at the concurrency it measured
if [ "$SERVE_CLIENTS" != 0 ]; then
  m="$OUT/model-Q4_0.gguf"
  js="$OUT/serve-$SERVE_CLIENTS.json"
  "$PY" "$ROOT/bench/serve_bench.py" -m "$m" --fitlm "$FITLM" -c "$SERVE_CLIENTS" --per-client 2 \
        --prompt-len "16,$P" --output-len "$N,$((2 * N))" --vocab "$VOCAB" \
        --serve-args "--plan-check -c $C ${prof[*]}" --json "$js" > "$OUT/serve-$SERVE_CLIENTS.log"
  printf '%s\t%s\t%s\tserve\n' "Q4_0, KV F16, serving $SERVE_CLIENTS clients" "$js" nan >> "$rows"
fi

"$PY" - "$rows" "$OUT" "$P" "$N" <<'PYEOF'
import json, re, sys, html
rows_path, out, P, N = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ROW = re.compile(r"^\| (.+?)\s+\|\s+(-?[0-9.]+) \|\s+(-?[0-9.]+) \| (\S+)\s*\|\s+(\S+) \|")
data = []
for line in open(rows_path):
    name, log, ppl, kind = line.rstrip("\n").split("\t")
    r = {}
    if kind == "serve":
        # serve_bench's JSON: the server's plan check (aggregate decode
        # throughput at the measured concurrency) and the measured TTFT
        js = json.load(open(log))
        lines_in = js.get("server_plan_check", "").splitlines()
        lv = js["levels"][0]
        r["time to first token"] = (None, lv["ttft_p50_ms"], "")
    else:
        lines_in = open(log)
    for l in lines_in:
        m = ROW.match(l)
        if m:
            r[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), m.group(5))
    if kind == "serve" and "decode throughput" in r:
        r["decode tg" + N] = r["decode throughput"]
    data.append((name, r, float(ppl) if ppl not in ("", "nan") else None))
base = data[0][2]
def cell(r, k, fmt):
    if k not in r:
        return "-"
    p, m, e = r[k]
    return f"{fmt(m)} (-)" if p is None else f"{fmt(m)} ({fmt(p)}, {e})"
f1 = lambda v: f"{v:.1f}"
f2 = lambda v: f"{v:.2f}"
lines = ["| strategy | peak memory MiB (predicted, error) | weights+KV+scratch MiB (predicted, error) | "
         f"pp{P} t/s (predicted, error) | tg{N} t/s (predicted, error) | TTFT ms (predicted, error) | "
         "perplexity (change vs F16) |", "|---|---|---|---|---|---|---|"]
for name, r, ppl in data:
    tot_m = sum(r[k][1] for k in ("weights", "KV cache", "scratch") if k in r)
    tot_p = sum(r[k][0] for k in ("weights", "KV cache", "scratch") if k in r)
    tot = f"{tot_m:.2f} ({tot_p:.2f}, {100 * (tot_p - tot_m) / tot_m:+.1f}%)" if tot_m and "KV cache" in r else "-"
    pc = "-" if ppl is None else (f"{ppl:.3f}" + ("" if base is None or name.startswith("F16") else f" ({100 * (ppl - base) / base:+.2f}%)"))
    lines.append(f"| {name} | {cell(r, 'peak resident (VmHWM)', f1)} | {tot} | {cell(r, 'prefill pp' + P, f2)} | "
                 f"{cell(r, 'decode tg' + N, f2)} | {cell(r, 'time to first token', f2)} | {pc} |")
open(f"{out}/strategies.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# SVG: measured and predicted decode tokens/s per strategy (grouped bars)
W, H, left, top, bh = 760, 60 + 46 * len(data), 200, 40, 16
vals = [(n, r.get("decode tg" + N, (0, 0, ""))) for n, r, _ in data]
vmax = max([max(v[0], v[1]) for _, v in vals] + [1e-9])
s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     f'<text x="10" y="20" font-size="14">decode tg{N} tokens/s: measured (blue) and predicted (orange)</text>']
for i, (n, (p, m, e)) in enumerate(vals):
    y = top + i * 46
    s.append(f'<text x="10" y="{y + 20}">{html.escape(n)}</text>')
    for j, (v, col) in enumerate(((m, "#1f77b4"), (p, "#ff7f0e"))):
        w = (W - left - 90) * v / vmax
        s.append(f'<rect x="{left}" y="{y + j * (bh + 2)}" width="{w:.1f}" height="{bh}" fill="{col}"/>')
        s.append(f'<text x="{left + w + 4:.1f}" y="{y + j * (bh + 2) + 12}">{v:.1f}</text>')
s.append("</svg>")
open(f"{out}/strategies.svg", "w").write("\n".join(s) + "\n")
print(f"\nwrote {out}/strategies.md and {out}/strategies.svg")
PYEOF
