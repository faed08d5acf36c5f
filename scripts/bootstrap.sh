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
# BUCKLE_EXTRAS: the extras this command needs (the demo: `demo`; the tests: `test`). The stamp
# records pyproject.toml's hash and the extras installed, so a later command that needs more
# installs them, and one that needs less does not reinstall.
extras=${BUCKLE_EXTRAS-test}
stamp=.venv/.buckle-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have_hash="" have_extras=""
if [ -f "$stamp" ]; then read -r have_hash have_extras < "$stamp" || true; fi
missing=0
for e in ${extras//,/ }; do
  case ",${have_extras:-}," in *",$e,"*) ;; *) missing=1 ;; esac
done
if [ "${have_hash:-}" != "$want" ] || [ "$missing" = 1 ]; then
  keep=""
  if [ "${have_hash:-}" = "$want" ]; then keep=${have_extras:-}; fi
  all=$(echo "${extras//,/ } ${keep//,/ }" | tr ' ' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
  .venv/bin/pip install --disable-pip-version-check -q -e ".${all:+[$all]}"
  echo "$want ${all}" > "$stamp"
fi
