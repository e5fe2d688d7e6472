"""Hashing file contents the way the Hub does: sha256 (LFS) and git blob sha1 (the rest).

hashlib releases the GIL on large buffers, so threads hash files on all cores at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

READ_CHUNK = 8 * 1024 * 1024  # large reads keep hashlib above the GIL-release threshold


class ContentHasher:
    """sha256 and (optionally) git blob sha1 of a stream of chunks, in one pass."""

    def __init__(self, size: int, git_sha1: bool) -> None:
        self._expected_size, self._git_sha1 = size, git_sha1
        self.reset()

    def reset(self) -> None:
        """Forget every chunk: the state of a hasher that has seen nothing."""
        self.sha256 = hashlib.sha256()
        self.sha1 = (
            hashlib.sha1(b"blob %d\0" % self._expected_size, usedforsecurity=False)
            if self._git_sha1
            else None
        )
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self.sha256.update(chunk)
        if self.sha1 is not None:
            self.sha1.update(chunk)
        self.size += len(chunk)

    def hub_hash(self, lfs: bool) -> str:
        """The hash the Hub publishes for this content: sha256 for LFS, else git sha1."""
        if lfs or self.sha1 is None:
            return self.sha256.hexdigest()
        return self.sha1.hexdigest()


@dataclass(frozen=True)
class FileHash:
    """The measured size and hashes of one file."""

    path: str
    size: int
    sha256: str
    git_sha1: str | None


def hash_file(
    path: Path, name: str, git_sha1: bool, progress: Callable[[int], None] | None = None
) -> FileHash:
    """Read `path` once, returning its sha256 (and git sha1 when asked)."""
    size = path.stat().st_size
    hasher = ContentHasher(size, git_sha1)
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            hasher.update(view[:read])
            if progress:
                progress(read)
    return FileHash(
        name,
        hasher.size,
        hasher.sha256.hexdigest(),
        hasher.sha1.hexdigest() if hasher.sha1 is not None else None,
    )


def hash_files(
    files: Iterable[tuple[Path, str, bool]],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> list[FileHash]:
    """Hash (path, name, want_git_sha1) triples in parallel, one file per core at a time."""
    jobs = list(files)
    workers = workers or os.cpu_count() or 1
    # biggest first, so one large shard does not start last and run alone
    order = sorted(jobs, key=lambda job: -job[0].stat().st_size)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        results = list(pool.map(lambda job: hash_file(job[0], job[1], job[2], progress), order))
    by_name = {result.path: result for result in results}
    return [by_name[name] for _, name, _ in jobs]
