"""The release spec: what a user writes in `models/*.yaml` to say what to serve and how."""

from spec.loader import (
    LocatedProblem,
    SpecFileError,
    SpecLoad,
    load_all,
    load_spec,
    load_specs,
    spec_files,
)
from spec.schema import ReleaseSpec

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
