"""The checksum manifest written beside published weights: JSON for tools, SHA256SUMS for
humans (`sha256sum -c SHA256SUMS` inside the folder)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from weights.layout import CHECKSUMS_NAME, MANIFEST_NAME

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
        sums = "".join(f"{file.sha256}  {file.path}\n" for file in self.files)
        _write_atomic(folder / CHECKSUMS_NAME, sums)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.from_json(json.loads((folder / MANIFEST_NAME).read_text()))


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
