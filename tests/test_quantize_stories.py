"""Quantized stories260K (a real trained model) against its float32 reference.

stories260K.bin is quantized by `fitlm quantize` to F32, Q8_0, Q4_K_M and Q4_0;
`fitlm logits` (KV cache in F32, so only the weights differ) then runs each on
the 256 teacher-forced ids of shared/data/stories260K/greedy-bos.txt, whose
argmax per position comes from llama2.c's run.c in fp32 (not from fitlm).

Checked:
  - F32: the argmax matches the reference everywhere (ties within 1e-3 either way);
  - Q8_0: argmax agreement >= 85% and the reference argmax in Q8_0's top 5 at
    >= 98% of positions; mean KL(F32 || Q8_0) of the next-token distributions
    below 0.06 nats (measured 0.039; 0.024 for a float64 numpy forward pass on the
    dequantized Q8_0 weights, the rest is the runtime's Q8 activations);
  - more bits, closer: KL(Q8_0) < KL(Q4_K_M) < KL(Q4_0).
Why 85% and not 95%: this 260K-parameter model is unusually sensitive. Adding
gaussian noise of Q8_0's size (0.6% of each matrix's RMS) to the float weights
moves the argmax at ~10% of these positions in an independent numpy forward
pass too, with a mean KL of 0.031 (docs/quantization.md has the figures);
fitlm's Q8_0 measures 89.5%.
"""
import math
import os
import shutil
import subprocess
import sys

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
SHARED = os.environ.get("FITLM_SHARED", "../shared")
TMP = os.path.join(os.environ.get("FITLM_TMP", "/tmp"), "test_quantize_stories")
D = os.path.join(SHARED, "data", "stories260K")
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    return cond


def parse_logits(text):
    """Lines 'pos P in ID argmax A sum S sumsq Q top I:L ...' -> list of dict id -> logit."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if not f or f[0] != "pos":
            continue
        out.append({int(x.split(":")[0]): float(x.split(":")[1]) for x in f[11:]})
    return out


def log_softmax(d, vocab):
    m = max(d.values())
    z = m + math.log(sum(math.exp(v - m) for v in d.values()))
    return [d[i] - z for i in range(vocab)]


def main():
    if not os.path.exists(os.path.join(D, "stories260K.bin")):
        print("skip: %s missing" % D)
        return 77
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    ref = [l.split() for l in open(os.path.join(D, "greedy-bos.txt")) if l.startswith("pos")]
    ids = [r[3] for r in ref]
    ref_argmax = [int(r[5]) for r in ref]
    ref_top = [[(int(x.split(":")[0]), float(x.split(":")[1])) for x in r[11:13]] for r in ref]
    vocab = 512
    lps, agree = {}, {}
    for t in ("F32", "Q8_0", "Q4_K_M", "Q4_0"):
        path = os.path.join(TMP, "stories-%s.gguf" % t)
        p = subprocess.run([FITLM, "quantize", os.path.join(D, "stories260K.bin"), path, t, "-q"],
                           capture_output=True, text=True)
        if not check(p.returncode == 0, "quantize %s: %s" % (t, p.stderr)):
            return 1
        p = subprocess.run([FITLM, "logits", "-m", path, "--ids", " ".join(ids), "--top", str(vocab),
                            "--kv-type", "f32"], capture_output=True, text=True)
        if not check(p.returncode == 0, "logits %s: %s" % (t, p.stderr)):
            return 1
        lg = parse_logits(p.stdout)
        if not check(len(lg) == len(ids) and all(len(d) == vocab for d in lg), "%s: %d positions" % (t, len(lg))):
            return 1
        ok = in5 = 0
        for pos, d in enumerate(lg):
            am = max(d, key=lambda i: (d[i], -i))
            tie = ref_top[pos][0][1] - ref_top[pos][1][1] < 1e-3 and am == ref_top[pos][1][0]
            ok += am == ref_argmax[pos] or tie
            top5 = sorted(d, key=lambda i: -d[i])[:5]
            in5 += ref_argmax[pos] in top5
        agree[t] = (ok, in5)
        lps[t] = [log_softmax(d, vocab) for d in lg]
    n = len(ids)
    kl = {}
    for t in ("Q8_0", "Q4_K_M", "Q4_0"):
        s = 0.0
        for a, b in zip(lps["F32"], lps[t]):
            s += sum(math.exp(x) * (x - y) for x, y in zip(a, b))
        kl[t] = s / n
    for t in ("F32", "Q8_0", "Q4_K_M", "Q4_0"):
        print("%-6s argmax agreement %3d/%d (%.1f%%), reference argmax in top 5: %.1f%%, mean KL vs F32 %s" %
              (t, agree[t][0], n, 100.0 * agree[t][0] / n, 100.0 * agree[t][1] / n,
               "%.5f" % kl[t] if t in kl else "-"))
    check(agree["F32"][0] == n, "F32 argmax differs from llama2.c at %d positions" % (n - agree["F32"][0]))
    check(agree["Q8_0"][0] >= 0.85 * n, "Q8_0 argmax agreement %d/%d" % (agree["Q8_0"][0], n))
    check(agree["Q8_0"][1] >= 0.98 * n, "Q8_0: reference argmax in top 5 at only %d/%d" % (agree["Q8_0"][1], n))
    check(kl["Q8_0"] < 0.06, "Q8_0 mean KL %.5f" % kl["Q8_0"])
    check(kl["Q8_0"] < kl["Q4_K_M"] < kl["Q4_0"], "KL not ordered by bits: %s" % kl)
    print("test_quantize_stories: %d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
