"""fitlm serve --plan-check: at shutdown the planner's time per output token
and decode throughput at the measured concurrency (planner/cpu_cost.h,
fitlm_cpu_batch_step_s, the function `plan` uses for a batch on this machine)
beside the measured ones. stories260K (token ids), four sequences at once.

Checked against what the server itself reports: the measured time per token
is the /metrics inter-token-latency histogram's mean, the concurrency is the
generated tokens over the engine steps of the shutdown line, the weights row
is the file's tensor bytes, and the throughput is concurrency / time per token
on both sides."""
import json
import os
import re
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM = os.environ["FITLM_BIN"]
MODEL = os.path.join(os.environ["FITLM_SHARED"], "data", "stories260K", "stories260K.bin")
if not os.path.exists(MODEL):
    print("SKIP: stories260K is missing")
    sys.exit(77)
if subprocess.run([FITLM, "serve", "--help"], capture_output=True, text=True).returncode != 0:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)
# stories260K (llama2.c): dim 64, 5 layers, 8 heads / 4 KV heads of 8, FFN 172, vocab 512, shared
# classifier; its F32 tensors (the file's RoPE tables are not weights)
D, L, KV, F, V = 64, 5, 32, 172, 512
WEIGHTS_MIB = 4 * (V * D + L * (2 * D + 2 * D * D + 2 * D * KV + 3 * D * F) + D) / 2**20


def run_server(*extra):
    srv = sk.Server(FITLM, MODEL, "-t", "1", "-np", "4", *extra)
    barrier = threading.Barrier(8)

    def one(i):
        barrier.wait()
        st, j, _ = srv.post("/v1/completions", {"prompt": [1, 2, 3 + i], "max_tokens": 48, "temperature": 0})
        check(st == 200, f"request {i}: {st}")

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    m = srv.metrics()
    # the shut-down probe (with a profile) times the model's kernels again: seconds on an idle host, minutes
    # on one shared with other tests
    rc, log = srv.stop(signal.SIGINT, timeout=600)
    return rc, log, m


def table_rows(log):
    """The plan check's rows: quantity -> (predicted, measured, unit)."""
    rows = {}
    for line in log.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 6 and cells[1] and cells[1] != "quantity" and not cells[1].startswith("-"):
            try:
                rows[cells[1]] = (float(cells[2]), float(cells[3]), cells[4])
            except ValueError:
                pass
    return rows


rc, log, m = run_server("--plan-check")
check(rc == 0, f"clean exit with --plan-check: {rc}")
check("plan check: the planner's prediction beside this server" in log, "the plan check is printed at shutdown")
served = re.search(r"served (\d+) generated tokens in (\d+) steps", log)
conc = re.search(r"at the measured concurrency ([0-9.]+) \((\d+) generated tokens in (\d+) engine steps, (\d+) requests\)",
                 log)
check(served is not None and conc is not None, "shutdown line and the concurrency line")
rows = table_rows(log)
for k in ("weights", "time per output token", "decode throughput"):
    check(k in rows, f"row {k!r}")
if served and conc and all(k in rows for k in ("weights", "time per output token", "decode throughput")):
    gen, steps = int(served.group(1)), int(served.group(2))
    b = float(conc.group(1))
    check(gen == 8 * 48 and int(conc.group(2)) == gen and int(conc.group(3)) == steps and int(conc.group(4)) == 8,
          f"8 requests of 48 tokens: {gen} tokens, {steps} steps")
    check(abs(b - gen / steps) < 0.006 and 1 <= b <= 4, f"concurrency {b} = {gen} / {steps}, within -np 4")
    wp, wm, unit = rows["weights"]
    check(unit == "MiB" and abs(wm - WEIGHTS_MIB) < 0.006 and abs(wp - WEIGHTS_MIB) < 0.006,
          f"weights {wp} / {wm} MiB = the file's {WEIGHTS_MIB:.3f}")
    itl = m["fitlm_inter_token_latency_seconds_sum"] / m["fitlm_inter_token_latency_seconds_count"]
    tp, tm, unit = rows["time per output token"]
    check(unit == "ms" and abs(tm - itl * 1e3) <= 0.0006 + 1e-3 * itl * 1e3,
          f"measured time per token {tm} ms = the /metrics mean {itl * 1e3:.4f} ms")
    check(1e-4 < tp < 1e3, f"predicted time per token {tp} ms")
    # the prompt work the steps carried (chunked prefill) is the engine's own count
    pps = re.search(r"mean context \d+, ([0-9.]+) prompt tokens per step", log)
    want_pps = m["fitlm_prompt_tokens_total"] / steps
    check(pps is not None and abs(float(pps.group(1)) - want_pps) <= 0.051,
          f"prompt tokens per step {pps.group(1) if pps else None} = /metrics prompt tokens / steps {want_pps:.3f}")
    dp, dm, unit = rows["decode throughput"]
    check(unit == "tok/s" and abs(dp - b / (tp / 1e3)) <= 0.01 * dp and abs(dm - b / (tm / 1e3)) <= 0.01 * dm,
          f"throughput = concurrency / time per token: predicted {dp}, measured {dm}")

# with a host profile, the host-now rows at shut-down: the read bandwidth probed again, and the step with
# it (the same measured time per token as the row above)
prof = os.path.join(te.tmp_dir(), f"serve_plan_check_{os.getpid()}.json")
cal = subprocess.run([FITLM, "calibrate", "--quick", "-t", "1", "--profile", prof], capture_output=True, text=True)
check(cal.returncode == 0, f"calibrate --quick: {cal.stderr.strip()}")
if cal.returncode == 0:
    rc, log, _ = run_server("--plan-check", "--profile", prof)
    rows = table_rows(log)
    with open(prof) as fh:
        bw1 = json.load(fh)["read_bw_by_threads"][0] / 1e9
    r, t, n = rows.get("read bandwidth"), rows.get("time per output token"), rows.get("time per token, now")
    check(rc == 0 and r is not None and r[2] == "GB/s" and abs(r[0] - bw1) <= 0.006 and r[1] > 0,
          f"host now: read bandwidth {r} vs the profile's {bw1:.2f} GB/s")
    check(t is not None and n is not None and n[2] == "ms" and n[0] > 0 and n[1] == t[1],
          f"host now: time per token {n} beside the measured {t}")
    if r is None or n is None:
        print(f"exit status {rc}; the server's log ends:\n" + "\n".join(log.splitlines()[-15:]))
    os.remove(prof)

# layers on a GPU (lavapipe in CI) with --plan-gpu: the GPU planner's decode step for that catalog card
# (fitlm's engine profile), the same figure `fitlm plan --engine fitlm` gives for the sequences and context
# the note names, beside the same measured time per token
dev = subprocess.run([FITLM, "devices"], capture_output=True, text=True)
if "vulkan:0" in dev.stdout:
    rc, log, m = run_server("--plan-check", "--device", "vulkan", "--plan-gpu", "H100-SXM")
    rows = table_rows(log)
    planned = re.search(r"planned: (\d+) sequences after (\d+) positions", log)
    conc = re.search(r"at the measured concurrency ([0-9.]+)", log)
    t, d = rows.get("time per output token"), rows.get("decode throughput")
    check(rc == 0 and re.search(r"beside this server \(layers on .+\)", log) and planned and conc and t and d and
          "the catalog's H100-SXM" in log, "serve --device vulkan --plan-gpu: %r" % log[-800:])
    if planned and t and d and conc:
        seqs, pos, b = int(planned.group(1)), int(planned.group(2)), float(conc.group(1))
        p = subprocess.run([FITLM, "plan", "-m", MODEL, "--gpu", "H100-SXM:1", "--tp", "1", "--pp", "1", "--engine",
                            "fitlm", "--prompt-tokens", str(pos), "-n", "1", "-b", str(seqs), "-c", str(pos + 1),
                            "--chunk", "512", "--json"], capture_output=True, text=True)
        tpot = json.loads(p.stdout)["time"]["tpot_s"] * 1e3 if p.returncode == 0 else 0
        itl = m["fitlm_inter_token_latency_seconds_sum"] / m["fitlm_inter_token_latency_seconds_count"]
        check(seqs == int(b + 0.5) and tpot > 0 and abs(t[0] - tpot) <= 0.00006 + 1e-4 * tpot and
              abs(t[1] - itl * 1e3) <= 0.0006 + 1e-3 * itl * 1e3 and abs(d[0] - b / (t[0] / 1e3)) <= 0.01 * d[0],
              f"GPU serve plan check: predicted {t[0]} ms = fitlm plan's {tpot:.4f} ms for {seqs} sequences after "
              f"{pos} positions; measured {t[1]} ms = /metrics {itl * 1e3:.4f}")
    # the device measured by `calibrate --device`: the decode step at its measured rates, as `fitlm plan --gpu
    # local --engine fitlm` gives it
    gprof = os.path.join(te.tmp_dir(), f"serve_gpu_profile_{os.getpid()}.json")
    c = subprocess.run([FITLM, "calibrate", "--quick", "--device", "vulkan", "--profile", gprof], capture_output=True,
                       text=True, timeout=600)
    if check(c.returncode == 0, f"calibrate --quick --device vulkan: {c.stderr[-500:]}"):
        rc, log, m = run_server("--plan-check", "--device", "vulkan", "--profile", gprof)
        rows = table_rows(log)
        planned = re.search(r"planned: (\d+) sequences after (\d+) positions", log)
        t = rows.get("time per output token")
        check(rc == 0 and planned and t and "measured by fitlm calibrate --device --quick" in log,
              "serve on the measured device: %r" % log[-800:])
        if planned and t:
            seqs, pos = int(planned.group(1)), int(planned.group(2))
            p = subprocess.run([FITLM, "plan", "-m", MODEL, "--gpu", "local", "--profile", gprof, "--engine", "fitlm",
                                "--prompt-tokens", str(pos), "-n", "1", "-b", str(seqs), "-c", str(pos + 1),
                                "--chunk", "512", "--json"], capture_output=True, text=True)
            tpot = json.loads(p.stdout)["time"]["tpot_s"] * 1e3 if p.returncode == 0 else 0
            check(tpot > 0 and abs(t[0] - tpot) <= 0.00006 + 1e-4 * tpot,
                  f"measured-device serve plan check {t[0]} ms = fitlm plan --gpu local's {tpot:.4f} ms: {p.stderr}")
        os.remove(gprof)
    p = subprocess.run([FITLM, "serve", "-m", MODEL, "--plan-check", "--plan-gpu", "nope"], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 1 and "fitlm: error: --plan-gpu: no GPU 'nope' in the catalog" in p.stderr,
          f"serve --plan-gpu nope: {p.returncode} {p.stderr[-300:]}")

rc, log, _ = run_server()
check(rc == 0 and "plan check" not in log, "no plan check without the flag")
sys.exit(te.report())
