#!/usr/bin/env bash
# The quantile and merge benchmarks on CUDA, in one command on a GPU machine:
#   bench/gpu.sh
# Ratios are to the GPU's own read bandwidth (a sum over 1 GiB on the device) measured in the
# same run, and to one host read (+ host-to-device copy) of the merge inputs. CSVs go to
# bench/out/ (merge_cuda.csv, quantiles*.csv). BENCH_DATA: where the family is generated
# (default bench/out/data, ~2 GB). MERGEKIT_PYTHON: optional, mergekit's TIES with --cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no CUDA device here; run it on a GPU machine.")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

echo "== Quantile engine (CUDA) =="
if python3 bench/bench_quantiles.py --help | grep -q -- "--device"; then
  python3 bench/bench_quantiles.py --device cuda
else
  echo "bench/bench_quantiles.py has no --device option yet: quantiles on CUDA skipped."
fi
echo "== Whole merges (CUDA) =="
python3 bench/bench_merge.py --device cuda --data "${BENCH_DATA:-bench/out/data}" \
  --mergekit-python "${MERGEKIT_PYTHON:-}"
