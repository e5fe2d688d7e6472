"""Fetch → verify → publish: a pinned revision's files, checked byte for byte against the
Hub's hashes, published by one atomic rename. Nothing half-downloaded is ever published."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from weights.errors import HubUnreachable, NotEnoughSpace, NotPublished, WeightsError
from weights.hub import HubClient, RemoteFile
from weights.layout import RESERVED_NAMES, RepoLayout, is_commit
from weights.lock import RepoLock
from weights.manifest import Manifest, ManifestFile
from weights.progress import NoProgress, Progress
from weights.verify import VerifyReport, remember_verified, verify_published

log = logging.getLogger(__name__)

# Free space must exceed the download by this factor: filesystems need headroom, and NFS
# servers report free space loosely.
SPACE_MARGIN = 1.1
# Parallel downloads: enough to fill a fast link with many shards, few enough to be polite.
DOWNLOAD_WORKERS = 8
# How long to wait for another fetch of the same repo before giving up with a clear error.
LOCK_TIMEOUT_SECONDS = 600.0
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class WeightsSource:
    """What to fetch: a Hub repo at a revision, optionally limited to some files."""

    repo: str
    revision: str
    allow_patterns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FetchResult:
    """A published, verified revision and how it got there."""

    repo: str
    revision: str
    commit: str
    folder: Path
    manifest: Manifest
    downloaded_bytes: int
    seconds: float
    already_published: bool
    hub_reachable: bool
    verification: VerifyReport | None = None

    @property
    def throughput_bytes_per_second(self) -> float:
        return self.downloaded_bytes / self.seconds if self.seconds > 0 else 0.0


def fetch_weights(
    source: WeightsSource,
    root: Path,
    hub: HubClient,
    *,
    progress: Progress | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    workers: int = DOWNLOAD_WORKERS,
) -> FetchResult:
    """Publish `source` under `root` (see `weights.layout`) and return what was published.

    A revision already published is re-verified instead of downloaded. When the Hub cannot be
    reached, a published copy of the revision is fully re-hashed against its manifest before
    it is used: verification, not trust.
    """
    progress = progress or NoProgress()
    layout = RepoLayout(root, source.repo)
    started = time.perf_counter()
    try:
        commit = hub.resolve(source.repo, source.revision)
    except HubUnreachable as unreachable:
        return _offline(layout, source, unreachable, progress, started)
    published = _reuse_published(layout, source, commit, progress, started, hub_reachable=True)
    if published is not None:
        return published
    remote = hub.list_files(source.repo, commit, list(source.allow_patterns or []) or None)
    _check_names(source, commit, remote)
    total = sum(file.size for file in remote)
    _preflight_space(root, total)
    with RepoLock(layout.lock_file, lock_timeout):
        # another process may have published it while we waited for the lock
        published = _reuse_published(layout, source, commit, progress, started, True)
        if published is not None:
            return published
        manifest = _download_and_publish(layout, source, commit, remote, hub, progress, workers)
    log.info("published %s@%s (%d files, %d bytes)", source.repo, commit, len(remote), total)
    return FetchResult(
        source.repo, source.revision, commit, layout.commit_dir(commit), manifest,
        downloaded_bytes=total, seconds=time.perf_counter() - started,
        already_published=False, hub_reachable=True,
    )  # fmt: skip


def _download_and_publish(
    layout: RepoLayout,
    source: WeightsSource,
    commit: str,
    remote: list[RemoteFile],
    hub: HubClient,
    progress: Progress,
    workers: int,
) -> Manifest:
    staging = layout.staging_dir(commit)
    if staging.exists():  # left by a killed fetch; we hold the lock, so it is ours to clear
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    progress.start(f"fetch {source.repo}@{commit[:12]}", sum(file.size for file in remote))
    cancelled = threading.Event()

    def fetch_one(file: RemoteFile) -> ManifestFile:
        if cancelled.is_set():
            raise WeightsError("cancelled after another file failed")
        target = staging / file.path
        digest = hub.download(source.repo, commit, file, target, progress.advance)
        _fsync(target)  # here, so writeback overlaps the other downloads
        return ManifestFile(file.path, digest.size, digest.sha256, file.expected_hash, file.lfs)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(fetch_one, file) for file in remote]
            try:
                files = tuple(future.result() for future in futures)
            except BaseException:
                cancelled.set()
                for future in futures:
                    future.cancel()
                raise
        progress.finish()
        manifest = Manifest(
            source.repo, source.revision, commit, files,
            verified_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        )  # fmt: skip
        manifest.write(staging)
        for path in staging.rglob("*"):
            if path.is_file():
                path.chmod(READ_ONLY)
            if path.is_dir() or (path.parent == staging and path.name in RESERVED_NAMES):
                _fsync(path)
        _fsync(staging)
        layout.repo_dir.mkdir(parents=True, exist_ok=True)
        os.rename(staging, layout.commit_dir(commit))  # the atomic publish
        _fsync(layout.repo_dir)
    except OSError as error:
        progress.finish()
        shutil.rmtree(staging, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NotEnoughSpace(
                f"{layout.root} filled up while downloading {source.repo}@{commit}; the partial "
                "download was removed and nothing was published. Free space and run again"
            ) from error
        raise
    except BaseException:
        progress.finish()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point_refs(layout, source.revision, commit)
    remember_verified(layout, commit, manifest)
    return manifest


def _reuse_published(
    layout: RepoLayout,
    source: WeightsSource,
    commit: str,
    progress: Progress,
    started: float,
    hub_reachable: bool,
    full: bool = False,
) -> FetchResult | None:
    if commit not in layout.published_commits():
        return None
    report = verify_published(layout, commit, full=full, progress=progress)
    if not report.ok:
        raise WeightsError(
            f"{source.repo}@{commit} is published under {layout.commit_dir(commit)} but no "
            "longer matches its manifest:\n  " + "\n  ".join(report.problems()) + "\n"
            "Published folders are immutable: find out what changed it, then delete the "
            "folder and fetch again."
        )
    _point_refs(layout, source.revision, commit)
    return FetchResult(
        source.repo, source.revision, commit, layout.commit_dir(commit),
        Manifest.read(layout.commit_dir(commit)), downloaded_bytes=0,
        seconds=time.perf_counter() - started, already_published=True,
        hub_reachable=hub_reachable, verification=report,
    )  # fmt: skip


def _offline(
    layout: RepoLayout,
    source: WeightsSource,
    unreachable: HubUnreachable,
    progress: Progress,
    started: float,
) -> FetchResult:
    commit = source.revision if is_commit(source.revision) else _read_ref(layout, source.revision)
    if commit is None:
        raise HubUnreachable(f"{unreachable}; and no published copy of {source.revision} exists")
    log.warning("Hub unreachable; re-verifying the published %s@%s", source.repo, commit)
    result = _reuse_published(layout, source, commit, progress, started, False, full=True)
    if result is None:
        raise HubUnreachable(f"{unreachable}; and {commit} is not published") from unreachable
    return result


def _check_names(source: WeightsSource, commit: str, remote: list[RemoteFile]) -> None:
    if not remote:
        raise WeightsError(
            f"{source.repo}@{commit} has no files matching allow_patterns {source.allow_patterns}"
        )
    clashes = [file.path for file in remote if file.path in RESERVED_NAMES]
    if clashes:
        raise WeightsError(
            f"{source.repo}@{commit} contains {clashes}, which llm-rollout writes itself; "
            "exclude them with source.allow_patterns"
        )


def _preflight_space(root: Path, total: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    needed = int(total * SPACE_MARGIN)
    if free < needed:
        raise NotEnoughSpace(
            f"{root} has {free / 2**30:.2f} GiB free; the download needs {total / 2**30:.2f} GiB "
            f"plus {SPACE_MARGIN - 1:.0%} headroom ({needed / 2**30:.2f} GiB). Free space or "
            "prune old revisions (`llm-rollout weights prune`)"
        )


def _point_refs(layout: RepoLayout, revision: str, commit: str) -> None:
    """Record which commit `revision` resolved to, and point `latest` at it (for humans)."""
    ref = layout.ref_file(revision)
    ref.parent.mkdir(parents=True, exist_ok=True)
    temporary = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    temporary.write_text(commit + "\n")
    os.replace(temporary, ref)
    link = layout.latest_link.with_name(f".latest.{os.getpid()}.tmp")
    link.unlink(missing_ok=True)
    link.symlink_to(commit)
    os.replace(link, layout.latest_link)


def _read_ref(layout: RepoLayout, revision: str) -> str | None:
    try:
        commit = layout.ref_file(revision).read_text().strip()
    except FileNotFoundError:
        return None
    return commit if is_commit(commit) else None


def published_commit(root: Path, source: WeightsSource) -> str:
    """The commit `source.revision` was last published as, without asking the Hub."""
    layout = RepoLayout(root, source.repo)
    commit = source.revision if is_commit(source.revision) else _read_ref(layout, source.revision)
    if commit is None or commit not in layout.published_commits():
        raise NotPublished(
            f"{source.repo}@{source.revision} is not published under {root}; "
            "run `llm-rollout weights fetch` first"
        )
    return commit


def _fsync(path: Path) -> None:
    """Flush a file or folder to stable storage before it becomes visible."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
