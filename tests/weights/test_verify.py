"""Re-verifying published weights: cheap when nothing changed, exact when something did."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_rollout.weights.errors import NotPublished, WeightsError
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import CHECKSUMS_NAME, MANIFEST_NAME, RepoLayout
from llm_rollout.weights.verify import verify_published

WEIGHTS = "model.safetensors"


@pytest.fixture
def published(hub_client: HubClient, source: WeightsSource, root: Path) -> str:
    return fetch_weights(source, root, hub_client).commit


def flip_a_bit(path: Path, offset: int = 123, keep_mtime: bool = False) -> None:
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_unchanged_folder_is_verified_from_the_stat_cache(
    layout: RepoLayout, published: str
) -> None:
    report = verify_published(layout, published)
    assert report.ok
    assert report.rehashed_files == 0
    assert report.files == 7


def test_full_mode_rehashes_everything(layout: RepoLayout, published: str) -> None:
    report = verify_published(layout, published, full=True)
    assert report.ok
    assert report.rehashed_files == report.files
    assert report.rehashed_bytes == report.total_bytes


def test_a_bit_flipped_later_is_reported_with_both_hashes(
    layout: RepoLayout, published: str
) -> None:
    target = layout.commit_dir(published) / WEIGHTS
    flip_a_bit(target)
    report = verify_published(layout, published)
    assert not report.ok
    assert [m.path for m in report.mismatched] == [WEIGHTS]
    assert report.rehashed_files == 1  # only the file whose stat changed
    (problem,) = report.problems()
    assert problem.startswith(f"{WEIGHTS}: sha256 is ")
    assert report.mismatched[0].expected_sha256 in problem


def test_a_flip_that_kept_size_and_mtime_is_caught_by_the_quick_verify(
    layout: RepoLayout, published: str, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    # `touch -r` restores mtime after an edit; only ctime (set by the kernel) tells
    flip_a_bit(layout.commit_dir(published) / WEIGHTS, keep_mtime=True)
    report = verify_published(layout, published)
    assert [m.path for m in report.mismatched] == [WEIGHTS]
    assert report.rehashed_files == 1
    with pytest.raises(WeightsError, match=r"no longer matches its manifest:\n  model"):
        fetch_weights(source, root, hub_client)  # its "already published" path


def test_a_file_with_a_reserved_name_in_a_subfolder_is_an_extra_file(
    layout: RepoLayout, published: str
) -> None:
    folder = layout.commit_dir(published)
    (folder / "evil").mkdir()
    (folder / "evil" / CHECKSUMS_NAME).write_text("whatever\n")
    (folder / "evil" / MANIFEST_NAME).write_text("{}")
    (folder / "link.bin").symlink_to(folder / WEIGHTS)
    report = verify_published(layout, published)
    assert report.extra == sorted([f"evil/{MANIFEST_NAME}", f"evil/{CHECKSUMS_NAME}", "link.bin"])


def test_full_verify_checks_sha256sums_against_the_manifest(
    layout: RepoLayout, published: str
) -> None:
    sums = layout.commit_dir(published) / CHECKSUMS_NAME
    lines = sums.read_text().splitlines()
    sums.write_text("\n".join(["0" * 64 + "  config.json", *lines[1:]]) + "\n")
    report = verify_published(layout, published, full=True)
    assert not report.ok
    assert any(p.startswith(f"{CHECKSUMS_NAME}: line") for p in report.problems())
    sums.unlink()
    assert verify_published(layout, published, full=True).checksums_file == ["missing"]


def test_verify_works_on_a_read_only_mount_without_its_stat_cache(
    layout: RepoLayout, published: str, root: Path, read_only_view: Callable[[Path], Path]
) -> None:
    layout.stat_cache(published).unlink()  # so verify wants to write a fresh one
    mounted = RepoLayout(read_only_view(root), layout.repo_id)
    report = verify_published(mounted, published)
    assert report.ok
    assert not report.cache_written
    assert report.rehashed_files == report.files  # no cache: everything re-hashed
    flip_a_bit(layout.commit_dir(published) / WEIGHTS)
    assert [m.path for m in verify_published(mounted, published).mismatched] == [WEIGHTS]


def test_extra_missing_and_resized_files_are_reported(layout: RepoLayout, published: str) -> None:
    folder = layout.commit_dir(published)
    (folder / "stray.bin").write_bytes(b"x")
    (folder / "tokenizer.json").unlink()
    (folder / "config.json").write_text("{}")
    report = verify_published(layout, published)
    assert report.extra == ["stray.bin"]
    assert report.missing == ["tokenizer.json"]
    assert report.wrong_size == ["config.json"]
    assert not report.ok


def test_verifying_an_unpublished_commit_says_so(layout: RepoLayout) -> None:
    with pytest.raises(NotPublished, match="weights fetch"):
        verify_published(layout, "a" * 40)
