"""`fitlm serve` over the real engine: results do not depend on batching or
on the paged cache.

  - batching invariance: 64 concurrent greedy requests of different prompt
    and output lengths give exactly the tokens each gives alone, and what
    `fitlm run --temp 0 --ids ... -n N --print-ids` gives (the single-sequence
    path, an independent code path through the same weights);
  - prefix reuse: the same prompt twice gives the same tokens and logprobs,
    the second time with cached prompt tokens (usage and /metrics say so);
  - preemption: a KV pool far too small for the running sequences (--kv-mem)
    preempts some of them (/metrics counts it) and every request still gets
    the same greedy tokens;
  - after each part /metrics shows every KV block free again and nothing
    running or waiting; the server exits 0 on SIGTERM.
Token ids come back through vLLM's return_tokens_as_token_ids.
"""
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TMP = te.tmp_dir()
if subprocess.run([FITLM, "serve", "--help"], capture_output=True).returncode:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)
MODEL = sk.make_model(os.path.join(TMP, "serve-model.gguf"), SHARED)
rng = np.random.default_rng(7)
N = 64
reqs = []
for i in range(N):
    n_prompt = int(rng.integers(3, 60))
    reqs.append(dict(prompt=[1] + [int(x) for x in rng.integers(3, 32000, n_prompt)], max_tokens=int(rng.integers(2, 14)),
                     temperature=0, logprobs=1, return_tokens_as_token_ids=True))


def ids_of(j):
    lp = j["choices"][0]["logprobs"]
    return [int(t.split(":")[1]) for t in lp["tokens"]], lp["token_logprobs"]


def complete(srv, body, out, i):
    try:
        st, j, b = srv.post("/v1/completions", body, timeout=600)
        out[i] = ids_of(j) if st == 200 else ("HTTP %d" % st, b[:200])
    except Exception as e:  # noqa: BLE001
        out[i] = ("exception", repr(e))


def concurrently(srv, bodies):
    out = [None] * len(bodies)
    ts = [threading.Thread(target=complete, args=(srv, b, out, i)) for i, b in enumerate(bodies)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def idle_check(srv, what):
    m = srv.wait_idle()
    check(m.get("fitlm_kv_blocks_used") == 0 and m.get("fitlm_num_requests_running") == 0 and
          m.get("fitlm_num_requests_waiting") == 0,
          "%s: every KV block free, nothing running or waiting: %r" % (what, {k: v for k, v in m.items() if "kv_blocks" in k
                                                                          or "num_requests" in k}))
    return m


srv = sk.Server(FITLM, MODEL, "-np", N, "-t", 2)  # all 64 in one batch
alone = [None] * N
for i in range(N):
    complete(srv, reqs[i], alone, i)
check(all(isinstance(a[0], list) and len(a[0]) >= 1 for a in alone), "every request alone: %r" %
      [a for a in alone if not isinstance(a[0], list)][:3])
m0 = srv.metrics()
together = concurrently(srv, reqs)
m1 = srv.metrics()
steps = m1["fitlm_engine_steps_total"] - m0["fitlm_engine_steps_total"]
gen = m1["fitlm_generation_tokens_total"] - m0["fitlm_generation_tokens_total"]
print("batch: %d generated tokens (%d returned), %d steps" % (gen, sum(len(a[0]) for a in alone), steps))
check(gen >= sum(len(a[0]) for a in alone) and steps * 4 < gen,
      "the 64 requests were batched: %d tokens in %d engine steps" % (gen, steps))
same = sum(1 for a, b in zip(alone, together) if a[0] == b[0])
check(same == N, "64 concurrent greedy requests give the tokens each gives alone (%d/%d): e.g. %r" %
      (same, N, [(a[0], b[0]) for a, b in zip(alone, together) if a[0] != b[0]][:2]))
close = all(isinstance(b[1], list) and np.allclose(a[1], b[1], atol=1e-4) for a, b in zip(alone, together)
            if a[0] == b[0])
check(close, "and the same logprobs")
idle_check(srv, "after the batch")

# the single-sequence path: fitlm run with the same ids
sub = range(N) if not sk.SANITIZED else range(0, N, 4)
diff = []
for i in sub:
    r = reqs[i]
    p = te.run(FITLM, "run", "-m", MODEL, "--temp", "0", "-t", "2", "--ids", " ".join(map(str, r["prompt"])), "-n",
               r["max_tokens"], "--print-ids", timeout=300)
    got = [int(x) for x in p.stdout.split()] if p.returncode == 0 else None
    if got != alone[i][0]:
        diff.append((i, got, alone[i][0], p.stderr[-300:] if p.returncode else ""))
check(not diff, "fitlm run --temp 0 --ids gives the server's tokens (%d requests): %r" % (len(sub), diff[:2]))

# prefix reuse: the same long prompt twice
long_prompt = [1] + [int(x) for x in rng.integers(3, 32000, 100)]
body = dict(prompt=long_prompt, max_tokens=8, temperature=0, logprobs=2, return_tokens_as_token_ids=True)
before = srv.metrics()
first = srv.post("/v1/completions", body)
second = srv.post("/v1/completions", body)
after = srv.metrics()
check(first[0] == 200 and second[0] == 200, "both answered")
if first[0] == 200 and second[0] == 200:
    a, b = first[1], second[1]
    check(ids_of(a)[0] == ids_of(b)[0], "the same prompt twice: the same tokens")
    check(ids_of(a)[1] == ids_of(b)[1] and a["choices"][0]["logprobs"]["top_logprobs"] ==
          b["choices"][0]["logprobs"]["top_logprobs"], "and the same logprobs: %r / %r" % (ids_of(a)[1], ids_of(b)[1]))
    cached = b["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
    check(cached >= 96 and a["usage"]["prompt_tokens_details"]["cached_tokens"] < cached,
          "the second request reuses the prompt's full blocks: %d cached tokens" % cached)
    hits = after["fitlm_prefix_cache_hits_total"] - before["fitlm_prefix_cache_hits_total"]
    check(hits >= 96, "/metrics counts the prefix-cache hits: %g" % hits)
idle_check(srv, "after prefix reuse")

# a client that disconnects mid-stream cancels its sequence; its blocks go back to the pool
before = srv.metrics().get('fitlm_request_success_total{finished_reason="cancelled"}', 0)
socks = []
for i in range(4):
    body = json.dumps(dict(prompt=[1] + [int(x) for x in rng.integers(3, 32000, 8)], max_tokens=480, temperature=0,
                           ignore_eos=True, stream=True)).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data: ") < 2:
        got += s.recv(4096)
    socks.append(s)
for s in socks:
    s.close()
m = idle_check(srv, "after 4 disconnects")
cancelled = m.get('fitlm_request_success_total{finished_reason="cancelled"}', 0) - before
check(cancelled == 4, "4 disconnected streams were cancelled (%g)" % cancelled)
rc, log = srv.stop()
check(rc == 0, "exit 0: %s" % log[-1000:])

# preemption: 8 running sequences of up to ~84 tokens in a pool of 20 blocks of 16 tokens (f16 KV of this model:
# 2 layers x (K + V) x 32 values x 2 bytes = 256 bytes per token, 4 KiB per block)
small = sk.Server(FITLM, MODEL, "-np", 8, "-t", 2, "--kv-block", 16, "--kv-mem", "80K")
pre = [dict(prompt=[1] + [int(x) for x in rng.integers(3, 32000, 24)], max_tokens=60, temperature=0, logprobs=0,
            return_tokens_as_token_ids=True, ignore_eos=True) for _ in range(8)]
ref = [None] * 8
for i in range(8):
    complete(small, pre[i], ref, i)
got = concurrently(small, pre)
m = idle_check(small, "after preemption")
check(m.get("fitlm_num_preemptions_total", 0) > 0, "the small pool preempted sequences: %g" %
      m.get("fitlm_num_preemptions_total", 0))
check(all(isinstance(r[0], list) and len(r[0]) == 60 for r in ref), "each alone: 60 tokens")
check([g[0] for g in got] == [r[0] for r in ref], "preempted sequences give the same greedy tokens: %r" %
      [(i, g[0][:8] if isinstance(g[0], list) else g) for i, g in enumerate(got) if g[0] != ref[i][0]][:2])
rc, log = small.stop()
check(rc == 0, "exit 0: %s" % log[-1000:])
sys.exit(te.report())
