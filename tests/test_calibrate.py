"""`fitlm calibrate` and the host profile: written where it should be (temp
file + rename), read by `plan` (measured vs assumed) and by `bench
--plan-check`; every malformed profile refused with a message; the plan check's
memory rows within 3 % of the runtime's own accounting on stories260K and
quantized copies of it; the speed rows present with their error column."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

BIN = os.environ["FITLM_BIN"]
SHARED = os.environ.get("FITLM_SHARED", "")
TMP = os.path.join(te.tmp_dir(), "calibrate")
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
XDG = os.path.join(TMP, "xdg")


def run(*args, env_xdg=XDG, timeout=300):
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = env_xdg
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


# ---- calibrate writes the default profile (XDG_CACHE_HOME/fitlm/host.json) ----
rc, out, err = run("calibrate", "--quick", "-t", "1")
default = os.path.join(XDG, "fitlm", "host.json")
check(rc == 0, f"calibrate --quick: rc {rc}: {err}")
check(os.path.isfile(default), "calibrate wrote $XDG_CACHE_HOME/fitlm/host.json")
check(not [f for f in os.listdir(os.path.dirname(default)) if ".tmp" in f], "no temp file left behind")
prof = json.load(open(default)) if os.path.isfile(default) else {}
check(prof.get("format") == "fitlm-host-profile" and prof.get("version") == 1, "format and version")
bw = prof.get("read_bw_by_threads", [])
check(len(bw) == 1 and bw[0] > 1e8, f"read bandwidth for 1 thread measured: {bw}")
kern = {k["type"]: k for k in prof.get("kernels", [])}
for t in ("F16", "Q8_0", "Q4_0"):
    check(t in kern and kern[t]["decode_bw"] > 1e8 and kern[t]["prefill_flops"] > 1e8, f"kernel {t} timed: {kern.get(t)}")
# batched rows against one row: 2 .. 256 rows timed, never below one row's time, never falling with more rows
for t in ("F16", "Q8_0", "Q4_0"):
    br = kern.get(t, {}).get("batch_ratio", {})
    rs = [br.get(str(r), 0) for r in (2, 4, 8, 16, 32, 64, 128, 256)]
    check(all(r >= 1 for r in rs) and rs == sorted(rs), f"kernel {t}: batched-row ratios {br}")
check(prof.get("per_layer_s", 0) > 0, f"fixed cost per layer measured: {prof.get('per_layer_s')}")
# the fixed cost of a decode matmul call (two shapes from DRAM): present, and below a millisecond
check(0 <= prof.get("matmul_call_s", -1) < 1e-3, f"matmul call cost: {prof.get('matmul_call_s')}")
# a decode row's attention rate (synthetic model, short and long prompt): present and finite
check(1e6 < prof.get("attn_decode_flops", 0) < 1e16, f"decode attention rate: {prof.get('attn_decode_flops')}")
# a prompt's attention rate (the same model's prompts of 64 and 256 tokens): present and finite
check(1e6 < prof.get("attn_prefill_flops", 0) < 1e16, f"prompt attention rate: {prof.get('attn_prefill_flops')}")
check(prof.get("host", {}).get("physical_cores", 0) >= 1, "physical cores from /proc")
check("mhz" not in json.dumps(prof.get("host", {})).lower() or prof["host"]["max_mhz"] >= 0, "rated clock only")

# ---- plan reads it: measured; --no-profile / no file: assumed ----
rc, out, err = run("plan", "llama-3.2-1b")
check(rc == 0 and "cost model: host profile " + default in out, f"plan uses the default profile: {err}")
check(re.search(r"This machine \(.*GB/s measured\)", out) is not None, "host bandwidth shown as measured")
rc, out, err = run("plan", "llama-3.2-1b", "--no-profile")
check(rc == 0 and "cost model: assumed figures" in out, "--no-profile: assumed")
rc, out, err = run("plan", "llama-3.2-1b", env_xdg=os.path.join(TMP, "empty"))
check(rc == 0 and "cost model: assumed figures" in out and "estimated" in out, "no profile: assumed")
rc, out, err = run("plan", "llama-3.2-1b", "--json")
d = json.loads(out) if rc == 0 else {}
check(d.get("this_machine_cost_model", {}).get("source") == "measured", "JSON names the cost model's source")

# ---- an explicit profile elsewhere; bad ones refused ----
mine = os.path.join(TMP, "deep", "er", "mine.json")
rc, out, err = run("calibrate", "--quick", "-t", "1", "--profile", mine)
check(rc == 0 and os.path.isfile(mine), f"--profile FILE with missing parent folders: {err}")
rc, out, err = run("plan", "llama-3.2-1b", "--profile", mine)
check(rc == 0 and "cost model: host profile " + mine in out, "plan --profile FILE")


def bad(name, mutate, expect):
    p = json.load(open(mine))
    mutate(p)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        f.write(p if isinstance(p, str) else json.dumps(p))
    rc, out, err = run("plan", "llama-3.2-1b", "--profile", path)
    check(rc != 0 and err.startswith("fitlm: error:") and expect in err, f"{name}: rc {rc}: {err.strip()}")


# a profile written before the batched-row ratios were timed still loads (the 16-row rate alone)
old = json.load(open(mine))
for k in old["kernels"]:
    k.pop("batch_ratio", None)
old.pop("attn_decode_flops", None)  # nor the decode attention rate
old.pop("attn_prefill_flops", None)  # nor the prompt's
check(old.pop("quick", None) is True, "calibrate --quick marks its profile quick")  # nor the mark
old_path = os.path.join(TMP, "before-ratios.json")
with open(old_path, "w") as f:
    json.dump(old, f)
rc, out, err = run("plan", "llama-3.2-1b", "--profile", old_path)
check(rc == 0 and "cost model: host profile " + old_path in out, f"profile without batch_ratio: {err.strip()}")

bad("version", lambda p: p.update(version=99), "version 99")
bad("negative-bw", lambda p: p.update(read_bw_by_threads=[-1]), "read_bw_by_threads[0]")
bad("no-kernels", lambda p: p.pop("kernels"), "kernels")
bad("unknown-type", lambda p: p["kernels"][0].update(type="Q9_9"), "Q9_9")
bad("batch-ratio", lambda p: p["kernels"][0]["batch_ratio"].update({"8": 0.5}), "'8'")
bad("batch-ratio-type", lambda p: p["kernels"][0].update(batch_ratio=[1, 2]), "batch_ratio")
bad("layer-cost", lambda p: p.update(per_layer_s="fast"), "per_layer_s")
bad("call-cost", lambda p: p.update(matmul_call_s=-1), "matmul_call_s")
bad("attn-rate", lambda p: p.update(attn_decode_flops=-5), "attn_decode_flops")
bad("prompt-attn-rate", lambda p: p.update(attn_prefill_flops="x"), "attn_prefill_flops")
bad("quick-mark", lambda p: p.update(quick=1), "'quick' must be true or false")
bad("not-profile", lambda p: p.update(format="something"), "not a fitlm host profile")
# the GPUs `calibrate --device` measured (test_vulkan_model.py writes real ones): checked as strictly
DEV = {"name": "Some GPU", "backend": "vulkan", "memory_bytes": 8e9, "per_layer_s": 1e-5, "per_step_s": 3e-5,
       "quick": False, "kernels": [{"type": "Q4_0", "decode_bw": 5e11, "prefill_flops": 5e13}]}


def with_dev(**change):
    def mutate(p):
        d = json.loads(json.dumps(DEV))
        d.update(change)
        p["devices"] = [d]
    return mutate


good = json.load(open(mine))
with_dev()(good)
good_path = os.path.join(TMP, "with-device.json")
with open(good_path, "w") as f:
    json.dump(good, f)
rc, out, err = run("plan", "llama-3.2-1b", "-q", "q4_0", "--gpu", "local", "--engine", "fitlm", "--profile", good_path)
check(rc == 0 and "Some GPU: 7.5 GiB, 500.00 GB/s decode and 50000.00 GFLOP/s prompt matmuls" in out and
      "10.0 us per layer and 30.0 us per step" in out, f"plan --gpu local from a measured device: {out[-900:]} {err}")
rc, out, err = run("plan", "llama-3.2-1b", "--profile", good_path)
check(rc == 0 and "GPU Some GPU measured by 'fitlm calibrate --device'" in out and "--gpu local --engine fitlm" in out and
      "Some GPU:" not in out, f"plain plan: the measured GPU named under This machine, not ranked: {out[-700:]}")
bad("device-bw", with_dev(kernels=[{"type": "Q4_0", "decode_bw": -1, "prefill_flops": 1e12}]), "decode_bw")
bad("device-type", with_dev(kernels=[{"type": "Q9_9", "decode_bw": 1e9, "prefill_flops": 1e12}]), "Q9_9")
bad("device-no-kernels", with_dev(kernels=[]), "'kernels'")
bad("device-name", with_dev(name=7), "'name'")
bad("device-quick", with_dev(quick="yes"), "'quick'")
bad("devices-type", lambda p: p.update(devices={"a": 1}), "'devices'")
bad("devices-many", lambda p: p.update(devices=[DEV] * 5), "'devices'")
rc, out, err = run("plan", "llama-3.2-1b", "--profile", os.path.join(TMP, "missing.json"))
check(rc != 0 and err.startswith("fitlm: error:"), f"missing profile: {err.strip()}")
rc, out, err = run("plan", "llama-3.2-1b", "--profile", mine, "--no-profile")
check(rc != 0 and "contradict" in err, "--profile with --no-profile")
rc, out, err = run("calibrate", "-t", "0")
check(rc != 0 and err.startswith("fitlm: error:"), "calibrate -t 0 refused")
rc, out, err = run("calibrate", "--bogus")
check(rc != 0 and "unknown option" in err, "calibrate: unknown option")
# a corrupt default profile: a warning, assumed figures, not a failure
with open(default, "w") as f:
    f.write("{ not json")
rc, out, err = run("plan", "llama-3.2-1b")
check(rc == 0 and "warning" in err and "cost model: assumed figures" in out, f"corrupt default profile: {err.strip()}")
os.remove(default)

# ---- bench --plan-check: memory within 3 % of the runtime's accounting ----
stories = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")
if not os.path.isfile(stories):
    print("SKIP (bench part): no stories260K")
    sys.exit(te.report())
models = [stories]
for t in ("q8_0", "q4_0", "f16"):
    path = os.path.join(TMP, f"stories-{t}.gguf")
    rc, out, err = run("quantize", stories, path, t)
    check(rc == 0, f"quantize {t}: {err}")
    if rc == 0:
        models.append(path)


def mib(x):
    return float(x)


ROW = re.compile(r"^\| (.+?)\s+\|\s+(-?[0-9.]+) \|\s+(-?[0-9.]+) \| (\S+)\s*\|\s+(\S+) \|")


def plan_rows(text):
    """The plan check's rows after its heading: quantity -> (predicted, measured, unit, error, line)."""
    rows = {}
    if "plan check" in text:
        for line in text[text.index("plan check"):].splitlines():
            m = ROW.match(line)
            if m:
                rows[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), m.group(4), m.group(5), line)
    return rows

for mp in models:
    for extra in ([], ["-c", "100", "--kv-type", "q8_0"], ["-c", "256", "--batch", "7", "-t", "1"]):
        args = ["bench", "-m", mp, "-p", "16", "-n", "8", "-r", "2", "--membw-mib", "0", "--profile", mine, *extra]
        rc, out, err = run(*args)
        what = f"{os.path.basename(mp)} {' '.join(extra)}"
        check(rc == 0, f"{what}: bench rc {rc}: {err}")
        if "plan check" not in out:
            check(False, f"{what}: no plan check in bench output")
            continue
        rows = plan_rows(out)
        for comp in ("weights", "KV cache", "scratch"):
            if comp not in rows:
                check(False, f"{what}: no {comp} row")
                continue
            p_, m_, unit, e = rows[comp][:4]
            check(unit == "MiB" and m_ > 0 and abs(p_ - m_) <= 0.03 * m_ + 0.005, f"{what}: {comp} {p_} vs {m_}")
        # one count of the weight bytes a decoded token reads: the planner's (which bench's GB/s line also
        # prints) against the runtime's own, exact
        r = rows.get("weights read per token")
        st = re.search(r"generation streams ([0-9.]+) MB of weights per token", out)
        check(r is not None and r[2] == "MiB" and r[1] > 0 and abs(r[0] - r[1]) <= 0.0005 and st is not None
              and abs(float(st.group(1)) - r[0] * 1.048576) <= 0.002,
              f"{what}: weights read per token: planner {r and r[0]}, runtime {r and r[1]}, bench {st and st.group(1)} MB")
        for comp in ("peak resident (VmHWM)", "prefill pp16", "time to first token", "decode tg8"):
            r = rows.get(comp)
            check(r is not None and r[0] > 0 and r[1] > 0 and re.fullmatch(r"[+-][0-9.]+%", r[3]) is not None,
                  f"{what}: row {comp}: {r}")
        check("measured figures: read bandwidth, kernel rates, fixed costs" in out, f"{what}: sources named")
        check("read bandwidth" not in rows and "decode, host now" not in rows,
              f"{what}: no host-now rows without the probe (--membw-mib 0)")
        # nothing big beyond the model in the process: in particular no GPU driver left mapped by the
        # default device's probe (Mesa's lavapipe maps about 70 MiB of LLVM; the probe runs in a child)
        r = rows.get("peak resident (VmHWM)")
        check(r is not None and r[1] - r[0] < 16, f"{what}: peak resident {r and r[1]} MiB vs predicted {r and r[0]}")

# with the bandwidth probe: the profile's read bandwidth beside the probe's, the model's kernel and the
# decode attention rate timed again, and the decode prediction with them (the weight reads scaled by the
# ratio of the kernel's two bandwidths, the attention at the new rate, nothing else)
rc, out, err = run("bench", "-m", stories, "-p", "8", "-n", "16", "-r", "2", "-t", "1", "--membw-mib", "64",
                   "--profile", mine)
rows = plan_rows(out) if rc == 0 else {}
with open(mine) as fh:
    bw1 = json.load(fh)["read_bw_by_threads"][0] / 1e9
probe = re.search(r"measured memory read bandwidth \(1 threads, 64 MiB\): ([0-9.]+) GB/s", out)
r = rows.get("read bandwidth")
check(rc == 0 and r is not None and probe is not None and r[2] == "GB/s" and abs(r[0] - bw1) <= 0.006
      and abs(r[1] - float(probe.group(1))) <= 0.006,
      f"bench probe: read bandwidth row {r and r[:4]} vs profile {bw1:.2f} and probe {probe and probe.group(1)}")
a = rows.get("decode attention")
check(a is not None and a[2] == "ns" and a[0] > 0 and a[1] > 0, f"bench probe: decode attention row {a and a[:4]}")
d = rows.get("decode, host now")
tg = rows.get("decode tg16")
nm = re.search(r"weight reads ([0-9.e+-]+) -> ([0-9.e+-]+) ms, attention at mean context [0-9]+ ([0-9.e+-]+) -> "
               r"([0-9.e+-]+) ms, the rest ([0-9.e+-]+) ms", d[4]) if d else None
if d is None or tg is None or nm is None or r is None:
    check(False, f"bench probe: rows decode tg16 {tg and tg[:4]}, decode host now {d and d[4]}")
else:
    reads, reads2, attn, attn2, rest = (float(nm.group(i)) for i in range(1, 6))
    # stories260K's matrices are all F32: its one kernel, timed again, scales every weight read
    k = rows.get("F32 decode kernel")
    check(k is not None and k[2] == "GB/s" and k[0] > 0 and k[1] > 0 and abs(reads2 - reads * k[0] / k[1]) <= 0.002 * reads2 + 1e-4,
          f"bench probe: weight reads {reads} -> {reads2} ms vs the F32 kernel's bandwidths {k and k[:2]}")
    check(abs(1000.0 / (reads + attn + rest) - tg[0]) <= 0.01 * tg[0],
          f"bench probe: {reads} + {attn} + {rest} ms vs decode prediction {tg[0]} tok/s")
    want = 1000.0 / (reads2 + attn2 + rest)
    check(abs(d[0] - want) <= 0.01 * want and d[1] == tg[1],
          f"bench probe: decode host now {d[0]} vs {want:.2f} from its note; measured {d[1]} vs {tg[1]}")

# run --plan-check (its report on stderr): memory exact, and the host-now rows after a decode at a
# context (a 40-token prompt, a 128-position context: the step sized by it, not the 512-token default), the same decomposition as bench's
ids = " ".join(str(1 + (i * 37) % 500) for i in range(40))
rc, out, err = run("run", "-m", stories, "--ids", ids, "-n", "24", "--temp", "0", "-t", "1", "-c", "128", "--plan-check",
                   "--profile", mine)
rows = plan_rows(err) if rc == 0 else {}
check(rc == 0 and "plan check" in err, f"run --plan-check: rc {rc}, a plan check on stderr")
for comp in ("weights", "KV cache", "scratch"):
    r = rows.get(comp)
    check(r is not None and r[2] == "MiB" and abs(r[0] - r[1]) <= 0.03 * r[1] + 0.005, f"run --plan-check: {comp} {r and r[:2]}")
d, tg = rows.get("decode, host now"), rows.get("decode tg23")
nm = re.search(r"weight reads ([0-9.e+-]+) -> ([0-9.e+-]+) ms, attention at mean context ([0-9]+) ([0-9.e+-]+) -> "
               r"([0-9.e+-]+) ms, the rest ([0-9.e+-]+) ms", d[4]) if d else None
if d is None or tg is None or nm is None:
    check(False, f"run --plan-check: rows decode tg23 {tg and tg[:4]}, decode host now {d and d[4]}")
else:
    reads, reads2, ctx, attn, attn2, rest = (float(nm.group(i)) for i in range(1, 7))
    check(ctx == 52, f"run --plan-check: mean context {ctx} (40 prompt tokens + 23 decoded after the first)")
    check(abs(1000.0 / (reads2 + attn2 + rest) - d[0]) <= 0.01 * d[0] and d[1] == tg[1],
          f"run --plan-check: decode host now {d[0]} vs {reads2} + {attn2} + {rest} ms; measured {d[1]} vs {tg[1]}")

rc, out, err = run("bench", "-m", stories, "-p", "8", "-n", "4", "-r", "1", "--membw-mib", "0", "--no-plan-check")
check(rc == 0 and "plan check" not in out, "--no-plan-check")
rc, out, err = run("bench", "-m", stories, "-p", "8", "-n", "4", "-r", "1", "--membw-mib", "0",
                   env_xdg=os.path.join(TMP, "empty"))
check(rc == 0 and "no host profile" in out and "assumed:" in out, "bench without a profile: assumed figures named")
rc, out, err = run("bench", "-m", stories, "-p", "8", "-n", "4", "-r", "1", "--profile", os.path.join(TMP, "nope.json"))
check(rc != 0 and err.startswith("fitlm: error:"), f"bench with a missing profile: {err.strip()}")

# commands without a plan check refuse the flag
rc, out, err = run("perplexity", "-m", stories, "--ids-file", "/dev/null", "--plan-check")
check(rc != 0 and "unknown option '--plan-check'" in err, f"perplexity --plan-check refused: {err.strip()}")

sys.exit(te.report())
