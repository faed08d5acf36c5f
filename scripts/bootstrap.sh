#!/usr/bin/env bash
# Idempotent set-up: .venv in the repo root, torch first (the CPU file this machine ships),
# then the project with its test extras. Re-running only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install --disable-pip-version-check -q "torch==${BUCKLE_TORCH_VERSION:-2.13.0}"
fi
stamp=.venv/.buckle-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -e ".[test]"
  echo "$want" > "$stamp"
fi
