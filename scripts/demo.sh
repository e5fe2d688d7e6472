#!/usr/bin/env bash
# The demo on its embedded default: set up, validate the bundled release specs, and load the
# Dagster code location. Later stages of the pipeline join here as they land.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$REPO_ROOT"

ensure_python_env

say "validating the bundled release specs"
llm-rollout validate models/
say "loading the Dagster code location from workspace.yaml"
dagster definitions validate -w workspace.yaml
say "done. Next: 'DAGSTER_HOME=\$PWD/.dagster_home dagster dev -w workspace.yaml' opens the UI"
