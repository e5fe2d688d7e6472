"""Fixtures for driving the release lifecycle against the sandbox cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import EMULATOR_IMAGE, Kube

COMMIT = "c" * 40


@pytest.fixture
def spec(tmp_path: Path) -> ReleaseSpec:
    """The demo spec, with short deadlines so stalls show up within a test."""
    demo = load_spec(DEMO_SPEC)
    rollout = demo.rollout.model_copy(
        update={"progress_deadline_seconds": 60, "startup_budget_seconds": 30}
    )
    return demo.model_copy(update={"rollout": rollout, "replicas": 2})


@pytest.fixture
def cluster(kube: Kube) -> ClusterClient:
    return ClusterClient(kube.api, backoff_seconds=0.01)  # fault tests need not sleep


@pytest.fixture
def lifecycle(cluster: ClusterClient, spec: ReleaseSpec) -> Lifecycle:
    return Lifecycle(cluster, spec, poll_seconds=0.2)


def release(spec: ReleaseSpec, version: int = 1, image: str | None = None) -> Release:
    """A release of emulated vLLM pods; `version` changes the image tag (a new release)."""
    return Release(spec, COMMIT, image or EMULATOR_IMAGE.replace(":1", f":{version}"))
