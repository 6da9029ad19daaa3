#!/usr/bin/env bash
# Every benchmark in one command; tables on stdout, CSVs in bench/out/ (see bench/README.md).
#   bench/run_all.sh                      quantile engine, whole merges (+ mergekit), dashboard
#   bench/run_all.sh --quick              the quantile benchmark's --quick sizes
#   bench/run_all.sh --install-mergekit   first create $BENCH_VENV with mergekit (never our deps)
# Environment: MERGEKIT_PYTHON (default $BENCH_VENV/bin/python when it exists), BENCH_VENV
# (default /work/bench_venv), BENCH_DATA (where the generated family lives, default
# /work/bench_data), TADROP_HOME (the demo zoo; without one the time to first figure is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_VENV="${BENCH_VENV:-/work/bench_venv}"
BENCH_DATA="${BENCH_DATA:-/work/bench_data}"
MERGEKIT_VERSION=0.1.5
quantile_flags=()
install_mergekit=0
for argument in "$@"; do
  case "$argument" in
    --quick) quantile_flags+=(--quick) ;;
    --install-mergekit) install_mergekit=1 ;;
    *) echo "unknown option $argument (use --quick, --install-mergekit)" >&2; exit 2 ;;
  esac
done

if [[ $install_mergekit == 1 && ! -x "$BENCH_VENV/bin/mergekit-yaml" ]]; then
  # A separate environment that sees the system torch; refuse if pip wants another torch.
  python3 -m venv --system-site-packages "$BENCH_VENV"
  if "$BENCH_VENV/bin/pip" install --dry-run "mergekit==$MERGEKIT_VERSION" 2>&1 | grep -Ei '^Would install.* torch-[0-9]'; then
    echo "mergekit would replace torch here; install it with --no-deps by hand (bench/README.md)" >&2
    exit 1
  fi
  "$BENCH_VENV/bin/pip" install "mergekit==$MERGEKIT_VERSION"
fi
if [[ -z "${MERGEKIT_PYTHON:-}" && -x "$BENCH_VENV/bin/mergekit-yaml" ]]; then
  MERGEKIT_PYTHON="$BENCH_VENV/bin/python"
fi

started=$SECONDS
echo "== Quantile engine =="
python3 bench/bench_quantiles.py ${quantile_flags[@]+"${quantile_flags[@]}"}
echo "== Whole merges =="
python3 bench/bench_merge.py --data "$BENCH_DATA" --mergekit-python "${MERGEKIT_PYTHON:-}"
echo "== Dashboard responsiveness =="
python3 bench/bench_dashboard.py
echo "all benchmarks done in $((SECONDS - started)) s; CSVs in bench/out/"
