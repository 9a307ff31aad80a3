"""Reference chat-template renderer: Debian's python3-jinja2 with the settings
of Hugging Face transformers' apply_chat_template (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, the loopcontrols extension, tojson = json.dumps(x,
ensure_ascii=False, ...), globals raise_exception and strftime_now) and its
variables (messages, tools (None when absent), documents=None,
add_generation_prompt, bos_token, eos_token, extra keyword arguments).

    python3 chat_template.py CASES.json RESULTS.json

CASES.json: a list of {"template": PATH, "messages": [...], "tools": [...] or
null, "add_generation_prompt": bool, "bos": str, "eos": str, "kwargs": {...}}.
RESULTS.json: per case {"ok": true, "text": ...} or {"ok": false, "raised":
bool (raise_exception), "error": message}.

strftime_now honours FITLM_TEMPLATE_NOW (seconds since 1970, rendered in UTC)
exactly as fitlm does, so renders that show the date are reproducible.
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Raised(Exception):
    pass


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(fmt):
    fixed = os.environ.get("FITLM_TEMPLATE_NOW")
    if fixed:
        now = datetime.datetime.fromtimestamp(int(fixed), datetime.timezone.utc)
    else:
        now = datetime.datetime.now()
    return now.strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, case):
    template = env.from_string(source)
    return template.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                           add_generation_prompt=case.get("add_generation_prompt", False),
                           bos_token=case.get("bos", ""), eos_token=case.get("eos", ""),
                           **case.get("kwargs", {}))


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    env = make_env()
    sources = {}
    results = []
    for case in cases:
        path = case["template"]
        if path not in sources:
            with open(path, encoding="utf-8", newline="") as f:
                sources[path] = f.read()
        try:
            results.append({"ok": True, "text": render(env, sources[path], case)})
        except jinja2.exceptions.TemplateError as e:
            raised = type(e) is jinja2.exceptions.TemplateError
            results.append({"ok": False, "raised": raised, "error": str(e)})
        except Exception as e:  # TypeError and friends: the template failed
            results.append({"ok": False, "raised": False, "error": "%s: %s" % (type(e).__name__, e)})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
