"""Loading the release specs the code location is built from.

Reads only local files, so definitions load without touching the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from spec import ReleaseSpec, load_specs, spec_files

# The folder of specs bundled with the repository; LLM_ROLLOUT_MODELS_DIR points elsewhere.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def models_dir() -> Path:
    """The folder whose `*.yaml` files are the served models."""
    return Path(os.environ.get("LLM_ROLLOUT_MODELS_DIR", DEFAULT_MODELS_DIR))


def load_release_specs() -> list[ReleaseSpec]:
    """Every release spec in the models folder; a bad spec fails the code location loudly."""
    return load_specs(spec_files(models_dir()))
