"""Fetch → verify → publish against the sandbox Hub, and every way it can go wrong."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_rollout.weights.errors import (
    ChecksumMismatch,
    HubAccessDenied,
    HubUnreachable,
    NotEnoughSpace,
    RepoNotFound,
    RevisionNotFound,
    SizeMismatch,
    WeightsError,
)
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import CHECKSUMS_NAME, MANIFEST_NAME, RepoLayout
from llm_rollout.weights.manifest import Manifest
from sandbox.hub import Fault
from sandbox.hub.gitobjects import blob_oid
from tests.fixtures.sandbox_servers import TinyModelHub

WEIGHTS = "model.safetensors"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_nothing_published(root: Path, layout: RepoLayout, bad: str | None = None) -> None:
    """Nothing is visible under the repo; a file that failed verification is not kept in
    staging either (verified files and partials of cut downloads are, for the next run)."""
    assert layout.published_commits() == []
    assert not layout.repo_dir.exists() or [p.name for p in layout.repo_dir.iterdir()] == [".lock"]
    if bad is not None:
        assert not list((root / ".staging").rglob(bad))


class CallOnStart:
    """A Progress that runs `action` when the download starts (after resolve and listing)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action

    def start(self, label: str, total_bytes: int) -> None:
        if label.startswith("fetch"):
            self.action()

    def advance(self, done_bytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


def test_fetch_publishes_a_verified_commit_folder(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    result = fetch_weights(source, root, hub_client)
    folder = root / "llm-rollout--tiny-llama" / tiny_hub.commit
    assert result.commit == tiny_hub.commit
    assert result.folder == folder
    for original in tiny_hub.model_dir.iterdir():
        assert (folder / original.name).read_bytes() == original.read_bytes()
        assert not os.access(folder / original.name, os.W_OK) or os.geteuid() == 0
        assert (folder / original.name).stat().st_mode & 0o222 == 0  # read-only
    manifest = Manifest.read(folder)
    by_path = {file.path: file for file in manifest.files}
    assert by_path[WEIGHTS].lfs
    assert by_path[WEIGHTS].hub_hash == sha256_of(tiny_hub.model_dir / WEIGHTS)
    config = (tiny_hub.model_dir / "config.json").read_bytes()
    assert by_path["config.json"].hub_hash == blob_oid(config)
    assert by_path["config.json"].sha256 == hashlib.sha256(config).hexdigest()
    assert manifest.total_bytes == sum(p.stat().st_size for p in tiny_hub.model_dir.iterdir())
    assert (layout.ref_file("main")).read_text().strip() == tiny_hub.commit
    assert os.readlink(layout.latest_link) == tiny_hub.commit
    assert not any((root / ".staging").iterdir())
    check = subprocess.run(["sha256sum", "-c", CHECKSUMS_NAME], cwd=folder, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_a_published_revision_is_reverified_not_downloaded(
    hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    first = fetch_weights(source, root, hub_client)
    again = fetch_weights(source, root, hub_client)
    assert again.already_published
    assert again.downloaded_bytes == 0
    assert again.commit == first.commit
    assert again.verification is not None and again.verification.ok


def test_allow_patterns_limit_the_files(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path
) -> None:
    source = WeightsSource(tiny_hub.repo_id, "main", ("*.json",))
    result = fetch_weights(source, root, hub_client)
    names = {path.name for path in result.folder.iterdir()} - {MANIFEST_NAME, CHECKSUMS_NAME}
    assert names == {p.name for p in tiny_hub.model_dir.glob("*.json")}


def test_a_corrupted_byte_fails_naming_the_file_and_publishes_nothing(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    tiny_hub.server.inject(Fault("corrupt", path=WEIGHTS, offset=4242))
    with pytest.raises(ChecksumMismatch) as caught:
        fetch_weights(source, root, hub_client)
    message = str(caught.value)
    assert WEIGHTS in message
    assert sha256_of(tiny_hub.model_dir / WEIGHTS) in message  # expected
    assert tiny_hub.commit in message
    assert_nothing_published(root, layout, bad=WEIGHTS)


def test_a_corrupted_small_file_is_caught_by_its_git_hash(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    tiny_hub.server.inject(Fault("corrupt", path="tokenizer.json", offset=10))
    with pytest.raises(ChecksumMismatch, match=r"tokenizer\.json.*git sha1"):
        fetch_weights(source, root, hub_client)
    assert_nothing_published(root, layout, bad="tokenizer.json")


def test_a_cut_connection_is_resumed_and_verified(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=700_000, times=2))
    result = fetch_weights(source, root, hub_client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_a_connection_that_keeps_dropping_fails_cleanly(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=700_000))
    with pytest.raises(HubUnreachable, match=r"model\.safetensors.*failed 5 times"):
        fetch_weights(source, root, hub_client)
    assert_nothing_published(root, layout)


def test_a_size_mismatch_is_refused(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    tiny_hub.server.inject(Fault("truncate", path=WEIGHTS, offset=1000))
    with pytest.raises(SizeMismatch, match=r"model\.safetensors.*lists \d+ bytes but sent 1000"):
        fetch_weights(source, root, hub_client)
    assert_nothing_published(root, layout, bad=WEIGHTS)


def test_every_file_comes_from_the_pinned_commit_when_the_branch_moves(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    changed = tmp_path / "v2"
    shutil.copytree(tiny_hub.model_dir, changed)
    (changed / "config.json").write_text('{"moved": true}\n')
    (changed / WEIGHTS).write_bytes(b"\0" * 64)
    store = tiny_hub.server.store
    new = store.commit_folder(tiny_hub.repo_id, changed, move_branch=False)
    move = CallOnStart(lambda: store.move_branch(tiny_hub.repo_id, "main", new))
    result = fetch_weights(source, root, hub_client, progress=move)
    assert store.repos[tiny_hub.repo_id].branches["main"] == new  # it did move
    assert result.commit == tiny_hub.commit
    for original in tiny_hub.model_dir.iterdir():
        assert (result.folder / original.name).read_bytes() == original.read_bytes()


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    """A 6 MiB tmpfs as the weights root, so the disk really fills up (needs root)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {mounted.stderr.decode()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_mid_download_fails_cleanly(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, small_disk: Path
) -> None:
    def fill_disk() -> None:
        free = shutil.disk_usage(small_disk).free
        (small_disk / "filler").write_bytes(b"\0" * (free - 512 * 1024))

    with pytest.raises(NotEnoughSpace, match="filled up while downloading"):
        fetch_weights(source, small_disk, hub_client, progress=CallOnStart(fill_disk))
    assert_nothing_published(small_disk, RepoLayout(small_disk, tiny_hub.repo_id))


def test_too_little_space_is_refused_before_downloading(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, small_disk: Path
) -> None:
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 1024 * 1024))
    with pytest.raises(NotEnoughSpace, match="GiB free; the download needs"):
        fetch_weights(source, small_disk, hub_client)
    assert not (small_disk / ".staging").exists()


def test_hub_unreachable_uses_the_published_copy_after_verifying_it(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    fetch_weights(source, root, hub_client)
    tiny_hub.server.stop()
    result = fetch_weights(source, root, hub_client)
    assert not result.hub_reachable
    assert result.commit == tiny_hub.commit
    assert result.verification is not None
    assert result.verification.rehashed_files == len(result.manifest.files)  # full re-hash


def test_hub_unreachable_does_not_trust_a_damaged_published_copy(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    published = fetch_weights(source, root, hub_client).folder / WEIGHTS
    stat = published.stat()
    with published.open("r+b") as handle:
        handle.seek(100)
        handle.write(bytes([handle.read(1)[0] ^ 1]))
    os.utime(published, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with mtime kept
    tiny_hub.server.stop()
    with pytest.raises(
        WeightsError, match=r"no longer matches its manifest:\n  model\.safetensors"
    ):
        fetch_weights(source, root, hub_client)


def test_hub_unreachable_with_nothing_published_is_a_network_error(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    tiny_hub.server.stop()
    with pytest.raises(HubUnreachable, match=r"cannot reach the Hub.*no published copy of main"):
        fetch_weights(source, root, hub_client)


def test_access_and_existence_errors_are_distinct_and_clear(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path
) -> None:
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, "hf_right")
    with pytest.raises(HubAccessDenied, match="set HF_TOKEN"):
        fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, hub_client)
    allowed = HubClient(endpoint=tiny_hub.url, token="hf_right")
    assert fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, allowed).commit
    with pytest.raises(RepoNotFound, match=r"check source\.repo"):
        fetch_weights(WeightsSource("nobody/nothing", "main"), root, hub_client)
    with pytest.raises(RevisionNotFound, match="no branch, tag or commit 'v9'"):
        fetch_weights(WeightsSource(tiny_hub.repo_id, "v9"), root, allowed)


def test_401_on_a_file_is_access_denied_not_a_network_error(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    tiny_hub.server.inject(Fault("status", status=401, route="resolve"))
    with pytest.raises(HubAccessDenied):
        fetch_weights(source, root, hub_client)
