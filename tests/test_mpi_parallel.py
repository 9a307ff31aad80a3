"""Distributed inference over MPI (docs/parallel.md): `mpirun fitlm logits|run`
with tensor parallel (--tp 2), pipeline parallel (--pp 2) and both (--tp 2 --pp 2)
against the single process, on stories260K and on random llama / qwen2 (QKV
biases) / mistral (one KV head: replicated across tensor ranks; sliding window)
models in F32, F16 and Q8_0, once over shared memory and once over TCP only
(--mca btl tcp,self); then the failures: a mismatched launch (-np, different
model files on different ranks), a layout that would cut quantization blocks,
and a rank killed mid-generation, all ending every rank with "fitlm: error:".

Tolerances:
  - pipeline parallel runs exactly the single process's operations, split
    between processes: the logits must be bit-identical (the printed text equal);
  - tensor parallel reorders two sums per layer (attention output and FFN down:
    each rank's partial dot products, then their sum). In F32 that moves each
    sum by a few ulps of the sum of |terms| (2^-24 relative per addition);
    through a handful of layers that stays far below 1e-5 of the position's
    largest |logit| for F32/F16 weights (measured: at most 2e-6, stories260K).
    With Q8_0 the next matmul rounds its input to 8-bit blocks, and an
    activation moved by an ulp can land on the other side of a rounding step
    (1/127 of its block's largest value), which moves that one product by up
    to half a step: the bound is 1e-4 (measured: 5e-7, no such flip at these
    sizes). The measured differences are printed. Greedy generation must be
    identical.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import forward as ref  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402


def check(cond, msg):
    """testenv.check that also returns cond."""
    te.check(cond, msg)
    return cond


FITLM = te.require_env("FITLM_BIN")
SHARED = te.require_env("FITLM_SHARED")
MPIRUN = shutil.which("mpirun")
if os.environ.get("FITLM_HAVE_MPI") != "1" or not MPIRUN:
    print("SKIP: fitlm built without MPI or mpirun missing (apt-get install openmpi-bin libopenmpi-dev)")
    sys.exit(77)
TMP = os.path.join(te.tmp_dir(), "mpi")
os.makedirs(TMP, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# LeakSanitizer: OpenMPI's own allocations (libmpi, libopen-pal, its plugins) are not fitlm's
# (tests/lsan-mpi.supp). OpenMPI is built without frame pointers and unloads its plugins at
# MPI_Finalize, so the fast unwinder stops at an "<unknown module>" frame; the slow one reaches the
# libopen-pal / libmpi callers the suppressions name (a leak with a fitlm frame is still reported).
SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan-mpi.supp")
ENV["LSAN_OPTIONS"] = (ENV.get("LSAN_OPTIONS", "") + ":suppressions=" + SUPP + ":fast_unwind_on_malloc=0").lstrip(":")
# Under the sanitizers every rank is ~10x slower: one model per family, fewer layouts (docs/parallel.md)
SAN_MODELS = ("stories260K", "llama-q8_0", "qwen2-f16", "mistral-f32")
TRANSPORTS = {"sm": ["--mca", "btl", "self,vader"], "tcp": ["--mca", "btl", "tcp,self"]}
# pp2-turns: the stages take turns (--pp-schedule turns: one step in flight, no micro-batches, the waiting
# rank asleep on its doorbell); tp2pp2 with 4 ranks of 1 thread on a 2-CPU machine takes turns too (auto)
LAYOUTS = {"tp2": (2, ["--tp", "2"]), "pp2": (2, ["--pp", "2", "--pp-schedule", "overlap"]),
           "pp2-turns": (2, ["--pp", "2", "--pp-schedule", "turns"]), "tp2pp2": (4, ["--tp", "2", "--pp", "2"])}
TIMEOUT = 300 if te.SANITIZED else 120


def single(*args):
    return subprocess.run([FITLM] + [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT)


def mpi(np_, args, transport="sm", timeout=TIMEOUT, extra_mpi=()):
    cmd = [MPIRUN, "--oversubscribe", "-np", str(np_)] + TRANSPORTS[transport] + list(extra_mpi) + [FITLM] + \
        [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def parse_logits(text, vocab):
    rows = []
    for line in text.splitlines():
        v = np.zeros(vocab)
        for item in line.split()[11:]:
            i, x = item.split(":")
            v[int(i)] = float(x)
        rows.append(v)
    return np.array(rows)


# ---- the models ----
BASE = dict(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=128, vocab=97, ctx=64, eps=1e-5,
            rope_theta=10000.0, rope_layout="adjacent")
ARCHS = {
    "llama": ("llama", dict(BASE), dict(tied=False)),
    "qwen2": ("qwen2", dict(BASE, rope_theta=1e6, eps=1e-6, rope_layout="half"), dict(tied=False, bias=True)),
    "mistral": ("llama", dict(BASE, n_kv_heads=1, sliding_window=5), dict(tied=True)),
}
TYPES = {"f32": ref.TYPE_F32, "f16": ref.TYPE_F16, "q8_0": ref.TYPE_Q8_0}
models = []  # (name, path, vocab, ids)
stories = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")
if os.path.exists(stories):
    models.append(("stories260K", stories, 512, [1, 403, 407, 1255 % 512, 29, 13, 450 % 512, 342, 26, 8, 300, 17]))
else:
    check(False, "missing %s" % stories)
for arch, (gguf_arch, cfg, kw) in ARCHS.items():
    for tname, t in TYPES.items():
        name = "%s-%s" % (arch, tname)
        path = os.path.join(TMP, name + ".gguf")
        _, tens = ref.random_model(cfg, 7, weight_type=t, **kw)
        ref.write_gguf(path, ref.gguf_kv(cfg, gguf_arch), tens)
        ids = [int(x) for x in np.random.default_rng(3).integers(0, cfg["vocab"], 20)]
        models.append((name, path, cfg["vocab"], ids))

# ---- logits: every layout, both transports ----
worst = {}
for name, path, vocab, ids in models:
    if te.SANITIZED and name not in SAN_MODELS:
        continue
    args = ["logits", "-m", path, "--ids", " ".join(map(str, ids)), "--top", vocab, "-t", "1", "--kv-type", "f32"]
    ref_p = single(*args)
    if not check(ref_p.returncode == 0, "%s single process: %s" % (name, ref_p.stderr)):
        continue
    want = parse_logits(ref_p.stdout, vocab)
    # decode one token at a time too: the batch of every step travels, not just one prefill
    ref_b1 = single(*(args + ["--batch", "1"]))
    for transport in TRANSPORTS:
        if te.SANITIZED and transport == "tcp" and name != "stories260K":
            continue
        for lname, (np_, largs) in LAYOUTS.items():
            if transport == "tcp" and name not in SAN_MODELS:
                continue  # TCP: one model per family keeps the test short
            if te.SANITIZED and (lname, transport) != ("tp2pp2", "sm") and (name, transport) != ("stories260K", "sm"):
                continue
            p = mpi(np_, args + largs, transport)
            label = "%s %s %s" % (name, lname, transport)
            if not check(p.returncode == 0, "%s: exit %d: %s" % (label, p.returncode, p.stderr[-2000:])):
                continue
            if lname.startswith("pp2"):
                check(p.stdout == ref_p.stdout, "%s: pipeline-parallel logits differ from the single process" % label)
            else:
                got = parse_logits(p.stdout, vocab)
                if not check(got.shape == want.shape, "%s: %d positions, want %d" % (label, len(got), len(want))):
                    continue
                rel = (np.abs(got - want) / np.abs(want).max(axis=1, keepdims=True)).max()
                tol = 1e-4 if "q8_0" in name else 1e-5
                worst[label] = rel
                check(rel <= tol, "%s: relative logit difference %.3g > %g" % (label, rel, tol))
        if transport == "sm" and (not te.SANITIZED or name == "stories260K"):
            p = mpi(4, args + ["--tp", "2", "--pp", "2", "--batch", "1"], transport)
            if check(p.returncode == 0, "%s tp2pp2 --batch 1: %s" % (name, p.stderr[-2000:])):
                got, want1 = parse_logits(p.stdout, vocab), parse_logits(ref_b1.stdout, vocab)
                rel = (np.abs(got - want1) / np.abs(want1).max(axis=1, keepdims=True)).max()
                check(rel <= (1e-4 if "q8_0" in name else 1e-5), "%s tp2pp2 --batch 1: difference %.3g" % (name, rel))
for label, rel in sorted(worst.items()):
    print("%-28s max relative logit difference %.2e" % (label, rel))

# ---- a prompt chunk of 64+ rows is cut into up to 8 micro-batches (forward.c): still bit-identical ----
long_ids = " ".join(str(int(x)) for x in np.random.default_rng(5).integers(3, 512, 150))
largs = ["logits", "-m", stories, "--ids", long_ids, "--top", 4, "-t", "1"]
want = single(*largs)
p = mpi(2, largs + ["--pp", "2", "--pp-schedule", "overlap"])
check(want.returncode == 0 and p.returncode == 0 and p.stdout == want.stdout and len(want.stdout) > 1000,
      "stories260K: a 150-token prompt (4 micro-batches of 37-38 rows) under --pp 2 gives the single process's "
      "logits: %s" % p.stderr[-1000:])

# ---- --pp-schedule auto: turns when the ranks' threads exceed the host's CPUs, else overlapped ----
cpus = os.cpu_count() or 1
for threads, turns in ((cpus, True), (1, cpus < 2)):
    p = mpi(2, ["bench", "-m", stories, "-p", 8, "-n", 4, "-r", 1, "-t", threads, "--membw-mib", 0, "-c", 64,
                "--no-plan-check", "--pp", "2"])
    dist = [line for line in p.stdout.splitlines() if line.startswith("distributed:")]
    check(p.returncode == 0 and len(dist) == 1 and ("the stages in turns" in dist[0]) == turns,
          "--pp 2 -t %d on %d CPUs: the stages %s: %s" % (threads, cpus, "in turns" if turns else "overlapped",
                                                          dist or p.stderr[-800:]))
p = single("logits", "-m", stories, "--ids", "1 2", "--pp-schedule", "sideways")
check(p.returncode != 0 and "fitlm: error: --pp-schedule: expected auto, overlap or turns, got 'sideways'" in p.stderr,
      "a bad --pp-schedule: %s" % p.stderr)

# ---- explicit pipeline stages: --pp-layers ----
sargs = ["logits", "-m", stories, "--ids", "1 403 407 29 13", "--top", 512, "-t", "1"]
want = single(*sargs)
p = mpi(2, sargs + ["--pp", "2", "--pp-layers", "1,4"])
check(p.returncode == 0 and p.stdout == want.stdout, "--pp-layers 1,4: not bit-identical: %s" % p.stderr[-1000:])
p = mpi(2, sargs + ["--pp", "2", "--pp-layers", "2,2"])
check(p.returncode != 0 and "adds up to 4 layers, the model has 5" in p.stderr, "--pp-layers 2,2: %s" % p.stderr[-800:])

# ---- the memory report shows every rank, each holding its share ----
p = mpi(4, ["logits", "-m", os.path.join(TMP, "llama-f32.gguf"), "--ids", "1 2 3", "--tp", "2", "--pp", "2",
            "--memory-report"])
full = single("logits", "-m", os.path.join(TMP, "llama-f32.gguf"), "--ids", "1 2 3", "--memory-report")
if check(p.returncode == 0 and full.returncode == 0, "memory report tp2pp2: %s" % p.stderr[-1500:]):
    def weights_of(text):
        return [int(line.split("|")[2]) for line in text.splitlines() if line.startswith("| weights")]
    whole = weights_of(full.stderr)
    parts = weights_of(p.stderr)
    check(all(("memory of rank %d (" % r) in p.stderr for r in range(4)), "a report per rank:\n%s" % p.stderr[-3000:])
    # each rank: half the heads/FFN of one of two layers, the embedding on stage 0, the output on rank 2
    check(len(parts) == 4 and len(whole) == 1 and all(x < whole[0] / 2 for x in parts),
          "every rank's weights below half the model's %r: %r" % (whole, parts))

# ---- greedy generation: identical tokens ----
for name, path, vocab, ids in [m for m in models if m[0] in (("llama-q8_0",) if te.SANITIZED else SAN_MODELS)]:
    n = 40 if name == "stories260K" else 30
    args = ["run", "-m", path, "--ids", " ".join(map(str, ids[:4])), "-n", n, "--temp", "0", "--print-ids", "-t", "1",
            "-c", 64 if name != "stories260K" else 256]
    want = single(*args)
    if not check(want.returncode == 0, "%s run: %s" % (name, want.stderr)):
        continue
    for lname, (np_, largs) in LAYOUTS.items():
        p = mpi(np_, args + largs)
        check(p.returncode == 0 and p.stdout == want.stdout,
              "%s run %s: greedy output differs or failed (exit %d)\n%s\nwant\n%s\n%s" %
              (name, lname, p.returncode, p.stdout, want.stdout, p.stderr[-1500:]))
# stories260K's greedy continuation of BOS: the single process's, and the shared reference's (llama2.c
# run.c) for its first 20 tokens (later, near-ties may go either way: see the data's README)
refs = [int(line.split()[5]) for line in open(os.path.join(SHARED, "data", "stories260K", "greedy-bos.txt"))
        if line.startswith("pos ")]
args = ["run", "-m", stories, "--ids", "1", "-n", 60, "--temp", "0", "--print-ids", "-t", "1"]
want = single(*args)
p = mpi(4, args + ["--tp", "2", "--pp", "2"])
if check(p.returncode == 0 and want.returncode == 0, "stories260K run tp2pp2: %s" % p.stderr[-1500:]):
    got = [int(x) for x in p.stdout.split()]
    check(p.stdout == want.stdout, "stories260K tp2pp2 greedy differs from the single process")
    check(refs[:20] in (got[:20], got[1:21]), "stories260K tp2pp2 greedy %r != reference %r" % (got[:21], refs[:20]))


# ---- bench --plan-check under MPI: rank 0's memory is the planner's model of its share ----
ROW = re.compile(r"^\| (.+?)\s+\|\s+(-?[0-9.]+) \|\s+(-?[0-9.]+) \| (\S+)\s*\|\s+(\S+) \|")
for name, path, vocab, ids in [m for m in models if m[0] in ("stories260K", "llama-q8_0")]:
    for lname, (np_, largs) in LAYOUTS.items():
        p = mpi(np_, ["bench", "-m", path, "-p", 8, "-n", 4, "-r", 1, "-t", 1, "--membw-mib", 0, "-c", 64] + largs)
        if not check(p.returncode == 0 and "plan check" in p.stdout, "%s bench %s: %s" % (name, lname, p.stderr[-800:])):
            continue
        head = p.stdout[p.stdout.index("plan check"):]
        check("MPI ranks" in head.splitlines()[0] and "rank 0's share" in head.splitlines()[0],
              "%s %s: the plan check names the MPI layout" % (name, lname))
        rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3))) for m in map(ROW.match, head.splitlines()) if m}
        for comp in ("weights", "KV cache", "scratch"):
            pr, me = rows.get(comp, (None, None))
            # the table prints MiB with 2 decimals: a small model's KV can print as 0.00 on both sides
            check(pr is not None and (me > 0 or comp == "KV cache") and abs(pr - me) <= 0.03 * me + 0.005,
                  "%s %s plan check %s: predicted %s, rank 0 %s" % (name, lname, comp, pr, me))
        check("decode tg4" in rows and rows["decode tg4"][0] > 0, "%s %s: a decode prediction" % (name, lname))
        # peak resident: the process base is this rank's right after MPI's start (libraries, plugins, shared
        # memory: about 7 MiB more than a plain process here), so a small model's prediction stays within a few MiB
        # (not under the sanitizers: their shadow memory and redzones grow with every allocation)
        pr, me = rows.get("peak resident (VmHWM)", (None, None))
        check(pr is not None and (te.SANITIZED or abs(pr - me) <= 4.0) and "(this rank after MPI's start)" in head,
              "%s %s plan check peak resident: predicted %s, rank 0 %s MiB" % (name, lname, pr, me))


# ---- the host now under MPI: rank 0 probes this host at the whole run's threads (the others asleep) ----
# tp2: 2 ranks of 1 thread compute at once, so the probe's read bandwidth is the profile's at 2 threads;
# pp2, overlapping or in turns: a stage computes at a time, 1 thread. The host-now decode is its note's parts (the rest
# includes the step's communication). run --plan-check names the layout and models rank 0's share.
PROF = os.path.join(TMP, "host.json")
p = single("calibrate", "--quick", "-t", "2", "--profile", PROF)
if check(p.returncode == 0 and os.path.isfile(PROF), "calibrate --quick: %s" % p.stderr[-800:]):
    with open(PROF) as fh:
        prof_bw = [x / 1e9 for x in json.load(fh)["read_bw_by_threads"]]
    NOTE = re.compile(r"weight reads ([0-9.e+-]+) -> ([0-9.e+-]+) ms, attention at mean context ([0-9]+) "
                      r"([0-9.e+-]+) -> ([0-9.e+-]+) ms, the rest ([0-9.e+-]+) ms")
    ROWN = re.compile(r"^\| (.+?)\s+\|\s+(-?[0-9.]+) \|\s+(-?[0-9.]+) \| (\S+)\s*\|\s+(\S+) \| (.*)$")
    for lname, threads in (("tp2", 2), ("pp2", 1), ("pp2-turns", 1)):
        np_, largs = LAYOUTS[lname]
        for cmd in ("bench", "run"):
            args = (["bench", "-m", stories, "-p", 8, "-n", 16, "-r", 1, "--membw-mib", 64] if cmd == "bench" else
                    ["run", "-m", stories, "--ids", "1 2 3 4 5 6 7 8", "-n", 17, "--temp", 0, "--plan-check"])
            p = mpi(np_, args + ["-t", 1, "-c", 64, "--profile", PROF] + largs)
            text = p.stdout if cmd == "bench" else p.stderr
            if not check(p.returncode == 0 and "plan check" in text, "%s %s host now: %s" % (cmd, lname, p.stderr[-800:])):
                continue
            head = text[text.index("plan check"):]
            check(("%s MPI ranks of 1 threads" % ("2 x 1" if lname == "tp2" else "1 x 2")) in head.splitlines()[0],
                  "%s %s: the header names the layout: %s" % (cmd, lname, head.splitlines()[0]))
            rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3)), m.group(6))
                    for m in map(ROWN.match, head.splitlines()) if m}
            for comp in ("weights", "KV cache", "scratch"):
                pr, me, _ = rows.get(comp, (None, None, None))
                check(pr is not None and abs(pr - me) <= 0.03 * me + 0.005,
                      "%s %s: %s predicted %s, rank 0 %s" % (cmd, lname, comp, pr, me))
            r = rows.get("read bandwidth")
            check(r is not None and abs(r[0] - prof_bw[threads - 1]) <= 0.006 and r[1] > 0,
                  "%s %s: read bandwidth row %r vs the profile's %.2f GB/s at %d threads" %
                  (cmd, lname, r, prof_bw[threads - 1], threads))
            d = rows.get("decode, host now")
            tg = rows.get("decode tg16")
            nm = NOTE.search(d[2]) if d else None
            if not check(d is not None and tg is not None and nm is not None,
                         "%s %s: rows decode tg16 %r, decode, host now %r" % (cmd, lname, tg, d)):
                continue
            reads, reads2, ctx, attn, attn2, rest = (float(nm.group(i)) for i in range(1, 7))
            check(abs(1000.0 / (reads2 + attn2 + rest) - d[0]) <= 0.01 * d[0] and d[1] == tg[1],
                  "%s %s: decode host now %s vs %s + %s + %s ms; measured %s vs %s" %
                  (cmd, lname, d[0], reads2, attn2, rest, d[1], tg[1]))
            check(abs(1000.0 / (reads + attn + rest) - tg[0]) <= 0.01 * tg[0],
                  "%s %s: %s + %s + %s ms vs the decode prediction %s" % (cmd, lname, reads, attn, rest, tg[0]))

    # F16 matrices whose values are all bfloat16 values run as BF16 (the CPU backend converts them, on every rank):
    # the split run's plan takes the BF16 rates for the whole model's F16 matrices, exactly as for the same values in
    # a BF16 file (it once moved rank 0's converted bytes alone, half the model: the prompt planned 15-24 % slow)
    # (wide enough that the matmuls, not the fixed costs per layer, make up the prompt's time)
    WIDE = dict(BASE, dim=256, head_dim=64, ffn=1024, vocab=128)
    _, tens = ref.random_model(WIDE, 11, weight_type=ref.TYPE_BF16, tied=False)
    as_bf16, as_f16 = [], []
    for tname, _, bits, shape in tens:
        vals = (bits.astype(np.uint32) << 16).view(np.float32)
        vals = np.where(np.abs(vals) < 2.0 ** -14, 0, vals).astype(np.float32)  # no F16 subnormals
        if len(shape) == 2:
            b16, _ = ref.to_bf16(vals)
            as_bf16.append((tname, ref.TYPE_BF16, b16, shape))
            as_f16.append((tname, ref.TYPE_F16, vals.astype(np.float16), shape))
        else:
            as_bf16.append((tname, ref.TYPE_F32, vals, shape))
            as_f16.append((tname, ref.TYPE_F32, vals, shape))
    preds = {}
    for fname, tl in (("bf16", as_bf16), ("f16", as_f16)):
        path = os.path.join(TMP, "bf16-values-%s.gguf" % fname)
        ref.write_gguf(path, ref.gguf_kv(WIDE, "llama"), tl)
        for lname in ("tp2", "pp2"):
            np_, largs = LAYOUTS[lname]
            p = mpi(np_, ["bench", "-m", path, "-p", 32, "-n", 4, "-r", 1, "-t", 1, "--membw-mib", 0, "-c", 64,
                          "--profile", PROF] + largs)
            if check(p.returncode == 0 and "plan check" in p.stdout, "%s %s bench: %s" % (fname, lname, p.stderr[-800:])):
                head = p.stdout[p.stdout.index("plan check"):]
                rows = {m.group(1).strip(): float(m.group(2)) for m in map(ROW.match, head.splitlines()) if m}
                preds[(fname, lname)] = (rows.get("prefill pp32"), rows.get("decode tg4"))
    for lname in ("tp2", "pp2"):
        a, b = preds.get(("f16", lname)), preds.get(("bf16", lname))
        check(a is not None and b is not None and None not in a + b and
              all(abs(x - y) <= 0.005 * y for x, y in zip(a, b)),
              "%s: F16 of bfloat16 values planned as BF16: prefill, decode %r vs the BF16 file's %r" % (lname, a, b))
        print("%s: F16 of bfloat16 values: planned %r, the BF16 file %r" % (lname, a, b))


# ---- failures: every rank ends with "fitlm: error:", fast, never a hang ----
def fails(label, p, expect, ranks):
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("fitlm: error:")]
    ok = p.returncode != 0 and any(expect in ln for ln in errs) and len(errs) >= ranks
    check(ok, "%s: want exit != 0 and %d 'fitlm: error: ...%s...' lines, got exit %d:\n%s" %
          (label, ranks, expect, p.returncode, p.stderr[-2500:]))


llama_q8 = os.path.join(TMP, "llama-q8_0.gguf")
t0 = time.time()
p = mpi(3, ["logits", "-m", llama_q8, "--ids", "1 2 3", "--tp", "2"], timeout=TIMEOUT)
fails("-np 3 with --tp 2", p, "-np must equal T x P x D", 3)
p = mpi(2, ["logits", "-m", llama_q8, "--ids", "1 2 3"], timeout=TIMEOUT)
fails("-np 2 without --tp/--pp", p, "mpirun started 2", 2)
p = single("logits", "-m", llama_q8, "--ids", "1 2 3", "--tp", "2")
check(p.returncode != 0 and "start it with mpirun -np 2" in p.stderr, "one process with --tp 2: %s" % p.stderr)
# data parallel is for serve (test_mpi_serve.py); the one-request commands refuse it on every rank
p = mpi(2, ["logits", "-m", llama_q8, "--ids", "1 2 3", "--dp", "2"], timeout=TIMEOUT)
fails("logits --dp 2", p, "data-parallel replicas are for `fitlm serve`", 2)
# a layout that would cut Q8_0 blocks: FFN 96 / 2 = 48 columns
cut_cfg = dict(BASE, ffn=96)
_, tens = ref.random_model(cut_cfg, 5, weight_type=ref.TYPE_Q8_0, tied=False)
cut = os.path.join(TMP, "cut-q8_0.gguf")
ref.write_gguf(cut, ref.gguf_kv(cut_cfg, "llama"), tens)
p = mpi(2, ["logits", "-m", cut, "--ids", "1 2 3", "--tp", "2"], timeout=TIMEOUT)
fails("--tp 2 cutting Q8_0 blocks", p, "not whole 32-element quantization blocks", 2)
p = mpi(4, ["logits", "-m", llama_q8, "--ids", "1 2 3", "--tp", "4"], timeout=TIMEOUT)  # 4 heads, 2 KV heads: fine
check(p.returncode != 0 and "quantization blocks" in p.stderr,
      "--tp 4 on a 64-wide Q8_0 O matrix (16-column parts) must be refused: %s" % p.stderr[-800:])
p = mpi(3, ["logits", "-m", llama_q8, "--ids", "1 2 3", "--tp", "3"], timeout=TIMEOUT)
fails("--tp 3 with 4 heads", p, "does not divide the model's 4 attention heads", 3)
# different model files (same shapes, other weights and metadata) on the two ranks: the header hashes differ
other = os.path.join(TMP, "llama-q8_0-other.gguf")
cfg2 = dict(BASE, rope_theta=20000.0)
_, tens = ref.random_model(cfg2, 8, weight_type=ref.TYPE_Q8_0, tied=False)
ref.write_gguf(other, ref.gguf_kv(cfg2, "llama"), tens)
cmd = [MPIRUN, "--oversubscribe", "-np", "1", FITLM, "logits", "-m", llama_q8, "--ids", "1 2 3", "--pp", "2", ":",
       "-np", "1", FITLM, "logits", "-m", other, "--ids", "1 2 3", "--pp", "2"]
p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
fails("different model files", p, "header hash", 2)
check(time.time() - t0 < (600 if te.SANITIZED else 120), "the failure cases took %.0f s" % (time.time() - t0))

# ---- a rank killed mid-generation: every rank exits non-zero within 10 s ----
big = dict(n_layers=2, dim=256, n_heads=4, n_kv_heads=2, head_dim=64, ffn=512, vocab=16000, ctx=4096, eps=1e-5,
           rope_theta=10000.0, rope_layout="adjacent")
_, tens = ref.random_model(big, 9, weight_type=ref.TYPE_F32, tied=False)
slow = os.path.join(TMP, "kill-llama.gguf")
ref.write_gguf(slow, ref.gguf_kv(big, "llama"), tens)
for lname, (np_, largs) in (("tp2", LAYOUTS["tp2"]),) + ((("pp2", LAYOUTS["pp2"]),) if not te.SANITIZED else ()):
    cmd = [MPIRUN, "--oversubscribe", "-np", str(np_), FITLM, "run", "-m", slow, "--ids", "1 2 3", "-n", "4000",
           "--temp", "0", "--print-ids", "-t", "1", "-c", "4096"] + largs
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    # wait for generated tokens, then kill world rank 1 (found by its environment)
    victim, deadline = None, time.time() + 60
    first = os.read(proc.stdout.fileno(), 64)
    while victim is None and time.time() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
                if b"OMPI_COMM_WORLD_RANK=1" in env and os.getsid(int(pid)) == os.getsid(proc.pid) and \
                        open("/proc/%s/comm" % pid).read().strip() == "fitlm":
                    victim = int(pid)
            except (OSError, ProcessLookupError):
                continue
        time.sleep(0.05)
    if not check(victim is not None and first.strip() != b"", "%s kill: rank 1 not found or no output" % lname):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        continue
    os.kill(victim, signal.SIGKILL)
    t0 = time.time()
    try:
        out, err = proc.communicate(timeout=10)
        elapsed = time.time() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        elapsed = 99
    check(elapsed < 10, "%s kill: the job took %.1f s to end after rank 1 died" % (lname, elapsed))
    check(proc.returncode != 0, "%s kill: mpirun exited 0" % lname)
    err = err.decode(errors="replace")
    check("fitlm: error: rank 0" in err, "%s kill: no 'fitlm: error: rank 0 ...' message:\n%s" % (lname, err[-2000:]))
    print("%s: rank 1 killed, job ended in %.2f s, exit %d" % (lname, elapsed, proc.returncode))

sys.exit(te.report())
