#!/usr/bin/env bash
# GPU figures on one CUDA GPU, in under 8 minutes: the CUDA-only tests, MoE backends
# (MegaBlocks vs native grouped GEMM vs dense: tokens/s, MFU) and a short omni-60m training
# run (tokens/s, MFU, peak memory). Everything goes to benchmarks/results/gpu-<date>/.
#
#   benchmarks/gpu.sh            # run (fails at once without CUDA)
#   benchmarks/gpu.sh --dry-run  # print the commands only
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results/gpu-$(date -u +%Y-%m-%d)
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
export PYTHONPATH=$PWD

run() {  # run <log name> <timeout s> <command...>: tee the output to $OUT/<log name>
	local name=$1 limit=$2
	shift 2
	echo "+ timeout $limit $*"
	if ((DRY)); then return 0; fi
	timeout "$limit" "$@" 2>&1 | tee "$OUT/$name"
}

if ((!DRY)); then
	if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
		echo "error: benchmarks/gpu.sh needs a CUDA GPU (torch.cuda.is_available() is False); nothing was run" >&2
		exit 2
	fi
	mkdir -p "$OUT"
	"$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))' | tee "$OUT/device.txt"
fi

# 1. CUDA-only tests (about 2 min).
run tests.txt 180 "$PY" -m pytest -q -m gpu tests/test_engine_gpu.py tests/test_moe_layer.py
# 2. MoE layer: MegaBlocks vs native vs dense (about 1 min), and raybio's CPU-era benchmark on the GPU.
run moe_backends.txt 120 "$PY" benchmarks/moe_backends.py
run moe_layer.txt 120 "$PY" benchmarks/moe_layer.py --quick --device cuda
# 3. omni-60m: 60 steps on one GPU (about 2 min with the bundled genome).
run omni60m.txt 240 "$PY" -c 'from raybio.cli import main; main()' train --preset omni-60m --name gpu-omni60m --storage "${TMPDIR:-/tmp}/raybio-gpu" \
	--set train.max_steps=60 train.log_every=10 train.eval_every=60 train.checkpoint_every=0 \
	train.gpus_per_worker=1 train.num_workers=1 train.batch_size=16 "data.sources=[bundled:ecoli]"
((DRY)) || echo "results in $OUT"
