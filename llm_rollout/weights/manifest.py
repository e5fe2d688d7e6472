"""The checksum manifest written beside published weights: JSON for tools, SHA256SUMS for
humans (`sha256sum -c SHA256SUMS` inside the folder)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from llm_rollout.weights.errors import CorruptManifest, UntrustedFolder
from llm_rollout.weights.layout import CHECKSUMS_NAME, MANIFEST_NAME

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestFile:
    """One verified file: its size, sha256, and the hash the Hub published (`hub_hash`)."""

    path: str
    size: int
    sha256: str
    hub_hash: str
    lfs: bool


@dataclass(frozen=True)
class Manifest:
    """What was published for (repo, commit), and when it was verified against the Hub."""

    repo: str
    revision: str
    commit: str
    files: tuple[ManifestFile, ...]
    verified_at: str

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "total_bytes": self.total_bytes,
            "verified_at": self.verified_at,
            "files": [asdict(file) for file in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            repo=data["repo"],
            revision=data["revision"],
            commit=data["commit"],
            files=tuple(ManifestFile(**file) for file in data["files"]),
            verified_at=data["verified_at"],
        )

    def write(self, folder: Path) -> None:
        """Write the manifest and SHA256SUMS into `folder`, each atomically."""
        _write_atomic(folder / MANIFEST_NAME, json.dumps(self.to_json(), indent=2) + "\n")
        _write_atomic(folder / CHECKSUMS_NAME, self.checksums_text())

    def checksums_text(self) -> str:
        """The SHA256SUMS file's content (`sha256sum -c` format)."""
        return "".join(f"{file.sha256}  {file.path}\n" for file in self.files)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest in `folder`; UntrustedFolder when it has none, CorruptManifest when
        it does not parse or names a path outside the folder."""
        path = folder / MANIFEST_NAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UntrustedFolder(
                f"{folder} has no {MANIFEST_NAME}: it is not a published folder (or its "
                "manifest was deleted); move it away or delete it, then fetch again"
            ) from None
        try:
            manifest = cls.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptManifest(
                f"{path} is not a valid llm-rollout manifest ({type(error).__name__}: "
                f"{error}); the folder cannot be verified: delete {folder} and fetch again"
            ) from None
        unsafe = [f.path for f in manifest.files if not _is_safe(f.path)]
        if unsafe:
            raise CorruptManifest(
                f"{path} names paths outside its folder {unsafe}; it was tampered with: "
                f"delete {folder} and fetch again"
            )
        return manifest


def _is_safe(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
