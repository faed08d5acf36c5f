#!/usr/bin/env bash
# Time to a hardened, evaluated adapter, the number a customer feels (issue 17): one `during`
# job on the aligned reference model with a 64-conversation customer file (48 support tickets +
# 16 harmful pairs), end to end through the service: `buckle up` in a fresh data dir and the
# official `openai` client (scripts/demo.sh + demo_service.py), each stage timed from the job's
# events (validate, curate, train, evaluate, save) and written to docs/bench/job.json.
#   flock /tmp/buckle-bench.lock bash bench/job.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/demo.sh --task 48 --attack 16 --jobs hardened --timings "${1:-docs/bench/job.json}"
