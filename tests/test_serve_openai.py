"""`fitlm serve` end to end with the real engine on a real model file (a small
random-weight llama GGUF carrying the Llama 2 vocabulary and chat template),
through the official OpenAI Node client (npm `openai`, tests/node_modules)
and curl.

Oracles: `fitlm tokenize` (usage.prompt_tokens of the same prompt, chat
messages formatted as the Llama 2 template does — the same strings
test_run_vocab.py checks against numpy), `fitlm run --temp 0` (the greedy
text), the client's own parsing of responses, SSE streams and errors
(BadRequestError 400, AuthenticationError 401, NotFoundError 404).
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED, SRC = te.require_env("FITLM_BIN", "FITLM_SHARED", "FITLM_SRC")
SERVER = os.environ.get("FITLM_SERVE_TEST_BIN", FITLM)  # (a development override: the engine's test double)
TMP = te.tmp_dir()
if subprocess.run([SERVER] + ([] if SERVER != FITLM else ["serve"]) + ["--help"], capture_output=True).returncode:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)
CLIENT_DIR = os.path.join(SRC, "tests", "node_modules", "openai")
if not shutil.which("node") or not os.path.isdir(CLIENT_DIR) or not shutil.which("curl"):
    print("SKIP: node, the npm openai client (bash scripts/setup.sh) or curl is missing")
    sys.exit(77)
MODEL = sk.make_model(os.path.join(TMP, "serve-model.gguf"), SHARED)
KEY = "sk-fitlm-test"
NAME = "tiny-llama2-vocab"


def tokenize(text):
    p = te.run_ok(FITLM, "tokenize", "-m", MODEL, "-p", text)
    return [int(x) for x in p.stdout.split()]


def run_text(*args):
    p = te.run_ok(FITLM, "run", "-m", MODEL, "--temp", "0", "-t", "2", *args, timeout=300)
    return p.stdout[:-1] if p.stdout.endswith("\n") else p.stdout


srv = sk.Server(SERVER, MODEL, "--api-key", KEY, "--alias", NAME, "-np", 4, "-t", 2)
p = subprocess.run(["node", os.path.join(SRC, "tests", "serve", "openai_client.js"), srv.base, KEY, NAME],
                   capture_output=True, text=True, timeout=600)
check(p.returncode == 0, "the OpenAI client ran: %s" % p.stderr[-2000:])
out = json.loads(p.stdout) if p.returncode == 0 else {}
print(json.dumps(out, indent=1)[:3000])

if out:
    check(out["models"] == [NAME], "models.list: %r" % out["models"])
    # chat: the Llama 2 template, tokenized with BOS
    chat_ids = tokenize("[INST] Tell me a story [/INST]")
    c = out["chat"]
    check(c["object"] == "chat.completion" and c["role"] == "assistant", "chat object and role: %r" % c)
    check(c["usage"]["prompt_tokens"] == len(chat_ids), "chat prompt_tokens %d == fitlm tokenize %d" %
          (c["usage"]["prompt_tokens"], len(chat_ids)))
    check(c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"], "chat total")
    check(c["finish"] == "stop" or (c["finish"] == "length" and c["usage"]["completion_tokens"] == 8),
          "chat finish %r with %d tokens" % (c["finish"], c["usage"]["completion_tokens"]))
    want = run_text("--chat", "-p", "Tell me a story", "-n", "8")
    check(c["text"] == want, "chat text %r == fitlm run --chat %r" % (c["text"], want))
    s = out["chat_stream"]
    check(s["text"] == c["text"] and s["role"] == "assistant" and s["finish"] == c["finish"] and s["usage"] == c["usage"],
          "chat stream == chat: %r" % s)
    sys_ids = tokenize("[INST] <<SYS>>\nAnswer briefly.\n<</SYS>>\n\nTell me a story [/INST]")
    check(out["chat_system"]["usage"]["prompt_tokens"] == len(sys_ids), "system message prompt_tokens %d == %d" %
          (out["chat_system"]["usage"]["prompt_tokens"], len(sys_ids)))
    want = run_text("--chat", "--system", "Answer briefly.", "-p", "Tell me a story", "-n", "6")
    check(out["chat_system"]["text"] == want, "chat with system %r == fitlm run %r" % (out["chat_system"]["text"], want))

    prompt = "Once upon a time there was"
    comp = out["completion"]
    pids = tokenize(prompt)
    check(comp["usage"]["prompt_tokens"] == len(pids), "completion prompt_tokens %d == %d" %
          (comp["usage"]["prompt_tokens"], len(pids)))
    full = run_text("-p", prompt, "-n", "10")
    check(full.startswith(prompt) and comp["text"] == full[len(prompt):],
          "completion text %r == fitlm run's continuation %r" % (comp["text"], full[len(prompt):]))
    lp = comp["logprobs"]
    n = comp["usage"]["completion_tokens"]
    check(len(lp["tokens"]) == n and len(lp["token_logprobs"]) == n and len(lp["top_logprobs"]) == n,
          "one logprob per token (%d)" % n)
    check(all(len(t) <= 3 and len(t) >= 1 for t in lp["top_logprobs"]), "3 alternatives each")
    check(all(x <= 0 and abs(x - max(t.values())) < 1e-4 for x, t in zip(lp["token_logprobs"], lp["top_logprobs"])),
          "greedy picks the most likely token (its logprob is the top one)")
    if comp["finish"] == "length":  # (no end-of-generation token among them)
        check("".join(lp["tokens"]) == comp["text"], "the logprob tokens join to the text: %r" % lp["tokens"])
    cs = out["completion_stream"]
    check(cs["text"] == comp["text"] and cs["finish"] == comp["finish"] and cs["usage"] == comp["usage"],
          "completion stream == completion: %r" % cs)
    sw = out.get("stop_word")
    if sw:
        cut = comp["text"][:comp["text"].index(sw)]
        check(out["stop"]["text"] == cut and out["stop"]["finish"] == "stop",
              "stop %r: %r (want %r)" % (sw, out["stop"], cut))
        check(out["stop_stream"]["text"] == cut and out["stop_stream"]["finish"] == "stop",
              "streamed stop: %r" % out["stop_stream"])
    else:
        check(False, "the greedy text has fewer than 3 words: %r" % comp["text"])
    check(out["seeded"][0] == out["seeded"][1], "the same seed gives the same text: %r" % out["seeded"])
    e = out["errors"]
    check(e["temperature"] != "no error" and e["temperature"]["bad"] and e["temperature"]["status"] == 400,
          "temperature 5 -> BadRequestError: %r" % e["temperature"])
    check(e["context"] != "no error" and e["context"]["bad"] and "512" in e["context"]["message"],
          "max_tokens beyond the context -> BadRequestError naming 512: %r" % e["context"])
    check(e["model"] != "no error" and e["model"]["notfound"], "unknown model -> NotFoundError: %r" % e["model"])
    check(e["key"] != "no error" and e["key"]["auth"], "wrong key -> AuthenticationError: %r" % e["key"])
    check(e["stream_bad"] != "no error" and e["stream_bad"]["bad"], "bad streamed request -> BadRequestError")

# ---- curl: SSE framing on the wire ----
body = json.dumps({"model": NAME, "prompt": "Once upon a time there was", "max_tokens": 5, "temperature": 0,
                   "stream": True})
p = subprocess.run(["curl", "-sS", "-N", "-i", "-H", "Authorization: Bearer " + KEY, "-H",
                    "Content-Type: application/json", "-d", body, srv.base + "/v1/completions"],
                   capture_output=True, timeout=120)
raw = p.stdout.replace(b"\r\n", b"\n")
head, _, sse = raw.partition(b"\n\n")
check(b"200" in head.split(b"\n")[0] and b"content-type: text/event-stream" in head.lower(), "curl headers: %r" % head)
try:
    ev = sk.sse_events(sse)
    check(ev[-1] == "[DONE]" and ev[-2]["choices"][0]["finish_reason"] in ("length", "stop"), "curl SSE: %r" % ev[-2:])
    check(all(isinstance(e, dict) and e["object"] == "text_completion" for e in ev[:-1]), "every event a chunk")
except ValueError as e:
    check(False, "curl SSE framing: %s (%r)" % (e, sse[:300]))
p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", srv.base + "/v1/models"],
                   capture_output=True, text=True, timeout=60)
check(p.stdout == "401", "curl without the key -> 401: %r" % p.stdout)

# ---- /tokenize and /detokenize agree with fitlm tokenize ----
st, j, _ = srv.post("/tokenize", {"content": "Hello world, once upon a time", "add_special": True},
                    headers={"Authorization": "Bearer " + KEY})
check(st == 200 and j["tokens"] == tokenize("Hello world, once upon a time"), "/tokenize == fitlm tokenize: %r" % j)
st, j, _ = srv.post("/detokenize", {"tokens": tokenize("Hello world, once upon a time")[1:]},
                    headers={"Authorization": "Bearer " + KEY})
check(st == 200 and j["content"] == "Hello world, once upon a time", "/detokenize: %r" % j)

m = srv.wait_idle(headers={"Authorization": "Bearer " + KEY})
check(m.get("fitlm_kv_blocks_used") == 0 and m.get("fitlm_num_requests_running") == 0 and
      m.get("fitlm_num_requests_waiting") == 0, "idle afterwards: every KV block free")
check(m.get("fitlm_generation_tokens_total", 0) > 0 and m.get("fitlm_time_to_first_token_seconds_count", 0) > 0,
      "metrics count tokens and TTFT")
rc, log = srv.stop()
check(rc == 0, "exit 0 after SIGTERM: %s" % log[-1500:])
check("KV pool:" in log and "maximum concurrency" in log, "start-up prints the KV pool: %s" % log[:600])
sys.exit(te.report())
