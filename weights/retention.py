"""Retention: keep the newest N published revisions of a repo, never one still in use."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from weights.layout import RepoLayout
from weights.lock import RepoLock
from weights.manifest import Manifest

LOCK_TIMEOUT_SECONDS = 600.0


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
    recorded release references) and the one `latest` points at."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    layout = RepoLayout(root, repo_id)
    with RepoLock(layout.lock_file, lock_timeout):
        commits = layout.published_commits()
        newest_first = sorted(commits, key=lambda c: _published_at(layout, c), reverse=True)
        spared = set(newest_first[:keep]) | protected | _latest(layout)
        deleted = [commit for commit in newest_first if commit not in spared]
        for commit in deleted:
            # rename first, so no half-deleted folder is ever visible under its commit name
            trash = layout.staging_dir(commit).with_suffix(".deleting")
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(layout.commit_dir(commit), trash)
            shutil.rmtree(trash)
            layout.stat_cache(commit).unlink(missing_ok=True)
    return PruneResult([c for c in newest_first if c in spared], deleted)


def _published_at(layout: RepoLayout, commit: str) -> tuple[str, int]:
    """When a commit was published: its manifest's time, then the folder's (for ties)."""
    folder = layout.commit_dir(commit)
    return Manifest.read(folder).verified_at, folder.stat().st_mtime_ns


def _latest(layout: RepoLayout) -> set[str]:
    try:
        return {os.readlink(layout.latest_link)}
    except OSError:
        return set()
