#!/usr/bin/env bash
# The peers' environment for bench/peers/conformance.py: mergekit, PEFT and FusionBench over the
# local torch (system site packages; torch pinned so pip never pulls a CUDA build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv --system-site-packages "$here/.venv"
"$here/.venv/bin/pip" install -c <(python3 -c 'import torch; print("torch==" + torch.__version__.split("+")[0])') \
  mergekit==0.1.5 peft==0.21.2 fusion-bench==0.2.33
