"""What the fit check reads from a published weights folder: every file's exact size (from
the verified manifest) and the model's config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_rollout.weights.errors import CorruptManifest
from llm_rollout.weights.layout import RepoLayout
from llm_rollout.weights.manifest import Manifest

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ModelFiles:
    """A published commit's file sizes (path → bytes) and its config.json, if it has one."""

    folder: Path
    sizes: dict[str, int]
    config: dict[str, Any] | None


def published_model_files(root: Path, repo_id: str, commit: str) -> ModelFiles:
    """The sizes and config.json of `repo_id` at `commit` as published under `root`.

    Raises the manifest's `UntrustedFolder` / `CorruptManifest` when the folder is not a
    published one, and `CorruptManifest` when its config.json is not a JSON object.
    """
    folder = RepoLayout(root, repo_id).commit_dir(commit)
    manifest = Manifest.read(folder)
    sizes = {file.path: file.size for file in manifest.files}
    config: dict[str, Any] | None = None
    if CONFIG_NAME in sizes:
        try:
            loaded = json.loads((folder / CONFIG_NAME).read_text())
        except (OSError, ValueError) as error:
            raise CorruptManifest(
                f"{folder / CONFIG_NAME} cannot be read as JSON ({error}); verify the folder "
                "(`llm-rollout weights verify`) and fetch again"
            ) from None
        if not isinstance(loaded, dict):
            raise CorruptManifest(f"{folder / CONFIG_NAME} is not a JSON object")
        config = loaded
    return ModelFiles(folder, sizes, config)
