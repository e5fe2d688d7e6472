"""What the fit check reads from a published folder: exact sizes from the manifest, and the
model's config.json, refused with what to do when it is not a JSON object."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_rollout.weights.errors import CorruptManifest, UntrustedFolder
from llm_rollout.weights.layout import RepoLayout
from llm_rollout.weights.manifest import Manifest, ManifestFile
from llm_rollout.weights.model_files import published_model_files

REPO = "org/model"
COMMIT = "a" * 40


def publish(root: Path, config_text: str | None) -> Path:
    folder = RepoLayout(root, REPO).commit_dir(COMMIT)
    folder.mkdir(parents=True)
    files = [ManifestFile("model.safetensors", 123_456, "0" * 64, "0" * 64, True)]
    if config_text is not None:
        (folder / "config.json").write_text(config_text)
        files.append(ManifestFile("config.json", len(config_text), "1" * 64, "1" * 40, False))
    Manifest(REPO, "main", COMMIT, tuple(files), "2026-01-01T00:00:00Z").write(folder)
    return folder


def test_sizes_come_from_the_manifest_and_config_from_the_folder(tmp_path: Path) -> None:
    publish(tmp_path, '{"num_hidden_layers": 2}')
    files = published_model_files(tmp_path, REPO, COMMIT)
    assert files.sizes["model.safetensors"] == 123_456
    assert files.config == {"num_hidden_layers": 2}


def test_a_folder_without_config_json_has_none(tmp_path: Path) -> None:
    publish(tmp_path, None)
    assert published_model_files(tmp_path, REPO, COMMIT).config is None


@pytest.mark.parametrize(
    ("text", "words"),
    [("{not json", "cannot be read as JSON"), ("[1, 2]", "is not a JSON object")],
)
def test_a_broken_config_json_is_refused(tmp_path: Path, text: str, words: str) -> None:
    publish(tmp_path, text)
    with pytest.raises(CorruptManifest, match=words):
        published_model_files(tmp_path, REPO, COMMIT)


def test_an_unpublished_commit_is_refused(tmp_path: Path) -> None:
    RepoLayout(tmp_path, REPO).commit_dir(COMMIT).mkdir(parents=True)
    with pytest.raises(UntrustedFolder):
        published_model_files(tmp_path, REPO, COMMIT)
