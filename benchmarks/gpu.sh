#!/usr/bin/env bash
# One GPU, one script: the paper's sampling protocol (100 CIFAR-10 images at T = 4, 10 warm-ups, CUDA-event
# timing over 100 runs) and training iterations/s of CIFAR-10 (batch 64) and CelebA-HQ 256 (batch 4) per GPU,
# each from fp32 eager up to bf16 autocast + channels_last + torch.compile (+ a CUDA graph for the sampler).
# Writes benchmarks/results/gpu_*.json and prints a summary.
#
#   bash benchmarks/gpu.sh                       # on a CUDA machine (compiles take a few minutes)
#   DEVICE=cpu bash benchmarks/gpu.sh            # smoke test: the same steps at tiny sizes, results in /tmp
#   DEVICE=cpu COMPILE=true bash benchmarks/gpu.sh   # ... with torch.compile too (slow on a CPU)
# Environment: PY (python), COMPILE_MODE (torch.compile mode, default "default").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
COMPILE_MODE=${COMPILE_MODE:-default}

if [[ $DEVICE == cuda ]]; then
  COMPILE=${COMPILE:-true}
  export BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-benchmarks/results}
  SAMPLING=(batch_size=100 warmup=10 repeats=100)
  TRAINING=(warmup=2 repeats=10)
  CIFAR_BATCH=64 CELEBA_BATCH=4 GRAPH=true
  TINY_CIFAR=() TINY_CELEBA=()
else
  COMPILE=${COMPILE:-false}
  export BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-/tmp/ddgan_gpu_smoke}
  SAMPLING=(batch_size=2 warmup=1 repeats=2)
  TRAINING=(warmup=0 repeats=1)
  CIFAR_BATCH=4 CELEBA_BATCH=2 GRAPH=false  # CUDA graphs need a GPU
  TINY_CIFAR=(model.generator.base_channels=8 model.generator.channel_mult=[1,2] model.generator.num_res_blocks=1
              model.discriminator.base_channels=4)
  TINY_CELEBA=(model.generator.base_channels=4 model.generator.num_res_blocks=1 model.discriminator.base_channels=2)
fi
FAST=(precision=bf16 model.channels_last=true)
COMPILED=("${FAST[@]}" model.compile="$COMPILE" model.compile_mode="$COMPILE_MODE")

sampling() {  # name, extra arguments
  local name=$1; shift
  $PY -m benchmarks.sampling experiment=cifar10 timesteps=4 device="$DEVICE" "${SAMPLING[@]}" "${TINY_CIFAR[@]}" \
    name="gpu_sampling_cifar10_$name" "$@"
}
training() {  # experiment, batch size, name, extra arguments (lazy_r1: R1 every lazy_reg iterations, as in training)
  local experiment=$1 batch=$2 name=$3; shift 3
  local tiny=("${TINY_CIFAR[@]}"); [[ $experiment == celebahq256 ]] && tiny=("${TINY_CELEBA[@]}")
  $PY -m benchmarks.train_step experiment="$experiment" batch_size="$batch" device="$DEVICE" lazy_r1=true \
    "${TRAINING[@]}" "${tiny[@]}" name="gpu_train_${experiment}_$name" "$@"
}

sampling fp32
sampling bf16_cl "${FAST[@]}"
sampling bf16_cl_compile "${COMPILED[@]}"
sampling bf16_cl_compile_graph "${COMPILED[@]}" cuda_graph="$GRAPH"
for experiment in cifar10 celebahq256; do
  batch=$CIFAR_BATCH; [[ $experiment == celebahq256 ]] && batch=$CELEBA_BATCH
  training "$experiment" "$batch" fp32
  training "$experiment" "$batch" bf16_cl "${FAST[@]}"
  training "$experiment" "$batch" bf16_cl_compile "${COMPILED[@]}"
done

$PY - "$BENCH_RESULTS_DIR" <<'EOF'
import json, sys
from pathlib import Path

print(f"\n{'benchmark':<48} {'median s':>10} {'min s':>10} {'max s':>10} {'rate':>14}  memory")
for path in sorted(Path(sys.argv[1]).glob("gpu_*.json")):
    r = json.loads(path.read_text())
    if "by_timesteps" in r:
        t = r["by_timesteps"]["T4"]
        rate, memory = f"{t['images_per_second']:.0f} img/s", ""
    else:
        t = r
        rate = f"{r['iterations_per_second']:.2f} it/s"
        memory = f"{r.get('peak_gpu_memory_gb', r.get('peak_rss_gb', 0)):.1f} GB"
    print(f"{r['benchmark']:<48} {t['median_s']:>10.4f} {t['min_s']:>10.4f} {t['max_s']:>10.4f} {rate:>14}  {memory}")
print(f"({r['machine']})")
EOF
