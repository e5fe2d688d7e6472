"""Retention: keep the newest N published revisions of a repo, never one still in use; and
clear what killed runs left in staging."""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from llm_rollout.weights.errors import NotPublished, StorageError
from llm_rollout.weights.layout import RepoLayout, repo_slug
from llm_rollout.weights.lock import RepoLock
from llm_rollout.weights.manifest import Manifest

LOCK_TIMEOUT_SECONDS = 600.0
# A staged partial of another commit is kept this long for a rerun to resume it; after that
# nobody is coming back for it (the revision moved on) and it only fills the volume.
STALE_STAGING_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class PruneResult:
    """Which published commits were kept and which were deleted."""

    kept: list[str]
    deleted: list[str]


def prune(
    root: Path,
    repo_id: str,
    keep: int,
    protected: set[str],
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> PruneResult:
    """Delete all but the `keep` newest revisions, sparing `protected` commits (those a
    recorded release references) and the one `latest` points at. Also clears stale staging
    of the repo. A root that does not exist is an error, never created."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    if not root.is_dir():
        raise NotPublished(
            f"{root} does not exist or is not a folder: is the weights volume mounted? "
            "Check --root / LLM_ROLLOUT_WEIGHTS_ROOT"
        )
    layout = RepoLayout(root, repo_id)
    if not layout.repo_dir.is_dir():
        return PruneResult([], [])
    try:
        with RepoLock(layout.lock_file, lock_timeout):
            clean_stale_staging(layout)
            commits = layout.published_commits()
            newest_first = sorted(commits, key=lambda c: _published_at(layout, c), reverse=True)
            spared = set(newest_first[:keep]) | protected | _latest(layout)
            deleted = [commit for commit in newest_first if commit not in spared]
            for commit in deleted:
                # rename first, so no half-deleted folder is ever visible under its commit name
                staged = layout.staging_dir(commit)  # not with_suffix: repo names hold dots
                trash = staged.with_name(staged.name + ".deleting")
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.rename(layout.commit_dir(commit), trash)
                shutil.rmtree(trash)
                layout.stat_cache(commit).unlink(missing_ok=True)
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise StorageError(
            f"cannot prune under {error.filename or root}: {error.strerror}; prune needs the "
            "weights volume mounted read-write and writable by this user"
        ) from error
    return PruneResult([c for c in newest_first if c in spared], deleted)


def clean_stale_staging(
    layout: RepoLayout, keep: str | None = None, max_age: float = STALE_STAGING_SECONDS
) -> list[Path]:
    """Remove this repo's staging folders left by killed runs: a prune's half-deleted trash
    always, other commits' partial downloads once untouched for `max_age` seconds. The
    caller holds the repo lock, so no live process is writing any of them. `keep` (the
    commit being fetched) is never removed: its partial is resumed."""
    staging_root = layout.root / ".staging"
    if not staging_root.is_dir():
        return []
    pattern = re.compile(re.escape(repo_slug(layout.repo_id)) + r"--([0-9a-f]{40})(\.deleting)?")
    now = time.time()
    removed = []
    for entry in staging_root.iterdir():
        match = pattern.fullmatch(entry.name)
        if match is None or (match.group(1) == keep and not match.group(2)):
            continue
        if match.group(2) or now - _newest_mtime(entry) > max_age:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _newest_mtime(folder: Path) -> float:
    """When anything under `folder` was last written."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.lstat().st_mtime)
        except OSError:
            continue
    return newest


def _published_at(layout: RepoLayout, commit: str) -> tuple[str, int]:
    """When a commit was published: its manifest's time, then the folder's (for ties)."""
    folder = layout.commit_dir(commit)
    return Manifest.read(folder).verified_at, folder.stat().st_mtime_ns


def _latest(layout: RepoLayout) -> set[str]:
    try:
        return {os.readlink(layout.latest_link)}
    except OSError:
        return set()
