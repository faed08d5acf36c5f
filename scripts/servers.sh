#!/usr/bin/env bash
# Idempotent: make sure PostgreSQL and Redis *binaries* (and chromium + chromedriver for the
# dashboard's browser tests) are installed for the service tests and benchmarks. Nothing is started here: the tests start throwaway instances on free ports with
# their own data directories (app/devservers.py) and stop them afterwards.
set -euo pipefail
have_pg() { compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || [ -n "${BUCKLE_PG_BIN:-}" ]; }
have_redis() { command -v redis-server >/dev/null || [ -n "${BUCKLE_REDIS_SERVER:-}" ]; }
have_browser() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
if have_pg && have_redis && have_browser; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql redis-server chromium \
  chromium-driver >/dev/null
# The Debian packages may auto-start system instances where an init system exists; the tests
# do not use them (they listen on the default ports only).
have_pg && have_redis && have_browser
