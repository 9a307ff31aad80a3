"""`fitlm template` against Debian's python3-jinja2 run with transformers'
settings (tests/ref/chat_template.py) on every real chat template in
../shared/data/chat-templates/ and a varied set of conversations: with and
without a system message, multi-turn, tools and tool results, list-of-parts
content, unicode, assistant last, add_generation_prompt both ways, extra
keyword arguments. The rendered text must be byte-identical; where the
reference fails, fitlm must fail too (exit 1, "fitlm: error:"), and where the
template raised (raise_exception), with the template's own message.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

try:
    import jinja2  # noqa: F401
except ImportError:
    print("SKIP: python3-jinja2 is not installed")
    sys.exit(77)

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TEMPLATES = os.path.join(SHARED, "data", "chat-templates")
if not os.path.isdir(TEMPLATES):
    print("SKIP: %s is absent" % TEMPLATES)
    sys.exit(77)
REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref", "chat_template.py")
TMP = os.path.join(te.tmp_dir(), "chat_templates")
os.makedirs(TMP, exist_ok=True)
# A fixed date for strftime_now (Granite, Llama 3.2): 2024-09-05 12:00 UTC.
os.environ["FITLM_TEMPLATE_NOW"] = "1725537600"

# BOS/EOS texts as the models' tokenizers have them.
SPECIAL = {
    "meta-llama": ("<|begin_of_text|>", "<|eot_id|>"),
    "NousResearch": ("<|begin_of_text|>", "<|im_end|>"),
    "Qwen": ("", "<|im_end|>"),
    "deepseek-ai": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "mistralai": ("<s>", "</s>"),
    "microsoft": ("<s>", "<|endoftext|>"),
    "google": ("<bos>", "<eos>"),
    "HuggingFaceTB": ("", "<|im_end|>"),
    "ibm-granite": ("<|end_of_text|>", "<|end_of_text|>"),
}

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Zürich"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
        "days": {"type": "integer", "description": "  Forecast days  "}},
        "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "limit": {"type": "number", "description": "At most this many results"},
        "filters": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Key filters"},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
        "mode": {"type": ["string", "integer"], "description": "A mode"}},
        "required": ["query"]},
    "return": {"type": "string", "description": "The results"}}}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]

CALL = {"id": "call12345", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 2}}}
CALL_STR = {"id": "abcDEF123", "type": "function",
            "function": {"name": "search", "arguments": "{\"query\": \"fitlm\", \"limit\": 3}"}}
CALL_NUMS = {"id": "n0mb3rs99", "type": "function",
             "function": {"name": "search", "arguments": {"query": "π ≈ 3.14", "limit": 1.0, "big": 1e20,
                                                          "small": 0.1, "neg": -0.0005, "flag": True,
                                                          "none": None, "nested": {"a": [1, 2.5, "x"]}}}}

U = "user"
A = "assistant"


def m(role, content, **kw):
    d = {"role": role, "content": content}
    d.update(kw)
    return d


# (name, messages, tools, kwargs)
CONVERSATIONS = [
    ("single user", [m(U, "Hello!")], None, {}),
    ("system + user", [m("system", "You are terse."), m(U, "Name a prime.")], None, {}),
    ("multi-turn", [m(U, "Hi"), m(A, "Hello, how can I help?"), m(U, "Tell me a joke.")], None, {}),
    ("assistant last", [m("system", "Be kind."), m(U, "Hi"), m(A, "Hello, friend.")], None, {}),
    ("long multi-turn", [m("system", "Answer in one word."), m(U, "Sky colour?"), m(A, "Blue."),
                         m(U, "Grass?"), m(A, "Green."), m(U, "Snow?")], None, {}),
    ("unicode", [m(U, "Grüße aus Zürich! 日本語で答えて 🙂 — «quotes» \"double\" 'single' \\back\\slash"),
                 m(A, "こんにちは 👋\nLine two\ttabbed"), m(U, "Ñandú? ∑ x² ≠ ∞")], None, {}),
    ("padded content", [m("system", "  spaced system  \n"), m(U, "\n  padded question \n\n"),
                        m(A, "  an answer  "), m(U, "again\n")], None, {}),
    ("list of parts", [m(U, [{"type": "text", "text": "Describe this."}, {"type": "text", "text": "Briefly."}])],
     None, {}),
    ("empty user", [m(U, "")], None, {}),
    ("tool call and result", [m("system", "You can call tools."), m(U, "Weather in Paris?"),
                              m(A, None, tool_calls=[CALL]),
                              m("tool", "{\"temperature\": 21, \"sky\": \"clear\"}", tool_call_id="call12345",
                                name="get_weather"),
                              m(A, "It is 21 °C and clear in Paris.")], TOOLS, {}),
    ("tool call, string arguments", [m(U, "Search fitlm"), m(A, None, tool_calls=[CALL_STR]),
                                     m("tool", "3 results", tool_call_id="abcDEF123", name="search")], TOOLS, {}),
    ("tool call, numbers", [m(U, "Compute"), m(A, "", tool_calls=[CALL_NUMS]),
                            m("tool", "done", tool_call_id="n0mb3rs99")], TOOLS, {}),
    ("two tool calls", [m(U, "Weather and search"), m(A, None, tool_calls=[CALL, CALL_STR]),
                        m("tool", "sunny", tool_call_id="call12345"), m("tool", "found", tool_call_id="abcDEF123")],
     TOOLS, {}),
    ("tools, plain question", [m("system", "Use tools when needed."), m(U, "What's 2+2?")], TOOLS, {}),
    ("tools, no system", [m(U, "Weather in Oslo?")], [WEATHER_TOOL], {}),
    ("reasoning in history", [m(U, "Think: 6*7?"), m(A, "<think>\n6*7 = 42\n</think>\n\nIt is 42."),
                              m(U, "And 6*8?")], None, {}),
    ("not alternating", [m(U, "one"), m(U, "two")], None, {}),
    ("system only", [m("system", "Only a system message.")], None, {}),
    ("no_think system", [m("system", "Be brief. /no_think"), m(U, "Hi")], None, {}),
    ("kwargs: thinking off, date", [m(U, "What's the date?")], None,
     {"enable_thinking": False, "date_string": "01 Jan 2025", "thinking": True}),
    ("kwargs: tools in system", [m("system", "Sys."), m(U, "Weather?")], [WEATHER_TOOL],
     {"tools_in_user_message": False}),
]


def case_list():
    cases = []
    for tpl in sorted(os.listdir(TEMPLATES)):
        if not tpl.endswith(".jinja"):
            continue
        prefix = tpl.split("-")[0]
        bos, eos = next((v for k, v in SPECIAL.items() if tpl.startswith(k)), ("<s>", "</s>"))
        del prefix
        for name, msgs, tools, kwargs in CONVERSATIONS:
            for agp in (False, True):
                cases.append({"template": os.path.join(TEMPLATES, tpl), "name": "%s / %s / agp=%s" % (tpl, name, agp),
                              "messages": msgs, "tools": tools, "add_generation_prompt": agp, "bos": bos,
                              "eos": eos, "kwargs": kwargs})
    return cases


def check_model_template():
    """-m MODEL: the template from tokenizer.chat_template of a GGUF carrying the
    real Llama 2 vocabulary, BOS/EOS texts from the tokenizer ("<s>", "</s>")."""
    vocab = os.path.join(SHARED, "data", "vocab", "ggml-vocab-llama-spm.gguf")
    if not os.path.exists(vocab):
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
    import forward as ref  # the GGUF reader/writer of the forward-pass reference
    tok_kv = ref.read_gguf_kv_raw(vocab, "tokenizer.")
    tpl_path = os.path.join(TEMPLATES, "mistralai-Mistral-Nemo-Instruct-2407.jinja")
    src = open(tpl_path, encoding="utf-8").read()
    model = os.path.join(TMP, "vocab-with-template.gguf")
    ref.write_gguf(model, [("general.architecture", "str", "llama")] + tok_kv + [("tokenizer.chat_template", "str", src)],
                   [])
    plain = os.path.join(TMP, "vocab-no-template.gguf")
    ref.write_gguf(plain, [("general.architecture", "str", "llama")] + tok_kv, [])
    cases = []
    for name, msgs, tools, kwargs in CONVERSATIONS[:4]:
        cases.append({"template": tpl_path, "messages": msgs, "tools": tools, "add_generation_prompt": True,
                      "bos": "<s>", "eos": "</s>", "kwargs": kwargs})
    cpath, rpath = os.path.join(TMP, "mcases.json"), os.path.join(TMP, "mresults.json")
    with open(cpath, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    subprocess.run([sys.executable, REF, cpath, rpath], check=True)
    for i, (case, exp) in enumerate(zip(cases, json.load(open(rpath, encoding="utf-8")))):
        mpath = os.path.join(TMP, "mm%d.json" % i)
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(case["messages"], f, ensure_ascii=False)
        p = subprocess.run([FITLM, "template", "-m", model, "--messages", mpath, "--add-generation-prompt"],
                           capture_output=True, timeout=60)
        check(exp["ok"] and p.returncode == 0 and p.stdout == exp["text"].encode("utf-8"),
              "-m MODEL case %d: rc %d %r vs %r" % (i, p.returncode, p.stdout[:300], exp.get("text", "")[:300]))
    p = subprocess.run([FITLM, "template", "-m", plain, "--messages", mpath], capture_output=True, text=True)
    check(p.returncode == 1 and "no chat template" in p.stderr, "model without a template: %r" % p.stderr)
    # --template overrides the model's; --bos overrides the tokenizer's
    p = subprocess.run([FITLM, "template", "-m", model, "--template", os.path.join(TEMPLATES, "google-gemma-2-2b-it.jinja"),
                        "--bos", "[B]", "--messages", os.path.join(TMP, "mm0.json")], capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout.startswith("[B]<start_of_turn>user"), "--template over -m: %r %r" %
          (p.stdout[:80], p.stderr))


def main():
    cases = case_list()
    cases_path = os.path.join(TMP, "cases.json")
    results_path = os.path.join(TMP, "results.json")
    with open(cases_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    subprocess.run([sys.executable, REF, cases_path, results_path], check=True)
    expected = json.load(open(results_path, encoding="utf-8"))
    n_ok = n_err = n_raise = 0
    for i, (case, exp) in enumerate(zip(cases, expected)):
        mpath = os.path.join(TMP, "m%d.json" % i)
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(case["messages"], f, ensure_ascii=False)
        args = [FITLM, "template", "--template", case["template"], "--messages", mpath,
                "--bos", case["bos"], "--eos", case["eos"]]
        if case["tools"] is not None:
            tpath = os.path.join(TMP, "t%d.json" % i)
            with open(tpath, "w", encoding="utf-8") as f:
                json.dump(case["tools"], f, ensure_ascii=False)
            args += ["--tools", tpath]
        if case["kwargs"]:
            args += ["--kwargs", json.dumps(case["kwargs"])]
        if case["add_generation_prompt"]:
            args.append("--add-generation-prompt")
        p = subprocess.run(args, capture_output=True, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        if exp["ok"]:
            n_ok += 1
            got = p.stdout.decode("utf-8", "replace")
            same = p.returncode == 0 and p.stdout == exp["text"].encode("utf-8")
            check(same, "%s: output differs (rc %d, %s)\n--- expected\n%r\n--- got\n%r" %
                  (case["name"], p.returncode, err.strip(), exp["text"], got))
        else:
            n_err += 1
            check(p.returncode == 1 and err.startswith("fitlm: error:"),
                  "%s: reference fails (%s) but fitlm gave rc %d, stderr %r" %
                  (case["name"], exp["error"], p.returncode, err))
            if exp["raised"]:
                n_raise += 1
                check(exp["error"] in err, "%s: expected the template's message %r, got %r" %
                      (case["name"], exp["error"], err))
    check_model_template()
    print("%d cases: %d rendered, %d failing in the reference (%d raise_exception)" %
          (len(cases), n_ok, n_err, n_raise))
    check(n_ok >= 150, "at least 150 rendered cases (got %d)" % n_ok)
    sys.exit(te.report())


main()
