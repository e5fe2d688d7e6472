"""The release controller gating and promoting a canary whose replicas are LeaderWorkerSet
groups, in process: the gate sensor evaluated with Dagster's test API against a sandbox
cluster of eight 4-GPU nodes and a real Prometheus discovering its pods; the `live` asset
carrying out the decision. The gate's numbers come from the leaders only (workers serve no
port and lack the labels the scrape keeps)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.assets.naming import group_name
from llm_rollout.assets.release import build_live_asset
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.history import ReleaseHistory
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.pipelines.definitions import build_definitions
from llm_rollout.pipelines.resources import KubernetesCluster, PrometheusServer
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import Installed, Phase, Started
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.cluster.cluster import NodeSpec
from sandbox.discovery import PodDiscovery
from tests.conftest import DEMO_SPEC, two_nodes_a_replica
from tests.fixtures.cluster import EMULATOR_IMAGE, Kube, running_kube, wait_for
from tests.fixtures.prometheus import SCRAPE_INTERVAL_SECONDS, LocalPrometheus

COMMIT = "c" * 40


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    nodes = tuple(NodeSpec(f"gpu-node-{n}", gpus=4) for n in range(1, 9))
    with running_kube(tmp_path / "cluster", nodes) as started:
        yield started


@pytest.fixture
def wide() -> ReleaseSpec:
    """The demo at TP 4 × PP 2 on nodes of 4 GPUs, two replicas, a short gate: one passing
    window of 10 s after 5 s of warm-up promotes."""
    demo = load_spec(DEMO_SPEC)
    return two_nodes_a_replica(
        demo,
        replicas=2,
        rollout=demo.rollout.model_copy(
            update={"progress_deadline_seconds": 120, "startup_budget_seconds": 30}
        ),
        gate=demo.gate.model_copy(
            update={
                "warmup_seconds": 5,
                "window": "10s",
                "interval_seconds": 5,
                "required_passes": 1,
                "min_requests": 5,
            }
        ),
    )


def query(prometheus: LocalPrometheus, promql: str) -> list[dict[str, object]]:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, object]] = json.load(response)["data"]["result"]
    return result


def test_the_gate_promotes_a_leaderworkerset_canary_reading_its_leaders_only(
    kube: Kube, wide: ReleaseSpec, prometheus: LocalPrometheus
) -> None:
    discovery = PodDiscovery(kube.api, prometheus).start()
    try:
        cluster = ClusterClient(kube.api, backoff_seconds=0.01)
        lifecycle = Lifecycle(cluster, wide, poll_seconds=0.2)
        first, second = (
            Release(wide, COMMIT, EMULATOR_IMAGE.replace(":1", f":{n}")) for n in (1, 2)
        )
        lifecycle.first_release(first)
        assert lifecycle.wait(lifecycle.workload_name(first.release_id)).phase == "complete"
        controller.report(wide, cluster, Installed(first.release_id))
        lifecycle.start_canary(second)
        controller.report(wide, cluster, Started(second.release_id, first.release_id, "canary"))
        canary = lifecycle.workload_name(second.release_id)
        assert lifecycle.wait(canary, timeout=120).phase == "complete"

        resources = {
            "kubernetes": KubernetesCluster(kubeconfig=str(kube.cluster.kubeconfig)),
            "prometheus": PrometheusServer(
                url=prometheus.url, scrape_interval_seconds=SCRAPE_INTERVAL_SECONDS
            ),
        }
        sensor = build_definitions([wide]).get_sensor_def(f"{group_name(wide)}_gate")
        with dg.instance_for_test() as instance:

            def promotion_requested() -> list[dg.RunRequest]:
                with dg.build_sensor_context(instance=instance, resources=resources) as context:
                    requests = sensor.evaluate_tick(context).run_requests or []
                return [r for r in requests if "promote" in (r.job_name or "")]

            (request,) = wait_for(promotion_requested, 180, "the gate's promotion", interval=1)
            record = RolloutStore(cluster, wide).read()
            assert record.phase is Phase.PROMOTING, record
            # the judged numbers came from the leaders: the only pods scraped per release
            scraped = {
                str(series["metric"]["pod"])  # type: ignore[index]
                for series in query(prometheus, f'up{{release="{second.release_id}"}}')
            }
            assert scraped == {f"{canary}-0"}, scraped

            result = dg.materialize(
                [build_live_asset(wide)], resources=resources, instance=instance
            )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        table = str(event.materialization.metadata["deployments"].value)
        assert f"| {canary} (LeaderWorkerSet) | stable | 2 / 2 |" in table, table
        assert ReleaseHistory(cluster, wide).read().stable == second.release_id
        assert RolloutStore(cluster, wide).read().phase is Phase.BAKING
        assert request.run_key and second.release_id in request.run_key
    finally:
        discovery.stop()
