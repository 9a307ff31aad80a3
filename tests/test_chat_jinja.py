"""Built-in chat templates against jinja2 rendering the published Jinja chat
templates (Llama 2 chat, Llama 3 instruct, Qwen2 instruct, plain ChatML,
Mistral instruct v0.1/v0.2) on several conversations. fitlm never executes
Jinja: it recognises the template and formats with its own code, so the text
must come out identical (minus the leading BOS, which the tokenizer adds).
Needs python3-jinja2 (skips when it is missing) and the test_chat_template
helper built next to the other tests.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

try:
    import jinja2
except ImportError:
    print("SKIP: python3-jinja2 is not installed")
    sys.exit(77)

FITLM = te.require_env("FITLM_BIN")
HELPER = os.path.join(os.path.dirname(FITLM), "tests", "test_chat_template")
if not os.path.exists(HELPER):
    print("FAIL: helper %s not built" % HELPER)
    sys.exit(1)

# The published templates (tokenizer_config.json "chat_template" values).
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
          "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
          "{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
          "{% endif %}")
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
           "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

CASES = [
    ("llama2", LLAMA2, "<s>", "</s>", True),
    ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", True),
    ("chatml", QWEN2, "", "<|im_end|>", True),
    ("chatml", CHATML, "", "<|im_end|>", True),
    ("mistral", MISTRAL, "<s>", "</s>", False),
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    [{"role": "user", "content": "  padded question \n"}, {"role": "assistant", "content": "An answer."},
     {"role": "user", "content": "Another one?"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello, friend."}, {"role": "user", "content": "Line one\nline two"}],
]



def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env = jinja2.Environment()
env.globals["raise_exception"] = raise_exception

for name, src, bos, eos, system_ok in CASES:
    tmpl = env.from_string(src)
    for conv in CONVERSATIONS:
        if conv[0]["role"] == "system" and not system_ok:
            continue
        for gen in (True, False):
            want = tmpl.render(messages=conv, add_generation_prompt=gen, bos_token=bos, eos_token=eos)
            if bos and want.startswith(bos):
                want = want[len(bos):]  # the tokenizer adds BOS
            req = {"jinja": src, "add_generation_prompt": gen, "messages": list(conv)}
            # what fitlm run --chat does: detect the template, apply the default system message
            p = subprocess.run([HELPER, "--render"], input=json.dumps(req), capture_output=True, text=True)
            check(p.returncode == 0, "helper failed: " + p.stderr)
            if p.returncode:
                continue
            out = json.loads(p.stdout)
            check(out["detected"] == name, "%s detected as %s" % (name, out["detected"]))
            msgs = list(conv)
            if out["default_system"] is not None and msgs[0]["role"] != "system":
                msgs = [{"role": "system", "content": out["default_system"]}] + msgs
                req["messages"] = msgs
                p = subprocess.run([HELPER, "--render"], input=json.dumps(req), capture_output=True, text=True)
                out = json.loads(p.stdout)
            check(out["text"] == want, "%s gen=%s conv=%r:\n  fitlm  %r\n  jinja2 %r" % (
                name, gen, [m["role"] for m in conv], out["text"], want))

sys.exit(te.report())
