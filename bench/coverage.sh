#!/usr/bin/env bash
# Line coverage of the product by the whole suite (`scripts/test.sh`, as CI runs it), every
# Python process of the checkout's virtualenv measured: pytest and its xdist workers, the
# Dagster daemon, its run workers and code servers, `dagster` and `llm-rollout` commands,
# the sandbox's router pods. (Real vLLM runs from its own virtualenv and is not ours.)
#
#   bash bench/coverage.sh [CHECKOUT]    # default: this checkout
#
# CHECKOUT may be an older clone: the report then covers its product packages (before the one
# `llm_rollout` namespace they were top-level: spec, weights, images, k8s, …), so the suite of
# two revisions can be compared (#22 asks that a faster suite covers no less). The report and
# the data land in CHECKOUT/.coverage-report/. Slower than the plain suite (every process is
# traced); the tests' own outcome is printed, not required: the report is what it is for.
# Read the suite's log too: a test that fails under tracing leaves its paths uncounted (the
# daemon's e2e module did, until its launches shared one code server; 2026-12-01 all passed).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$(cd "${1:-$here}" && pwd)"
source "$target/scripts/setup.sh"
ensure_python_env
"$VENV/bin/python" -c 'import coverage' 2>/dev/null ||
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'coverage>=7.10'

if [ -d "$target/llm_rollout" ]; then
  packages="llm_rollout"
else
  packages="$(cd "$target" && for p in spec weights images k8s monitoring rollout router assets pipelines cli; do
    [ -f "$p/__init__.py" ] && printf '%s,' "$p"; done)"
  packages="${packages%,}"
fi
out="$target/.coverage-report"
rm -rf "$out" && mkdir -p "$out"
cat > "$out/coveragerc" <<RC
[run]
source = $packages
parallel = true
data_file = $out/.coverage
sigterm = true
patch = _exit
# the wheel test builds and imports a copy of the tree in pytest's temporary folder
omit = */pytest-of-*/*
[report]
skip_empty = true
RC
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
pth="$site/zz_llm_rollout_coverage.pth"
# a .pth line runs at every interpreter start: coverage starts when the variable names a config
echo 'import os; os.environ.get("COVERAGE_PROCESS_START") and __import__("coverage").process_startup()' > "$pth"
trap 'rm -f "$pth"' EXIT
start=$(date +%s)
status=0
COVERAGE_PROCESS_START="$out/coveragerc" bash "$target/scripts/test.sh" > "$out/suite.log" 2>&1 || status=$?
echo "suite exit $status in $(( $(date +%s) - start )) s (log: $out/suite.log)"
rm -f "$pth"
"$VENV/bin/python" -m coverage combine --quiet --rcfile "$out/coveragerc"
"$VENV/bin/python" -m coverage report --rcfile "$out/coveragerc" > "$out/report.txt"
tail -1 "$out/report.txt"
echo "report: $out/report.txt"
