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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from llm_rollout.weights.errors import (
    HubUnreachable,
    NotEnoughSpace,
    NotPublished,
    StorageError,
    UntrustedFolder,
    WeightsError,
)
from llm_rollout.weights.hub import HubClient, RemoteFile
from llm_rollout.weights.layout import RESERVED_NAMES, RepoLayout, is_commit
from llm_rollout.weights.lock import RepoLock
from llm_rollout.weights.manifest import Manifest, ManifestFile
from llm_rollout.weights.progress import NoProgress, Progress
from llm_rollout.weights.retention import clean_stale_staging
from llm_rollout.weights.verify import VerifyReport, remember_verified, verify_published

# (commit, the Hub's files) -> None, or raise to refuse the revision before its download
BeforeDownload = Callable[[str, list[RemoteFile]], None]

log = logging.getLogger(__name__)

# Free space must exceed the download by this factor: filesystems need headroom, and NFS
# servers report free space loosely.
SPACE_MARGIN = 1.1
# Parallel downloads: enough to fill a fast link with many shards, few enough to be polite.
DOWNLOAD_WORKERS = 8
# How long to wait for another fetch of the same repo before giving up with a clear error.
LOCK_TIMEOUT_SECONDS = 600.0
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
WRITABLE = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH


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
    before_download: BeforeDownload | None = None,
) -> FetchResult:
    """Publish `source` under `root` (see `weights.layout`) and return what was published.

    `before_download(commit, files)` sees the Hub's listing of a revision that is about to be
    downloaded and may refuse it by raising (`RefusedBeforeDownload`): a model too big for
    its GPUs is refused before hours of download.

    A revision already published is re-verified instead of downloaded. When the Hub cannot be
    reached, a published copy of the revision is fully re-hashed against its manifest before
    it is used: verification, not trust. A download interrupted in an earlier run (killed,
    network gone) resumes from its staged bytes, re-hashed first. Refs and `latest` are only
    written under the repo's lock, so a concurrent prune never deletes what they point at.
    """
    with storage_errors(root):
        return _fetch(
            source, root, hub, progress or NoProgress(), lock_timeout, workers, before_download
        )


def _fetch(
    source: WeightsSource,
    root: Path,
    hub: HubClient,
    progress: Progress,
    lock_timeout: float,
    workers: int,
    before_download: BeforeDownload | None = None,
) -> FetchResult:
    layout = RepoLayout(root, source.repo)
    started = time.perf_counter()
    try:
        commit = hub.resolve(source.repo, source.revision)
    except HubUnreachable as unreachable:
        return _offline(layout, source, unreachable, progress, started, lock_timeout)
    published = _reuse_published(layout, source, commit, progress, started, True, lock_timeout)
    if published is not None:
        return published
    _refuse_untrusted_folder(layout, commit)
    remote = hub.list_files(source.repo, commit, list(source.allow_patterns or []) or None)
    _check_names(source, commit, remote)
    if before_download is not None:
        before_download(commit, remote)
    total = sum(file.size for file in remote)
    _preflight_space(root, total - _staged_bytes(layout, commit, remote))
    with RepoLock(layout.lock_file, lock_timeout):
        clean_stale_staging(layout, keep=commit)
        # another process may have published it while we waited for the lock
        if commit in layout.published_commits():
            result = _reuse_published(layout, source, commit, progress, started, True, None)
            if result is not None:
                return result
        _refuse_untrusted_folder(layout, commit)
        manifest, received = _download_and_publish(
            layout, source, commit, remote, hub, progress, workers
        )
        _point_refs(layout, source.revision, commit)
    remember_verified(layout, commit, manifest)
    log.info("published %s@%s (%d files, %d bytes)", source.repo, commit, len(remote), total)
    return FetchResult(
        source.repo, source.revision, commit, layout.commit_dir(commit), manifest,
        downloaded_bytes=received, seconds=time.perf_counter() - started,
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
) -> tuple[Manifest, int]:
    """Download into staging (resuming what an earlier run left), verify, publish; return the
    manifest and the bytes received from the network. Staging survives a failure so the next
    run resumes it, except when the disk filled up (then it is removed to free the space)."""
    staging = layout.staging_dir(commit)
    staging.mkdir(parents=True, exist_ok=True)
    _drop_unexpected(staging, remote)
    progress.start(f"fetch {source.repo}@{commit[:12]}", sum(file.size for file in remote))
    cancelled = threading.Event()
    received = [0]

    def fetch_one(file: RemoteFile) -> ManifestFile:
        if cancelled.is_set():
            raise WeightsError("cancelled after another file failed")
        target = staging / file.path
        if target.exists():
            target.chmod(WRITABLE)  # a run killed after publishing chmod left it read-only
        done = hub.download(source.repo, commit, file, target, progress.advance)
        received[0] += done.received_bytes
        _fsync(target)  # here, so writeback overlaps the other downloads
        digest = done.hash
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
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            shutil.rmtree(staging, ignore_errors=True)
            raise NotEnoughSpace(
                f"{layout.root} filled up while downloading {source.repo}@{commit}; the partial "
                "download was removed and nothing was published. Free space and run again"
            ) from error
        raise
    except BaseException:
        progress.finish()
        raise
    return manifest, received[0]


def _reuse_published(
    layout: RepoLayout,
    source: WeightsSource,
    commit: str,
    progress: Progress,
    started: float,
    hub_reachable: bool,
    lock_timeout: float | None,
    full: bool = False,
) -> FetchResult | None:
    """A FetchResult for `commit` when it is published and still verifies, after pointing the
    refs at it. The refs are written under the repo lock: taken here unless `lock_timeout` is
    None (the caller holds it), and only when they need to change."""
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
    if _refs_point_at(layout, source.revision, commit):
        pass  # nothing to write; prune spares what `latest` points at
    elif lock_timeout is None:
        _point_refs(layout, source.revision, commit)
    else:
        with RepoLock(layout.lock_file, lock_timeout):
            if commit not in layout.published_commits():
                return None  # pruned while we verified: fetch it again
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
    lock_timeout: float,
) -> FetchResult:
    commit = source.revision if is_commit(source.revision) else _read_ref(layout, source.revision)
    if commit is None:
        raise HubUnreachable(f"{unreachable}; and no published copy of {source.revision} exists")
    log.warning("Hub unreachable; re-verifying the published %s@%s", source.repo, commit)
    result = _reuse_published(
        layout, source, commit, progress, started, False, lock_timeout, full=True
    )
    if result is None:
        raise HubUnreachable(f"{unreachable}; and {commit} is not published") from unreachable
    return result


def _refuse_untrusted_folder(layout: RepoLayout, commit: str) -> None:
    """A commit folder without a manifest is not ours to trust or to replace."""
    folder = layout.commit_dir(commit)
    if folder.exists() and commit not in layout.published_commits():
        raise UntrustedFolder(
            f"{folder} exists but has no manifest (deleted, or not published by llm-rollout), "
            "so its files cannot be trusted; move it away or delete it, then fetch again"
        )


def _staged_bytes(layout: RepoLayout, commit: str, remote: list[RemoteFile]) -> int:
    """Bytes an earlier run already staged for these files (they need no new space)."""
    staging = layout.staging_dir(commit)
    total = 0
    for file in remote:
        with suppress(OSError):
            total += min((staging / file.path).stat().st_size, file.size)
    return total


def _drop_unexpected(staging: Path, remote: list[RemoteFile]) -> None:
    """Remove staged files this download will not write (another allow_patterns, a manifest
    of a run killed while publishing), so only verified files get published."""
    wanted = {file.path for file in remote}
    for path in sorted(staging.rglob("*"), reverse=True):
        name = path.relative_to(staging).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(w.startswith(name + "/") for w in wanted):
                shutil.rmtree(path)
        elif name not in wanted:
            path.unlink()


def _check_names(source: WeightsSource, commit: str, remote: list[RemoteFile]) -> None:
    unsafe = [
        file.path
        for file in remote
        if PurePosixPath(file.path).is_absolute() or ".." in PurePosixPath(file.path).parts
    ]
    if unsafe:
        raise WeightsError(
            f"{source.repo}@{commit} lists unsafe paths {unsafe}; refusing to write outside "
            "the staging folder. Check HF_ENDPOINT: the Hub never lists such paths"
        )
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


def _refs_point_at(layout: RepoLayout, revision: str, commit: str) -> bool:
    """Whether the ref of `revision` and `latest` already name `commit`."""
    try:
        latest = os.readlink(layout.latest_link)
    except OSError:
        return False
    return latest == commit and (is_commit(revision) or _read_ref(layout, revision) == commit)


def _point_refs(layout: RepoLayout, revision: str, commit: str) -> None:
    """Record which commit `revision` resolved to, and point `latest` at it (for humans).
    Callers hold the repo lock: prune reads `latest` under it."""
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


@contextmanager
def storage_errors(root: Path) -> Iterator[None]:
    """Turn a refused write or read on the weights volume into one actionable line."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT):
            raise
        where = error.filename or root
        advice = {
            errno.EROFS: "the weights volume is mounted read-only here; fetch and prune need "
            "it read-write (pods may mount it read-only)",
            errno.EIO: "the storage reported an I/O error; check the volume",
            errno.ENOENT: f"it vanished while in use; check that nothing else deletes under {root}",
        }.get(
            error.errno,
            f"this user (uid {os.getuid()}) may not write there; fix the permissions or run "
            "as the volume's owner",
        )
        raise StorageError(f"cannot use {where}: {error.strerror}; {advice}") from error


def _fsync(path: Path) -> None:
    """Flush a file or folder to stable storage before it becomes visible."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
