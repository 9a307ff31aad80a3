"""Whole models through the Vulkan backend (on lavapipe in CI):

  - stories260K (`--device vulkan`, F32 KV cache) against the llama2.c reference
    vectors in $FITLM_SHARED/data/stories260K/ at the CPU backend's tolerances
    (top-5 logits within 1e-3, argmax, sum and sum of squares), batched prefill,
    one-token decode (first 64 positions) and micro-batches of 7, prefill and decode within 1e-4 of
    each other; the F16 cache at the CPU test's 4e-2;
  - the same with the layers split between the GPU and the CPU (-ngl 2 of 5),
    and with -ngl 0 (everything on the CPU but the device chosen);
  - greedy generation (`run --temp 0`) token for token identical to the CPU
    backend's, whole model and split;
  - random llama / mistral (sliding window) / qwen2 (biases, rotate-half) /
    qwen3 (q/k norm) models with F32, F16, BF16, Q8_0 and Q4_0 weights against
    the numpy forward pass of tests/ref/forward.py with exact F32 activations
    (the shaders do not round activations) within 1e-4 of the largest |logit|,
    split with -ngl 1 against the reference that rounds the CPU layer's matmul
    inputs as the CPU kernels do; and against the CPU backend: within 1e-4 for
    F32/F16, and for Q8_0/Q4_0/BF16, whose CPU matmuls round their inputs
    (8-bit blocks, bfloat16), within 5e-2;
  - a model with a weight type the shaders lack (Q5_0) runs with those matrices
    on the CPU (and says so), the rest on the GPU, against the numpy reference;
  - --fit; a device too small for the model (FITLM_VULKAN_MEM_LIMIT): `fitlm:
    error: out of device memory ...` naming -ngl / --fit, and --fit choosing the
    layers that fit there (still matching the reference); device errors as
    `fitlm: error:` (a device index that does not exist).
Skips (77) when the build has no Vulkan backend or there is no Vulkan device,
unless FITLM_REQUIRE_VULKAN is set (CI), where that is a failure.
"""
import http.client
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "pyutil"))
sys.path.insert(0, os.path.join(HERE, "ref"))
import forward as ref  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TMP = te.tmp_dir()
D = os.path.join(SHARED, "data", "stories260K")
MODEL = os.path.join(D, "stories260K.bin")


def fitlm(*args):
    return te.run(FITLM, *args)


p = fitlm("devices")
if "vulkan:0" not in p.stdout:
    why = "no Vulkan device (fitlm devices: %s)" % (p.stdout + p.stderr).strip().replace("\n", "; ")
    if os.environ.get("FITLM_REQUIRE_VULKAN"):
        print("FITLM_REQUIRE_VULKAN is set but " + why)
        sys.exit(1)
    print("SKIP: " + why)
    sys.exit(77)


def parse_lines(text):
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        top = [(int(a), float(b)) for a, b in (x.split(":") for x in f[11:])]
        rows.append(dict(pos=int(f[1]), inp=int(f[3]), argmax=int(f[5]), sum=float(f[7]), sumsq=float(f[9]), top=top))
    return rows


def ref_rows(name):
    with open(os.path.join(D, name)) as f:
        return parse_lines(f.read())


def stories_logits(ids, *extra):
    q = fitlm("logits", "-m", MODEL, "--ids", " ".join(map(str, ids)), "--top", "512", *extra)
    if q.returncode != 0:
        print("logits failed:", extra, q.stderr.strip())
        return None
    return parse_lines(q.stdout)


def compare_ref(ref_, ours, tol, label):
    if ours is None:
        check(False, label + ": fitlm logits failed")
        return
    check(len(ours) == len(ref_), "%s: %d positions, reference has %d" % (label, len(ours), len(ref_)))
    worst, bad = 0.0, 0
    for r, o in zip(ref_, ours):
        full = dict(o["top"])
        margin = r["top"][0][1] - r["top"][1][1]
        allowed = {r["argmax"]} | ({r["top"][1][0]} if margin < max(tol, 1e-3) else set())
        ok = r["inp"] == o["inp"] and o["argmax"] in allowed
        for i, v in r["top"]:
            err = abs(full.get(i, float("inf")) - v)
            worst = max(worst, err)
            ok = ok and err <= tol
        scale = (512 * r["sumsq"]) ** 0.5
        rel = 1e-4 if tol <= 1e-3 else 2e-2
        ok = ok and abs(o["sum"] - r["sum"]) <= rel * scale and abs(o["sumsq"] - r["sumsq"]) <= rel * r["sumsq"]
        if not ok:
            bad += 1
            if bad <= 3:
                print("%s: pos %d differs: ref %s ours %s" % (label, r["pos"], r["top"], o["top"][:5]))
    check(bad == 0, "%s: %d of %d positions outside tolerance %g" % (label, bad, len(ref_), tol))
    print("%-44s max |err| over reference top-5 logits: %.3g" % (label, worst))


def max_diff(a, b):
    m = 0.0
    for x, y in zip(a, b):
        dx, dy = dict(x["top"]), dict(y["top"])
        for k, v in dx.items():
            m = max(m, abs(v - dy.get(k, float("inf"))))
    return m


# ---- stories260K against the llama2.c reference ----
SPLITS = (("--device", "vulkan", "-ngl", "2"), ("--device", "vulkan:0", "-ngl", "0"))
for dev in (("--device", "vulkan"),) + SPLITS:
    tag = " ".join(dev[1:])
    for name in ("greedy-bos.txt", "bytes-once-upon.txt"):
        r = ref_rows(name)
        ids = [x["inp"] for x in r]
        pre = stories_logits(ids, "--kv-type", "f32", *dev)
        compare_ref(r, pre, 1e-3, "%s %s prefill f32-kv" % (tag, name))
        # one token at a time: the first 64 positions (lavapipe runs each
        # submission on the CPU: the whole 256 would dominate the test's time)
        dec = stories_logits(ids[:64], "--kv-type", "f32", "--batch", "1", *dev)
        compare_ref(r[:64], dec, 1e-3, "%s %s decode f32-kv" % (tag, name))
        if pre and dec:
            d = max_diff(pre, dec)
            check(d <= 1e-4, "%s %s: prefill and decode differ by %g" % (tag, name, d))
        if dev == ("--device", "vulkan"):
            compare_ref(r, stories_logits(ids, "--kv-type", "f32", "--batch", "7", *dev), 1e-3,
                        "%s %s ubatch7 f32-kv" % (tag, name))
            compare_ref(r, stories_logits(ids, *dev), 4e-2, "%s %s prefill f16-kv" % (tag, name))

# ---- greedy generation: identical token ids on the CPU and on the GPU ----
prompt = "1 82 113 102 104 35 120 115 114 113 35 100 35 119 108 112 104"
runs = {}
for dev in (("--device", "cpu"), ("--device", "vulkan"), ("--device", "vulkan", "-ngl", "3")):
    q = fitlm("run", "-m", MODEL, "--ids", prompt, "-n", "80", "--temp", "0", "--kv-type", "f32", "--print-ids", *dev)
    check(q.returncode == 0, "run %s: %s" % (dev, q.stderr.strip()))
    runs[dev] = q.stdout.split()
cpu_ids = runs[("--device", "cpu")]
check(len(cpu_ids) >= 80, "greedy run on the CPU produced %d ids" % len(cpu_ids))
for dev, got in runs.items():
    check(got == cpu_ids, "greedy %s differs from the CPU backend (first difference at %s)" % (
        dev, next((i for i, (a, b) in enumerate(zip(got, cpu_ids)) if a != b), min(len(got), len(cpu_ids)))))
print("greedy: %d tokens identical on %s" % (len(cpu_ids), ", ".join(" ".join(d) for d in runs)))

# ---- random models against the numpy reference and the CPU backend ----
BASE = dict(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=96, vocab=97, ctx=64, eps=1e-5,
            rope_theta=10000.0)
T = 24


def logits_of(path, ids, vocab, *extra):
    q = fitlm("logits", "-m", path, "--ids", " ".join(map(str, ids)), "--top", str(vocab), "--kv-type", "f32",
              *extra)
    if q.returncode != 0:
        print("logits failed:", extra, q.stderr.strip())
        return None
    out = np.zeros((len(ids), vocab))
    for t, line in enumerate(q.stdout.splitlines()):
        for item in line.split()[11:]:
            i, v = item.split(":")
            out[t, int(i)] = float(v)
    return out


def rel_err(got, want):
    return (np.abs(got - want) / np.abs(want).max(axis=1, keepdims=True)).max()


def case(name, arch, cfg, tied=True, bias=False, weight_type=ref.TYPE_F32, seed=1, qk_norm=False):
    w, tens = ref.random_model(cfg, seed, tied=tied, bias=bias, weight_type=weight_type, qk_norm=qk_norm)
    path = os.path.join(TMP, "vk-%s.gguf" % name)
    ref.write_gguf(path, ref.gguf_kv(cfg, arch), tens)
    ids = list(np.random.default_rng(seed + 100).integers(0, cfg["vocab"], T))
    want = ref.forward(cfg, w, np.array(ids))  # exact F32 activations, as the shaders compute
    # -ngl 1: layer 0 (and a tied output, which stays with the CPU's token
    # embedding) on the CPU, whose matmuls round their inputs as
    # test_forward_ref.py emulates (8-bit blocks for Q8_0/Q4_0, bfloat16 for BF16)
    on_cpu = lambda n: n.startswith("blk.0.") or n == "token_embd.weight"  # noqa: E731
    qact = {n for n, t, _, ne in tens if t in (ref.TYPE_Q8_0, ref.TYPE_Q4_0) and len(ne) == 2 and on_cpu(n)}
    bact = {n for n, t, _, ne in tens if t == ref.TYPE_BF16 and len(ne) == 2 and on_cpu(n)}
    want_split = ref.forward(cfg, w, np.array(ids), qact=qact, bact=bact)
    # bfloat16 rounding of the CPU's inputs: float32-vs-float64 differences flip
    # the odd activation across a rounding boundary (test_forward_ref.py: 1e-2)
    split_tol = 1e-2 if bact else 1e-4
    cpu = logits_of(path, ids, cfg["vocab"], "--device", "cpu")
    # the CPU backend's own activation rounding (measured up to 3.1e-2 of the
    # largest logit at these sizes for Q8_0); each backend is held to 1e-4 of
    # its exact reference above, this only bounds their distance
    cpu_tol = 1e-4 if weight_type in (ref.TYPE_F32, ref.TYPE_F16) else 5e-2
    for extra, label in ((("--device", "vulkan"), "prefill"), (("--device", "vulkan", "--batch", "1"), "decode"),
                         (("--device", "vulkan", "--batch", "5"), "ubatch5"),
                         (("--device", "vulkan", "-ngl", "1"), "ngl1")):
        got = logits_of(path, ids, cfg["vocab"], *extra)
        if got is None:
            check(False, "%s %s: fitlm failed" % (name, label))
            continue
        e_ref = rel_err(got, want_split if label == "ngl1" else want)
        e_cpu = rel_err(got, cpu) if cpu is not None else float("inf")
        print("%-12s %-8s vs numpy %.2e, vs cpu %.2e" % (name, label, e_ref, e_cpu))
        tol = split_tol if label == "ngl1" else 1e-4
        check(e_ref <= tol, "%s %s: relative error %g vs the numpy reference" % (name, label, e_ref))
        check(e_cpu <= cpu_tol, "%s %s: relative error %g vs the CPU backend" % (name, label, e_cpu))


qwen = dict(BASE, rope_theta=1e6, eps=1e-6, rope_layout="half")
case("qwen2", "qwen2", qwen, tied=False, bias=True)
case("mistral", "llama", dict(BASE, rope_layout="adjacent", sliding_window=5), tied=True)
llama31 = dict(BASE, rope_layout="adjacent", rope_theta=500000.0,
               rope_scaling=dict(type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_context=16))
case("llama31", "llama", llama31, tied=False)
case("llama-f16", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_F16, tied=False)
case("llama-bf16", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_BF16)
case("llama-q8_0", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_Q8_0, tied=False)
case("qwen2-q4_0", "qwen2", qwen, weight_type=ref.TYPE_Q4_0, bias=True)
case("qwen3", "qwen3", dict(qwen, head_dim=32), tied=False, qk_norm=True)

# ---- a weight type without Vulkan kernels (Q5_0) stays on the CPU, with a note ----
import gguf_quants as gq  # noqa: E402

cfg = dict(BASE, rope_layout="adjacent")
w, tens = ref.random_model(cfg, 3)
name = "blk.1.ffn_down.weight"
shape = w[name].shape
rng = np.random.default_rng(5)
nb = w[name].size // 32
blocks = bytearray()
for i in range(nb):  # Q5_0 blocks {half d; u8 qh[4]; u8 qs[16]}: x = d * (q - 16)
    blocks += np.array([rng.uniform(0.001, 0.004)], dtype="<f2").tobytes()
    blocks += rng.integers(0, 256, 20, dtype=np.uint8).tobytes()
w[name] = gq.dequantize(6, bytes(blocks)).reshape(shape).astype(np.float64)
tens = [(n, 6, bytes(blocks), ne) if n == name else (n, t, d, ne) for n, t, d, ne in tens]
path = os.path.join(TMP, "vk-q5_0.gguf")
ref.write_gguf(path, ref.gguf_kv(cfg, "llama"), tens)
ids = list(np.random.default_rng(7).integers(0, cfg["vocab"], T))
want = ref.forward(cfg, w, np.array(ids), qact={name})  # that matmul on the CPU: 8-bit input blocks
q = fitlm("logits", "-m", path, "--ids", " ".join(map(str, ids)), "--top", str(cfg["vocab"]), "--kv-type", "f32",
          "--device", "vulkan")
check(q.returncode == 0 and "Q5_0 weights stay on the CPU" in q.stderr, "Q5_0 model on vulkan: %r" % q.stderr)
if q.returncode == 0:
    got = np.zeros((T, cfg["vocab"]))
    for t, line in enumerate(q.stdout.splitlines()):
        for item in line.split()[11:]:
            i, v = item.split(":")
            got[t, int(i)] = float(v)
    e = rel_err(got, want)
    print("q5_0 on the CPU, the rest on vulkan: vs numpy %.2e" % e)
    check(e <= 1e-4, "Q5_0 model on vulkan: relative error %g" % e)

# ---- --fit: all 5 layers of stories260K fit lavapipe's heap, and it says why ----
q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "vulkan", "--fit")
check(q.returncode == 0 and "--fit: 5 of 5 layers on" in q.stderr and "MiB" in q.stderr,
      "--fit: %r" % q.stderr)
q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "cpu", "-ngl", "2")
check(q.returncode == 1 and q.stderr.startswith("fitlm: error: ") and "GPU device" in q.stderr,
      "-ngl on the CPU is an error: %r" % q.stderr)

# ---- a device too small for the model (FITLM_VULKAN_MEM_LIMIT caps the memory the
# backend may hold): an error that says what would work; --fit picks the layers
# that fit (2 of 5 in 2600 KiB with a 512-position F32 cache) and still matches
# the reference ----
os.environ["FITLM_VULKAN_MEM_LIMIT"] = "1200K"
q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "vulkan", "--kv-type", "f32", "-c", "512")
check(q.returncode == 1 and q.stderr.startswith("fitlm: error: ") and "out of device memory" in q.stderr and
      "--fit" in q.stderr and q.stderr.count("\n") == 1, "a model that does not fit: %r" % q.stderr)
# --fit uses the runtime's memory model: in 2600K the model says 3 of 5 layers
# (2.38 MiB predicted, 2.68 MiB for 4); the device really holds no more than
# predicted (memory report), and -ngl 4 really does not fit
os.environ["FITLM_VULKAN_MEM_LIMIT"] = "2600K"
r = ref_rows("greedy-bos.txt")
q = fitlm("logits", "-m", MODEL, "--ids", " ".join(str(x["inp"]) for x in r), "--top", "512", "--device", "vulkan",
          "--kv-type", "f32", "-c", "512", "--fit", "--memory-report")
m_fit = re.search(r"--fit: (\d+) of 5 layers on .*: ([0-9.]+) MiB of ([0-9.]+) MiB free \(FITLM_VULKAN_MEM_LIMIT",
                  q.stderr)
check(q.returncode == 0 and m_fit is not None and "runtime's memory model" in q.stderr and
      "one more layer needs" in q.stderr, "--fit in 2600K: %r" % q.stderr)
held = re.search(r"\| llvmpipe[^|]*\|\s+(\d+) of 5\s+\|\s+([0-9.]+) \|", q.stdout + q.stderr)
if m_fit and held:
    n_fit = int(m_fit.group(1))
    check(n_fit == 3 and held.group(1) == "3", "--fit in 2600K chose %d layers: %r" % (n_fit, q.stderr))
    # predicted bytes are an upper bound within the allocation rounding (< 0.01 MiB) of what is held
    check(float(held.group(2)) <= float(m_fit.group(2)) + 0.05 and
          float(m_fit.group(2)) - float(held.group(2)) < 0.1,
          "--fit predicted %s MiB, the device holds %s MiB" % (m_fit.group(2), held.group(2)))
    compare_ref(r, parse_lines(q.stdout) if q.returncode == 0 else None, 1e-3, "--fit in 2600K prefill f32-kv")
    q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "vulkan", "--kv-type", "f32", "-c", "512",
              "-ngl", str(n_fit + 1))
    check(q.returncode == 1 and "out of device memory" in q.stderr,
          "-ngl %d (one more than --fit chose) in 2600K: %r" % (n_fit + 1, q.stderr))
else:
    check(False, "--fit output or memory report not found: %r %r" % (q.stderr, q.stdout[-800:]))
del os.environ["FITLM_VULKAN_MEM_LIMIT"]

# ---- device errors ----
q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "vulkan:7")
check(q.returncode == 1 and q.stderr.startswith("fitlm: error: ") and "no Vulkan device 7" in q.stderr,
      "a missing device is an error: %r" % q.stderr)
q = fitlm("logits", "-m", MODEL, "--ids", "1 2", "--device", "tpu")
check(q.returncode == 1 and q.stderr.startswith("fitlm: error: ") and "unknown device" in q.stderr,
      "an unknown device is an error: %r" % q.stderr)

# ---- FITLM_VULKAN_COOPMAT=1 (the tensor-core prefill, VK_NV_cooperative_matrix):
# `fitlm run` says whether the device took it; where it did not (lavapipe) the
# tokens are the default's; where it did, F16 inputs may change them (printed).
# Not 0 or 1: an error ----
dev0 = p.stdout.split("vulkan:1 ")[0]
os.environ["FITLM_VULKAN_COOPMAT"] = "1"
q = fitlm("run", "-m", MODEL, "--ids", prompt, "-n", "80", "--temp", "0", "--kv-type", "f32", "--print-ids",
          "--device", "vulkan:0")
os.environ["FITLM_VULKAN_COOPMAT"] = "yes"
qbad = fitlm("run", "-m", MODEL, "--ids", prompt, "-n", "4", "--device", "vulkan:0")
del os.environ["FITLM_VULKAN_COOPMAT"]
check(qbad.returncode == 1 and qbad.stderr.startswith("fitlm: error: FITLM_VULKAN_COOPMAT: 'yes' is not 0 or 1"),
      "FITLM_VULKAN_COOPMAT=yes: rc %d %r" % (qbad.returncode, qbad.stderr))
if "cooperative-matrix prefill (FITLM_VULKAN_COOPMAT=1): available" in dev0:
    same = sum(a == b for a, b in zip(q.stdout.split(), cpu_ids))
    check(q.returncode == 0 and "prefill matmuls on" in q.stderr, "coopmat run: rc %d %r" % (q.returncode, q.stderr))
    print("coopmat: used; greedy ids equal to the CPU's at %d of %d" % (same, len(cpu_ids)))
else:
    check(q.returncode == 0 and "FITLM_VULKAN_COOPMAT=1 but" in q.stderr and "the F32 shaders run" in q.stderr and
          q.stdout.split() == runs[("--device", "vulkan")],
          "coopmat asked for on a device without it: rc %d, same tokens %s, %r" % (
              q.returncode, q.stdout.split() == runs[("--device", "vulkan")], q.stderr))
    print("coopmat: not available on vulkan:0, the default shaders ran (same tokens)")
# the cooperative-matrix shader with its NV intrinsics emulated (test hook, any
# device with shaderFloat16): stories260K prefill against the reference, whole
# and split. Every matmul's inputs rounded to F16 (2^-11) through 5 layers and
# the output matrix moved the top-5 logits (magnitude ~12) by up to 0.048 on
# lavapipe: tolerance 0.1, still far below what a misplaced tile would do
if "fp16 arithmetic: yes" in dev0:
    os.environ["FITLM_VULKAN_COOPMAT"] = "emulate"
    for dev in (("--device", "vulkan:0"), ("--device", "vulkan:0", "-ngl", "2")):
        r = ref_rows("greedy-bos.txt")
        compare_ref(r, stories_logits([x["inp"] for x in r], "--kv-type", "f32", *dev), 0.1,
                    "coopmat emulated %s greedy-bos.txt prefill" % " ".join(dev[1:]))
    del os.environ["FITLM_VULKAN_COOPMAT"]

# ---- run --plan-check with layers on the GPU: the device-independent rows
# (stories260K's F32 tensors, an F16 cache of 512 positions x 5 layers x K+V of
# 32) and no CPU speed prediction; with -ngl 0 the CPU's, at the CPU's threads ----
W_MIB = 4 * (512 * 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172) + 64) / 2**20
q = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "8", "--device", "vulkan", "--plan-check")
rows = {}
for line in q.stderr.split("plan check:")[-1].splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) >= 6 and cells[1] and cells[1] != "quantity" and not cells[1].startswith("-"):
        rows[cells[1]] = cells[2:5]
check(q.returncode == 0 and re.search(r"plan check: the planner's prediction beside this run \(layers on .+\)", q.stderr)
      and "not predicted on" in q.stderr, "plan check on the GPU: rc %d %r" % (q.returncode, q.stderr[-600:]))
check(abs(float(rows.get("weights", ["0"])[0]) - W_MIB) < 0.006 and rows["weights"][0] == rows["weights"][1] and
      rows.get("KV cache", [0, 0])[0] == "0.31" and rows["KV cache"][1] == "0.31" and
      not any(k.startswith(("decode", "prefill", "peak", "scratch")) for k in rows),
      "plan check on the GPU: the weights and KV rows only: %r" % rows)
check("speed not predicted: " in q.stderr and "is not a card of the catalog" in q.stderr,
      "plan check on lavapipe: no catalog card, no speed: %r" % q.stderr[-600:])


def gpu_plan_rows(*extra):
    """run --plan-check on the GPU with extra flags: (rc, {row: [predicted, measured, unit]}, stderr)"""
    p = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "8", "--temp", "0", "--device", "vulkan",
              "--plan-check", *extra)
    out = {}
    for line in p.stderr.split("plan check:")[-1].splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 6 and cells[1] and cells[1] != "quantity" and not cells[1].startswith("-"):
            out[cells[1]] = cells[2:5]
    return p.returncode, out, p.stderr


def plan_time(gpu, prompt, output, *extra):
    """the `fitlm plan` figures for the same file, card and workload (the plan check must be this planner)"""
    p = fitlm("plan", "-m", MODEL, "--gpu", gpu + ":1", "--tp", "1", "--pp", "1", "--engine", "fitlm",
              "--prompt-tokens", str(prompt), "-n", str(output), "-c", "512", "--chunk", "512", "--json", *extra)
    return json.loads(p.stdout)["time"] if p.returncode == 0 else {}


def decode_row(rows):
    """(tokens, [predicted, measured, unit]) of the \"decode tgN\" row (a run stops early at an end token)"""
    for k, v in rows.items():
        mt = re.fullmatch(r"decode tg(\d+)", k)
        if mt:
            return int(mt.group(1)), v
    return 0, ["0", "0", ""]


# --plan-gpu NAME: the speed rows from the GPU planner for that catalog card,
# the same figures `fitlm plan --engine fitlm` gives for the run's workload
# (run: a 3-token prompt, then the tokens decoded after it)
rc, rows, err = gpu_plan_rows("--plan-gpu", "H100-SXM")
n_dec, dec = decode_row(rows)
t1, tn = plan_time("H100-SXM", 3, 1), plan_time("H100-SXM", 3, max(n_dec, 1))
pre = rows.get("prefill pp3", ["0", "0"])
check(rc == 0 and n_dec > 0 and t1 and tn and abs(float(pre[0]) / t1["prefill_tokens_per_s"] - 1) < 2e-6 and
      abs(float(dec[0]) / tn["decode_tokens_per_s"] - 1) < 2e-6 and float(pre[1]) > 0 and float(dec[1]) > 0 and
      abs(float(rows.get("time to first token", ["0"])[0]) / (t1["ttft_s"] * 1e3) - 1) < 1e-2 and
      "the catalog's H100-SXM (3350 GB/s" in err,
      "plan check --plan-gpu H100-SXM: the planner's figures %r %r beside %r" % (t1, tn, rows))
# layers on the host: they run on the host CPU, prompt and decode (slower than
# all on the card), as `fitlm plan -ngl 2 --engine fitlm` predicts (the same
# threads: the run's default, the host profile's or the cores)
rc, rows2, err = gpu_plan_rows("--plan-gpu", "H100-SXM", "-ngl", "2")
n_dec2, dec2 = decode_row(rows2)
t1b, tnb = plan_time("H100-SXM", 3, 1, "-ngl", "2"), plan_time("H100-SXM", 3, max(n_dec2, 1), "-ngl", "2")
pre2 = rows2.get("prefill pp3", ["0", "0"])
check(rc == 0 and n_dec2 > 0 and t1b and tnb and abs(float(pre2[0]) / t1b["prefill_tokens_per_s"] - 1) < 2e-6 and
      abs(float(dec2[0]) / tnb["decode_tokens_per_s"] - 1) < 2e-6 and float(pre2[0]) < float(pre[0]) and
      float(dec2[0]) < float(dec[0]) and "3 of 5 layers on this host's CPU, prompt and decode" in err,
      "plan check --plan-gpu with -ngl 2: %r %r %r %r" % (rows2, t1b, tnb, err[-400:]))
# an unknown card: a clear error before anything runs
p = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "8", "--device", "vulkan", "--plan-check",
          "--plan-gpu", "H999")
check(p.returncode == 1 and "fitlm: error: --plan-gpu: no GPU 'H999' in the catalog" in p.stderr and
      "plan check:" not in p.stderr, "--plan-gpu H999: rc %d %r" % (p.returncode, p.stderr[-300:]))
q = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "8", "--device", "vulkan", "-ngl", "0", "-t", "1",
          "--plan-check", "--plan-gpu", "H100-SXM")
check(q.returncode == 0 and "; 1 threads)" in q.stderr and "decode tg" in q.stderr and
      "--plan-gpu H100-SXM not used: no layers ran on a GPU" in q.stderr,
      "plan check with -ngl 0: the CPU's prediction at -t 1 (--plan-gpu not used): %r" % q.stderr[-800:])

# ---- a lost device (FITLM_VK_FAULT plays VK_ERROR_DEVICE_LOST at a chosen
# submission): `fitlm: error:` saying so and exit 1, never a crash or a hang, on
# the weight upload (0), the prefill (3) and during decode (40), whole and split;
# what was printed before the loss is the start of the undisturbed output ----
q0 = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "30", "--temp", "0", "--print-ids", "--device", "vulkan")
for n_ok in (0, 3, 40):
    for ngl in ("5", "2"):
        os.environ["FITLM_VK_FAULT"] = "device_lost_after:%d" % n_ok
        q = fitlm("run", "-m", MODEL, "--ids", "1 403 2", "-n", "30", "--temp", "0", "--print-ids", "--device",
                  "vulkan", "-ngl", ngl)
        del os.environ["FITLM_VK_FAULT"]
        err_lines = [x for x in q.stderr.splitlines() if x.startswith("fitlm: error: ")]
        check(q.returncode == 1 and len(err_lines) == 1 and "was lost" in err_lines[0] and
              "VK_ERROR_DEVICE_LOST" in err_lines[0] and "Sanitizer" not in q.stderr,
              "device lost after %d submissions, -ngl %s: rc %d %r" % (n_ok, ngl, q.returncode, q.stderr))
        check(q0.returncode == 0 and q0.stdout.startswith(q.stdout.strip()),
              "output before the loss %r is not the start of %r" % (q.stdout, q0.stdout))
        if n_ok == 40:
            check(len(q.stdout.split()) > 0, "decode ran before the loss at submission 41: %r" % q.stdout)

# `fitlm calibrate --device vulkan`: the GPU measured through fitlm's backend
# (quick: F32 and Q4_0 on small synthetic models), kept in the host profile
# beside the CPU's; a plan check on that device then takes its rates, the same
# figures `fitlm plan --gpu local --engine fitlm` gives for the run's workload
gprof = os.path.join(TMP, "host-gpu.json")
q = fitlm("calibrate", "--quick", "--device", "vulkan", "--profile", gprof)
devs = []
if check(q.returncode == 0 and os.path.exists(gprof), "calibrate --device vulkan: rc %d %r" % (q.returncode, q.stderr[-800:])):
    with open(gprof) as f:
        pj = json.load(f)
    devs = pj.get("devices", [])
    kern = {k["type"]: k for k in devs[0]["kernels"]} if devs else {}
    check(len(devs) == 1 and devs[0]["backend"] == "vulkan" and devs[0]["quick"] is True and
          set(kern) == {"F32", "Q4_0"} and all(k["decode_bw"] > 0 and k["prefill_flops"] > 0 for k in kern.values()) and
          devs[0]["per_layer_s"] >= 0 and devs[0]["per_step_s"] >= 0 and pj["kernels"] and pj["read_bw_by_threads"],
          "calibrate --device: the device entry beside the host's figures: %r" % devs)
    # a calibration of the host alone keeps the measured GPU
    q = fitlm("calibrate", "--quick", "--profile", gprof)
    with open(gprof) as f:
        check(q.returncode == 0 and json.load(f).get("devices") == devs, "calibrate without --device keeps the GPU")
for bad in (("--device", "cpu"), ("--device", "vulkan:99"), ("--device",)):
    bp = os.path.join(TMP, "host-bad.json")
    q = fitlm("calibrate", "--quick", "--profile", bp, *bad)
    check(q.returncode == 1 and q.stderr.startswith("fitlm: error: ") and not os.path.exists(bp),
          "calibrate %r: rc %d %r" % (bad, q.returncode, q.stderr[-300:]))
if devs:
    name = devs[0]["name"]
    rc, rows, err = gpu_plan_rows("--profile", gprof)
    n_dec, dec = decode_row(rows)
    pre = rows.get("prefill pp3", ["0", "0"])
    t1, tn = (plan_time("local", 3, 1, "--profile", gprof), plan_time("local", 3, max(n_dec, 1), "--profile", gprof))
    check(rc == 0 and n_dec > 0 and t1 and tn and abs(float(pre[0]) / t1["prefill_tokens_per_s"] - 1) < 2e-6 and
          abs(float(dec[0]) / tn["decode_tokens_per_s"] - 1) < 2e-6 and
          ("speed on %s: measured by fitlm calibrate --device --quick" % name) in err,
          "plan check with the measured GPU: %r beside %r %r: %r" % (rows, t1, tn, err[-600:]))
    # the decode prediction is the measured figures' sum: fixed costs + weight bytes / bandwidth (+ the KV's)
    d0 = devs[0]
    fixed = d0["per_step_s"] + 5 * d0["per_layer_s"]
    bw = {k["type"]: k["decode_bw"] for k in d0["kernels"]}["F32"]
    tpot = tn.get("tpot_s", 0)
    check(tpot > fixed and abs(tpot - fixed - W_MIB * 2**20 / bw) < 0.02 * (tpot - fixed),
          "decode step %r = fixed %r + weights at %r B/s" % (tpot, fixed, bw))
    # --plan-gpu NAME still plans for that catalog card instead
    rc, rows, err = gpu_plan_rows("--profile", gprof, "--plan-gpu", "H100-SXM")
    check(rc == 0 and "the catalog's H100-SXM" in err and "measured by" not in err,
          "--plan-gpu over a measured device: %r" % err[-400:])
p_ = fitlm("plan", "llama-3-8b", "--gpu", "local", "--no-profile")
check(p_.returncode == 1 and "fitlm calibrate --device vulkan" in p_.stderr, "plan --gpu local unmeasured: %r" % p_.stderr)

# `fitlm serve` on a device lost during a request (after the weights: 36
# matrix uploads): the request fails (an error status or a closed connection),
# the server logs `fitlm: error:` with the cause, every later request fails too
# (the loss is sticky: no garbage from a dead device), and it still shuts down
# cleanly on SIGTERM
import servekit as sk  # noqa: E402


def serve_fails(srv):
    try:
        st, _, _ = srv.post("/v1/completions", {"prompt": [1, 403, 2], "max_tokens": 40}, timeout=60)
        return st >= 500
    except (OSError, http.client.HTTPException):
        return True


srv = sk.Server(FITLM, MODEL, "--device", "vulkan", "-c", "256", env={"FITLM_VK_FAULT": "device_lost_after:45"})
n_req = 1
while not serve_fails(srv) and n_req < 20:  # stories260K may stop early at its end token
    n_req += 1
again = serve_fails(srv)
rc, log = srv.stop()
check(n_req < 20 and again and rc == 0 and "fitlm: error: Vulkan: the device" in log and "was lost" in log and
      "Sanitizer" not in log,
      "serve on a lost device: failed at request %d, the next failed %s, exit %s: %r" % (n_req, again, rc, log[-1500:]))

sys.exit(te.report())
