"""Fixtures for the weights tests: a weights root and a client for the sandbox Hub."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_rollout.weights.fetch import WeightsSource
from llm_rollout.weights.hub import HubClient, RetryPolicy
from llm_rollout.weights.layout import RepoLayout
from tests.fixtures.sandbox_servers import TinyModelHub


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty weights root (the NFS export, here a folder)."""
    path = tmp_path / "weights"
    path.mkdir()
    return path


# The product's retry policy with back-offs of a millisecond: fault tests exercise every
# retry without sleeping through real back-offs.
FAST_RETRY = RetryPolicy(backoff_seconds=0.001, backoff_max_seconds=0.002)


@pytest.fixture
def hub_client(tiny_hub: TinyModelHub) -> HubClient:
    return HubClient(endpoint=tiny_hub.url, retry=FAST_RETRY)


@pytest.fixture
def source(tiny_hub: TinyModelHub) -> WeightsSource:
    return WeightsSource(tiny_hub.repo_id, "main")


@pytest.fixture
def layout(root: Path, tiny_hub: TinyModelHub) -> RepoLayout:
    return RepoLayout(root, tiny_hub.repo_id)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mounts a folder read-only at a second path, as pods mount the weights volume (a bind
    mount remounted ro: EROFS even for root, which chmod cannot give). Needs root."""
    mounted: list[Path] = []

    def view(folder: Path) -> Path:
        target = tmp_path / f"read-only-{len(mounted)}"
        target.mkdir()
        for command in (
            ["mount", "--bind", str(folder), str(target)],
            ["mount", "-o", "remount,ro,bind", str(target)],
        ):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                subprocess.run(["umount", str(target)], capture_output=True)
                pytest.skip(f"cannot bind-mount read-only (needs root): {done.stderr}")
        mounted.append(target)
        return target

    yield view
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)
