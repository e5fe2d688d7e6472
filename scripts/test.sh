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
# the real-vLLM lane; eight when they run alone, as --fast does), and idle workers steal
# queued tests from busy ones (`--dist worksteal`: the default `load` hands out fixed chunks,
# and a worker left with the lifecycle tests' waits ran on alone — --fast 4.9 min with six
# workers, 2.8-3.4 min with eight stealing).
FAST_WORKERS="${LLM_ROLLOUT_TEST_WORKERS:-3}"
if [ "${1:-}" = "--fast" ]; then
  shift
  FAST_WORKERS="${LLM_ROLLOUT_TEST_WORKERS:-8}"
  say "pytest (fast: no real vLLM, no daemon, no wheel install) $*"
  exec pytest -m "not real_vllm and not daemon and not slow" -p no:cacheprovider \
    -n "$FAST_WORKERS" --dist worksteal "$@"
fi
if [ $# -gt 0 ]; then
  say "pytest $*"
  exec pytest "$@"
fi
# The whole suite in two lanes at once: the machine mostly waits on servers, sensors and
# pods. One lane is the real-vLLM tests (CPU vLLM worlds, one at a time) and the wheel's
# install (`slow`: it waits on pip), shown live; the other runs the quick tests in
# pytest-xdist workers (each sandbox on its own claimed 127.N network and free ports), then
# the Dagster daemon's end-to-end modules, and is printed at the end. Measured in fresh-clone
# CI: 954 s and 960 s (17.1 min in all, the machine 76 % busy). Three lanes (the daemon's
# modules apart) kept both cores 100 % busy for ten minutes and were no faster (17.4 min):
# the real-vLLM lane became the longest (971 s), and the demo's good canary, starved of CPU,
# broke its ITL SLO and was rolled back.
QUICK='not real_vllm and not daemon and not slow'
other_log="$(mktemp)"
say "pytest, two lanes: real vLLM (shown live); the quick tests, then the daemon's"
(
  quick=0 daemon=0
  pytest -m "$QUICK" -p no:cacheprovider -n "$FAST_WORKERS" --dist worksteal || quick=$?
  # the daemon's modules side by side, each whole in one worker (its world, daemon, order)
  pytest -m "daemon and not real_vllm" -p no:cacheprovider -n 2 --dist loadfile || daemon=$?
  [ "$quick" -eq 0 ] && [ "$daemon" -eq 0 ]
) >"$other_log" 2>&1 &
other=$!
status=0
pytest -m "real_vllm or slow" -p no:cacheprovider || status=$?
wait "$other" || status=$?
say "pytest: the quick tests, then the daemon's end-to-end modules"
cat "$other_log"
rm -f "$other_log"
exit "$status"
