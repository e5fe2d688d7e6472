#!/usr/bin/env bash
# The whole test suite: environments, linters (ruff; mypy on the domain packages), pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k gate -x`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$REPO_ROOT"

ensure_python_env
# Real vLLM (CPU) serves the tiny model in the sandbox's end-to-end tests.
ensure_vllm_runtime
# Real servers the tests talk to: an OCI registry (distribution 2.8) for image tag
# checks; Prometheus (and promtool), Alertmanager (and amtool) for the gate and the rules.
# procps (pgrep) checks that stopped sandboxes leave no process behind; Postgres stores
# Dagster's runs, events and schedules in the scale-out tests; Chromium is the browser the
# demo's UI test drives (through Playwright, with no browser download).
ensure_debian docker-registry prometheus prometheus-alertmanager procps postgresql chromium fonts-dejavu-core

say "ruff"
ruff check .
ruff format --check .
say "mypy (domain packages)"
mypy spec weights images k8s monitoring rollout
say "pytest"
pytest "$@"
