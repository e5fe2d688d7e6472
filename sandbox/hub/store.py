"""Repos with real git-style commits, branches and tags; file bytes kept in a blob folder."""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.hub.gitobjects import TreeEntry, blob_oid, commit_oid, lfs_pointer, tree_oid

# The Hub stores these through Git LFS (its default .gitattributes), plus anything big.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "*.h5", "*.msgpack", "*.onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024
FIRST_COMMIT_TIME = 1_735_689_600  # 2025-01-01, so commit ids do not depend on the clock
# Git's default abbreviation: the Hub resolves a unique commit prefix at least this long, as
# `git rev-parse` does (e.g. the 7-hex ids the Hub's web pages show).
SHORT_SHA_MIN = 7
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class RepoFileInfo:
    """A file at a commit, with the hashes the Hub API reports for it."""

    path: str
    size: int
    sha256: str
    git_oid: str  # blob id of the content, or of the LFS pointer for LFS files
    lfs: bool
    blob_path: Path

    @property
    def etag(self) -> str:
        """What the Hub sends as (X-Linked-)ETag: the sha256 for LFS files, else the git id."""
        return self.sha256 if self.lfs else self.git_oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass
class Commit:
    """A commit: its id, parent, message and files by path."""

    oid: str
    parent: str | None
    message: str
    files: dict[str, RepoFileInfo]
    timestamp: int


@dataclass
class Repo:
    """One model repo: commits by id, branches and tags, access rules."""

    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, str] = field(default_factory=dict)  # refs/pr/<n> → commit
    # When set, the repo is gated: metadata stays public, file downloads need this token
    # (the one account that accepted the terms).
    gated_token: str | None = None

    def resolve(self, revision: str) -> Commit | None:
        """The commit a revision names, or None. As on the Hub: a branch or tag (short or as
        `refs/heads/…`, `refs/tags/…`), `refs/pr/<n>`, a full commit id, or a unique prefix
        of one of at least `SHORT_SHA_MIN` hex digits."""
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision.startswith("refs/heads/"):
            oid = self.branches.get(revision.removeprefix("refs/heads/"))
        if oid is None and revision.startswith("refs/tags/"):
            oid = self.tags.get(revision.removeprefix("refs/tags/"))
        if oid is None and revision.startswith("refs/pr/"):
            number = revision.removeprefix("refs/pr/")
            oid = self.pulls.get(int(number)) if number.isdigit() else None
        if oid is None and revision in self.commits:
            oid = revision
        if oid is None and SHORT_SHA_MIN <= len(revision) < 40 and set(revision) <= _HEX:
            candidates = [commit for commit in self.commits if commit.startswith(revision)]
            oid = candidates[0] if len(candidates) == 1 else None  # ambiguous: unknown
        return self.commits.get(oid) if oid else None


class RepoStore:
    """All repos of the sandbox Hub, stored under one folder; safe to use from many threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self._lock = threading.Lock()

    def commit_folder(
        self,
        repo_id: str,
        folder: Path,
        *,
        message: str = "Upload model",
        branch: str = "main",
        move_branch: bool = True,
    ) -> str:
        """Commit every file under `folder` as the new state of `branch`; return the commit id.

        With `move_branch=False` the commit exists but no branch points at it yet, so a test
        can move the branch later with `move_branch`.
        """
        files = {
            path.relative_to(folder).as_posix(): self._store_blob(path)
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        infos = {
            name: RepoFileInfo(name, *self._describe(name, blob)) for name, blob in files.items()
        }
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            parent = repo.branches.get(branch)
            timestamp = FIRST_COMMIT_TIME + 60 * len(repo.commits)
            oid = commit_oid(_root_tree(infos), parent, message, timestamp)
            repo.commits[oid] = Commit(oid, parent, message, infos, timestamp)
            if move_branch:
                repo.branches[branch] = oid
        return oid

    def move_branch(self, repo_id: str, branch: str, commit: str) -> None:
        """Point `branch` at `commit`, as a push to the Hub would."""
        with self._lock:
            repo = self.repos[repo_id]
            if commit not in repo.commits:
                raise KeyError(f"{repo_id} has no commit {commit}")
            repo.branches[branch] = commit

    def open_pull_request(self, repo_id: str, folder: Path, message: str = "PR") -> tuple[int, str]:
        """Commit `folder` as a new pull request (`refs/pr/<n>`); return (n, commit id)."""
        commit = self.commit_folder(repo_id, folder, message=message, move_branch=False)
        with self._lock:
            repo = self.repos[repo_id]
            number = max(repo.pulls, default=0) + 1
            repo.pulls[number] = commit
        return number, commit

    def tag(self, repo_id: str, tag: str, commit: str) -> None:
        """Create or move a tag."""
        with self._lock:
            self.repos[repo_id].tags[tag] = commit

    def set_gated(self, repo_id: str, token: str | None) -> None:
        """Gate the repo: its files need `token`, its metadata stays public (None opens it)."""
        with self._lock:
            self.repos[repo_id].gated_token = token

    def get(self, repo_id: str) -> Repo | None:
        with self._lock:
            return self.repos.get(repo_id)

    def _store_blob(self, path: Path) -> Path:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        blob = self.blobs / digest.hexdigest()
        if not blob.exists():
            temporary = blob.with_suffix(".tmp")
            try:
                temporary.hardlink_to(path)
            except OSError:
                shutil.copyfile(path, temporary)
            temporary.replace(blob)
        return blob

    @staticmethod
    def _describe(name: str, blob: Path) -> tuple[int, str, str, bool, Path]:
        size = blob.stat().st_size
        sha256 = blob.name
        lfs = size >= LFS_MIN_SIZE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)
        oid = blob_oid(lfs_pointer(sha256, size) if lfs else blob.read_bytes())
        return size, sha256, oid, lfs, blob


def folders_of(files: dict[str, RepoFileInfo]) -> dict[str, str]:
    """Every folder path in a commit with its git tree id ('' is the root)."""
    children: dict[str, list[TreeEntry]] = {"": []}
    for path, info in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), [])
        children["/".join(parts[:-1])].append(TreeEntry(parts[-1], info.git_oid, False))
    oids: dict[str, str] = {}
    for folder in sorted(children, key=lambda f: -f.count("/") if f else 1):
        oids[folder] = tree_oid(children[folder])
        if folder:
            parent, _, name = folder.rpartition("/")
            children[parent].append(TreeEntry(name, oids[folder], True))
    return oids


def _root_tree(files: dict[str, RepoFileInfo]) -> str:
    return folders_of(files)[""]
