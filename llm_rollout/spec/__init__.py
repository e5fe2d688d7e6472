"""The release spec: what a user writes in `models/*.yaml` to say what to serve and how."""

from llm_rollout.spec.loader import (
    LocatedProblem,
    SpecFileError,
    SpecLoad,
    load_all,
    load_spec,
    load_specs,
    spec_files,
)
from llm_rollout.spec.schema import ReleaseSpec

__all__ = [
    "LocatedProblem",
    "ReleaseSpec",
    "SpecFileError",
    "SpecLoad",
    "load_all",
    "load_spec",
    "load_specs",
    "spec_files",
]
