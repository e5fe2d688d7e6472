"""Hashing as the Hub does, on all cores."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llm_rollout.weights.hashing import hash_files
from sandbox.hub.gitobjects import blob_oid


def test_parallel_hashes_match_hashlib_and_git(tmp_path: Path) -> None:
    files = []
    for index, size in enumerate([0, 1, 9_000_000, 123_457]):
        path = tmp_path / f"f{index}"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        files.append((path, path.name, True))
    seen: list[int] = []
    results = hash_files(files, progress=seen.append, workers=2)
    assert [r.path for r in results] == ["f0", "f1", "f2", "f3"]
    for (path, _, _), result in zip(files, results, strict=True):
        data = path.read_bytes()
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.git_sha1 == blob_oid(data)
        assert result.size == len(data)
    assert sum(seen) == sum(len(p.read_bytes()) for p, _, _ in files)
