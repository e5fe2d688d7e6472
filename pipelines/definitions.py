"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from pipelines.specs import load_release_specs

# Loaded at import so a broken spec shows as a code-location error in the UI,
# naming the file and field, instead of failing later inside a run.
RELEASE_SPECS = load_release_specs()

defs = dg.Definitions()
