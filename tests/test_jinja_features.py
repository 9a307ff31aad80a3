"""The Jinja interpreter feature by feature: small templates exercising
whitespace control (trim_blocks, lstrip_blocks, '-', '+', raw), values and
their printing (ints, floats as Python prints them, lists, dicts, tuples,
quotes in repr), string and list operations and methods, slices, loops (loop.*,
break/continue, else, filters, nesting), scoping (set in loops and ifs,
namespace, tuple unpacking, block set), macros (defaults, varargs, kwargs,
recursion, call blocks with caller()), filters and tests, tojson with every
option, comparisons, strftime_now, raise_exception, and errors. Each is
rendered by `fitlm template` and by python3-jinja2 with transformers' settings
(tests/ref/chat_template.py); the text must be identical, and where Jinja
fails fitlm must fail with "fitlm: error:" and exit 1.
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

FITLM = te.require_env("FITLM_BIN")
REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref", "chat_template.py")
TMP = os.path.join(te.tmp_dir(), "jinja_features")
os.makedirs(TMP, exist_ok=True)
os.environ["FITLM_TEMPLATE_NOW"] = "1735732800"  # 2025-01-01 12:00 UTC

MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2 é"},
            {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA2"}, {"role": "user", "content": "U3"}]

SNIPPETS = [
    # whitespace control
    "a\n  {% if true %}\n  b\n  {% endif %}\nc",
    "{{ 'x' }}\n  {% if true %}y{% endif %}\n",
    "  {# comment #}\nz\n{# two #}  w",
    "x\n  {%+ if true %}k{% endif %}\n",
    "a {%- if true -%} b {%- endif -%} c",
    "{% raw %}{{ x }} {% if %}{% endraw %}\nafter",
    "line\n{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\nend\n",
    "x  \n{%- set y = 1 %}\n  {{ y }}",
    "{{ 1 }}   {% if true %}t{% endif %}",
    "\t {% if true %}tab{% endif %}  \n  {%- if true +%}\nkeep{% endif %}",
    "{% if true %}   \n  x{% endif %}",
    "a\r\nb\r\n{% if true %}\r\nc{% endif %}\n\n",
    # values and printing
    "{{ 1.0 }} {{ 0.1 }} {{ 1e20 }} {{ 1/3 }} {{ 10/2 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 2.5*2 }}",
    "{{ [1, 'a', none, true, 1.5] }} {{ {'a': 1, 'b': [2]} }} {{ (1,) }} {{ (1, 2) }} {{ () }}",
    "{{ 'it\\'s' }} {{ [\"it's\"] }} {{ ['a\\nb', 'q\"', 'both \\' \"'] }} {{ ['\\x01\\t'] }}",
    "{{ none }} {{ true }} {{ undefined_var }}|{{ messages[9] }}|",
    "{{ 10000000000 * 10 }} {{ 2 ** 0.5 }} {{ 1e-5 }} {{ 123.456 }} {{ 1.5e300 * 1e10 }} {{ -1e16 }} {{ 1e15 }}",
    "{{ 0.000123 }} {{ 100.0 }} {{ 3 * 0.1 }} {{ 1_000 }} {{ 2.5e-3 }} {{ 7 / 7 }}",
    # strings
    "{{ 'abc'[::-1] }} {{ 'héllo'[1:3] }} {{ 'héllo'|length }} {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }}",
    "{{ 'xxhixx'.strip('x') }} {{ 'Hello'.upper() }} {{ 'ab' * 3 }} {{ 'Hello wORLD'.title() }} {{ 'hELLO'.capitalize() }}",
    "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a-b-c'.replace('-', '+', 1) }} {{ 'abcabc'.find('c') }}",
    "{{ '%s and %d' % ('x', 3) }} {{ '{} {}'.format(1, 'b') }} {{ '-'.join(['a', 'b']) }} {{ 'a b c'.split(' ', 1) }}",
    "{{ '\\n\\nx\\n'.lstrip('\\n') }}|{{ '  y  '.rstrip() }}|{{ 'a</think>b</think>c'.split('</think>')[-1] }}",
    "{{ 'abcdef'[1:-1] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[:100] }} {{ 'abcdef'[4:1] }} {{ 'abcdef'[::-2] }} {{ 'x'[5:] }}",
    "{{ '日本語'[1] }} {{ '日本'|length }} {{ 'ÉCOLE'|lower }} {{ 'école'|upper }} {{ '\\u00e9\\U0001F600' }}",
    "{{ 'abc' ~ 1 ~ none ~ [1] }} {{ 'ab' in 'cabd' }} {{ '' in 'x' }}",
    # full case mappings (one character to several; title case that is not upper case)
    "{{ 'ß'|upper }} {{ 'straße'.upper() }} {{ 'ßa'|title }} {{ 'ßa'.title() }} {{ 'ßa'.capitalize() }} {{ 'ßA'|capitalize }}",
    "{{ 'İx'|lower }} {{ 'İx'.capitalize() }} {{ 'ǆa'.title() }} {{ 'ǆa'|title }} {{ 'ǆA'|capitalize }} {{ 'ﬁne ﬂow'|upper }}",
    "{{ 'ᾳ ΐ ŉ ǰ'|upper }} {{ 'ᾳb'.title() }} {{ 'ﬃx'.title() }} {{ 'և'|upper }} {{ 'ẞ'|lower }} {{ 'ΣΑΣ'|lower }}",
    "{{ 'ΟΔΟΣ ΣΑΣ.'|lower }} {{ 'ΑΣ1'.lower() }} {{ 'Σ'|lower }} {{ 'ΑΣΑ'|title }} {{ 'όσοσ ΟΣ'.title() }}",
    # \N{...} escapes (any case; CJK ideographs by code)
    "{{ '\\N{EM DASH}\\N{latin small letter sharp s}\\N{Greek Small Letter Alpha}|\\N{SNOWMAN}\\N{GRINNING FACE}' }}"
    "{{ \"\\N{NO-BREAK SPACE}\\N{DIGIT ONE}\\N{CJK UNIFIED IDEOGRAPH-4E2D}\\N{CJK UNIFIED IDEOGRAPH-20000}\" }}"
    "{{ '\\N{RIGHTWARDS ARROW}\\N{BOX DRAWINGS LIGHT HORIZONTAL}\\N{EURO SIGN}\\N{HORIZONTAL ELLIPSIS}'|length }}",
    # rsplit (with maxsplit, separators of several characters, white space)
    "{{ 'a,b,c'.rsplit(',', 1) }} {{ 'a,b,c'.rsplit(',') }} {{ 'a,b,c'.rsplit(',', 0) }} {{ 'a::b::c'.rsplit('::', 1) }}",
    "{{ ' a b  c '.rsplit(None, 1) }} {{ ' a b  c '.rsplit() }} {{ '  x  '.rsplit(None, 0) }} {{ ''.rsplit(',') }}",
    "{{ 'aaa'.rsplit('aa', 1) }} {{ 'é,日,x'.rsplit(',', 1) }} {{ 'a\u3000b c'.rsplit(maxsplit=1) }} {{ ''.rsplit() }}",
    # lists and dicts
    "{{ [1, 2, 3][-1] }} {{ [1, 2, 3][1:] }} {{ [1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3][::-1] }} {{ [1, 2] + [3] }}",
    "{{ 2 in [1, 2] }} {{ 'b' in {'b': 1} }} {{ 'x' not in 'abc' }} {{ [3, 1, 2]|sort }} {{ [1, 2, 2, 3]|unique|list }}",
    "{{ [1, 2, 3]|sum }} {{ [1, 5, 3]|max }} {{ [4, 2]|min }} {{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ [1, 2, 3]|reverse|list }}",
    "{{ [1, 2, 3]|join('-') }} {{ ['b', 'a']|sort(reverse=true) }} {{ 'abc'|reverse }} {{ [[1, 2], [3]]|length }}",
    "{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %} {{ {'a': 1}.get('b', 'd') }} {{ {'a': 1}.get('a') }}",
    "{{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }} {% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %} {{ {'b': 1, 'a': 2}|dictsort }}",
    "{{ {'a': 1}|items|list }} {{ {'a': {'b': 'c'}}.a.b }} {{ {'items': 5}['items'] }} {{ [1, 2].index(2) }}",
    # loops
    "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
    "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}|{% endfor %}",
    "{% for x in range(10) %}{% if x == 5 %}{% break %}{% endif %}{% if x is odd %}{% continue %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in [] %}a{% else %}empty{% endfor %} {% for x in [1] %}one{% else %}no{% endfor %}",
    # recursive loops
    "{% set tree = [{'n': 'a', 'c': [{'n': 'b', 'c': []}, {'n': 'c', 'c': [{'n': 'd', 'c': []}]}]}, {'n': 'e', 'c': []}] %}"
    "{% for x in tree recursive %}[{{ x.n }} {{ loop.depth }}{{ loop.depth0 }} {{ loop.index }}/{{ loop.length }}"
    "{{ loop.first }}{{ loop.last }}{% if x.c %}({{ loop(x.c) }}){% endif %}]{% endfor %}",
    "{% set tree = [{'n': 'a', 'c': [{'n': 'b', 'c': []}, {'n': 'c', 'c': []}]}, {'n': 'b', 'c': [{'n': 'x', 'c': []}]}] %}"
    "{% for x in tree if x.n != 'b' recursive %}<{{ x.n }}{{ loop(x.c) }}>{% else %}-{% endfor %}|"
    "{% for x in tree recursive %}{% set inner = loop(x.c)|upper %}{{ x.n }}{{ inner }}{{ inner|length }};{% endfor %}",
    "{% for k, v in {'a': {'b': {'c': {}}}, 'd': {}}.items() recursive %}{{ k }}{{ loop.depth }}"
    "{% if v %}{ {{- loop(v.items()) -}} }{% endif %}{% endfor %}",
    "{% set ns = namespace(l=none) %}{% for x in [[1]] recursive %}{% set ns.l = loop %}{{ x }}{% endfor %}"
    "{{ ns.l([[5]]) }}",
    "{% for m in messages recursive %}{% if loop.depth < 3 %}{{ m.role[0] }}{{ loop([m]) }}{% endif %}{% endfor %}",
    "{% for x in range(6) if x is even %}{{ x }}{{ loop.last }}{% endfor %} {{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}",
    "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.depth }}{{ a }}{{ b }}{% endfor %}{{ loop.depth }}{% endfor %}",
    "{% for m in messages %}{{ m.role }}:{{ m.content }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %}",
    # scoping
    "{% set x = 1 %}{% for i in range(2) %}{{ x }}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(c=0, s='') %}{% for i in range(3) %}{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }} {{ ns.s }}",
    "{% if true %}{% set y = 2 %}{% endif %}{{ y }} {% set a, b = 1, 2 %}{{ a }}{{ b }} {% set blk %}in {{ 1 + 1 }}{% endset %}[{{ blk }}]",
    "{% set messages = messages[1:] %}{{ messages|length }} {% set t = (1, 'x') %}{{ t[1] }}",
    # macros
    "{% macro m(a, b='d') %}{{ a }}-{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1) }} {{ m(1, 2, 3) }} {{ m(1, c=4) }} {{ m(b=2, a=0) }}",
    "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}",
    "{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inside{% endcall %}",
    "{% macro w() %}<{{ caller(1) }}>{% endmacro %}{% call(x) w() %}got {{ x }}{% endcall %}",
    "{%- macro t(x) -%}\n  [{{ x }}]\n{%- endmacro -%}\n{{ t('a') + t('b') }}",
    # filters
    "{{ '  x  '|trim }} {{ 'x'|upper }} {{ 'ABC'|lower }} {{ undefined_v|default('dft') }} {{ ''|default('e', true) }} {{ none|default('n') }}",
    "{{ 'a b'|replace(' ', '_') }} {{ 3|string }} {{ '42'|int + 1 }} {{ '1.5'|float }} {{ -3|abs }} {{ 2.5|round }} {{ 'x'|int }}",
    "{{ 'abc'|list }} {{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }} {{ '<a&b>'|e }} {{ '%s-%s'|format(1, 2) }}",
    "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('|') }} {{ messages|rejectattr('role', 'eq', 'user')|list|length }}",
    "{{ messages|map(attribute='role')|unique|list }} {{ [1, 0, 2]|select|list }} {{ ['a', 'B']|map('upper')|list }} {{ [1, 2, 3]|reject('odd')|list }}",
    "{{ messages|selectattr('missing')|list }} {{ messages|map(attribute='nope', default='z')|list }} {{ 'hello world'|title }} {{ 'x'|capitalize }}",
    "{{ \"they're o'neil-smith (aB) x\"|title }} {{ \"they're o'neil-smith (aB)\".title() }} {{ 'ÉTÉ été'|title }}",
    "{{ [1, 2]|length }} {{ {'a': 1}|length }} {{ undefined_x|length }} {{ messages[0]|length }} {{ 'abc'|count }}",
    # tests
    "{{ 1 is number }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is sequence }} {{ 'a' is iterable }} {{ none is none }} {{ x is defined }}",
    "{{ 4 is divisibleby 2 }} {{ 3 is odd }} {{ 'ab' is lower }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 1 is in [1] }}",
    "{{ x is not defined }} {{ 5 is gt 3 }} {{ 5 is le 3 }} {{ none is not none }} {{ undefined_z is iterable }} {{ 1 is sameas 1 }} {{ 1 is eq 1.0 }}",
    # tojson
    "{{ messages|tojson }}",
    "{{ messages|tojson(indent=2) }}",
    "{{ {'b': 1, 'a': [1.0, 2.5e-7, -0.0, 1e16, 123456789012345678, 1.5]}|tojson(sort_keys=true) }}",
    "{{ {'a': 'é\\u0001\\t\"\\\\/\\u007f', 1: 2, none: 3, true: 4}|tojson(separators=(',', ':')) }}",
    "{{ 'x'|tojson }} {{ none|tojson }} {{ true|tojson }} {{ []|tojson(indent=4) }} {{ {}|tojson(indent=4) }} {{ [[]]|tojson(indent='\\t') }}",
    "{{ (1, 2)|tojson }} {{ 3.0|tojson }} {{ {'k': [1, {'z': none}]}|tojson(indent=1) }}",
    # comparisons and logic
    "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 != 2 }} {{ none == none }}",
    "{{ 1 if false }}|{{ 'y' if 0 else 'n' }} {{ not 0 }} {{ 0 or 'x' }} {{ 1 and 'y' }} {{ [] or {} }} {{ messages[0] == {'role': 'system', 'content': 'S'} }}",
    "{{ -2 ** 2 }} {{ (-2) ** 2 }} {{ 2 ** -1 }} {{ 7 % 2.5 }} {{ -7.5 // 2 }} {{ 1 + 2 * 3 - 4 / 2 }} {{ 'a' ~ 2 + 3 }}",
    # globals
    "{{ strftime_now('%Y-%m-%d %B %d, %H:%M %a %b') }} {{ dict(a=1, b='x') }} {{ namespace(a=1).a }}",
    "{% if messages|length > 0 %}{{ raise_exception('custom: ' ~ messages[0].role) }}{% endif %}",
    "{{ messages[0]['content'] }} {{ messages[0].content }} {{ messages[-1].role }} {{ messages[0].missing is defined }} {{ messages.0.role }}",
    "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}",
    # a Qwen3-style template (reverse scan with a namespace, reasoning_content, think splitting)
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == 'user' and message.content is string and not"
    "(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- set content = message.content if message.content is string else '' %}\n"
    "    {%- if message.role == 'assistant' %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}\n"
    "        {%- elif '</think>' in content %}\n"
    "            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "        {%- else %}{{- '<|im_start|>' + message.role + '\\n' + content }}{%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- else %}{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}{%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}",
    # errors (the reference fails: fitlm must fail too)
    "{{ 'a' + 1 }}",
    "{{ undefined_x.attr }}",
    "{{ 1 / 0 }}",
    "{% for x in 5 %}{% endfor %}",
    "{% if %}x{% endif %}",
    "{{ ( }}",
    "{% endfor %}",
    "{{ 'a' ",
    "{{ messages.__class__ }}",
    "{% for x in range(3) %}",
    "{{ none.x.y }}",
    "{{ [1] + 'a' }}",
    "{% set x = [1, 2] %}{{ x.append(3) }}",
    "{{ range(200000)|length }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ 'a'.rsplit('') }}",
    "{% for x in [1] %}{{ loop([]) }}{% endfor %}",
    "{% for x in [[1]] recursive %}{{ loop(x, 2) }}{% endfor %}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{% for x in [1] recursive %}{{ loop(5) }}{% endfor %}",
    "{{ '\\N{NOT A CHARACTER NAME}' }}",
    "{{ '\\N{EM DASH' }}",
    "{{ '\\N' }}",
    "{{ '\\N{}' }}",
    "{{ '\\N{CJK UNIFIED IDEOGRAPH-0041}' }}",
    "{{ '\\N{CJK UNIFIED IDEOGRAPH-4e2d}' }}",
    "{{ '\\N{cjk unified ideograph-20000}' }}",
]


def main():
    cases = []
    for i, src in enumerate(SNIPPETS):
        path = os.path.join(TMP, "s%d.jinja" % i)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(src)
        cases.append({"template": path, "messages": MESSAGES, "tools": None, "add_generation_prompt": True,
                      "bos": "<s>", "eos": "</s>", "kwargs": {}})
    cases_path = os.path.join(TMP, "cases.json")
    results_path = os.path.join(TMP, "results.json")
    with open(cases_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    subprocess.run([sys.executable, REF, cases_path, results_path], check=True)
    expected = json.load(open(results_path, encoding="utf-8"))
    mpath = os.path.join(TMP, "messages.json")
    with open(mpath, "w", encoding="utf-8") as f:
        json.dump(MESSAGES, f, ensure_ascii=False)
    n_fail = 0
    for i, (case, exp) in enumerate(zip(cases, expected)):
        p = subprocess.run([FITLM, "template", "--template", case["template"], "--messages", mpath, "--bos", "<s>",
                            "--eos", "</s>", "--add-generation-prompt"], capture_output=True, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        if exp["ok"]:
            check(p.returncode == 0 and p.stdout == exp["text"].encode("utf-8"),
                  "snippet %d %r\n  expected %r\n  got      %r (rc %d) %s" %
                  (i, SNIPPETS[i], exp["text"], p.stdout.decode("utf-8", "replace"), p.returncode, err.strip()))
        else:
            n_fail += 1
            check(p.returncode == 1 and err.startswith("fitlm: error:") and "Traceback" not in err,
                  "snippet %d %r: jinja2 fails (%s), fitlm rc %d stdout %r stderr %r" %
                  (i, SNIPPETS[i], exp["error"], p.returncode, p.stdout[:200], err))
            if exp["raised"]:
                check(exp["error"] in err, "snippet %d: message %r not in %r" % (i, exp["error"], err))
    print("%d snippets, %d failing in jinja2 as well" % (len(SNIPPETS), n_fail))
    sys.exit(te.report())


main()
