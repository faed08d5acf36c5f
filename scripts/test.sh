#!/usr/bin/env bash
# The README's test command: set up, then run the whole suite (real model, real package data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
