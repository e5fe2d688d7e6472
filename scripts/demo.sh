#!/usr/bin/env bash
# The demo: the whole release loop on this machine, no GPU and no cluster needed. Sets up the
# environments (the vLLM CPU runtime included) and Prometheus, starts the sandbox (a local
# Kubernetes running real vLLM pods, a Hub with the tiny model), steady traffic, and
# `dagster dev` with a persistent DAGSTER_HOME in .demo/; then prints where to click.
# Ctrl-C stops everything. Arguments go to `python -m sandbox demo`, e.g.
#   bash scripts/demo.sh --headless --scenario good --scenario subtle --scenario stuck
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$REPO_ROOT"

ensure_python_env
ensure_vllm_runtime
ensure_debian prometheus procps

say "validating the demo's release spec"
llm-rollout validate sandbox/specs/demo-tiny.yaml  # the overlays beside it are merged in by the demo
say "starting the demo (first start: about two minutes until release 1 serves)"
exec python -m sandbox demo "$@"
