"""stories260K forward pass against the reference outputs of llama2.c's run.c.

Runs `fitlm logits` on the llama2.c checkpoint with the token ids of
$FITLM_SHARED/data/stories260K/{greedy-bos,bytes-once-upon}.txt (teacher
forcing) and checks every position:
  - argmax equal to the reference (or either of the reference top two when its
    top-2 margin is below 1e-3),
  - our logits of the reference top-5 ids within TOL of the reference values,
  - sum and sum of squares of all 512 logits within a small relative tolerance.
Both the batched prefill and one-token-at-a-time decode (--batch 1) and an odd
micro-batch size (--batch 7), with an F32 KV cache at TOL = 1e-3. Prefill and
decode must agree with each other within 1e-4 on all 512 logits. The default F16
and the Q8_0 KV caches are checked at the looser tolerances docs/runtime.md
reports. When `fitlm convert` exists, the same checks run on the model converted
to GGUF and to Hugging Face safetensors (rotate-half layout).
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TMP = te.tmp_dir()
D = os.path.join(SHARED, "data", "stories260K")
MODEL = os.path.join(D, "stories260K.bin")


def parse_lines(text):
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        assert f[0] == "pos" and f[2] == "in" and f[4] == "argmax" and f[6] == "sum" and f[8] == "sumsq" and f[10] == "top", line
        top = [(int(a), float(b)) for a, b in (x.split(":") for x in f[11:])]
        rows.append(dict(pos=int(f[1]), inp=int(f[3]), argmax=int(f[5]), sum=float(f[7]), sumsq=float(f[9]), top=top))
    return rows


def run_logits(model, ids, *extra):
    cmd = [FITLM, "logits", "-m", model, "--ids", " ".join(map(str, ids)), "--top", "512", "-t", "2"] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("command failed:", " ".join(cmd[:4]), extra, p.stderr.strip())
        return None
    return parse_lines(p.stdout)


def compare(ref, ours, tol, label, argmax_share=1.0):
    """Checks positions against the reference at logit tolerance `tol` (the
    argmax may be either of the reference top two when their margin is below
    max(tol, 1e-3)). With argmax_share < 1 (lossy Q8_0 KV cache) only that share
    of positions must have the reference argmax. Returns the max abs error over
    the reference top-5 logits."""
    if ours is None:
        check(False, label + ": fitlm logits failed")
        return float("inf")
    check(len(ours) == len(ref), "%s: %d positions, reference has %d" % (label, len(ours), len(ref)))
    worst = 0.0
    bad = 0
    argmax_bad = 0
    for r, o in zip(ref, ours):
        full = dict(o["top"])
        ok = r["inp"] == o["inp"]
        margin = r["top"][0][1] - r["top"][1][1]
        allowed = {r["argmax"]} | ({r["top"][1][0]} if margin < max(tol, 1e-3) else set())
        if o["argmax"] not in allowed:
            argmax_bad += 1
            ok = ok and argmax_share < 1.0
        for i, v in r["top"]:
            err = abs(full.get(i, float("inf")) - v)
            worst = max(worst, err)
            ok = ok and (err <= tol or argmax_share < 1.0)
        # sum: relative to the L2 scale of the whole logit vector (sum can be near 0)
        scale = (512 * r["sumsq"]) ** 0.5
        rel = 1e-4 if tol <= 1e-3 else 2e-2
        if argmax_share >= 1.0:
            ok = ok and abs(o["sum"] - r["sum"]) <= rel * scale
            ok = ok and abs(o["sumsq"] - r["sumsq"]) <= rel * r["sumsq"]
        if not ok:
            bad += 1
            if bad <= 3:
                print("%s: pos %d differs\n  ref  %s\n  ours argmax %d sum %.6f sumsq %.6f top %s" % (
                    label, r["pos"], r, o["argmax"], o["sum"], o["sumsq"], o["top"][:5]))
    check(bad == 0, "%s: %d of %d positions outside tolerance %g" % (label, bad, len(ref), tol))
    check(argmax_bad <= (1.0 - argmax_share) * len(ref),
          "%s: argmax differs at %d of %d positions" % (label, argmax_bad, len(ref)))
    print("%-40s max |err| over reference top-5 logits: %.3g" % (label, worst))
    return worst


def max_diff(a, b):
    m = 0.0
    for x, y in zip(a, b):
        dx, dy = dict(x["top"]), dict(y["top"])
        for k, v in dx.items():
            m = max(m, abs(v - dy.get(k, float("inf"))))
    return m


def check_model(model, tag, cases, full=True):
    for name, ref in cases:
        ids = [r["inp"] for r in ref]
        batched = run_logits(model, ids, "--kv-type", "f32")
        compare(ref, batched, 1e-3, "%s %s prefill f32-kv" % (tag, name))
        decode = run_logits(model, ids, "--kv-type", "f32", "--batch", "1")
        compare(ref, decode, 1e-3, "%s %s decode f32-kv" % (tag, name))
        if batched and decode:
            d = max_diff(batched, decode)
            print("%-40s prefill vs decode max |diff|: %.3g" % (tag + " " + name, d))
            check(d <= 1e-4, "%s %s: prefill and decode logits differ by %g" % (tag, name, d))
        if not full:
            continue
        compare(ref, run_logits(model, ids, "--kv-type", "f32", "--batch", "7"), 1e-3, "%s %s ubatch7 f32-kv" % (tag, name))
        # F16 cache: observed max error 0.025 (docs/runtime.md); checked at 0.04
        compare(ref, run_logits(model, ids), 4e-2, "%s %s prefill f16-kv" % (tag, name))
        compare(ref, run_logits(model, ids, "--batch", "1"), 4e-2, "%s %s decode f16-kv" % (tag, name))
        # Q8_0 cache: lossy (8-bit K/V); the argmax must still agree at >= 90% of positions
        compare(ref, run_logits(model, ids, "--kv-type", "q8_0"), 4e-2, "%s %s prefill q8_0-kv" % (tag, name), 0.9)


def have_command(name):
    p = subprocess.run([FITLM, name, "--help"], capture_output=True, text=True)
    return p.returncode == 0 and "not implemented" not in (p.stdout + p.stderr)


def have_convert():
    return have_command("convert")


def all_logits(rows):
    return {(r["pos"], i): v for r in rows for i, v in r["top"]}


def check_quantized(cases):
    """Quantized weights (fitlm quantize): the runtime on a Q8_0 / Q4_0 file
    must match the runtime on the same weights dequantized to F32 (fitlm
    quantize ... F32 --allow-requantize) up to the kernels' on-the-fly 8-bit
    activation rounding, which this small model (dim 64) amplifies to a few
    percent; a broken quantized path would be off by the logits' whole scale."""
    name, ref = cases[1]
    ids = [r["inp"] for r in ref][:64]
    for qtype in ("Q8_0", "Q4_0"):
        q = os.path.join(TMP, "stories260K-rt-%s.gguf" % qtype)
        deq = os.path.join(TMP, "stories260K-rt-%s-f32.gguf" % qtype)
        p1 = subprocess.run([FITLM, "quantize", MODEL, q, qtype, "-q"], capture_output=True, text=True)
        p2 = subprocess.run([FITLM, "quantize", q, deq, "F32", "--allow-requantize", "-q"], capture_output=True,
                            text=True)
        check(p1.returncode == 0 and p2.returncode == 0, "quantize %s: %s %s" % (qtype, p1.stderr, p2.stderr))
        if p1.returncode or p2.returncode:
            continue
        a, b = run_logits(q, ids, "--kv-type", "f32"), run_logits(deq, ids, "--kv-type", "f32")
        if a is None or b is None:
            check(False, "logits on %s failed" % qtype)
            continue
        la, lb = all_logits(a), all_logits(b)
        scale = max(abs(v) for v in lb.values())
        rel = max(abs(la[k] - lb[k]) for k in lb) / scale
        agree = sum(x["argmax"] == y["argmax"] for x, y in zip(a, b)) / len(a)
        print("%-40s vs its F32 dequantization: max rel logit diff %.3g, argmax agreement %.0f%%" % (
            "quantized " + qtype, rel, 100 * agree))
        check(rel < 0.15, "%s: relative logit difference %g to the dequantized weights" % (qtype, rel))
        check(agree >= 0.85, "%s: argmax agrees at only %.0f%% of positions" % (qtype, 100 * agree))


def main():
    cases = []
    for name in ("greedy-bos", "bytes-once-upon"):
        with open(os.path.join(D, name + ".txt")) as f:
            cases.append((name, parse_lines(f.read())))
    if os.environ.get("FITLM_SANITIZED"):
        cases = [(n, r[:48]) for n, r in cases]  # shorter sequences under ASan
    check_model(MODEL, "llama2c", cases)
    if have_convert():
        gguf = os.path.join(TMP, "stories260K-rt.gguf")
        hf = os.path.join(TMP, "stories260K-rt-hf")
        for out, fmt in ((gguf, "gguf"), (hf, "hf")):
            if os.path.isdir(out):
                shutil.rmtree(out)
            elif os.path.exists(out):
                os.remove(out)
            p = subprocess.run([FITLM, "convert", MODEL, out, "--to", fmt], capture_output=True, text=True)
            check(p.returncode == 0, "convert to %s failed: %s" % (fmt, p.stderr.strip()))
            if p.returncode == 0:
                check_model(out, fmt, cases, full=False)
    else:
        print("note: 'fitlm convert' not available yet; converted-model checks not run")
    if have_command("quantize"):
        check_quantized(cases)
    else:
        print("note: 'fitlm quantize' not available; quantized-weight checks not run")
    return te.report()


sys.exit(main())
