"""Re-verifying a published folder against its manifest.

Quick mode trusts a stat cache (inode, size, mtime, ctime → sha256) and re-hashes only files
whose stat changed. ctime is the point: a user can restore size and mtime after editing a
file (`touch -r`), but not ctime, which the kernel sets on every change. `full=True`
re-hashes everything and also checks SHA256SUMS against the manifest. Every file not in the
manifest is reported wherever it is (pods would see it); only the manifest and SHA256SUMS at
the top are ours. The cache is optional: on a read-only mount verification still works.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from llm_rollout.weights.errors import NotPublished
from llm_rollout.weights.hashing import hash_files
from llm_rollout.weights.layout import CHECKSUMS_NAME, RESERVED_NAMES, RepoLayout
from llm_rollout.weights.manifest import Manifest
from llm_rollout.weights.progress import NoProgress, Progress

log = logging.getLogger(__name__)


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
    checksums_file: list[str] = field(default_factory=list)  # SHA256SUMS problems (full mode)
    cache_written: bool = True

    @property
    def ok(self) -> bool:
        return not (
            self.mismatched or self.wrong_size or self.missing or self.extra or self.checksums_file
        )

    def problems(self) -> list[str]:
        """One line per problem, naming the file."""
        lines = [
            f"{m.path}: sha256 is {m.actual_sha256}, manifest says {m.expected_sha256}"
            for m in self.mismatched
        ]
        lines += [f"{path}: size differs from the manifest" for path in self.wrong_size]
        lines += [f"{path}: missing" for path in self.missing]
        lines += [f"{path}: not in the manifest (extra file)" for path in self.extra]
        lines += [f"{CHECKSUMS_NAME}: {problem}" for problem in self.checksums_file]
        return lines


def verify_published(
    layout: RepoLayout, commit: str, *, full: bool = False, progress: Progress | None = None
) -> VerifyReport:
    """Check the published folder of `commit` against its manifest."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    folder = layout.commit_dir(commit)
    if not folder.is_dir():
        raise NotPublished(
            f"{layout.repo_id}@{commit} is not published under {layout.root} "
            "(no such folder); run `llm-rollout weights fetch`"
        )
    manifest = Manifest.read(folder)  # UntrustedFolder / CorruptManifest say what to do
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
        key = _cache_key(stat, entry.sha256)
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
            fresh_cache[result.path] = _cache_key(stat, result.sha256)
    progress.finish()
    report.extra = _extra_files(folder, set(expected))
    if full:
        report.checksums_file = _check_checksums_file(folder, manifest)
    report.cache_written = _write_cache(layout.stat_cache(commit), fresh_cache)
    report.seconds = time.perf_counter() - started
    return report


def remember_verified(layout: RepoLayout, commit: str, manifest: Manifest) -> None:
    """Seed the stat cache right after publishing, so the next quick verify is instant."""
    folder = layout.commit_dir(commit)
    cache: dict[str, list[object]] = {}
    for entry in manifest.files:
        cache[entry.path] = _cache_key((folder / entry.path).stat(), entry.sha256)
    _write_cache(layout.stat_cache(commit), cache)


def _cache_key(stat: os.stat_result, sha256: str) -> list[object]:
    """What must not have changed for a cached hash to stand. ctime is set by the kernel on
    every write, chmod or rename and cannot be set back from user space (unlike mtime)."""
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, sha256]


def _extra_files(folder: Path, expected: set[str]) -> list[str]:
    """Every non-folder entry (file, symlink, fifo…) not in the manifest, at any depth;
    only our own manifest and SHA256SUMS at the top are exempt."""
    extra = []
    for directory, folders, files in os.walk(folder):
        here = Path(directory)
        names = list(files) + [name for name in folders if (here / name).is_symlink()]
        for name in names:
            relative = (here / name).relative_to(folder).as_posix()
            if relative not in expected and relative not in RESERVED_NAMES:
                extra.append(relative)
    return sorted(extra)


def _check_checksums_file(folder: Path, manifest: Manifest) -> list[str]:
    """SHA256SUMS is what humans check with `sha256sum -c`: it must say what the manifest says."""
    try:
        text = (folder / CHECKSUMS_NAME).read_text()
    except FileNotFoundError:
        return ["missing"]
    except (OSError, UnicodeDecodeError) as error:
        return [f"unreadable ({error})"]
    if text == manifest.checksums_text():
        return []
    listed = set(text.splitlines())
    wanted = set(manifest.checksums_text().splitlines())
    problems = [f"line {line!r} is not in the manifest" for line in sorted(listed - wanted)]
    problems += [f"lacks {line!r}" for line in sorted(wanted - listed)]
    return problems or ["differs from the manifest (order or spacing)"]


def _read_cache(path: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict[str, list[object]]) -> bool:
    """Save the stat cache if the volume lets us; whether it did. Weights volumes are often
    mounted read-only in pods: the verdict must never depend on this write."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(cache))
        os.replace(temporary, path)
    except OSError as error:
        log.info("stat cache not saved (%s); the next verify re-hashes", error)
        return False
    return True
