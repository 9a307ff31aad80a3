"""Tool calls in `fitlm serve` end to end, through the official OpenAI Node
client (npm `openai`), on random-weight models with the Llama 2 vocabulary
whose tokenizer.chat_template is a real model's template (../shared/data/
chat-templates): Hermes 3, Qwen2.5, Llama 3.1 and Mistral Nemo. Their markers
(<tool_call>, <|python_tag|>, [TOOL_CALLS]) are plain text in this vocabulary;
the parsers' handling of them as control tokens is test_tool_calls' part.

Oracles: ajv (the arguments of every call validate against the tool's
parameters), the client's own stream accumulator (finalChatCompletion builds
tool_calls from the deltas), python3-jinja2 with transformers' settings
(tests/ref/chat_template.py: the second turn, with the assistant's calls and
the tool results, renders to exactly the tokens the server computes —
/tokenize of the reference text == /tokenize of the messages), and
BadRequestError for bad tools / tool_choice / tool messages.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import schemas  # noqa: E402
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED, SRC = te.require_env("FITLM_BIN", "FITLM_SHARED", "FITLM_SRC")
TMP = te.tmp_dir()
if te.run(FITLM, "serve", "--help").returncode:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)
NM = os.path.join(SRC, "tests", "node_modules")
if not shutil.which("node") or not os.path.isdir(os.path.join(NM, "openai")) or not os.path.isdir(os.path.join(NM, "ajv")):
    print("SKIP: node or the npm openai client / ajv (bash scripts/setup.sh) is missing")
    sys.exit(77)
try:
    import jinja2  # noqa: F401
except ImportError:
    print("SKIP: python3-jinja2 (the reference renderer) is missing")
    sys.exit(77)
TPL = os.path.join(SHARED, "data", "chat-templates")
REF = os.path.join(SRC, "tests", "ref", "chat_template.py")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "the city", "maxLength": 8},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Adds two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "additionalProperties": False}}}
NOARGS = {"type": "function", "function": {"name": "now", "description": "The time"}}
TOOLS = [WEATHER, ADD, NOARGS]
PARAMS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "properties": {}}) for t in TOOLS}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def run_cases(srv, cases):
    path = os.path.join(TMP, "tool-cases-%d.json" % os.getpid())
    with open(path, "w") as f:
        json.dump(cases, f)
    p = subprocess.run(["node", os.path.join(SRC, "tests", "serve", "openai_tools.js"), srv.base, "m", path],
                       capture_output=True, text=True, timeout=900)
    check(p.returncode == 0, "openai_tools.js ran: %s" % p.stderr[-2000:])
    return json.loads(p.stdout) if p.returncode == 0 else [{} for _ in cases]


def reference_render(template, messages, tools):
    """python3-jinja2's text of the conversation as transformers renders it
    (the calls' arguments as objects, as vLLM passes them)."""
    msgs = json.loads(json.dumps(messages))
    for m in msgs:
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    norm = []
    for t in tools:
        fn = dict(t["function"])
        fn.setdefault("parameters", {"type": "object", "properties": {}})
        norm.append({"type": "function", "function": fn})
    cases = [{"template": template, "messages": msgs, "tools": norm, "add_generation_prompt": True,
              "bos": "<s>", "eos": "</s>"}]
    cp, rp = os.path.join(TMP, "ref-cases.json"), os.path.join(TMP, "ref-results.json")
    with open(cp, "w") as f:
        json.dump(cases, f)
    te.run_ok("/usr/bin/python3", REF, cp, rp)
    with open(rp) as f:
        r = json.load(f)[0]
    check(r["ok"], "the reference renders the second turn: %r" % r)
    return r.get("text", "")


def validate_calls(label, results, names=None):
    """Every call's name is a tool (or in names) and its arguments validate (ajv)."""
    pairs, where = [], []
    for i, r in enumerate(results):
        calls = (r.get("message") or {}).get("tool_calls") or []
        check(len(calls) >= 1, "%s case %d: at least one call: %r" % (label, i, r))
        check(r.get("finish") == "tool_calls", "%s case %d: finish_reason tool_calls: %r" % (label, i, r.get("finish")))
        check(r.get("message", {}).get("content") in (None, ""), "%s case %d: no content besides the calls: %r" %
              (label, i, r.get("message", {}).get("content")))
        for c in calls:
            name = c["function"]["name"]
            check(c["type"] == "function" and c["id"], "%s: call id and type: %r" % (label, c))
            check(name in (names or PARAMS), "%s: call of %r" % (label, name))
            pairs.append((PARAMS.get(name, False), c["function"]["arguments"]))
            where.append((i, name))
    for (i, name), v in zip(where, schemas.ajv_validate(SRC, pairs) if pairs else []):
        check(v["parsed"] and v["valid"], "%s case %d: arguments of %s validate: %s" % (label, i, name, v["errors"]))


FORMATS = [("hermes", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"),
           ("qwen", "Qwen-Qwen2.5-7B-Instruct.jinja"),
           ("llama31", "meta-llama-Llama-3.1-8B-Instruct.jinja"),
           ("mistral", "mistralai-Mistral-Nemo-Instruct-2407.jinja")]
seeds = [1, 2] if te.SANITIZED else [1, 2, 3]
for label, tname in FORMATS:
    tpath = os.path.join(TPL, tname)
    with open(tpath, encoding="utf-8") as f:
        model = sk.make_model(os.path.join(TMP, "tools-%s.gguf" % label), SHARED, template=f.read(), ctx=4096)
    srv = sk.Server(FITLM, model, "-np", 2, "-t", 2, "-c", 4096, "--alias", "m")
    cases = []
    for s in seeds:  # required: non-streaming and streaming with the same seed give the same calls
        cases.append({"messages": USER, "tools": TOOLS, "tool_choice": "required", "seed": s, "max_tokens": 400})
        cases.append({"messages": USER, "tools": TOOLS, "tool_choice": "required", "seed": s, "max_tokens": 400,
                      "stream": True})
    named = {"type": "function", "function": {"name": "add"}}
    cases.append({"messages": USER, "tools": TOOLS, "tool_choice": named, "seed": 7, "max_tokens": 400})
    cases.append({"messages": USER, "tools": TOOLS, "tool_choice": named, "seed": 7, "max_tokens": 400, "stream": True})
    cases.append({"messages": USER, "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False,
                  "seed": 9, "max_tokens": 400})
    res = run_cases(srv, cases)
    n_req = 2 * len(seeds)
    validate_calls(label + " required", res[:n_req])
    validate_calls(label + " named", res[n_req:n_req + 2], names=["add"])
    validate_calls(label + " parallel_tool_calls false", res[n_req + 2:])
    streamed_args = 0
    for i in range(0, n_req + 2, 2):
        a, b = res[i].get("message", {}), res[i + 1].get("message", {})
        strip = lambda m: [(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]  # noqa
        check(strip(a) == strip(b) and strip(a), "%s: streamed calls == non-streamed (seed %s): %r vs %r" %
              (label, cases[i]["seed"], strip(a), strip(b)))
        d = res[i + 1].get("deltas", {})
        check(not d.get("problems") and d.get("content") == "", "%s: the deltas are OpenAI's: %r" % (label, d))
        # the arguments stream as they are generated: a call with arguments arrives in several pieces
        # (Mistral: the first call of the array; the others go out whole once the array is complete)
        streamed = (b.get("tool_calls") or [])[:1 if label == "mistral" else None]
        pieces = [d.get("argPieces", {}).get(str(k), 0) for k, c in enumerate(streamed)
                  if len(c["function"]["arguments"]) > 8]
        streamed_args += len(pieces)
        check(not pieces or min(pieces) >= 2, "%s: arguments streamed in pieces (seed %s): %r %r" %
              (label, cases[i]["seed"], d.get("argPieces"), b.get("tool_calls")))
        ids = [c["id"] for c in a.get("tool_calls") or []]
        check(len(set(ids)) == len(ids), "%s: distinct call ids %r" % (label, ids))
        if label == "mistral":
            check(all(len(x) == 9 and x.isalnum() for x in ids), "mistral: 9-character ids: %r" % ids)
        else:
            check(all(x.startswith("call_") for x in ids), "call_ ids: %r" % ids)
    check(streamed_args > 0, "%s: some streamed call has arguments" % label)
    check(len(res[n_req].get("message", {}).get("tool_calls") or []) == 1, "%s: a named choice makes one call" % label)
    check(len(res[-1].get("message", {}).get("tool_calls") or []) == 1, "%s: parallel_tool_calls false: one call" % label)
    if label == "llama31":
        check(all(len((r.get("message") or {}).get("tool_calls") or []) == 1 for r in res[:n_req]),
              "llama31: one call per reply (the template allows no more)")

    # the second turn: the calls and their results go back; the prompt is the reference's, token for token
    first = res[0].get("message") or {}
    calls = [{"id": c["id"], "type": "function", "function": c["function"]} for c in first.get("tool_calls") or []]
    if calls:
        convo = USER + [{"role": "assistant", "content": None, "tool_calls": calls}]
        for c in calls:
            convo.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps({"ok": True, "temp": 21})})
        text = reference_render(tpath, convo, TOOLS)
        for c in calls:  # the reference shows each call's arguments and result
            args = json.loads(c["function"]["arguments"])
            check(json.dumps(args, ensure_ascii=False) in text or json.dumps(args, ensure_ascii=False, indent=4) in text
                  or not args, "%s: the second turn's text holds the arguments %r" % (label, args))
        # (Llama 3.1 prints a string result through tojson: quoted)
        check('"temp": 21' in text or '\\"temp\\": 21' in text, "%s: the tool result is in the reference text" % label)
        st, want, _ = srv.post("/tokenize", {"content": text, "add_special": not text.startswith("<s>")})
        st2, got, body = srv.post("/tokenize", {"messages": convo, "tools": TOOLS})
        check(st == 200 and st2 == 200 and got["tokens"] == want["tokens"],
              "%s: the second turn's prompt == python3-jinja2's (%d vs %d tokens): %r" %
              (label, len((got or {}).get("tokens", [])), len((want or {}).get("tokens", [])), body[:300]))
        r2 = run_cases(srv, [{"messages": convo, "tools": TOOLS, "seed": 3, "max_tokens": 16},
                             {"messages": convo, "tools": TOOLS, "tool_choice": "none", "seed": 3, "max_tokens": 16,
                              "stream": True}])
        check(r2[0].get("finish") in ("stop", "length", "tool_calls"), "%s: the second turn answers: %r" % (label, r2[0]))
        check(r2[1].get("finish") in ("stop", "length") and not r2[1].get("message", {}).get("tool_calls"),
              "%s: tool_choice none: text only: %r" % (label, r2[1]))
        check(isinstance((r2[1].get("message") or {}).get("content"), str), "%s: tool_choice none: content %r" %
              (label, r2[1]))
    else:
        check(False, "%s: no call to send back" % label)
    m = srv.wait_idle()
    check(m.get("fitlm_kv_blocks_used") == 0, "%s: every KV block free afterwards" % label)
    rc, log = srv.stop()
    check(rc == 0, "%s: exit 0: %s" % (label, log[-800:]))

# ---- bad requests -> BadRequestError (Hermes model), and a template without tools
with open(os.path.join(TPL, FORMATS[0][1]), encoding="utf-8") as f:
    model = sk.make_model(os.path.join(TMP, "tools-hermes.gguf"), SHARED, template=f.read(), ctx=4096)
srv = sk.Server(FITLM, model, "-np", 2, "-t", 2, "-c", 4096, "--alias", "m")
good_call = [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]
bad = [
    ("tools not an array", {"tools": {"type": "function"}}),
    ("empty tools", {"tools": []}),
    ("a tool without a function", {"tools": [{"type": "function"}]}),
    ("a bad function name", {"tools": [{"type": "function", "function": {"name": "get weather"}}]}),
    ("a name too long", {"tools": [{"type": "function", "function": {"name": "x" * 65}}]}),
    ("parameters not an object", {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}),
    ("two tools of one name", {"tools": [ADD, ADD]}),
    ("tool_choice without tools", {"tool_choice": "auto"}),
    ("an unknown tool_choice", {"tools": TOOLS, "tool_choice": "sometimes"}),
    ("a named choice not among the tools", {"tools": TOOLS, "tool_choice": {"type": "function",
                                                                            "function": {"name": "nope"}}}),
    ("a schema fitlm cannot compile, required", {"tools": [{"type": "function", "function": {
        "name": "f", "description": "f", "parameters": {"type": "object", "properties": {
            "s": {"type": "string", "description": "s", "pattern": "a+"}}}}}],
        "tool_choice": "required"}),
    ("a tool message without tool_call_id", {"messages": USER + [{"role": "tool", "content": "1"}]}),
    ("arguments that are not JSON", {"messages": USER + [{"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{a: 1"}}]}]}),
    ("a user message with tool_calls", {"messages": [{"role": "user", "content": "x", "tool_calls": good_call}]}),
]
cases = [dict({"messages": USER, "max_tokens": 4, "seed": 1}, **b) for _, b in bad]
res = run_cases(srv, cases)
for (what, _), r in zip(bad, res):
    check(r.get("bad") and r.get("status") == 400, "%s -> BadRequestError: %r" % (what, r))
# a schema fitlm cannot compile is fine with tool_choice auto (nothing is constrained)
ok = run_cases(srv, [{"messages": USER, "tools": bad[10][1]["tools"], "max_tokens": 4, "seed": 1}])[0]
check(ok.get("finish") in ("stop", "length", "tool_calls"), "an uncompilable schema with auto: %r" % ok)
m = srv.wait_idle()
check(m.get("fitlm_kv_blocks_used") == 0, "no KV block left used")
rc, log = srv.stop()
check(rc == 0, "exit 0: %s" % log[-800:])

# ---- reasoning: QwQ's template opens <think> in the generation prompt (llama.cpp's copy closes it again unless
# enable_thinking is set: that line removed, the output is reasoning until </think>)
with open(os.path.join(TPL, "Qwen-QwQ-32B.jinja"), encoding="utf-8") as f:
    qwq = f.read()
think_line = "{%- if not enable_thinking -%}{{- '</think>' -}}{%- endif -%}"
check(think_line in qwq, "QwQ's template closes <think> unless enable_thinking")
for label, tpl, thinking in (("qwq-thinking", qwq.replace(think_line, ""), True), ("qwq", qwq, False)):
    model = sk.make_model(os.path.join(TMP, "tools-%s.gguf" % label), SHARED, template=tpl, ctx=4096)
    srv = sk.Server(FITLM, model, "-np", 2, "-t", 2, "-c", 4096, "--alias", "m")
    res = run_cases(srv, [{"messages": USER, "seed": 5, "max_tokens": 24},
                          {"messages": USER, "seed": 5, "max_tokens": 24, "stream": True}])
    st, raw, _ = srv.post("/v1/chat/completions", {"messages": USER, "seed": 5, "max_tokens": 24, "temperature": 1.0,
                                                   "top_p": 1.0})
    msg = raw["choices"][0]["message"]
    if thinking:
        check(isinstance(msg.get("reasoning_content"), str) and len(msg["reasoning_content"]) > 0 and
              msg["content"] == "", "%s: the output is reasoning_content: %r" % (label, msg))
        check(res[1].get("deltas", {}).get("reasoning") == msg["reasoning_content"] and
              res[1]["deltas"]["content"] == "", "%s: streamed reasoning == whole: %r" % (label, res[1].get("deltas")))
    else:
        check(msg.get("reasoning_content") is None and len(msg["content"]) > 0 and
              res[1].get("deltas", {}).get("content") == msg["content"],
              "%s: <think> closed in the prompt: the output is content: %r / %r" % (label, msg, res[1].get("deltas")))
    rc, log = srv.stop()
    check(rc == 0, "exit 0: %s" % log[-800:])

plain = sk.make_model(os.path.join(TMP, "serve-model.gguf"), SHARED)  # the Llama 2 template: no tool format
srv = sk.Server(FITLM, plain, "-np", 1, "-t", 2, "--alias", "m")
res = run_cases(srv, [{"messages": USER, "tools": TOOLS, "max_tokens": 4}])
check(res[0].get("bad") and "does not support tools" in res[0].get("error", ""), "Llama 2 template + tools: %r" % res[0])
rc, log = srv.stop()
check(rc == 0, "exit 0: %s" % log[-800:])
srv = sk.Server(FITLM, plain, "-np", 1, "-t", 2, "--alias", "m", "--chat-template", "chatml")
res = run_cases(srv, [{"messages": USER, "tools": TOOLS, "max_tokens": 4},
                      {"messages": USER + [{"role": "assistant", "content": None, "tool_calls": good_call}],
                       "max_tokens": 4}])
check(all(r.get("bad") and "does not support tools" in r.get("error", "") for r in res),
      "built-in format + tools / tool_calls: %r" % res)
rc, log = srv.stop()
check(rc == 0, "exit 0: %s" % log[-800:])
sys.exit(te.report())
