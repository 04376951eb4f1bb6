#!/usr/bin/env bash
# A non-editable install in a fresh venv, as a user gets it: `pip install .` (no -e, no [train] extra, so no
# torch), then `lowsim generate` with the shipped default params, and `transfer` saying how to get torch.
# Too slow for the test suite (pip resolves and installs ~40 packages: about 2 minutes here); run by hand:
#   bash scripts/check_wheel_install.sh [VENV_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$(mktemp -d)/venv}"
work="$(mktemp -d)"
start=$(date +%s)
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$repo"
echo "installed in $(( $(date +%s) - start )) s"
"$venv/bin/python" - <<'PY'
import importlib.util, lowsim
assert importlib.util.find_spec("torch") is None, "torch was installed without the [train] extra"
print("lowsim", lowsim.__version__, "without torch; shipped params:", lowsim.load_params("lol").path)
PY
cd "$work"
"$venv/bin/lowsim" --version
"$venv/bin/lowsim" generate --n 4 --size 64 --out data/check   # scikit-image's sample photos, shipped params
test -f data/check/manifest.parquet && test -f data/check/README.md
if "$venv/bin/transfer" models 2>err.txt; then echo "transfer ran without torch?" >&2; exit 1; fi
grep -q "pip install 'lowsim\[train\]'" err.txt && cat err.txt
echo "ok: $(( $(date +%s) - start )) s in all"
