#!/usr/bin/python3
"""Load generator for `fitlm serve` (Python standard library only): the
figures `vllm bench serve` reports, for several numbers of concurrent clients.

    python3 bench/serve_bench.py -m MODEL.gguf [--fitlm build/fitlm] [-c 1,4,16,64]
    python3 bench/serve_bench.py --url http://127.0.0.1:8080 [--api-key KEY] ...   (a running server)

Without --url it starts `fitlm serve -m MODEL --port 0 -np MAX(C) [-t T]` on
127.0.0.1 and stops it with SIGTERM at the end.

For each concurrency C, C client threads send streaming /v1/completions
requests (token-id prompts, temperature 0, ignore_eos, logprobs 0 so that every
token arrives as its own SSE chunk) from a fixed, seeded list with mixed prompt
and output lengths (--prompt-len, --output-len ranges), C x --per-client
requests in all, and measure per request: TTFT (send -> first token chunk),
TPOT ((end - first token) / (output tokens - 1)), every inter-token latency,
and overall: request throughput, output tokens/s, total (prompt + output)
tokens/s. --bench also runs `fitlm bench -p 16 -n 128 -r 3` on the model for
the single-stream decode speed to compare one client against; --compare R
runs that and one client (3 requests of 128 tokens) in turns, R times, and
prints the median ratio (a machine whose speed drifts then skews neither).

--c-client BIN (build/bench/sse_client) runs each request through that C
client instead of the Python one: it only stamps each recv() and keeps the
bytes, then this script parses them the same way. On a machine whose cores
the client shares with the server, a lighter client takes less from it.

Output: a table on stdout (and --json FILE with every figure).
"""
import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Target:
    def __init__(self, url, key, c_client=None):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.key, self.c_client = key, c_client
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = "Bearer " + key

    def stream_c(self, body):
        """stream() through the C client (bench/sse_client.c): its recv() stamps and raw bytes."""
        tag = "/tmp/serve_bench.%d.%d" % (os.getpid(), threading.get_ident())
        with open(tag + ".body", "w") as f:
            json.dump(body, f)
        cmd = [self.c_client, self.host, str(self.port), tag + ".body", tag + ".raw"] + ([self.key] if self.key else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("sse_client: " + p.stderr.strip())
        raw = open(tag + ".raw", "rb").read()
        os.unlink(tag + ".body")
        os.unlink(tag + ".raw")
        recvs, pos, t0, t_end = [], 0, None, None
        for line in p.stdout.splitlines():
            f = line.split()
            if f[0] == "send":
                t0 = float(f[1])
            elif f[0] == "recv":
                n = int(f[2])
                recvs.append((float(f[1]), raw[pos:pos + n]))
                pos += n
            elif f[0] == "end":
                t_end = float(f[1])
        return self.parse(t0, recvs, t_end, body)

    def stream(self, body):
        """Sends one streaming completion; returns (t_send, [token arrival times], t_end, prompt_tokens).

        The client does as little as it can while tokens arrive, since it runs on the
        same cores as the server: it only stamps each recv() and keeps the bytes; HTTP
        chunked framing, SSE events and JSON are parsed after the stream has ended (each
        event gets the time of the recv() that completed it)."""
        if self.c_client:
            return self.stream_c(body)
        payload = json.dumps(body).encode()
        head = "POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\nConnection: close\r\n" % (
            self.host, self.port, len(payload))
        head += "".join("%s: %s\r\n" % kv for kv in self.headers.items()) + "\r\n"
        sock = socket.create_connection((self.host, self.port), timeout=3600)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        sock.sendall(head.encode() + payload)
        recvs = []
        while True:
            b = sock.recv(65536)
            if not b:
                break
            recvs.append((time.perf_counter(), b))
        t_end = time.perf_counter()
        sock.close()
        return self.parse(t0, recvs, t_end, body)

    @staticmethod
    def parse(t0, recvs, t_end, body):
        """(t_send, [token arrival times], t_end, prompt_tokens) of a response received as [(time, bytes)]."""
        times, usage = [], None
        for t, data in Target.sse_events(recvs):
            if data == b"[DONE]":
                continue
            j = json.loads(data)
            if j.get("usage"):
                usage = j["usage"]
            if j.get("choices"):
                lp = j["choices"][0].get("logprobs")
                times.extend([t] * (len(lp["tokens"]) if lp else 0))
        return t0, times, t_end, (usage or {}).get("prompt_tokens", len(body["prompt"]))

    @staticmethod
    def sse_events(recvs):
        """(time, data) of each SSE `data:` event in an HTTP/1.1 response received as
        [(time, bytes)]; raises on a non-200 status."""
        raw = b"".join(b for _, b in recvs)
        ends, n = [], 0
        for t, b in recvs:
            n += len(b)
            ends.append((n, t))
        hdr_end = raw.find(b"\r\n\r\n")
        if hdr_end < 0:
            raise RuntimeError("no HTTP response")
        status_line, *hdrs = raw[:hdr_end].decode("latin-1").split("\r\n")
        if status_line.split()[1] != "200":
            raise RuntimeError("%s: %s" % (status_line, raw[hdr_end + 4:][:300]))
        chunked = any(h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in hdrs)
        # the body as (bytes, raw offset where each piece ends)
        pieces, pos = [], hdr_end + 4
        if chunked:
            while pos < len(raw):
                eol = raw.find(b"\r\n", pos)
                size = int(raw[pos:eol].split(b";")[0], 16)
                if size == 0:
                    break
                pieces.append((raw[eol + 2:eol + 2 + size], eol + 2 + size))
                pos = eol + 2 + size + 2
        else:
            pieces.append((raw[pos:], len(raw)))
        out, buf, k = [], b"", 0
        for data, raw_end in pieces:
            while ends[k][0] < raw_end:
                k += 1
            buf += data
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if ev.startswith(b"data: "):
                    out.append((ends[k][1], ev[6:]))
        return out


def run_level(target, reqs, conc):
    todo = list(reqs)
    lock = threading.Lock()
    results, errors = [], []

    def client():
        while True:
            with lock:
                if not todo:
                    return
                body = todo.pop(0)
            try:
                results.append(target.stream(body))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dur = time.perf_counter() - t0
    ttft, tpot, itl = [], [], []
    n_out = n_in = 0
    for t_send, times, t_end, n_prompt in results:
        n_out += len(times)
        n_in += n_prompt
        if times:
            ttft.append(times[0] - t_send)
        if len(times) > 1:
            tpot.append((times[-1] - times[0]) / (len(times) - 1))
            itl.extend(b - a for a, b in zip(times, times[1:]))
    return dict(concurrency=conc, requests=len(results), errors=len(errors), error_sample=errors[:3],
                duration_s=dur, request_throughput=len(results) / dur, output_tok_s=n_out / dur,
                total_tok_s=(n_out + n_in) / dur, output_tokens=n_out, prompt_tokens=n_in,
                ttft_mean_ms=1e3 * statistics.fmean(ttft) if ttft else float("nan"),
                ttft_p50_ms=1e3 * pct(ttft, 50), ttft_p99_ms=1e3 * pct(ttft, 99),
                tpot_mean_ms=1e3 * statistics.fmean(tpot) if tpot else float("nan"),
                tpot_p50_ms=1e3 * pct(tpot, 50), tpot_p99_ms=1e3 * pct(tpot, 99),
                itl_p50_ms=1e3 * pct(itl, 50), itl_p99_ms=1e3 * pct(itl, 99), itl_max_ms=1e3 * max(itl or [0]))


def stall_probe(target, n_bg, probe_len, vocab, rnd):
    """While n_bg streams decode, sends 3 probe requests (probe_len prompt
    tokens, 1 output token) one after another; returns the probes' TTFTs and
    the background's inter-token latencies over the same time, in ms."""
    started = [0] * n_bg
    bg_times = [[] for _ in range(n_bg)]
    stop = threading.Event()

    def bg(i):
        body = dict(prompt=[1] + [rnd.randrange(3, vocab) for _ in range(15)], max_tokens=400, temperature=0,
                    stream=True, logprobs=0, ignore_eos=True, return_tokens_as_token_ids=True)
        c = http.client.HTTPConnection(target.host, target.port, timeout=3600)
        c.request("POST", "/v1/completions", body=json.dumps(body), headers=target.headers)
        r = c.getresponse()
        while not stop.is_set():
            chunk = r.read1(65536)
            if not chunk:
                break
            n = chunk.count(b"token_logprobs")
            bg_times[i].extend([time.perf_counter()] * n)
            started[i] += n
        c.close()  # disconnecting cancels the stream

    ts = [threading.Thread(target=bg, args=(i,), daemon=True) for i in range(n_bg)]
    for t in ts:
        t.start()
    while min(started) < 5:
        if not all(t.is_alive() for t in ts):
            stop.set()
            raise RuntimeError("a background stream of the probe failed")
        time.sleep(0.05)
    t_0 = time.perf_counter()
    time.sleep(3.0)  # decode only: the baseline step time
    probes, t_a = [], time.perf_counter()
    for _ in range(3):
        body = dict(prompt=[1] + [rnd.randrange(3, vocab) for _ in range(probe_len - 1)], max_tokens=1,
                    temperature=0, stream=True, logprobs=0, return_tokens_as_token_ids=True)
        t0, times, _, _ = target.stream(body)
        probes.append(1e3 * (times[0] - t0))
    t_b = time.perf_counter()
    stop.set()
    itl = [1e3 * (b - a) for ts_ in bg_times for a, b in zip(ts_, ts_[1:]) if t_a <= a and b <= t_b]
    base = [1e3 * (b - a) for ts_ in bg_times for a, b in zip(ts_, ts_[1:]) if t_0 <= a and b <= t_a]
    return probes, itl, base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model")
    ap.add_argument("--fitlm", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "fitlm"))
    ap.add_argument("--url", help="a running server (else one is started)")
    ap.add_argument("--api-key")
    ap.add_argument("-c", "--concurrency", default="1,4,16,64")
    ap.add_argument("--per-client", type=int, default=2, help="requests per client at each level (default 2)")
    ap.add_argument("--prompt-len", default="16,256", help="prompt tokens: MIN,MAX (default 16,256)")
    ap.add_argument("--output-len", default="32,128", help="output tokens: MIN,MAX (default 32,128)")
    ap.add_argument("--vocab", type=int, default=32000, help="prompt ids are drawn from [3, VOCAB)")
    ap.add_argument("-t", "--threads", type=int, help="fitlm serve -t")
    ap.add_argument("--serve-args", default="", help="more fitlm serve arguments")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bench", action="store_true", help="also run fitlm bench -n 128 for the single-stream speed")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--compare", type=int, metavar="R",
                    help="also: R rounds of `fitlm bench` tg128 and one client (16-token prompt, 128 tokens) in turns")
    ap.add_argument("--c-client", metavar="BIN", help="run each request through this C client (build/bench/sse_client)")
    ap.add_argument("--probe", type=int, metavar="N",
                    help="also: while N streams decode, the TTFT of a new 64-token request against their step time")
    a = ap.parse_args()
    levels = [int(x) for x in a.concurrency.split(",")]
    pmin, pmax = (int(x) for x in a.prompt_len.split(","))
    omin, omax = (int(x) for x in a.output_len.split(","))
    if not a.url and not a.model:
        ap.error("give -m MODEL (a server is started) or --url")

    proc, logf = None, None
    url = a.url
    if not url:
        log_path = "/tmp/serve_bench.%d.log" % os.getpid()
        logf = open(log_path, "w")
        cmd = [a.fitlm, "serve", "-m", a.model, "--port", "0", "-np", str(max(levels + [(a.probe or 0) + 1]))]
        if a.threads:
            cmd += ["-t", str(a.threads)]
        cmd += a.serve_args.split()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        t0 = time.time()
        while True:
            text = open(log_path).read()
            if "ready" in text:
                port = re.search(r"listening on http://[^:]+:(\d+)", text).group(1)
                url = "http://127.0.0.1:" + port
                break
            if proc.poll() is not None or time.time() - t0 > 600:
                sys.exit("fitlm serve did not start: " + text)
            time.sleep(0.1)
        print("".join(l + "\n" for l in text.splitlines() if "KV pool" in l or "model '" in l), end="")
    target = Target(url, a.api_key, a.c_client)
    rnd = random.Random(a.seed)
    out = {"url": url, "model": a.model, "levels": []}
    try:
        def bench_tg():
            cmd = [a.fitlm, "bench", "-m", a.model, "-p", "16", "-n", "128", "-r", "3"]
            if a.threads:
                cmd += ["-t", str(a.threads)]
            b = subprocess.run(cmd, capture_output=True, text=True)
            m = re.search(r"tg128\s*\|?\s*([\d.]+)", b.stdout)
            return float(m.group(1)) if m else None

        if a.bench and a.model:
            out["bench_tg128"] = bench_tg()
            print("fitlm bench tg128: %s t/s" % out["bench_tg128"])
        # warm-up: one short request
        target.stream(dict(prompt=[1, 100, 200], max_tokens=4, temperature=0, stream=True, logprobs=0,
                           ignore_eos=True, return_tokens_as_token_ids=True))
        print("%5s %5s %8s %9s %9s %9s %9s %9s %9s %9s %9s" % ("conc", "reqs", "req/s", "out tok/s", "TTFT p50",
                                                              "TTFT p99", "TPOT p50", "TPOT p99", "ITL p50",
                                                              "ITL p99", "ITL max"))
        for conc in levels:
            reqs = []
            for _ in range(conc * a.per_client):
                n_p, n_o = rnd.randint(pmin, pmax), rnd.randint(omin, omax)
                reqs.append(dict(prompt=[1] + [rnd.randrange(3, a.vocab) for _ in range(n_p - 1)], max_tokens=n_o,
                                 temperature=0, stream=True, logprobs=0, ignore_eos=True,
                                 return_tokens_as_token_ids=True))
            r = run_level(target, reqs, conc)
            out["levels"].append(r)
            print("%5d %5d %8.3f %9.2f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f%s" % (
                conc, r["requests"], r["request_throughput"], r["output_tok_s"], r["ttft_p50_ms"], r["ttft_p99_ms"],
                r["tpot_p50_ms"], r["tpot_p99_ms"], r["itl_p50_ms"], r["itl_p99_ms"], r["itl_max_ms"],
                "  (%d errors: %s)" % (r["errors"], r["error_sample"]) if r["errors"] else ""), flush=True)
        if a.probe:
            probes, itl, base = stall_probe(target, a.probe, 64, a.vocab, rnd)
            out["probe"] = dict(background=a.probe, probe_ttft_ms=probes, decode_step_p50_ms=pct(base, 50),
                                step_with_probe_p50_ms=pct(itl, 50), step_with_probe_max_ms=max(itl or [0]))
            print("probe: %d streams decoding (decode-only step p50 %.1f ms; with the probes: p50 %.1f, max %.1f ms): "
                  "a new 64-token request's TTFT %s ms = %s steps of the window" % (
                      a.probe, pct(base, 50), pct(itl, 50), max(itl or [0]), " ".join("%.0f" % x for x in probes),
                      " ".join("%.1f" % (x / pct(itl, 50)) for x in probes)), flush=True)
        if a.compare and a.model:
            # one client and `fitlm bench` tg128 in turns, so that both see the same machine
            rounds = []
            for k in range(a.compare):
                tg = bench_tg()
                reqs = [dict(prompt=[1] + [rnd.randrange(3, a.vocab) for _ in range(15)], max_tokens=128,
                             temperature=0, stream=True, logprobs=0, ignore_eos=True, return_tokens_as_token_ids=True)
                        for _ in range(3)]
                one_c = run_level(target, reqs, 1)
                single = 1e3 / one_c["tpot_p50_ms"]
                rounds.append(dict(bench_tg128=tg, one_client_tok_s=single, ratio=single / tg if tg else None))
                print("compare round %d: fitlm bench tg128 %.2f t/s, one client %.2f t/s (1000 / TPOT p50): %.1f %%" % (
                    k + 1, tg or 0, single, 100 * single / tg if tg else 0), flush=True)
            ratios = [r["ratio"] for r in rounds if r["ratio"]]
            out["compare"] = dict(rounds=rounds, median_ratio=statistics.median(ratios) if ratios else None)
            if ratios:
                print("compare: median one client / fitlm bench tg128 = %.1f %% over %d rounds" % (
                    100 * statistics.median(ratios), len(ratios)))
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            logf.close()
            # the server's own closing report (`--serve-args --plan-check`: the
            # planner's prediction at the measured concurrency)
            text = open(log_path).read()
            k = text.find("plan check:")
            if k >= 0:
                out["server_plan_check"] = text[k:]
                print("\nserver (at shutdown): " + text[k:], end="")
    one = next((l for l in out["levels"] if l["concurrency"] == 1), None)
    if one and out.get("bench_tg128"):
        single = 1e3 / one["tpot_p50_ms"]
        print("one client: %.2f t/s per stream (1000 / TPOT p50) vs fitlm bench tg128 %.2f t/s: %.1f %%" %
              (single, out["bench_tg128"], 100 * single / out["bench_tg128"]))
    sixteen = next((l for l in out["levels"] if l["concurrency"] == 16), None)
    if one and sixteen:
        print("16 clients: %.2fx one client's output tokens/s" % (sixteen["output_tok_s"] / one["output_tok_s"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
