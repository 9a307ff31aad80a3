#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DFITLM_FUZZ=ON) and runs each for a short
# while from a seed corpus, so the fuzzers keep building and keep finding nothing.
# Usage: scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] (default 30). Long runs and
# their figures: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
dir=build-fuzz
CC=clang cmake -S . -B "$dir" -DFITLM_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets="fuzz_gguf fuzz_safetensors fuzz_tokenizer fuzz_jinja fuzz_model"
pkg-config --exists libmicrohttpd && targets="$targets fuzz_serve_request" # (built with fitlm serve)
cmake --build "$dir" -j"$(nproc)" --target $targets >/dev/null
seed="$dir/smoke-seed"
rm -rf "$seed" && mkdir -p "$seed/gguf" "$seed/hf" "$seed/st" "$seed/tok" "$seed/jinja" "$seed/serve"
# GGUF: the hostile corpus and the real vocabularies
python3 tests/hostile/gen_gguf.py "$seed/gguf" >/dev/null
cp ../shared/data/vocab/*.gguf "$seed/gguf/" 2>/dev/null || true
# safetensors: every .safetensors file of the hostile HF corpus, flattened
python3 tests/hostile/gen_hf.py "$seed/hf" >/dev/null
find "$seed/hf" -type f -name '*.safetensors' | while read -r f; do
  cp "$f" "$seed/st/$(printf '%s' "$f" | md5sum | cut -c1-12)"
done
# tokenizer: mode byte 0 (encode with the first vocabulary) + llama.cpp's test strings
i=0
while IFS= read -r -d $'\0' s; do
  printf '\000%s' "$s" > "$seed/tok/s$i"; i=$((i + 1))
done < <(python3 -c "
import sys
t=open('../shared/data/vocab/ggml-vocab-llama-spm.gguf.inp','rb').read().split(b'\n__ggml_vocab_test__\n')[:-1]
sys.stdout.buffer.write(b''.join(x.replace(b'\0', b'') + b'\0' for x in t))")
# jinja: mode byte 0 (a template) + the shared chat templates
for f in ../shared/data/chat-templates/*.jinja; do
  [ -e "$f" ] && { printf '\000'; cat "$f"; } > "$seed/jinja/$(basename "$f")"
done
# serve: mode byte (even: chat, odd: completions) + an OpenAI request body
printf '\000{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi \\u00e9"}]}],"max_tokens":4,"stop":["x","\\n"],"logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true}}' > "$seed/serve/chat"
printf '\001{"model":"fuzz-model","prompt":"Once upon a time","max_tokens":8,"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.1,"seed":7,"logprobs":2,"stream":true}' > "$seed/serve/completion"
printf '\001{"prompt":[1,15043,3186],"max_completion_tokens":3,"return_tokens_as_token_ids":true,"ignore_eos":true}' > "$seed/serve/ids"
export FITLM_SHARED="$(cd ../shared 2>/dev/null && pwd || true)"
fuzzers="gguf:gguf safetensors:st tokenizer:tok jinja:jinja model:gguf"
case "$targets" in *fuzz_serve_request*) fuzzers="$fuzzers serve_request:serve" ;; esac
for t in $fuzzers; do
  name=${t%%:*} corpus=$seed/${t#*:}
  echo "== fuzz_$name for ${secs}s"
  log="$dir/smoke-$name.log"
  if ! "$dir/fuzz/fuzz_$name" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$dir/" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$name found a failing input (saved under $dir/)"
    exit 1
  fi
  grep -E "^Done|stat::peak_rss" "$log"
done
echo "fuzz smoke: no crashes"
