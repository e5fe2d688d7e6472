"""The release controller's wiring, in process: assets, sensors and schedules evaluated with
Dagster's own test APIs (`materialize`, `build_sensor_context`, `build_schedule_context`)
against a sandbox cluster over HTTP, no daemon. What each part reports to the controller,
and what the sensor or schedule asks for next."""

from __future__ import annotations

import time
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
from llm_rollout.pipelines.resources import KubernetesCluster, PrometheusServer, WeightsStore
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import Installed, Phase, Started, enter
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.cluster.faults import ApiFault
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import EMULATOR_IMAGE, Kube
from tests.fixtures.sandbox_servers import TinyModelHub

COMMIT = "c" * 40
UNREACHABLE_PROMETHEUS = "http://127.0.0.1:9"  # no phase here measures a window


@pytest.fixture
def spec() -> ReleaseSpec:
    demo = load_spec(DEMO_SPEC)
    rollout = demo.rollout.model_copy(
        update={"progress_deadline_seconds": 60, "startup_budget_seconds": 30}
    )
    return demo.model_copy(update={"rollout": rollout, "replicas": 2})


def release(spec: ReleaseSpec, version: int) -> Release:
    return Release(spec, COMMIT, EMULATOR_IMAGE.replace(":1", f":{version}"))


def resources(kube: Kube) -> dict[str, object]:
    return {
        "kubernetes": KubernetesCluster(kubeconfig=str(kube.cluster.kubeconfig)),
        "prometheus": PrometheusServer(url=UNREACHABLE_PROMETHEUS),
    }


def canary_beside_stable(
    cluster: ClusterClient, spec: ReleaseSpec, ready: bool
) -> tuple[Release, Release]:
    """Release 1 installed as stable and release 2 started as its canary, each reported to
    the controller as the release asset reports them; with `ready`, both rolled out."""
    lifecycle = Lifecycle(cluster, spec, poll_seconds=0.2)
    first, second = release(spec, 1), release(spec, 2)
    lifecycle.first_release(first)
    if ready:
        assert lifecycle.wait(lifecycle.workload_name(first.release_id)).phase == "complete"
    controller.report(spec, cluster, Installed(first.release_id))
    lifecycle.start_canary(second)
    controller.report(spec, cluster, Started(second.release_id, first.release_id, "canary"))
    if ready:
        assert lifecycle.wait(lifecycle.workload_name(second.release_id)).phase == "complete"
    return first, second


def decided_canary(kube: Kube, spec: ReleaseSpec) -> tuple[ClusterClient, Release, Release]:
    """Stable and a ready canary, and the gate's decision to promote it in the record."""
    cluster = ClusterClient(kube.api, backoff_seconds=0.01)
    first, second = canary_beside_stable(cluster, spec, ready=True)
    RolloutStore(cluster, spec).update(
        lambda r: enter(r, Phase.PROMOTING, time.time(), "2 passing windows", decided_by="gate")
    )
    return cluster, first, second


def test_a_promotion_that_fails_midway_is_rolled_back_by_the_controller(
    kube: Kube, spec: ReleaseSpec
) -> None:
    cluster, first, second = decided_canary(kube, spec)
    # then the API server refuses every scale write (an apiserver overloaded mid-promotion;
    # promotion needs no spare GPU since releases got their own Deployments, see
    # tests/k8s/test_lifecycle.py)
    kube.cluster.api.faults.add(
        ApiFault("status", method="PATCH", path_contains="/scale", status=503, times=None)
    )

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [build_live_asset(spec)],
            resources=resources(kube),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        record = RolloutStore(cluster, spec).read()
        assert record.phase is Phase.ROLLING_BACK, record
        assert "promotion failed" in record.reason and "kept failing (503" in record.reason
        kube.cluster.api.faults.clear()
        assert ReleaseHistory(cluster, spec).read().stable == first.release_id

        # the next gate tick launches the rollback, keyed by release and attempt
        sensor = build_definitions([spec]).get_sensor_def(f"{group_name(spec)}_gate")
        with dg.build_sensor_context(instance=instance, resources=resources(kube)) as context:
            requests = sensor.evaluate_tick(context).run_requests or []
    assert [r.run_key for r in requests] == [f"{second.release_id}:rollback:1"]
    assert "promotion failed" in str(requests[0].run_config)


def test_a_decided_promotion_scales_the_canary_up_and_the_ui_lists_every_release(
    kube: Kube, spec: ReleaseSpec
) -> None:
    cluster, first, second = decided_canary(kube, spec)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [build_live_asset(spec)], resources=resources(kube), instance=instance
        )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["release_id"].value == second.release_id
    table = str(metadata["deployments"].value)
    n = spec.replicas
    assert f"| {spec.name}-{second.release_id} | stable | {n} / {n} |" in table, table
    assert f"| {spec.name}-{first.release_id} | idle | 0 / 0 |" in table, table
    assert RolloutStore(cluster, spec).read().phase is Phase.BAKING


def test_materializing_live_without_a_decision_promotes_nothing(
    kube: Kube, spec: ReleaseSpec
) -> None:
    cluster = ClusterClient(kube.api)
    first, second = canary_beside_stable(cluster, spec, ready=False)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [build_live_asset(spec)], resources=resources(kube), instance=instance
        )
        assert result.success
        assert not result.get_asset_materialization_events()  # live: not materialized
    history = ReleaseHistory(cluster, spec).read()
    assert (history.stable, history.canary) == (first.release_id, second.release_id)
    assert RolloutStore(cluster, spec).read().phase is Phase.STARTING


def test_the_refresh_schedule_does_not_retry_a_commit_the_controller_rolled_back(
    kube: Kube, spec: ReleaseSpec, tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    spec = spec.model_copy(
        update={
            "refresh": spec.refresh.model_copy(update={"cron": "0 3 * * *", "auto_rollout": True})
        }
    )
    cluster = ClusterClient(kube.api)
    lifecycle = Lifecycle(cluster, spec)
    rejected = Release(spec, tiny_hub.commit, EMULATOR_IMAGE)
    lifecycle.first_release(release(spec, 1))
    lifecycle.start_canary(rejected)
    ReleaseHistory(cluster, spec).annotate(
        rejected.release_id, rejected="2 failing windows in a row: success_rate"
    )
    schedule = build_definitions([spec]).get_schedule_def(f"{group_name(spec)}_refresh")
    store = WeightsStore(root=str(tmp_path / "weights"), hub_endpoint=tiny_hub.server.url)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance, resources={**resources(kube), "weights_store": store}
        ) as context,
    ):
        tick = schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert "rolled back automatically" in (tick.skip_message or "")
    assert "by hand" in (tick.skip_message or "")
