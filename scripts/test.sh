#!/usr/bin/env bash
# The whole test suite: environments, linters (ruff; mypy on the domain packages), pytest.
# With arguments, one pytest run with them, e.g. `bash scripts/test.sh -k gate -x`.
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
mypy llm_rollout/spec llm_rollout/weights llm_rollout/images llm_rollout/k8s llm_rollout/monitoring llm_rollout/rollout llm_rollout/router 
# The quick tests mostly wait on local servers: a few workers overlap the waits (three beside
# the real-vLLM lane; six when they run alone, as --fast does: 3.4 min instead of 4.1 here).
FAST_WORKERS="${LLM_ROLLOUT_TEST_WORKERS:-3}"
if [ "${1:-}" = "--fast" ]; then
  shift
  FAST_WORKERS="${LLM_ROLLOUT_TEST_WORKERS:-6}"
  say "pytest (fast: no real vLLM, no daemon, no wheel install) $*"
  exec pytest -m "not real_vllm and not daemon and not slow" -p no:cacheprovider -n "$FAST_WORKERS" "$@"
fi
if [ $# -gt 0 ]; then
  say "pytest $*"
  exec pytest "$@"
fi
# The whole suite in three lanes at once: the machine mostly waits on servers, sensors and
# pods. The real-vLLM tests (CPU vLLM worlds, one at a time) and the wheel's install (`slow`:
# it waits on pip), shown live; the quick tests in pytest-xdist workers (each sandbox on its
# own claimed 127.N network and free ports); the Dagster daemon's end-to-end modules. The two
# last are printed at the end. (Three lanes starved each other while every emulated pod cost
# 1.2 CPU-s to start — 17.5 min; since pods start with `python -m sandbox.vllm_metrics`, the
# machine has room: two lanes, the daemon's after the quick tests, took 16.3 min.)
quick_log="$(mktemp)" daemon_log="$(mktemp)"
say "pytest, three lanes: real vLLM (shown live); quick tests (xdist); the daemon's modules"
pytest -m "not real_vllm and not daemon and not slow" -p no:cacheprovider -n "$FAST_WORKERS" >"$quick_log" 2>&1 &
quick=$!
pytest -m "daemon and not real_vllm" -p no:cacheprovider >"$daemon_log" 2>&1 &
daemon=$!
status=0
pytest -m "real_vllm or slow" -p no:cacheprovider || status=$?
wait "$quick" || status=$?
wait "$daemon" || status=$?
say "pytest: the quick tests"
cat "$quick_log"
say "pytest: the daemon's end-to-end modules"
cat "$daemon_log"
rm -f "$quick_log" "$daemon_log"
exit "$status"
