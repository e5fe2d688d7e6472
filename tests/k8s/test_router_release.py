"""The router in the release flow, on the sandbox cluster: a real router pod
(`llm-rollout router serve` from the llm-rollout image) in front of emulated vLLM pods, its
config written by the release controller and the lifecycle, requests sent through the router's
Service with the official `openai` client and counted by the pod that answered."""

from __future__ import annotations

import collections
import urllib.request
from typing import Any

import openai
import pytest
import yaml

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import router_manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.rollout import controller
from llm_rollout.rollout.controller import Metrics
from llm_rollout.rollout.machine import (
    Installed,
    Override,
    Phase,
    Promoted,
    RolledBack,
    RunState,
    Started,
)
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import EMULATOR_IMAGE, wait_for

ROUTER_IMAGE = "registry.sandbox.local/llm-rollout:test"
CANARY_WEIGHT = 20
REQUESTS = 200
COMMIT = "c" * 40
# Prometheus is never asked: no window is due in these steps (warm-up plus one window).
NO_PROMETHEUS = Metrics("http://127.0.0.1:9", 1.0)


@pytest.fixture
def spec() -> ReleaseSpec:
    """The demo model with a router (one pod) and two replicas per release."""
    demo = load_spec(DEMO_SPEC).model_dump(mode="json")
    demo["replicas"] = 2
    demo["rollout"].update(
        canary_weight=CANARY_WEIGHT, progress_deadline_seconds=60, startup_budget_seconds=30
    )
    demo["routing"] = {"image": ROUTER_IMAGE, "replicas": 1}
    return ReleaseSpec.model_validate(demo)


def release(spec: ReleaseSpec, version: int) -> Release:
    return Release(spec, COMMIT, EMULATOR_IMAGE.replace(":1", f":{version}"))


def no_runs(run_key: str) -> tuple[RunState, str]:
    return RunState.NONE, ""


def router_config(cluster: ClusterClient, spec: ReleaseSpec) -> dict[str, Any]:
    config_map = cluster.get("ConfigMap", router_manifests.router_name(spec), spec.namespace)
    return dict(yaml.safe_load(config_map["data"][router_manifests.CONFIG_KEY]))


def weights(cluster: ClusterClient, spec: ReleaseSpec) -> dict[str, float]:
    return {r["id"]: r["weight"] for r in router_config(cluster, spec)["releases"]}


class Clients:
    """Requests through the router's Service, counted by the release whose pod answered."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster, self.spec = cluster, spec
        service = cluster.get("Service", router_manifests.router_name(spec), spec.namespace)
        self.url = f"http://{service['spec']['clusterIP']}:{router_manifests.ROUTER_PORT}"
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)

    def pods_by_address(self) -> dict[str, str]:
        """'ip:8000' → release, for every pod of the model."""
        selector = f"app.kubernetes.io/name={self.spec.name}"
        return {
            f"{pod['status']['podIP']}:{names.HTTP_PORT}": pod["metadata"]["labels"][names.RELEASE]
            for pod in self.cluster.list_objects("Pod", self.spec.namespace, selector)
            if (pod.get("status") or {}).get("podIP")
        }

    def loaded(self, expected: dict[str, float]) -> bool:
        """The router's pod serves a config with these weights (it re-reads the mounted file)."""
        try:
            with urllib.request.urlopen(f"{self.url}/router/config", timeout=2) as response:
                shown = yaml.safe_load(response.read())
        except OSError:
            return False
        return {r["id"]: r["weight"] for r in shown["releases"]} == expected

    def send(self, count: int) -> collections.Counter[str]:
        """`count` chat requests (no session header: weighted round robin); the release of the
        pod that answered each, checked against the router's X-Router-Backend."""
        answered: collections.Counter[str] = collections.Counter()
        pods = self.pods_by_address()
        for index in range(count):
            raw = self.client.chat.completions.with_raw_response.create(
                model="tiny-llama", messages=[{"role": "user", "content": f"hello {index}"}]
            )
            address = (raw.parse().choices[0].message.content or "").removeprefix("answered by ")
            released = pods[address]
            assert raw.headers["x-router-backend"] == released
            answered[released] += 1
        return answered


def wait_loaded(clients: Clients, cluster: ClusterClient, spec: ReleaseSpec) -> dict[str, float]:
    expected = weights(cluster, spec)
    wait_for(lambda: clients.loaded(expected), 30, f"the router to load {expected}")
    return expected


def tick_until(spec: ReleaseSpec, cluster: ClusterClient, phase: Phase) -> None:
    def reached() -> bool:
        return controller.tick(spec, cluster, NO_PROMETHEUS, no_runs).record.phase is phase

    wait_for(reached, 60, f"the controller to reach {phase.value}", interval=0.5)


def test_the_router_gives_the_canary_its_weight_follows_promotion_and_rollback(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    lifecycle = Lifecycle(cluster, spec, poll_seconds=0.2)
    # install: one release, the router sends it everything
    first = release(spec, 1)
    lifecycle.first_release(first)
    assert lifecycle.wait(lifecycle.workload_name(first.release_id), timeout=60).phase == (
        "complete"
    )
    controller.report(spec, cluster, Installed(first.release_id))
    router = cluster.get("Deployment", router_manifests.router_name(spec), spec.namespace)
    assert router["spec"]["template"]["spec"]["containers"][0]["image"] == ROUTER_IMAGE
    status = lifecycle.wait(router_manifests.router_name(spec), timeout=60)
    assert status.phase == "complete", status.reason
    assert weights(cluster, spec) == {first.release_id: 100}
    clients = Clients(cluster, spec)
    wait_loaded(clients, cluster, spec)
    assert clients.send(20) == {first.release_id: 20}

    # a canary: nothing until the controller sees it ready, then exactly its weight
    canary = release(spec, 2)
    lifecycle.start_canary(canary)
    controller.report(spec, cluster, Started(canary.release_id, first.release_id, "canary"))
    assert cluster.find("Service", f"{spec.name}-{canary.release_id}", spec.namespace)
    assert weights(cluster, spec) == {first.release_id: 100}
    tick_until(spec, cluster, Phase.GATING)
    assert weights(cluster, spec) == {
        first.release_id: 100 - CANARY_WEIGHT,
        canary.release_id: CANARY_WEIGHT,
    }
    wait_loaded(clients, cluster, spec)
    answered = clients.send(REQUESTS)
    # smooth weighted round robin on the one router pod: the share exactly, to one request
    assert abs(answered[canary.release_id] - REQUESTS * CANARY_WEIGHT / 100) <= 1, answered
    assert answered[first.release_id] + answered[canary.release_id] == REQUESTS

    # promotion (a person's, recorded): the weights follow the shift to the canary's pods
    controller.report(spec, cluster, Override(canary.release_id, "promote", "test", "routing"))
    assert lifecycle.promote(timeout=90).phase == "complete"
    controller.report(spec, cluster, Promoted(canary.release_id))
    assert RolloutStore(cluster, spec).read().phase is Phase.BAKING
    assert weights(cluster, spec) == {canary.release_id: 100}
    wait_loaded(clients, cluster, spec)
    assert clients.send(40) == {canary.release_id: 40}

    # the next canary is rolled back: degraded meanwhile, then the stable release only
    bad = release(spec, 3)
    lifecycle.start_canary(bad)
    controller.report(spec, cluster, Started(bad.release_id, canary.release_id, "canary"))
    tick_until(spec, cluster, Phase.GATING)
    assert weights(cluster, spec)[bad.release_id] == CANARY_WEIGHT
    controller.report(spec, cluster, Override(bad.release_id, "rollback", "test", "bad answers"))
    assert (router_config(cluster, spec)["degraded"] or "").startswith(
        f"rolling back {bad.release_id}"
    )
    assert lifecycle.rollback(timeout=90).phase == "complete"
    controller.report(spec, cluster, RolledBack(bad.release_id))
    config = router_config(cluster, spec)
    assert config["degraded"] is None
    assert weights(cluster, spec) == {canary.release_id: 100}
    wait_loaded(clients, cluster, spec)
    assert clients.send(40) == {canary.release_id: 40}


def test_retention_deletes_a_release_service_with_its_deployment(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    few = spec.model_copy(
        update={"rollout": spec.rollout.model_copy(update={"retained_releases": 0})}
    )
    lifecycle = Lifecycle(cluster, few, poll_seconds=0.2)
    old, new = release(few, 1), release(few, 2)
    lifecycle.first_release(old)
    lifecycle.wait(lifecycle.workload_name(old.release_id), timeout=60)
    lifecycle.start_canary(new)
    assert lifecycle.promote(timeout=90).phase == "complete"

    def gone() -> bool:
        return cluster.find("Service", f"{few.name}-{old.release_id}", few.namespace) is None

    wait_for(gone, 10, "the old release's Service to go")
    assert cluster.find("Deployment", f"{few.name}-{old.release_id}", few.namespace) is None
    assert cluster.find("Service", f"{few.name}-{new.release_id}", few.namespace)
    assert weights(cluster, few) == {new.release_id: 100}
