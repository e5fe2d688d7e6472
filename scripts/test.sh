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
mypy spec weights images k8s monitoring rollout
# The quick tests mostly wait on local servers: a few workers overlap the waits.
FAST_WORKERS="${LLM_ROLLOUT_TEST_WORKERS:-3}"
if [ "${1:-}" = "--fast" ]; then
  shift
  say "pytest (fast: no real vLLM, no daemon) $*"
  exec pytest -m "not real_vllm and not daemon" -p no:cacheprovider -n "$FAST_WORKERS" "$@"
fi
if [ $# -gt 0 ]; then
  say "pytest $*"
  exec pytest "$@"
fi
# The whole suite in three lanes at once: the machine mostly waits on servers, sensors and
# pods. The real-vLLM tests (one CPU vLLM world at a time) are the CPU-heavy lane; the
# daemon's end-to-end modules wait on sensor ticks and the run queue; everything else runs
# in pytest-xdist workers, each sandbox on its own claimed 127.N network and free ports.
# The other lanes' output is printed when all are done.
daemon_log="$(mktemp)"
fast_log="$(mktemp)"
say "pytest, three lanes: real vLLM (shown live), the Dagster daemon, everything else (xdist)"
pytest -m "daemon and not real_vllm" -p no:cacheprovider >"$daemon_log" 2>&1 &
daemon=$!
pytest -m "not real_vllm and not daemon" -p no:cacheprovider -n "$FAST_WORKERS" >"$fast_log" 2>&1 &
fast=$!
status=0
pytest -m real_vllm -p no:cacheprovider || status=$?
wait "$fast" || status=$?
wait "$daemon" || status=$?
say "pytest: everything but real vLLM and the daemon"
cat "$fast_log"
say "pytest: the Dagster daemon's end-to-end modules"
cat "$daemon_log"
rm -f "$daemon_log" "$fast_log"
exit "$status"
