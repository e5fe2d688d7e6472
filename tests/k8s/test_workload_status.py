"""A LeaderWorkerSet's rollout status from its status as LWS v0.10 writes it, table-tested on
plain objects: trusted only once `status.observedGeneration` has caught up, complete only with
Available, every group updated and ready and no surge group left, stalled past the spec's
progress deadline (LWS has none of its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from llm_rollout.k8s.cluster import ClusterClient

NAME, NAMESPACE = "demo-rel-1", "llm-demo"


class OneSet(ClusterClient):
    """A cluster holding one LeaderWorkerSet and no pods."""

    def __init__(self, lws: dict[str, Any]) -> None:
        super().__init__(client.ApiClient())
        self.lws = lws

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        assert (kind, name, namespace) == ("LeaderWorkerSet", NAME, NAMESPACE)
        return self.lws

    def list_objects(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        assert (kind, selector) == ("Pod", f"leaderworkerset.sigs.k8s.io/name={NAME}")
        return []


def leaderworkerset(
    replicas: int,
    generation: int,
    observed: int,
    groups: int,
    ready: int,
    updated: int,
    available: bool,
    progressing_for: float = 1.0,
) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(seconds=progressing_for)
    moment = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "LeaderWorkerSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": generation},
        "spec": {"replicas": replicas, "leaderWorkerTemplate": {"size": 2}},
        "status": {
            "replicas": groups,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "observedGeneration": observed,
            "conditions": [
                {"type": "Available", "status": str(available), "lastTransitionTime": moment},
                {"type": "Progressing", "status": str(not available), "lastTransitionTime": moment},
            ],
        },
    }


@pytest.mark.parametrize(
    ("shape", "phase", "reason"),
    # shape: replicas, generation, observedGeneration, groups, ready, updated, Available
    # (and for how many seconds Progressing has held)
    [
        # scaled from 1 to 2 groups; the controller has not seen it: the old status says
        # Available with 1 of 1, which must not pass for 2
        ((2, 3, 2, 1, 1, 1, True), "progressing", "waiting for the controller"),
        ((2, 3, 3, 2, 1, 2, False), "progressing", "2 of 2 groups updated, 1"),
        ((2, 3, 3, 2, 2, 2, True), "complete", "all groups updated and ready"),
        # a rolling update's surge group is still there
        ((2, 3, 3, 3, 3, 3, True), "progressing", "3 of 2 groups updated"),
        ((0, 4, 4, 0, 0, 0, True), "complete", "all groups updated and ready"),
        (
            (1, 2, 2, 1, 0, 1, False, 120),
            "stalled",
            "ProgressDeadlineExceeded: progressing for 1",
        ),
    ],
    ids=["unobserved", "progressing", "complete", "surge-left", "zero", "past-deadline"],
)
def test_a_leaderworkersets_rollout_status(shape: tuple[Any, ...], phase: str, reason: str) -> None:
    lws = leaderworkerset(*shape)  # built now, so Progressing's age starts with the test
    status = OneSet(lws).rollout_status(NAME, NAMESPACE, "LeaderWorkerSet", 60)
    assert status.phase == phase
    assert status.reason.startswith(reason), status.reason
    assert status.desired == lws["spec"]["replicas"]
