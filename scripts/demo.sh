#!/usr/bin/env bash
# The README's main command: the product end to end, on CPU, in minutes.
# Starts `buckle up` (SQLite, filesystem broker, local artifacts: no servers) in a fresh data dir,
# creates an organization and an API key, then scripts/demo_service.py acts as the customer:
# uploads a support-ticket file with harmful pairs slipped in, fine-tunes it unprotected and
# hardened on the aligned reference model, follows both jobs live, prints base vs. unprotected vs.
# hardened (attack success rate, over-refusal, utility), saves the comparison chart, downloads
# and verifies the hardened adapter (to reports/demo/). `buckle up` is stopped at the end, also
# on failure or Ctrl-C. BUCKLE_DEMO_MODEL=smollm2-135m-instruct runs it on the small model;
# arguments go to the client (scripts/demo_service.py --help; bench/job.sh uses them).
set -euo pipefail
cd "$(dirname "$0")/.."
BUCKLE_EXTRAS=demo bash scripts/bootstrap.sh
MODEL=${BUCKLE_DEMO_MODEL:-qwen2.5-coder-0.5b-instruct}
# Threads: `buckle up` gives its training worker every core and its light worker one thread
# (app/cli.py::light_worker_env); set OMP_NUM_THREADS or BUCKLE_TORCH_THREADS to choose yourself.
.venv/bin/buckle models pull "$MODEL" >/dev/null

DATA=${BUCKLE_DEMO_DATA_DIR:-$(mktemp -d -t buckle-demo.XXXXXX)}
mkdir -p "$DATA"
PORT=${BUCKLE_DEMO_PORT:-$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
UP_PID="" CLIENT_PID=""
stop() {
  status=$?
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    kill -TERM "$CLIENT_PID" 2>/dev/null || true
  fi
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID" 2>/dev/null || true   # `buckle up` stops its API and workers
    wait "$UP_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); server log: $DATA/up.log" >&2
    tail -n 30 "$DATA/up.log" >&2 2>/dev/null || true
  elif [ -z "${BUCKLE_DEMO_DATA_DIR:-}" ]; then
    rm -rf "$DATA"
  fi
}
trap stop EXIT
trap 'exit 130' INT TERM

.venv/bin/buckle admin migrate --data-dir "$DATA" >/dev/null  # before the processes share it
# A checkpoint every 6 optimizer steps (default 50), so the small jobs list a few.
BUCKLE_CHECKPOINT_EVERY=${BUCKLE_CHECKPOINT_EVERY:-6} \
  .venv/bin/buckle up --port "$PORT" --data-dir "$DATA" \
  >"$DATA/up.log" 2>&1 &
UP_PID=$!
echo "buckle up: http://127.0.0.1:$PORT (pid $UP_PID, data in $DATA, log $DATA/up.log)"

ORG_NAME="acme-$(date +%Y%m%d-%H%M%S)"
ORG=$(.venv/bin/buckle admin create-org "$ORG_NAME" --data-dir "$DATA")
KEY=$(.venv/bin/buckle admin create-key "$ORG_NAME" --name demo --data-dir "$DATA" 2>/dev/null)
echo "organization $ORG ($ORG_NAME), API key ${KEY:0:12}…"

# In the background + `wait`, so that a signal to this script runs the trap at once.
BUCKLE_API_KEY=$KEY .venv/bin/python scripts/demo_service.py --url "http://127.0.0.1:$PORT" \
  --model "$MODEL" --out reports/demo "$@" &
CLIENT_PID=$!
wait "$CLIENT_PID"
