#!/usr/bin/env bash
# The README's main command: pull the default model and measure its safety on AdvBench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
MODEL=${BUCKLE_DEMO_MODEL:-smollm2-135m-instruct}
.venv/bin/buckle models pull "$MODEL"
.venv/bin/buckle eval --model "$MODEL" --prompts advbench --limit "${BUCKLE_DEMO_LIMIT:-20}" \
  --benign chatterbot --benign-limit "${BUCKLE_DEMO_LIMIT:-20}" \
  --judge refusal,harm --out reports/demo/report.json
