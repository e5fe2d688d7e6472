"""Fixtures for the weights tests: a weights root and a client for the sandbox Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.sandbox_servers import TinyModelHub
from weights.fetch import WeightsSource
from weights.hub import HubClient
from weights.layout import RepoLayout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty weights root (the NFS export, here a folder)."""
    path = tmp_path / "weights"
    path.mkdir()
    return path


@pytest.fixture
def hub_client(tiny_hub: TinyModelHub) -> HubClient:
    return HubClient(endpoint=tiny_hub.url)


@pytest.fixture
def source(tiny_hub: TinyModelHub) -> WeightsSource:
    return WeightsSource(tiny_hub.repo_id, "main")


@pytest.fixture
def layout(root: Path, tiny_hub: TinyModelHub) -> RepoLayout:
    return RepoLayout(root, tiny_hub.repo_id)
