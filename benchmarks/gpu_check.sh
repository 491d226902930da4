#!/usr/bin/env bash
# The GPU check, one script, one log ($OUT/gpu_check.log), under 8 minutes on one H100/H200:
#   A (in parallel; correctness): the equivalence suite on the GPU; the main job on digits with
#     no flags (must finish and write eval.json); CIFAR-10 end to end (train, sample,
#     evaluate) on a synthetic archive in the real binary format, checksum passed.
#   B (one at a time; timings): the CIFAR-size U-Net training step in bfloat16, the PyTorch peer
#     on the same GPU, and the step in tf32; with FULL=1 also 4 steps per dispatch and the
#     digits U-Net at batch 1024 (bfloat16, float32) and its PyTorch peer (about 4 more minutes).
#       OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU in part A
PY=${PY:-python}
JSON=$OUT/throughput.jsonl
failed=0
section() { echo; echo "=== $* ($(date +%T))"; }
check() {  # check SECONDS command...: run it, report a failure and go on
  local limit=$1; shift
  timeout "$limit" "$@" || { echo "FAILED (exit $?): $*"; failed=1; }
}
start=$(date +%s)

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import jax, equinox, optax; print('jax', jax.__version__, jax.devices(), 'equinox', equinox.__version__, 'optax', optax.__version__)"

section "A: equivalence suite, main job and CIFAR-10 end to end, in parallel"
(timeout 300 $PY -m pytest -k equivalence -q -n 6 -p no:cacheprovider > "$OUT/equivalence.log" 2>&1
 echo "equivalence exit $?" >> "$OUT/equivalence.log") &
equivalence=$!

# CIFAR-10 cannot be downloaded here: a synthetic archive in the real format, its checksum passed.
data=$OUT/cifar-data
sum=$($PY -m benchmarks.synthetic_cifar10 "$data" --per-batch 1000)
CIFAR_DATA="data.args={base_url: $data, cache_dir: $OUT/cache, checksums: {cifar-10-binary.tar.gz: '$sum'}}"

cifar_e2e() {
  local run=$OUT/cifar10
  local sets=("$CIFAR_DATA" train.steps=60 train.log_every=20 train.checkpoint_every=60 eval.num_samples=64
              eval.sampling_steps=8 eval.metrics=[bpd] eval.bpd_examples=64 eval.batch_size=64)
  # train without its own end-of-run evaluation: the CLI's sample and evaluate below do it
  # (one sampler and one bound compilation instead of two of each)
  $PY -m eqx_impl train --config configs/cifar10.yaml --run-dir "$run" --no-progress --no-eval --set "${sets[@]}" &&
    $PY -m eqx_impl sample --run-dir "$run" --num 16 --steps 8 --no-progress &&
    $PY -m eqx_impl evaluate --run-dir "$run" --metrics bpd --no-progress &&
    ls "$run"
}
cifar_e2e > "$OUT/cifar10_e2e.log" 2>&1 &
cifar=$!

# The README's main job, as a user runs it: no flags (the run directory aside).
check 420 $PY -m eqx_impl train --config configs/digits.yaml --run-dir "$OUT/digits" --no-progress
if [ -f "$OUT/digits/eval.json" ]; then cat "$OUT/digits/eval.json"; else echo "FAILED: no eval.json"; failed=1; fi
cat "$OUT/digits/preflight.txt" 2>/dev/null
wait $equivalence; tail -n 4 "$OUT/equivalence.log"
grep -q "equivalence exit 0" "$OUT/equivalence.log" || failed=1
wait $cifar || { echo "FAILED: CIFAR-10 end to end"; failed=1; }
tail -n 25 "$OUT/cifar10_e2e.log"
echo "part A took $(( $(date +%s) - start )) s"

section "B: training-step throughput, one process at a time"
bench() { check 200 $PY -m benchmarks.unet_throughput --json "$JSON" "$@"; }
cifar() { bench --config configs/cifar10.yaml --batch 128 --set "$CIFAR_DATA" "$@"; }
torch_peer() { check 240 $PY -m benchmarks.torch_unet --json "$OUT/torch.jsonl" "$@" 2>&1 | grep -v Warning; }
cifar --precision bfloat16
torch_peer --config configs/cifar10.yaml --batch 128
cifar --precision tf32
if [ "${FULL:-0}" = 1 ]; then
  cifar --precision bfloat16 --steps-per-dispatch 4 --steps 20
  bench --config configs/digits.yaml --precision bfloat16 --batch 1024
  bench --config configs/digits.yaml --precision float32 --batch 1024
  torch_peer --config configs/digits.yaml --batch 1024
fi

section "done in $(( $(date +%s) - start )) s; failed=$failed"
exit $failed
