"""Git object ids and Git LFS pointers, computed as git and the Hub compute them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def blob_oid(data: bytes) -> str:
    """The git blob id (sha1 over 'blob <size>\\0' + bytes): the Hub's hash of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file git stores in place of a large file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a git tree: a file (mode 100644) or a folder (mode 40000)."""

    name: str
    oid: str
    is_folder: bool


def tree_oid(entries: list[TreeEntry]) -> str:
    """The git tree id over entries, sorted as git sorts them (folders compare with a '/')."""
    body = b""
    for entry in sorted(entries, key=lambda e: e.name + ("/" if e.is_folder else "")):
        mode = b"40000" if entry.is_folder else b"100644"
        body += mode + b" " + entry.name.encode() + b"\0" + bytes.fromhex(entry.oid)
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def commit_oid(tree: str, parent: str | None, message: str, timestamp: int) -> str:
    """The git commit id, with a fixed sandbox author so commits are reproducible."""
    lines = [f"tree {tree}"]
    if parent:
        lines.append(f"parent {parent}")
    author = f"Sandbox Hub <hub@sandbox.invalid> {timestamp} +0000"
    lines += [f"author {author}", f"committer {author}", "", message]
    body = ("\n".join(lines) + "\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body, usedforsecurity=False).hexdigest()
