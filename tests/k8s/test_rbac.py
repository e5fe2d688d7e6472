"""The RBAC `llm-rollout dagster-rbac` prints is exactly enough: a Dagster run's identity (the
ServiceAccount token) releases, rolls back and promotes a model through the sandbox's RBAC
authorizer, and loses with a 403 when any one of the rules is missing."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.k8s.dagster.scaleout import dagster_rbac
from llm_rollout.k8s.labels import api_key_secret_name
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.monitoring.quality import QualityError
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import Installed
from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.routing import Routing
from sandbox.cluster.cluster import NodeSpec
from tests.conftest import two_nodes_a_replica
from tests.fixtures.cluster import Kube, running_kube
from tests.k8s.conftest import COMMIT, release

DAGSTER = ("dagster", "llm-rollout")  # Dagster's namespace and service account


def grant(kube: Kube, spec: ReleaseSpec, objects: list[dict[str, Any]]) -> ClusterClient:
    """As the admin: create the namespaces and Dagster's ServiceAccount, apply `objects`; then
    a client that authenticates as that ServiceAccount with a TokenRequest token."""
    admin = ClusterClient(kube.api, field_manager="cluster-admin")
    for namespace in (DAGSTER[0], spec.namespace):
        admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DAGSTER[1], "namespace": DAGSTER[0]},
        }
    )
    for obj in objects:
        admin.apply(obj)
    token = kube.core.create_namespaced_service_account_token(
        DAGSTER[1], DAGSTER[0], {"spec": {"expirationSeconds": 3600}}
    ).status.token
    configuration = client.Configuration()
    configuration.host = kube.cluster.url
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return ClusterClient(client.ApiClient(configuration))


def release_promote_rollback(run: Lifecycle) -> None:
    """First release, a bad canary rolled back, a good canary promoted, an aborted canary."""
    spec = run.spec
    first, crashing = release(spec, 1), Release(spec, COMMIT, "registry.sandbox.local/python:3")
    run.first_release(first)
    assert run.wait(run.workload_name(first.release_id)).phase == "complete"
    run.start_canary(crashing)
    assert run.wait(run.workload_name(crashing.release_id), timeout=60).phase == "stalled"
    assert run.rollback().phase == "complete"
    good = release(spec, 2)
    run.start_canary(good)
    assert run.wait(run.workload_name(good.release_id)).phase == "complete"
    assert run.promote().phase == "complete"
    run.start_canary(release(spec, 3))
    run.abort()
    history = run.history.read()
    assert (history.stable, history.canary) == (release(spec, 2).release_id, None)


def test_a_whole_release_succeeds_with_exactly_the_printed_rbac(
    kube: Kube, spec: ReleaseSpec
) -> None:
    run = Lifecycle(grant(kube, spec, dagster_rbac([spec], *DAGSTER)), spec)
    release_promote_rollback(run)


def test_a_model_with_a_router_releases_with_exactly_the_printed_rbac(
    kube: Kube, spec: ReleaseSpec
) -> None:
    routing = Routing(image="registry.sandbox.local/llm-rollout:test", replicas=1)
    routed = spec.model_copy(update={"routing": routing})
    dagster = grant(kube, routed, dagster_rbac([routed], *DAGSTER))
    release_promote_rollback(Lifecycle(dagster, routed))
    # the controller's part: the router's config for the stored record
    controller.report(routed, dagster, Installed(release(routed, 2).release_id))
    assert dagster.find("ConfigMap", f"{routed.name}-router", routed.namespace)


def test_the_service_account_cannot_do_what_the_rbac_does_not_grant(
    kube: Kube, spec: ReleaseSpec
) -> None:
    dagster = grant(kube, spec, dagster_rbac([spec], *DAGSTER))
    with pytest.raises(ClusterError, match=r'cannot list resource "secrets" in API group ""'):
        dagster.list_objects("Secret", spec.namespace)
    with pytest.raises(ClusterError) as denied:
        dagster.get("Deployment", "anything", "kube-system")
    assert str(denied.value) == (
        'reading Deployment/anything failed: deployments.apps "anything" is forbidden: User '
        '"system:serviceaccount:dagster:llm-rollout" cannot get resource "deployments" in API '
        'group "apps" in the namespace "kube-system"'
    )


def test_with_the_quality_gate_it_reads_the_models_api_key_secret_and_no_other(
    kube: Kube, spec: ReleaseSpec, tmp_path: Path
) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    gated = ReleaseSpec.model_validate({**spec.model_dump(), "quality": {"prompts": str(golden)}})
    dagster = grant(kube, gated, dagster_rbac([gated], *DAGSTER))
    for name, value in ((api_key_secret_name(gated), "sk-1"), ("other", "not yours")):
        kube.core.create_namespaced_secret(
            gated.namespace,
            {
                "metadata": {"name": name},
                "data": {"api-key": base64.b64encode(value.encode()).decode()},
            },
        )
    assert controller.api_key(gated, dagster) == "sk-1"
    with pytest.raises(ClusterError, match='cannot get resource "secrets"'):
        dagster.get("Secret", "other", gated.namespace)
    # without `quality:` the printed RBAC grants no Secret at all
    plain = grant(kube, spec, dagster_rbac([spec], *DAGSTER))
    with pytest.raises(QualityError, match="cannot read the model's API key Secret"):
        controller.api_key(spec, plain)


@pytest.fixture
def wide_kube(tmp_path: Path) -> Iterator[Kube]:
    """Six nodes of 4 GPUs: a stable group of two nodes, a canary group, one to spare."""
    nodes = tuple(NodeSpec(f"gpu-node-{n}", gpus=4) for n in range(1, 7))
    with running_kube(tmp_path / "wide", nodes) as started:
        yield started


def release_promote_rollback_groups(run: Lifecycle) -> None:
    """First release, a canary that cannot pull its image rolled back, a good canary
    promoted, an aborted canary — each release a LeaderWorkerSet."""
    spec = run.spec
    first, missing = release(spec, 1), Release(spec, COMMIT, "registry.example.com/nowhere:1")
    run.first_release(first)
    assert run.wait(run.workload_name(first.release_id)).phase == "complete"
    run.start_canary(missing)
    assert run.wait(run.workload_name(missing.release_id), timeout=60).phase == "stalled"
    assert run.rollback(timeout=120).phase == "complete"
    good = release(spec, 2)
    run.start_canary(good)
    assert run.wait(run.workload_name(good.release_id), timeout=120).phase == "complete"
    assert run.promote(timeout=120).phase == "complete"
    run.start_canary(release(spec, 3))
    run.abort()
    history = run.history.read()
    assert (history.stable, history.canary) == (good.release_id, None)
    assert {w["kind"] for w in run.workloads()} == {"LeaderWorkerSet"}


def test_a_multi_node_model_releases_with_exactly_the_printed_rbac(
    wide_kube: Kube, spec: ReleaseSpec
) -> None:
    wide = two_nodes_a_replica(spec, replicas=1)
    run = Lifecycle(grant(wide_kube, wide, dagster_rbac([wide], *DAGSTER)), wide, poll_seconds=0.2)
    release_promote_rollback_groups(run)


def test_without_its_leaderworkerset_rule_a_multi_node_release_is_forbidden(
    wide_kube: Kube, spec: ReleaseSpec
) -> None:
    wide = two_nodes_a_replica(spec, replicas=1)
    objects = without(
        dagster_rbac([wide], *DAGSTER), "Role", lambda r: "leaderworkersets" in r["resources"]
    )
    run = Lifecycle(grant(wide_kube, wide, objects), wide, poll_seconds=0.2)
    with pytest.raises(ClusterError) as denied:
        run.first_release(release(wide, 1))
    assert 'cannot patch resource "leaderworkersets" in API group "leaderworkerset.x-k8s.io"' in (
        str(denied.value)
    )


def test_only_a_multi_node_model_is_granted_leaderworkersets(spec: ReleaseSpec) -> None:
    def lws_rules(model: ReleaseSpec) -> list[dict[str, Any]]:
        role = next(o for o in dagster_rbac([model], *DAGSTER) if o["kind"] == "Role")
        return [r for r in role["rules"] if "leaderworkerset.x-k8s.io" in r["apiGroups"]]

    assert lws_rules(spec) == []
    (rule,) = lws_rules(two_nodes_a_replica(spec, replicas=1))
    assert rule["resources"] == ["leaderworkersets", "leaderworkersets/scale"]


def without(objects: list[dict[str, Any]], kind: str, match: Any) -> list[dict[str, Any]]:
    """`objects` with the first rule of `kind` for which `match(rule)` holds removed."""
    trimmed = copy.deepcopy(objects)
    role = next(o for o in trimmed if o["kind"] == kind)
    rule = next(r for r in role["rules"] if match(r))
    role["rules"].remove(rule)
    return trimmed


@pytest.mark.parametrize(
    ("kind", "match", "message"),
    [
        (
            "ClusterRole",
            lambda r: r["verbs"] == ["create"],
            'cannot create resource "persistentvolumes" in API group "" at the cluster scope',
        ),
        (
            "Role",
            lambda r: "deployments" in r["resources"],
            'cannot patch resource "deployments" in API group "apps" in the namespace',
        ),
        (
            "Role",
            lambda r: "configmaps" in r["resources"],
            'cannot patch resource "persistentvolumeclaims" in API group "" in the namespace',
        ),
    ],
    ids=["pv-create", "deployments", "services-configmaps-claims"],
)
def test_removing_one_rule_fails_the_release_with_a_403(
    kube: Kube, spec: ReleaseSpec, kind: str, match: Any, message: str
) -> None:
    objects = without(dagster_rbac([spec], *DAGSTER), kind, match)
    run = Lifecycle(grant(kube, spec, objects), spec)
    with pytest.raises((ClusterError, client.ApiException)) as denied:
        release_promote_rollback(run)
    text = str(denied.value) + str(getattr(denied.value, "body", ""))
    assert "forbidden" in text and message in text, text
