#!/usr/bin/env bash
# The README's test command: set up, then run the whole suite (real model, real package data,
# real PostgreSQL + Redis for the service tests: scripts/servers.sh installs them if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/servers.sh
exec .venv/bin/python -m pytest "$@"
