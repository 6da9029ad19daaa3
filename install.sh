#!/usr/bin/env bash
# Installs tadrop with everything the demo zoo, the dashboard and the tests need.
# Debian packages (data sets and the browser for the browser test) need root or sudo.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if command -v apt-get >/dev/null && [ "${TADROP_SKIP_APT:-0}" != "1" ]; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    fortunes fortunes-de fortunes-es fortunes-it fortunes-br fortunes-pl \
    dataset-fashion-mnist chromium chromium-driver >/dev/null
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps -r requirements-demo.txt
python3 -m pip install -q --no-deps -e .
