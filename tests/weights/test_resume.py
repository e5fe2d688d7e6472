"""Resuming for real: a rerun continues a killed or failed download from its staged bytes;
staging of other commits does not pile up; refs change only under the lock (issue #23)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_rollout.weights.errors import HubUnreachable, WeightsLocked
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import RepoLayout
from sandbox.hub import Fault
from tests.conftest import DEMO_SPEC, REPO_ROOT
from tests.fixtures.sandbox_servers import TinyModelHub
from tests.weights.test_interruptions import HOLD_LOCK, wait_until

CLI = str(Path(sys.executable).parent / "llm-rollout")
WEIGHTS = "model.safetensors"
DAY = 24 * 3600


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_rerun_after_kill_9_downloads_only_the_rest(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, layout: RepoLayout
) -> None:
    size = (tiny_hub.model_dir / WEIGHTS).stat().st_size
    # the first request is cut at 700 kB; the retry hangs, and the fetch is killed then
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=700_000, times=1))
    tiny_hub.server.inject(
        Fault("slow", path=WEIGHTS, route="resolve", delay_seconds=60, skip=1, times=1)
    )
    fetch = subprocess.Popen(
        [CLI, "weights", "fetch", str(DEMO_SPEC), "--root", str(root)],
        env={**os.environ, "HF_ENDPOINT": tiny_hub.url},
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    staging = layout.staging_dir(tiny_hub.commit)
    small = [p for p in tiny_hub.model_dir.iterdir() if p.name != WEIGHTS]

    def partial_staged() -> bool:
        try:
            done = all((staging / p.name).stat().st_size == p.stat().st_size for p in small)
            return done and (staging / WEIGHTS).stat().st_size == 700_000
        except FileNotFoundError:
            return fetch.poll() is not None

    try:
        wait_until(partial_staged)
        assert fetch.poll() is None, fetch.communicate()
        wait_until(lambda: tiny_hub.server.stats.file_requests[WEIGHTS] == 1)
    finally:
        fetch.send_signal(signal.SIGKILL)
        fetch.wait()
    tiny_hub.server.clear_faults()
    tiny_hub.server.stats.reset()

    result = fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, hub_client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    # the staged 700 kB were re-hashed and kept; the small files were complete already
    assert dict(tiny_hub.server.stats.body_bytes) == {WEIGHTS: size - 700_000}
    assert result.downloaded_bytes == size - 700_000
    assert not staging.exists()


def test_a_rerun_after_a_failed_fetch_resumes_its_partial(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    size = (tiny_hub.model_dir / WEIGHTS).stat().st_size
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=1_200_000))
    with pytest.raises(HubUnreachable, match="next run resumes them"):
        fetch_weights(source, root, hub_client)
    tiny_hub.server.clear_faults()
    tiny_hub.server.stats.reset()
    result = fetch_weights(source, root, hub_client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert tiny_hub.server.stats.body_bytes[WEIGHTS] == size - 1_200_000


def test_a_staged_partial_with_wrong_bytes_is_downloaded_again_not_published(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    staging = layout.staging_dir(tiny_hub.commit)
    staging.mkdir(parents=True)
    (staging / WEIGHTS).write_bytes(b"\xff" * 500_000)  # e.g. a disk that lied
    result = fetch_weights(source, root, hub_client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_staging_left_by_killed_fetches_of_other_commits_is_cleared_by_age(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    old, recent = layout.staging_dir("a" * 40), layout.staging_dir("b" * 40)
    trash = old.with_name(layout.staging_dir("c" * 40).name + ".deleting")  # a killed prune's
    for folder in (old, recent, trash):
        (folder / "shard").mkdir(parents=True)
        (folder / "shard" / "part.safetensors").write_bytes(b"x" * 1000)
    two_days_ago = time.time() - 2 * DAY
    for path in [old, *old.rglob("*")]:
        os.utime(path, (two_days_ago, two_days_ago))
    fetch_weights(source, root, hub_client)
    assert not old.exists()
    assert not trash.exists()
    assert recent.exists()  # a day's grace: a rerun of that commit may still resume it


def test_refs_are_pointed_only_under_the_lock(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, layout: RepoLayout,
    tmp_path: Path,
) -> None:  # fmt: skip
    first = fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, hub_client).commit
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"other": true}\n')
    second = tiny_hub.server.store.commit_folder(tiny_hub.repo_id, other, move_branch=False)
    fetch_weights(WeightsSource(tiny_hub.repo_id, second), root, hub_client)
    assert os.readlink(layout.latest_link) == second
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(layout.lock_file)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # main is published, but pointing `latest` back at it is a write a prune could race
        with pytest.raises(WeightsLocked):
            fetch_weights(
                WeightsSource(tiny_hub.repo_id, "main"), root, hub_client, lock_timeout=0.3
            )
        assert os.readlink(layout.latest_link) == second
    finally:
        holder.kill()
        holder.wait()
    again = fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, hub_client)
    assert again.already_published and os.readlink(layout.latest_link) == first
