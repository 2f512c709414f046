#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and a CUDA build of torch (under 8 minutes):
#   1. tests/test_gpu.py: every method's contract on CUDA, same-seed bytes, GPU stream decoded on the CPU;
#   2. training frames/s of the suite's loop against the plain loop, NeRV-S-like network at 1080p;
#   3. the planned cost of a paper run (GPU hours, from the records the timing leaves).
# Commit its output's figures to docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: run this on a GPU machine'; print(torch.cuda.get_device_name(0), torch.__version__)"
echo "== tests/test_gpu.py"
timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gpu.py -x || echo "GPU tests FAILED (see above)"
echo "== training frames/s at 1080p, suite vs plain loop"
timeout 180 python -c "
from methods.nerv_family.timing.train import perf_train
perf_train(sizes=((1080, 1920),), device='cuda', repeats=2)
"
echo "== a paper run, planned (GPU hours from the default cost model until cuda records exist)"
bench run --methods all --seq bunny --budget paper --device cuda --dry-run --results "${TMPDIR:-/tmp}/gpu-check" | tail -1
