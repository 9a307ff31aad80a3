#!/usr/bin/env bash
# bench/gpu.sh — the Vulkan backend on a machine with a GPU (e.g. an NVIDIA
# H200): its tests and its speed, in one log.
#
#   bench/gpu.sh                   # from the repository root, build/ built with Vulkan
#   PRESET=small bench/gpu.sh      # a quick smoke run
#
# The GPU machine needs no Vulkan headers nor glslc: the build folder is built
# elsewhere (the SPIR-V is embedded in the binary) and carried; it needs the
# Vulkan loader (libvulkan.so.1) and the GPU's Vulkan driver (NVIDIA: the
# driver's ICD, /usr/share/vulkan/icd.d/nvidia_icd.json or /etc/vulkan/icd.d/).
#
# What it does, each step's output appended to $LOG:
#   1. the machine: nvidia-smi (if present), `fitlm devices`;
#   2. the Vulkan tests on the GPU: build/tests/test_vulkan_ops (every op and
#      weight type against the CPU backend) and tests/test_vulkan_model.py
#      (stories260K vs the llama2.c reference, -ngl splits, greedy identical to
#      the CPU, random models), with FITLM_REQUIRE_VULKAN=1 so that a missing
#      device fails instead of skipping; test_vulkan_ops also checks the
#      cooperative-matrix matmul (FITLM_VULKAN_COOPMAT=1) for every weight type
#      where the device has VK_NV_cooperative_matrix (its log line says whether);
#   3. bench/make_model.py writes a random F16 model of $PRESET's shape (default
#      tinyllama: TinyLlama 1.1B), `fitlm quantize` makes the $TYPES of it;
#   4. `fitlm bench --device $DEVICE -p $PP -n $TG -r $REPS` on each (pp/tg
#      tokens/s, weight GB/s, the device memory table); the prefill again with
#      the matrix-vector shader instead of the tiled one (FITLM_VULKAN_TILED_MIN=0,
#      the figure the tiled shader is to beat) unless MATVEC=0; the prefill with
#      the cooperative-matrix path (FITLM_VULKAN_COOPMAT=1: tensor cores, NVIDIA
#      only; the log's note says whether the device took it) unless COOPMAT=0;
#      and the same with --device cpu for comparison unless CPU=0. Each prefill
#      figure is also given as TFLOP/s: 2 x parameters x tokens/s (the matmuls'
#      multiply-adds, the token embedding counted, attention not: an estimate).
#      Its plan check predicts from the catalog card the device name matches
#      (the planner's assumed efficiencies); unless CALIBRATE=0,
#   5. `fitlm calibrate --device $DEVICE` measures the device through fitlm's
#      backend into $BENCH_DIR/host.json, and each type is benched once more
#      (-r 1) with that profile: the plan check at the measured rates.
#
# Environment: FITLM (default build/fitlm), BUILD (build), BENCH_DIR
# (/tmp/fitlm-gpu-bench), LOG ($BENCH_DIR/gpu.log), PRESET, TYPES ("F16 Q8_0
# Q4_0 Q4_K_M"), DEVICE (vulkan), PP (512), TG (128), REPS (3), CPU (1), MATVEC (1), COOPMAT (1), CALIBRATE (1),
# TESTS (1; 0 skips step 2),
# SHARED (../shared: the stories260K reference data).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FITLM=${FITLM:-$BUILD/fitlm}
BENCH_DIR=${BENCH_DIR:-/tmp/fitlm-gpu-bench}
LOG=${LOG:-$BENCH_DIR/gpu.log}
PRESET=${PRESET:-tinyllama}
TYPES=${TYPES:-"F16 Q8_0 Q4_0 Q4_K_M"}
DEVICE=${DEVICE:-vulkan}
PP=${PP:-512}
TG=${TG:-128}
REPS=${REPS:-3}
CPU=${CPU:-1}
MATVEC=${MATVEC:-1}
COOPMAT=${COOPMAT:-1}
TESTS=${TESTS:-1}
CALIBRATE=${CALIBRATE:-1}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
mkdir -p "$BENCH_DIR" "$BUILD/test-tmp"
: > "$LOG"
: > "$LOG.tflops"
status=0
step() { echo "== $*" | tee -a "$LOG"; }
run() { # run CMD...: appends its output to the log, remembers a failure
  "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "(exit $rc: $*)" >> "$LOG"
  [ $rc -eq 0 ] || status=1
  return $rc
}

# tflops LABEL: the last pp line of the log as TFLOP/s (2 x params x tokens/s)
tflops() {
  grep -E '^\| .*\| pp[0-9]+ ' "$LOG" | tail -1 | awk -F'|' -v l="$1" '{
    t = $7; gsub(/ /, "", t); split($8, a, " ");
    printf "%s: %s %.2f tokens/s = %.4g TFLOP/s (2 x %.1f M params x tokens/s)\n", l, t, a[1], 2 * $4 * 1e6 * a[1] / 1e12, $4
  }' | tee -a "$LOG" "$LOG.tflops"
}

step "machine"
date -u >> "$LOG"
command -v nvidia-smi >/dev/null && run nvidia-smi
run "$FITLM" devices

if [ "$TESTS" = 1 ]; then
step "Vulkan tests"
export FITLM_REQUIRE_VULKAN=1 FITLM_BIN="$FITLM" FITLM_SHARED="$SHARED" FITLM_SRC="$PWD" FITLM_TMP="$BUILD/test-tmp"
export FITLM_DEVICE=cpu
run "$BUILD/tests/test_vulkan_ops" && echo "test_vulkan_ops: passed" | tee -a "$LOG" || echo "test_vulkan_ops: FAILED" | tee -a "$LOG"
run /usr/bin/python3 tests/test_vulkan_model.py && echo "test_vulkan_model: passed" | tee -a "$LOG" ||
  echo "test_vulkan_model: FAILED" | tee -a "$LOG"
unset FITLM_DEVICE
fi

step "models ($PRESET: $TYPES)"
F16="$BENCH_DIR/$PRESET-f16.gguf"
[ -f "$F16" ] || run /usr/bin/python3 bench/make_model.py "$F16" --preset "$PRESET"
for t in $TYPES; do
  m="$BENCH_DIR/$PRESET-$t.gguf"
  [ "$t" = F16 ] && m="$F16"
  [ -f "$m" ] || run "$FITLM" quantize "$F16" "$m" "$t"
  step "bench $t --device $DEVICE"
  run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n "$TG" -r "$REPS" && tflops "$t tiled (default)"
  if [ "$COOPMAT" = 1 ]; then
    step "bench $t --device $DEVICE, prefill on cooperative matrices (FITLM_VULKAN_COOPMAT=1)"
    n0=$(wc -l < "$LOG")
    FITLM_VULKAN_COOPMAT=1 run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n 0 -r "$REPS" --membw-mib 0 \
      --no-plan-check
    if tail -n +"$n0" "$LOG" | grep -q "prefill matmuls on .*cooperative matrices"; then
      tflops "$t coopmat"
    else
      tflops "$t coopmat NOT USED on this device (see the note; the tiled shader ran)"
    fi
  fi
  if [ "$MATVEC" = 1 ]; then
    step "bench $t --device $DEVICE, prefill by the matrix-vector shader (FITLM_VULKAN_TILED_MIN=0)"
    FITLM_VULKAN_TILED_MIN=0 run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n 0 -r "$REPS" --membw-mib 0 \
      --no-plan-check && tflops "$t matrix-vector"
  fi
  if [ "$CPU" = 1 ]; then
    step "bench $t --device cpu"
    run "$FITLM" bench -m "$m" --device cpu -p "$PP" -n "$TG" -r "$REPS"
  fi
done
if [ "$CALIBRATE" = 1 ]; then
  step "calibrate --device $DEVICE (the host and the GPU through fitlm's backend)"
  PROF="$BENCH_DIR/host.json"
  if run "$FITLM" calibrate --device "$DEVICE" --profile "$PROF"; then
    for t in $TYPES; do
      m="$BENCH_DIR/$PRESET-$t.gguf"
      [ "$t" = F16 ] && m="$F16"
      step "bench $t --device $DEVICE, plan check at the calibrated rates"
      run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n "$TG" -r 1 --membw-mib 0 --profile "$PROF"
    done
  fi
fi
step "done (status $status); log: $LOG"
grep -E "^\| .*(pp|tg)[0-9]+ " "$LOG" | tee -a "$LOG.summary"
[ -f "$LOG.tflops" ] && cat "$LOG.tflops" | tee -a "$LOG.summary"
exit $status
