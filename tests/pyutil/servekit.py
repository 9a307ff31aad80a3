"""Plumbing for the `fitlm serve` tests: a small random-weight llama GGUF that
carries the real Llama 2 vocabulary (and its chat template), starting a server
on a free loopback port, raw HTTP requests (http.client), SSE parsing, the
Prometheus metrics, and a clean SIGTERM stop.

    import servekit as sk
    model = sk.make_model(os.path.join(TMP, "serve-model.gguf"))
    srv = sk.Server(FITLM, model, "-np", 4)      # waits for /health == 200
    status, headers, body = srv.request("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 4})
    m = srv.metrics()                            # {"fitlm_kv_blocks_used": 0.0, ...}
    rc, log = srv.stop()                         # SIGTERM; exit status and stderr
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import forward as ref  # noqa: E402

SANITIZED = os.environ.get("FITLM_SANITIZED") == "1"

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
    "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

CFG = dict(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=96, vocab=32000, ctx=512, eps=1e-5,
           rope_theta=10000.0, rope_layout="adjacent")


def make_model(path, shared=None, seed=21, template=LLAMA2_TEMPLATE, ctx=None):
    """Writes (once) the test model: CFG's shape (context ctx when given),
    random weights, the Llama 2 vocabulary and a chat template (Llama 2's
    unless given). Returns path."""
    if os.path.exists(path):
        return path
    shared = shared or os.environ["FITLM_SHARED"]
    vocab = os.path.join(shared, "data", "vocab", "ggml-vocab-llama-spm.gguf")
    cfg = dict(CFG, ctx=ctx or CFG["ctx"])
    _, tens = ref.random_model(cfg, seed, tied=False, attn_gain=8.0)
    tok_kv = ref.read_gguf_kv_raw(vocab, "tokenizer.")
    tmp = path + ".tmp.%d" % os.getpid()
    ref.write_gguf(tmp, ref.gguf_kv(cfg, "llama") + tok_kv + [("tokenizer.chat_template", "str", template)],
                   tens)
    os.replace(tmp, path)
    return path


class Server:
    """A `fitlm serve` process on 127.0.0.1 and a port it picked (--port 0)."""

    def __init__(self, binary, model, *args, log=None, wait=True, env=None, timeout=120):
        tmp = os.environ.get("FITLM_TMP", "/tmp")
        self.log_path = log or os.path.join(tmp, "serve-%d-%d.log" % (os.getpid(), int(time.time() * 1e6) % 10**9))
        self.logf = open(self.log_path, "w")
        e = dict(os.environ)
        e.update(env or {})
        fake = os.path.basename(binary).startswith("fitlm_fake_serve")
        cmd = [binary] + ([] if fake else ["serve"]) + ["-m", model, "--host", "127.0.0.1", "--port", "0"]
        self.proc = subprocess.Popen(cmd + [str(a) for a in args], stdout=self.logf, stderr=subprocess.STDOUT, env=e)
        self.port = None
        t0 = time.time()
        while time.time() - t0 < timeout:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise RuntimeError("fitlm serve exited %d: %s" % (self.proc.returncode, self.log()))
            time.sleep(0.02)
        if self.port is None:
            self.kill()
            raise RuntimeError("fitlm serve did not print its port: " + self.log())
        self.base = "http://127.0.0.1:%d" % self.port
        if wait:
            self.wait_ready(timeout)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=120):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                st, _, _ = self.request("GET", "/health", timeout=5)
                if st == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("fitlm serve exited %d: %s" % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        raise RuntimeError("fitlm serve not ready: " + self.log())

    def request(self, method, path, body=None, headers=None, timeout=120, raw=None):
        """(status, headers dict with lower-case names, body bytes). body: a
        JSON-able object, or bytes in raw."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            out = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, out
        finally:
            c.close()

    def post(self, path, body, **kw):
        st, h, b = self.request("POST", path, body, **kw)
        try:
            j = json.loads(b)
        except ValueError:
            j = None
        return st, j, b

    def metrics(self, headers=None):
        st, _, b = self.request("GET", "/metrics", headers=headers)
        assert st == 200, st
        out = {}
        for line in b.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, val = line.rpartition(" ")
            out[name] = float(val)
        return out

    def wait_idle(self, timeout=60, headers=None):
        """Waits until no sequence runs or waits and every KV block is free;
        returns the last metrics."""
        t0 = time.time()
        while True:
            m = self.metrics(headers)
            if (m.get("fitlm_num_requests_running") == 0 and m.get("fitlm_num_requests_waiting") == 0 and
                    m.get("fitlm_kv_blocks_used") == 0):
                return m
            if time.time() - t0 > timeout:
                return m
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=120):
        """Sends sig, waits; (exit status, the server's log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.logf.close()
                return -999, self.log()
        self.logf.close()
        return self.proc.returncode, self.log()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def sse_events(body):
    """The data payloads of an SSE body (bytes), in order: parsed JSON, or the
    string "[DONE]". Raises ValueError on bad framing."""
    text = body.decode()
    if not text.endswith("\n\n"):
        raise ValueError("the stream does not end with a blank line: %r" % text[-80:])
    out = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        if len(lines) != 1 or not lines[0].startswith("data: "):
            raise ValueError("bad SSE event: %r" % block[:200])
        payload = lines[0][6:]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def raw_http(port, data, timeout=30, read=True):
    """Sends raw bytes on a new connection; returns what came back until close (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            chunks.append(c)
        return b"".join(chunks)
    finally:
        s.close()
