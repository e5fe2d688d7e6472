"""A fetch killed mid-download, and a lock held by another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_rollout.weights.errors import WeightsLocked
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import RepoLayout
from sandbox.hub import Fault
from tests.conftest import DEMO_SPEC, REPO_ROOT
from tests.fixtures.sandbox_servers import TinyModelHub

CLI = str(Path(sys.executable).parent / "llm-rollout")


def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_fetch_killed_mid_download_publishes_nothing_and_a_rerun_completes(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, layout: RepoLayout
) -> None:
    tiny_hub.server.inject(Fault("slow", path="model.safetensors", delay_seconds=60))
    fetch = subprocess.Popen(
        [CLI, "weights", "fetch", str(DEMO_SPEC), "--root", str(root)],
        env={**os.environ, "HF_ENDPOINT": tiny_hub.url},
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    staging = layout.staging_dir(tiny_hub.commit)
    wait_until(lambda: (staging / "config.json").exists() or fetch.poll() is not None)
    assert fetch.poll() is None, fetch.communicate()
    fetch.send_signal(signal.SIGKILL)
    fetch.wait()
    assert layout.published_commits() == []
    assert not layout.commit_dir(tiny_hub.commit).exists()

    tiny_hub.server.clear_faults()
    result = fetch_weights(WeightsSource(tiny_hub.repo_id, "main"), root, hub_client)
    assert result.commit == tiny_hub.commit
    assert not staging.exists()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from llm_rollout.weights.lock import RepoLock
with RepoLock(Path(sys.argv[1]), timeout=5):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_by_a_hung_process_ends_in_a_clear_error(
    hub_client: HubClient, source: WeightsSource, root: Path, layout: RepoLayout
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(layout.lock_file)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(WeightsLocked, match=rf"held by pid {holder.pid} on .* within 1s"):
            fetch_weights(source, root, hub_client, lock_timeout=1.0)
        assert time.monotonic() - started < 10  # bounded
        assert layout.published_commits() == []
        # once its holder is killed, the kernel releases the lock: no stale lock remains
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert fetch_weights(source, root, hub_client, lock_timeout=1.0).commit
    finally:
        holder.kill()
        holder.wait()
