"""Loading the release specs the code location is built from.

Reads only local files, so definitions load without touching the network. A spec that
fails to load disables only its own model: the others keep their assets, jobs and gate
sensors (the thing that protects production), and the broken file gets a sensor of its own
whose every tick fails with the file's problems, so the UI shows it next to the others.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from llm_rollout.spec import LocatedProblem, ReleaseSpec, load_all, spec_files

# The models folder when LLM_ROLLOUT_MODELS_DIR is not set: `models/` where Dagster runs
# (never a folder inside the installed package, and never the bundled examples/).
DEFAULT_MODELS_DIR = Path("models")
MODELS_DIR_VARIABLE = "LLM_ROLLOUT_MODELS_DIR"
# A broken spec changes only when someone edits it and reloads the code location; ticking
# every few minutes keeps it visible as failing without flooding the tick history.
BROKEN_SPEC_INTERVAL_SECONDS = 300
BROKEN_SPEC_SENSOR_PREFIX = "broken_spec__"


class BrokenSpecError(Exception):
    """A spec file in the models folder is not a valid release spec; its model is disabled."""


@dataclass(frozen=True)
class BrokenSpec:
    """A spec file that did not load, with every problem in it."""

    path: Path
    problems: tuple[LocatedProblem, ...]

    @property
    def sensor_name(self) -> str:
        """`broken_spec__<file name>`, in the characters Dagster allows in names."""
        return BROKEN_SPEC_SENSOR_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", self.path.name)

    def report(self) -> str:
        """What is wrong, one problem a line, and how to bring the model back."""
        lines = [str(problem) for problem in self.problems]
        return (
            f"{self.path} is not a valid release spec, so its model is disabled "
            "(the other models are unaffected):\n"
            + "\n".join(lines)
            + f"\nFix the file (`llm-rollout validate {self.path}`), then reload the code location."
        )


@dataclass(frozen=True)
class Models:
    """The models folder as loaded: the valid specs and the files that did not load."""

    specs: list[ReleaseSpec]
    broken: list[BrokenSpec]


def models_dir() -> Path:
    """The folder whose `*.yaml` files are the served models."""
    # absolute, so an error names the folder wherever the code server was started
    return Path(os.environ.get(MODELS_DIR_VARIABLE, DEFAULT_MODELS_DIR)).absolute()


def load_models(directory: Path | None = None) -> Models:
    """Every spec in the models folder, valid or not; a missing folder, or one without any
    spec file, is a `SpecFileError` naming it (a mistyped LLM_ROLLOUT_MODELS_DIR must not
    load zero models quietly)."""
    loaded = load_all(spec_files(directory or models_dir()))
    broken = [
        BrokenSpec(path, tuple(problems)) for path, problems in loaded.problems_by_file().items()
    ]
    return Models(list(loaded.specs.values()), broken)


def load_release_specs() -> list[ReleaseSpec]:
    """The valid release specs in the models folder."""
    return load_models().specs


def build_broken_spec_sensor(broken: BrokenSpec) -> dg.SensorDefinition:
    """A sensor named after the broken file: its description and every tick's failure
    carry the file's problems with their lines."""

    @dg.sensor(
        name=broken.sensor_name,
        minimum_interval_seconds=BROKEN_SPEC_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=broken.report(),
    )
    def broken_spec(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        raise BrokenSpecError(broken.report())

    return broken_spec
