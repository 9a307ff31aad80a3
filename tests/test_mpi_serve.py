"""`mpirun fitlm serve --tp 2` and `--pp 2` (docs/parallel.md): rank 0 owns
HTTP and the scheduler, the other rank evaluates its share of every step. The
official OpenAI Node client (tests/serve/openai_client.js: chat, streaming,
completions, stop words, seeded sampling, error classes) gets the same
answers from the distributed server as from a single-process one (greedy and
seeded texts, finish reasons, token usage; logprobs within 1e-4 under tensor
parallel, whose reordered sums move logits by ~1e-6: test_mpi_parallel.py),
once over shared memory and once over TCP only. SIGTERM to mpirun ends every
rank.

Data parallel (`--dp 2`, also with `--pp 2` and over TCP): the same client
answers, then concurrent greedy completions give the single process's texts
and /metrics shows that both replica groups got requests and generated tokens.
The same concurrent completions under `--pp 2` give the single process's
texts while the engine keeps two lanes' steps in the pipeline at once
(/metrics counts the steps submitted while another was in flight), and
streams cancelled by their clients mid-generation, while their step is in
flight, end as cancelled with every KV block free again.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402

FITLM, SHARED, SRC = te.require_env("FITLM_BIN", "FITLM_SHARED", "FITLM_SRC")
MPIRUN = shutil.which("mpirun")
if os.environ.get("FITLM_HAVE_MPI") != "1" or not MPIRUN:
    print("SKIP: fitlm built without MPI or mpirun missing (apt-get install openmpi-bin libopenmpi-dev)")
    sys.exit(77)
if subprocess.run([FITLM, "serve", "--help"], capture_output=True).returncode:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)
if not shutil.which("node") or not os.path.isdir(os.path.join(SRC, "tests", "node_modules", "openai")):
    print("SKIP: node or the npm openai client (bash scripts/setup.sh) is missing")
    sys.exit(77)
TMP = os.path.join(te.tmp_dir(), "mpi")
os.makedirs(TMP, exist_ok=True)
MODEL = sk.make_model(os.path.join(TMP, "serve-model.gguf"), SHARED)
KEY, NAME = "sk-fitlm-test", "tiny-llama2-vocab"
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       # OpenMPI's own allocations: see test_mpi_parallel.py
       "LSAN_OPTIONS": (os.environ.get("LSAN_OPTIONS", "") + ":suppressions=" +
                        os.path.join(SRC, "tests", "lsan-mpi.supp") + ":fast_unwind_on_malloc=0").lstrip(":")}


def check(cond, msg):
    te.check(cond, msg)
    return cond


def wrapper(label, mpi_args, fitlm_args):
    """A script that runs `mpirun ... fitlm ARGS... EXTRA` (servekit starts it as its binary)."""
    path = os.path.join(TMP, "mpirun-%s.sh" % label)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec %s --oversubscribe %s %s \"$@\" %s\n" % (MPIRUN, " ".join(mpi_args), FITLM,
                                                                      " ".join(fitlm_args)))
    os.chmod(path, 0o755)
    return path


def client(srv):
    p = subprocess.run(["node", os.path.join(SRC, "tests", "serve", "openai_client.js"), srv.base, KEY, NAME],
                       capture_output=True, text=True, timeout=600)
    if not check(p.returncode == 0, "the OpenAI client ran: %s" % p.stderr[-2000:]):
        return None
    return json.loads(p.stdout)


def close(a, b, path=""):
    """Equal JSON, numbers within 1e-4 (logprobs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], path + "." + k) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, path) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-4 * max(1, abs(a))
    return a == b


PROMPTS = ["Once upon a time %d" % i for i in range(6)] + ["The cat", "A dog ran"]


def concurrent_greedy(srv):
    """Greedy completions of PROMPTS, all sent at once: [(status, text, tokens)]."""
    def one(prompt):
        st, j, _ = srv.post("/v1/completions", {"model": NAME, "prompt": prompt, "max_tokens": 12, "temperature": 0},
                            headers={"Authorization": "Bearer " + KEY})
        if st != 200 or not j:
            return st, None, None
        return st, j["choices"][0]["text"], j["usage"]["completion_tokens"]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as ex:
        return list(ex.map(one, PROMPTS))


args = ("--api-key", KEY, "--alias", NAME, "-np", 4, "-t", 1)
srv = sk.Server(FITLM, MODEL, *args)
want = client(srv)
want_greedy = concurrent_greedy(srv)
srv.stop()
check(all(st == 200 for st, _, _ in want_greedy), "single-process concurrent completions: %r" % want_greedy)
check(want is not None and want.get("chat", {}).get("text"), "single-process answers: %r" % want)

cases = [("tp2-sm", ["-np", "2", "--mca", "btl", "self,vader"], ["--tp", "2", "--plan-check"]),
         ("pp2-sm", ["-np", "2", "--mca", "btl", "self,vader"], ["--pp", "2", "--plan-check"]),
         ("tp2-tcp", ["-np", "2", "--mca", "btl", "tcp,self"], ["--tp", "2"]),
         ("dp2-sm", ["-np", "2", "--mca", "btl", "self,vader"], ["--dp", "2"]),
         ("pp2-turns-sm", ["-np", "2", "--mca", "btl", "self,vader"], ["--pp", "2", "--pp-schedule", "turns",
                                                                      "--plan-check"]),
         ("dp2pp2-sm", ["-np", "4", "--mca", "btl", "self,vader"], ["--dp", "2", "--pp", "2", "--pp-schedule",
                                                                   "overlap"]),
         ("dp2-tcp", ["-np", "2", "--mca", "btl", "tcp,self"], ["--dp", "2"]),
         # the root's two engine threads asleep on one doorbell, each woken by its own group's logits
         ("dp2pp2-turns-sm", ["-np", "4", "--mca", "btl", "self,vader"], ["--dp", "2", "--pp", "2", "--pp-schedule",
                                                                         "turns"])]
for label, mpi_args, fitlm_args in [cases[0], cases[3]] if te.SANITIZED else cases:
    srv = sk.Server(wrapper(label, mpi_args, fitlm_args), MODEL, *args, env=ENV, timeout=180)
    got = client(srv)
    if got is not None and want is not None:
        for k in want:
            check(close(want[k], got.get(k)), "%s: %s differs:\n  single %s\n  mpi    %s" %
                  (label, k, json.dumps(want[k])[:600], json.dumps(got.get(k))[:600]))
    if "--dp" in fitlm_args or "--pp" in fitlm_args:
        # 8 requests at once on -np 4: steps of 4 sequences; under --pp their prompts are cut into micro-batches
        got_greedy = concurrent_greedy(srv)
        check(got_greedy == want_greedy, "%s: concurrent greedy completions differ:\n  single %r\n  mpi    %r" %
              (label, want_greedy, got_greedy))
    turns = "turns" in fitlm_args
    if "--pp" in fitlm_args:
        auth = {"Authorization": "Bearer " + KEY}
        m = srv.metrics(headers=auth)
        # overlapped: steps of two lanes in the pipeline at once; in turns: one step at a time
        overlapped = m.get("fitlm_pipeline_overlapped_steps_total", 0)
        check((overlapped == 0) if turns else (overlapped > 0),
              "%s: %s steps of %s overlapped another" % (label, overlapped, m.get("fitlm_engine_steps_total")))
        before = m.get('fitlm_request_success_total{finished_reason="cancelled"}', 0)
        socks = []
        for i in range(4):
            body = json.dumps(dict(model=NAME, prompt="Once upon a time %d" % i, max_tokens=200, temperature=0,
                                   ignore_eos=True, stream=True)).encode()
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (KEY.encode(), len(body), body))
            got = b""
            while got.count(b"data: ") < 3:
                c = sock.recv(4096)
                if not c:
                    break
                got += c
            socks.append(sock)
        for sock in socks:
            sock.close()
        m = srv.wait_idle(headers=auth)
        cancelled = m.get('fitlm_request_success_total{finished_reason="cancelled"}', 0) - before
        check(cancelled == 4 and m.get("fitlm_kv_blocks_used") == 0,
              "%s: 4 streams disconnected mid-generation end as cancelled (%g), every block free (%s used)" %
              (label, cancelled, m.get("fitlm_kv_blocks_used")))
        check(concurrent_greedy(srv) == want_greedy, "%s: after the cancellations, the same greedy texts" % label)
    if "--dp" in fitlm_args:
        m = srv.metrics(headers={"Authorization": "Bearer " + KEY})
        for d in range(2):
            routed = m.get('fitlm_replica_requests_total{replica="%d"}' % d, 0)
            tokens = m.get('fitlm_replica_generation_tokens_total{replica="%d"}' % d, 0)
            check(routed > 0 and tokens > 0, "%s: replica %d got no work (requests %s, tokens %s)" %
                  (label, d, routed, tokens))
    t0 = time.time()
    if "--plan-check" in fitlm_args:
        # SIGTERM to the root (world rank 0) alone: it ends the requests, prints its closing report and
        # tells the other ranks to stop, and the whole job exits 0 (mpirun's own SIGTERM kills the ranks
        # in its order, giving each 1 s: --mca odls_base_sigkill_timeout)
        root = None
        for pid in os.listdir("/proc"):
            try:
                stat = open("/proc/%s/stat" % pid).read()
                env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
                if int(stat.rsplit(")", 1)[1].split()[1]) == srv.proc.pid and b"OMPI_COMM_WORLD_RANK=0" in env:
                    root = int(pid)
            except (OSError, ValueError, IndexError):
                continue
        if check(root is not None, "%s: the root rank's process found under mpirun" % label):
            os.kill(root, signal.SIGTERM)
            try:
                srv.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        rc, log = srv.stop(timeout=30)
        check(rc == 0 and time.time() - t0 < 15, "%s: SIGTERM to the root: every rank ends cleanly (exit %d, "
              "%.1f s)\n%s" % (label, rc, time.time() - t0, log[-1500:]))
    else:
        rc, log = srv.stop(timeout=30)
        check(rc != -999 and time.time() - t0 < 15, "%s: SIGTERM to mpirun: every rank ends (exit %d, %.1f s)\n%s" %
              (label, rc, time.time() - t0, log[-1500:]))
    check("fitlm: ready" in log, "%s: the root served: %s" % (label, log[-800:]))
    if "--plan-check" in fitlm_args:
        # the server's closing plan check predicts the split run: rank 0's shard of the weights (exact),
        # the layout, and under --pp the lanes' steps (sequences = tokens per step x 2)
        T, P = (2, 1) if "--tp" in fitlm_args else (1, 2)
        check(("the stages in turns" in log) == turns and ("fitlm: pipeline: 2 stages, in turns" in log) == turns,
              "%s: the plan check and the start-up line say whether the stages took turns" % label)
        w = re.search(r"^\| weights +\| +([0-9.]+) \| +([0-9.]+) \| MiB +\| +([-+0-9.]+)% \| rank 0's share", log, re.M)
        check(("%d x %d MPI ranks" % (T, P)) in log and w is not None and float(w.group(3)) == 0.0,
              "%s: plan check of the split server (layout, rank 0's weights exact): %s" %
              (label, log[log.find("plan check"):][:900] if "plan check" in log else log[-1500:]))
        c = re.search(r"at the measured concurrency ([0-9.]+) \((\d+) generated tokens in (\d+) engine steps", log)
        if check(c is not None, "%s: the measured concurrency is printed" % label):
            conc, gen, steps = float(c.group(1)), int(c.group(2)), int(c.group(3))
            # tokens per step, times the lanes in flight at once (1 .. P)
            lanes = 1 if turns else P
            check(gen / steps - 0.01 <= conc <= lanes * gen / steps + 0.01 and
                  ((lanes == 1) != ("steps of the lanes" in log)),
                  "%s: concurrency %.2f from %d tokens in %d steps over %d lanes" % (label, conc, gen, steps, lanes))

sys.exit(te.report())
