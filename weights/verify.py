"""Re-verifying a published folder against its manifest.

Quick mode trusts a stat cache (size, mtime, inode → sha256) and re-hashes only files whose
stat changed; `full=True` re-hashes everything (a change that kept size and mtime, or any
doubt). Extra files in the folder are reported: pods would see them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from weights.errors import NotPublished
from weights.hashing import hash_files
from weights.layout import RESERVED_NAMES, RepoLayout
from weights.manifest import Manifest
from weights.progress import NoProgress, Progress


@dataclass(frozen=True)
class Mismatch:
    """A file whose content no longer matches the manifest."""

    path: str
    expected_sha256: str
    actual_sha256: str


@dataclass
class VerifyReport:
    """What verification found in one published folder."""

    repo: str
    commit: str
    folder: Path
    files: int
    total_bytes: int
    rehashed_files: int = 0
    rehashed_bytes: int = 0
    seconds: float = 0.0
    mismatched: list[Mismatch] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.wrong_size or self.missing or self.extra)

    def problems(self) -> list[str]:
        """One line per problem, naming the file."""
        lines = [
            f"{m.path}: sha256 is {m.actual_sha256}, manifest says {m.expected_sha256}"
            for m in self.mismatched
        ]
        lines += [f"{path}: size differs from the manifest" for path in self.wrong_size]
        lines += [f"{path}: missing" for path in self.missing]
        lines += [f"{path}: not in the manifest (extra file)" for path in self.extra]
        return lines


def verify_published(
    layout: RepoLayout, commit: str, *, full: bool = False, progress: Progress | None = None
) -> VerifyReport:
    """Check the published folder of `commit` against its manifest."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    folder = layout.commit_dir(commit)
    try:
        manifest = Manifest.read(folder)
    except FileNotFoundError:
        raise NotPublished(
            f"{layout.repo_id}@{commit} is not published under {layout.root} "
            "(no manifest); run `llm-rollout weights fetch`"
        ) from None
    report = VerifyReport(layout.repo_id, commit, folder, len(manifest.files), manifest.total_bytes)
    cache = {} if full else _read_cache(layout.stat_cache(commit))
    fresh_cache: dict[str, list[object]] = {}
    to_hash: list[tuple[Path, str, bool]] = []
    stats: dict[str, os.stat_result] = {}
    for entry in manifest.files:
        try:
            stat = (folder / entry.path).stat()
        except FileNotFoundError:
            report.missing.append(entry.path)
            continue
        stats[entry.path] = stat
        if stat.st_size != entry.size:
            report.wrong_size.append(entry.path)
            continue
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino, entry.sha256]
        if cache.get(entry.path) == key:
            fresh_cache[entry.path] = key
        else:
            to_hash.append((folder / entry.path, entry.path, False))
    expected = {entry.path: entry.sha256 for entry in manifest.files}
    progress.start(
        f"verify {layout.repo_id}@{commit[:12]}", sum(p.stat().st_size for p, _, _ in to_hash)
    )
    for result in hash_files(to_hash, progress.advance):
        report.rehashed_files += 1
        report.rehashed_bytes += result.size
        if result.sha256 != expected[result.path]:
            report.mismatched.append(Mismatch(result.path, expected[result.path], result.sha256))
        else:
            stat = stats[result.path]
            fresh_cache[result.path] = [stat.st_size, stat.st_mtime_ns, stat.st_ino, result.sha256]
    progress.finish()
    report.extra = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and path.relative_to(folder).as_posix() not in expected
        and path.name not in RESERVED_NAMES
    )
    _write_cache(layout.stat_cache(commit), fresh_cache)
    report.seconds = time.perf_counter() - started
    return report


def remember_verified(layout: RepoLayout, commit: str, manifest: Manifest) -> None:
    """Seed the stat cache right after publishing, so the next quick verify is instant."""
    folder = layout.commit_dir(commit)
    cache: dict[str, list[object]] = {}
    for entry in manifest.files:
        stat = (folder / entry.path).stat()
        cache[entry.path] = [stat.st_size, stat.st_mtime_ns, stat.st_ino, entry.sha256]
    _write_cache(layout.stat_cache(commit), cache)


def _read_cache(path: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict[str, list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(cache))
    os.replace(temporary, path)
