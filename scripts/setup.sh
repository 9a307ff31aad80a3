#!/usr/bin/env bash
# Installs what fitlm needs to build and test on Debian (run as root or with sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-dev libpcre2-dev libcjson-dev libmicrohttpd-dev curl python3 python3-numpy python3-sentencepiece python3-jinja2
      libvulkan-dev glslc mesa-vulkan-drivers)
# distributed inference (mpirun fitlm ... --tp/--pp; src/parallel/comm_mpi.c) and its tests
pkgs+=(openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node.js and npm (for reference tokenizers): Debian's packages unless a node/npm is already installed
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm reference tokenizer for the Llama 3 differential test (optional: the test skips without it)
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node_modules/llama3-tokenizer-js ]; then
  (cd tests && npm install --no-audit --no-fund --silent llama3-tokenizer-js@1.2.0 >/dev/null 2>&1) || \
    echo "setup: npm install llama3-tokenizer-js failed; the Llama 3 differential test will be skipped"
fi
# npm reference encoder for the GPT-2 differential test (r50k_base = GPT-2's vocabulary; optional: skips without it)
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node_modules/gpt-tokenizer ]; then
  (cd tests && npm install --no-audit --no-fund --silent gpt-tokenizer@2.9.0 >/dev/null 2>&1) || \
    echo "setup: npm install gpt-tokenizer failed; the GPT-2 differential test will be skipped"
fi
# the official OpenAI client (Node) as the oracle of fitlm serve's API (optional: the test skips without it)
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node_modules/openai ]; then
  (cd tests && npm install --no-audit --no-fund --silent openai@4.104.0 >/dev/null 2>&1) || \
    echo "setup: npm install openai failed; the OpenAI client test of fitlm serve will be skipped"
fi
# an independent JSON-schema validator, the oracle of the structured-output tests (optional: they skip without it)
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node_modules/ajv ]; then
  (cd tests && npm install --no-audit --no-fund --silent ajv@8.17.1 >/dev/null 2>&1) || \
    echo "setup: npm install ajv failed; the structured-output tests will be skipped"
fi
# Hugging Face's tokenizers.js, the oracle of the added-token lstrip/rstrip test (optional: it skips without it)
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node_modules/@huggingface/tokenizers ]; then
  (cd tests && npm install --no-audit --no-fund --silent @huggingface/tokenizers@0.2.0 >/dev/null 2>&1) || \
    echo "setup: npm install @huggingface/tokenizers failed; the added-token test will be skipped"
fi
