#!/usr/bin/env bash
# GPU check: one call that measures what can only be measured on a CUDA machine, and keeps going when a step fails.
#
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR default reports/gpu/
#
# Steps (each timed, its exit code and last error line recorded; a failed step does not stop the others):
#   env       versions, GPUs (benchmarks/gpu_check.py env)
#   hf_eval   both suites (`run --suite all`) with the hf backend on the embedded target, --device cuda
#   check     the CI regression gate of those GPU numbers against the committed CPU baseline (reports/baseline)
#   profile   speculative decoding, steady state (EOS ignored), embedded target + draft, bf16 on the GPU, with the
#             Hugging Face assisted-generation baseline; timed with CUDA events
#   vllm_eval the same suites with `--backend vllm`, when `import vllm` works (else skipped with a note)
#   dp2_eval  data-parallel hf evaluation on 2 GPUs (accelerate launch), when 2 GPUs are visible
# Output (at most 8 files, each under 16 MB): summary.md (GPU name, versions, step table, per-task metric
# differences hf vs CPU baseline / vllm / 2 GPUs, the profile's headline numbers), gpu_check.log (the last lines of
# every step), hf_results.json, vllm_results.json, dp2_results.json, profile.json, profile.md. Full outputs
# (samples/, figures/) stay in a temp dir, printed at the end.
#
# The package is not installed: run from anywhere, the script cds to the repository root and runs
# `$PYTHON -m soaes_bench`. Dependencies other than torch/transformers/accelerate may come from PYTHONPATH.
# Nothing is downloaded (HF_HUB_OFFLINE=1). Never run by CI (it exits 0 at once when $CI is set).
#
# Knobs (environment): GPU_CHECK_BUDGET_S (default 540: the whole script, steps are cut to what is left),
# GPU_CHECK_DEVICE (default cuda; cpu runs the same plumbing on a CPU), GPU_CHECK_QUICK=1 (tiny settings, for
# trying the script: --limit 5 and a 2-prompt profile), GPU_CHECK_DP=1 (run the data-parallel step even without
# 2 GPUs: on a CPU it uses training/accelerate/cpu2.yaml).
set -u -o pipefail

if [ -n "${CI:-}" ] && [ -z "${GPU_CHECK_IN_CI:-}" ]; then
  echo "gpu_check: not run in CI (needs a GPU; set GPU_CHECK_IN_CI=1 to force)"
  exit 0
fi

PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
OUT=${1:-reports/gpu}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
for f in summary.md gpu_check.log hf_results.json vllm_results.json dp2_results.json profile.json profile.md; do
  rm -f "$OUT/$f"  # no stale result of an earlier run survives a skipped step
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
LOG="$OUT/gpu_check.log"
STEPS="$WORK/steps.tsv"
: > "$LOG"
: > "$STEPS"
START=$(date +%s)
TARGET=soaes_bench/assets/models/target
DRAFT=soaes_bench/assets/models/draft

if [ "$QUICK" = 1 ]; then
  EVAL_ARGS=(--limit 5)
  PROFILE_ARGS=(--gamma 1,2 --contexts 64 --max-new-tokens 8 --repeats 1 --num-prompts 2)
else
  EVAL_ARGS=()
  PROFILE_ARGS=(--gamma 1,3 --contexts 512 --max-new-tokens 64 --repeats 3 --num-prompts 4)  # 145 s on an H200
fi

log() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S CMD...: run CMD with a timeout (LIMIT_S, cut to the budget left), print and record its time
# and exit code, append its last 150 lines to the log; never stops the script.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START) - 20))  # 20 s kept for the summary
  if [ "$left" -lt 15 ]; then
    printf '%s\tskipped\t0\tno time left in GPU_CHECK_BUDGET_S=%s\n' "$name" "$BUDGET" >> "$STEPS"
    log "== $name: skipped, no time left"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "== $name (limit ${limit}s): $*"
  local t0 rc secs note=""
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.out" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  tr '\r' '\n' < "$WORK/$name.out" | grep -v '^[[:space:]]*$' | tail -n 150 | cut -c1-1000 >> "$LOG"
  if [ "$rc" -ne 0 ]; then
    note=$(tr '\r' '\n' < "$WORK/$name.out" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-300 | tr '\t' ' ')
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="timed out after ${limit}s; $note"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$note" >> "$STEPS"
  log "== $name: exit $rc in ${secs}s"
  return 0
}

skip() {
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STEPS"
  log "== $1: skipped: $2"
}

log "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), repo $REPO, python $PYTHON, device $DEVICE, budget ${BUDGET}s, work $WORK"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"

step env 60 "$PYTHON" benchmarks/gpu_check.py env --out "$WORK/env.json"
NGPU=$("$PYTHON" benchmarks/gpu_check.py gpus 2> /dev/null | tail -n 1)
[[ "$NGPU" =~ ^[0-9]+$ ]] || NGPU=0
log "visible CUDA GPUs: $NGPU"

step hf_eval 240 "$PYTHON" -m soaes_bench run --model "$TARGET" --suite all --device "$DEVICE" \
  --output "$WORK/hf" ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"}

if [ -f "$WORK/hf/results.json" ] && [ "$QUICK" != 1 ]; then
  step check 60 "$PYTHON" -m soaes_bench check --baseline reports/baseline/results.json \
    --results "$WORK/hf/results.json" --policy reports/policy.yaml
else
  skip check "needs the full hf_eval results"
fi

step profile 270 "$PYTHON" -m soaes_bench profile --target "$TARGET" --draft "$DRAFT" --device "$DEVICE" \
  --dtype bfloat16 --ignore-eos --hf-baseline --output "$WORK/profile" ${PROFILE_ARGS[@]+"${PROFILE_ARGS[@]}"}

if ! "$PYTHON" -m soaes_bench run --help 2> /dev/null | grep -q -- "--backend"; then
  skip vllm_eval "this checkout's run has no --backend flag"
elif ! "$PYTHON" -c "import vllm" > "$WORK/vllm_import.out" 2>&1; then
  skip vllm_eval "import vllm failed: $(tail -n 1 "$WORK/vllm_import.out" | cut -c1-200 | tr '\t' ' ')"
else
  step vllm_eval 240 "$PYTHON" -m soaes_bench run --backend vllm --model "$TARGET" --suite all \
    --output "$WORK/vllm" ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"}
fi

if [ "$NGPU" -ge 2 ] && [ "$DEVICE" = cuda ]; then
  step dp2_eval 240 "$PYTHON" -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 \
    --mixed_precision no --dynamo_backend no --main_process_port 29533 \
    -m soaes_bench run --model "$TARGET" --suite all --device cuda --output "$WORK/dp2" ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"}
elif [ "${GPU_CHECK_DP:-0}" = 1 ] && [ "$DEVICE" = cpu ]; then
  step dp2_eval 240 "$PYTHON" -m accelerate.commands.launch --config_file training/accelerate/cpu2.yaml \
    --main_process_port 29533 -m soaes_bench run --model "$TARGET" --suite all --device cpu \
    --output "$WORK/dp2" ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"}
else
  skip dp2_eval "$NGPU GPU(s) visible; needs 2"
fi

if ! "$PYTHON" benchmarks/gpu_check.py summary --work "$WORK" --out "$OUT" --device "$DEVICE" >> "$LOG" 2>&1; then
  { echo "# GPU check (summary helper failed: see gpu_check.log)"; echo; echo "step / exit / seconds / note:";
    sed 's/^/    /' "$STEPS"; } > "$OUT/summary.md"
fi
log "gpu_check: done in $(($(date +%s) - START))s; files in $OUT, full outputs in $WORK"
cat "$OUT/summary.md"
