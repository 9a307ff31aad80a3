"""The runtime commands end to end on stories260K (a real trained llama2.c model):

  - run --temp 0 reproduces the reference greedy continuation of llama2.c's
    run.c (greedy-bos.txt: argmax at each position is the next input);
  - same seed -> same ids, different seeds -> different ids;
  - perplexity over an ids file equals the method of docs/runtime.md computed
    here in Python from `fitlm logits` output (every logit printed);
  - bench prints pp/tg rows and the memory report;
  - bad input: unknown flags, bad numbers, out-of-range sampler values, context
    overflow, ids outside the vocabulary, -p on a model without vocabulary, a
    missing file: each gives `fitlm: error: ...` on stderr and exit status 1.
"""
import re
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TMP = te.tmp_dir()
D = os.path.join(SHARED, "data", "stories260K")
MODEL = os.path.join(D, "stories260K.bin")


def fitlm(*args):
    return te.run(FITLM, *args)


def ref_rows(name):
    rows = []
    with open(os.path.join(D, name)) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            x = line.split()
            rows.append((int(x[3]), int(x[5])))
    return rows


# ---- greedy generation equals the reference chain ----
greedy = ref_rows("greedy-bos.txt")
n_gen = 40
p = fitlm("run", "-m", MODEL, "--ids", "1", "-n", str(n_gen), "--temp", "0", "--kv-type", "f32", "-t", "2")
check(p.returncode == 0, "run greedy failed: " + p.stderr)
got = [int(x) for x in p.stdout.split()]
want = [a for _, a in greedy[:n_gen]]
check(got == want, "greedy ids %s != reference %s" % (got, want))
check("tokens per second" in p.stderr, "run prints timings")
# the speed is per decode step: the first of the n_gen tokens comes from the
# prompt's logits, so n_gen - 1 steps ran (llama.cpp's "eval ... runs")
gm = re.search(r"generation: +(\d+) tokens in +([0-9.]+) ms \((\d+) decode steps: ([0-9.]+) ms per token", p.stderr)
check(gm is not None and int(gm.group(1)) == n_gen and int(gm.group(3)) == n_gen - 1,
      "generation line counts %d tokens and %d decode steps: %s" % (n_gen, n_gen - 1, p.stderr[-400:]))
if gm:
    # ms per token is printed with 2 decimals: up to 0.005 ms off per step
    check(abs(float(gm.group(4)) * (n_gen - 1) - float(gm.group(2))) <= 0.005 * (n_gen - 1) + 0.01,
          "ms per token = generation time / decode steps: " + gm.group(0))
check("memory report" in p.stderr and "KV cache" in p.stderr, "run prints the memory report")

# ---- seeds ----
def sample(seed):
    q = fitlm("run", "-m", MODEL, "--ids", "1 82 113 102 104 35 120 115 114 113 35 100 35 119 108 112 104", "-n", "48", "--temp", "1.0", "--seed", str(seed), "--print-ids")
    check(q.returncode == 0, "run seed %d failed: %s" % (seed, q.stderr))
    return q.stdout.split()

a1, a2, b = sample(11), sample(11), sample(12)
check(a1 == a2 and len(a1) > 0, "same seed gives the same ids")
check(a1 != b, "different seeds give different ids")
q = fitlm("run", "-m", MODEL, "--ids", "1", "-n", "30", "--temp", "0.7", "--top-k", "10", "--top-p", "0.9",
          "--min-p", "0.02", "--repeat-penalty", "1.3", "--repeat-last-n", "16", "--seed", "3")
check(q.returncode == 0 and len(q.stdout.split()) > 0, "run with every sampler flag: " + q.stderr)

# ---- perplexity against the method computed from logits ----
ids = [i for i, _ in ref_rows("bytes-once-upon.txt")] + [i for i, _ in ref_rows("greedy-bos.txt")]
ids_path = os.path.join(TMP, "rt_ppl_ids.txt")
with open(ids_path, "w") as f:
    f.write(" ".join(map(str, ids)) + "\n")
C = 64
p = fitlm("perplexity", "-m", MODEL, "--ids-file", ids_path, "-c", str(C), "--kv-type", "f32")
check(p.returncode == 0, "perplexity failed: " + p.stderr)
final = [l for l in p.stdout.splitlines() if l.startswith("Final estimate")]
check(len(final) == 1, "perplexity prints a final estimate")
nll = []
for c in range(len(ids) // C):
    chunk = ids[c * C:(c + 1) * C]
    lg = fitlm("logits", "-m", MODEL, "--ids", " ".join(map(str, chunk)), "--top", "512", "--kv-type", "f32")
    check(lg.returncode == 0, "logits for chunk failed")
    rows = []
    for line in lg.stdout.splitlines():
        x = line.split()
        d = {int(k): float(v) for k, v in (t.split(":") for t in x[11:])}
        rows.append(d)
    for j in range(C // 2, C - 1):
        row = rows[j]
        mx = max(row.values())
        lse = mx + math.log(sum(math.exp(v - mx) for v in row.values()))
        nll.append(lse - row[chunk[j + 1]])
mean = sum(nll) / len(nll)
var = sum((x - mean) ** 2 for x in nll) / (len(nll) - 1)
ppl = math.exp(mean)
err = ppl * math.sqrt(var / len(nll))
if final:
    f = final[0].split()
    got_ppl, got_err = float(f[4]), float(f[6])
    print("perplexity: fitlm %.4f +/- %.5f, python %.4f +/- %.5f (%d tokens)" % (got_ppl, got_err, ppl, err, len(nll)))
    check(abs(got_ppl - ppl) <= 2e-4 * ppl, "perplexity %g vs %g" % (got_ppl, ppl))
    check(abs(got_err - err) <= 1e-3 * err + 1e-5, "standard error %g vs %g" % (got_err, err))
    running = [l for l in p.stdout.splitlines() if l.startswith("[")]
    check(len(running) == len(ids) // C, "one running line per chunk")

# ---- bench ----
p = fitlm("bench", "-m", MODEL, "-p", "64", "-n", "16", "-r", "2", "-t", "2", "--membw-mib", "64")
check(p.returncode == 0, "bench failed: " + p.stderr)
check("pp64" in p.stdout and "tg16" in p.stdout and "GB/s" in p.stdout, "bench table: " + p.stdout[:300])
check("memory report" in p.stdout and "peak RSS" in p.stdout, "bench memory report")
# the run-by-run comparison with a plain read of the weights' own memory
wm = re.search(r"reading the weights' own memory with a plain loop after each run: ([0-9.]+) GB/s \(median of 2\); "
               r"generation reaches ([0-9.]+)% of it", p.stdout)
check(wm is not None and float(wm.group(1)) > 0 and 0 < float(wm.group(2)) < 1000,
      "bench weights-read line: " + p.stdout[-600:])

# ---- bad input ----
bad = [
    ("run", "-m", MODEL, "--ids", "1", "-n", "-5"),
    ("run", "-m", MODEL, "--ids", "1", "-n", "ten"),
    ("run", "-m", MODEL, "--ids", "1", "--temp", "-1"),
    ("run", "-m", MODEL, "--ids", "1", "--top-p", "1.5"),
    ("run", "-m", MODEL, "--ids", "1", "--min-p", "2"),
    ("run", "-m", MODEL, "--ids", "1", "--top-k", "-3"),
    ("run", "-m", MODEL, "--ids", "1", "--repeat-penalty", "0"),
    ("run", "-m", MODEL, "--ids", "1", "--seed", "x1"),
    ("run", "-m", MODEL, "--ids", "1", "-t", "0"),
    ("run", "-m", MODEL, "--ids", "1", "--kv-type", "q4_0"),
    ("run", "-m", MODEL, "--ids", "1", "--bogus"),
    ("run", "-m", MODEL, "--ids", "1", "-n"),
    ("run", "-m", MODEL, "--ids", "1", "-c", "513"),       # above the model's 512
    ("run", "-m", MODEL, "--ids", "1 512"),                # outside the 512-token vocabulary
    ("run", "-m", MODEL, "--ids", "1 -2"),
    ("run", "-m", MODEL, "--ids", "1 abc"),
    ("run", "-m", MODEL, "--ids", ""),
    ("run", "-m", MODEL, "-p", "Once upon a time"),        # llama2.c: no vocabulary
    ("run", "-m", MODEL, "--ids", " ".join(["1"] * 40), "-c", "32"),  # prompt longer than the context
    ("run", "-m", os.path.join(TMP, "no-such-model.gguf"), "--ids", "1"),
    ("run", "--ids", "1"),
    ("logits", "-m", MODEL, "--ids", " ".join(["5"] * 600)),  # context overflow
    ("logits", "-m", MODEL, "--ids", "1 99999"),
    ("logits", "-m", MODEL),
    ("logits", "-m", MODEL, "--ids", "1", "--top", "-1"),
    ("logits", "-m", MODEL, "--ids", "1", "--batch", "0"),
    ("perplexity", "-m", MODEL, "--ids-file", ids_path, "-c", "4096"),
    ("perplexity", "-m", MODEL, "--ids-file", os.path.join(TMP, "missing-ids.txt")),
    ("perplexity", "-m", MODEL, "-f", ids_path),           # text needs a vocabulary
    ("bench", "-m", MODEL, "-p", "600"),                     # more than the model's context
    ("bench", "-m", MODEL, "-r", "0"),
]
for args in bad:
    p = fitlm(*args)
    ok = p.returncode == 1 and "fitlm: error: " in p.stderr
    check(ok, "%s -> rc %d, stderr %r" % (" ".join(a if len(a) < 40 else a[:37] + "..." for a in args), p.returncode,
                                         p.stderr[-300:]))

sys.exit(te.report())
