#!/usr/bin/env bash
# Create .venv and install lowsim + transfer (and the test extras) into it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first, pinned: on this kind of machine torch==2.13.0 is a CPU wheel on local disk; a bare
# "torch" requirement would otherwise resolve to a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
fi
.venv/bin/pip install --quiet -e ".[train,dev]"
# Headless Chromium renders the `lowsim compare` HTML report in its test (skipped without it, outside CI).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
           --no-install-recommends chromium; } >/dev/null 2>&1; then
    echo "setup: could not install chromium with apt-get (the HTML report test will skip)" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
fi
