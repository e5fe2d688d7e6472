"""`llm-rollout plan`: what a user sees before a release touches the cluster, against the
sandbox API server through the real `kubernetes` client."""

from __future__ import annotations

import json

from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.release import Release
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import Kube

COMMIT, NEXT_COMMIT = "c" * 40, "d" * 40


def plan(kube: Kube, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["plan", str(DEMO_SPEC), "--kubeconfig", str(kube.cluster.kubeconfig), *args]
    )
    return result.exit_code, result.output


def test_a_first_release_plans_every_object_as_created_and_applies_nothing(kube: Kube) -> None:
    code, output = plan(kube, "--weights-commit", COMMIT)
    assert code == 0, output
    spec = load_spec(DEMO_SPEC)
    assert f"+ Namespace/{spec.namespace}  create" in output
    assert f"+ Service/{spec.namespace}/{spec.name}  create (with namespace" in output
    assert "server-side dry run, nothing was applied" in output
    assert " to create, 0 to change, 0 unchanged" in output
    assert ClusterClient(kube.api).find("Namespace", spec.namespace) is None


def test_the_json_plan_of_a_new_release_lists_only_its_moves(kube: Kube) -> None:
    spec = load_spec(DEMO_SPEC)
    cluster = ClusterClient(kube.api)
    for obj in manifests.all_objects(Release(spec, COMMIT, "vllm/vllm-openai:v0.32.0")):
        cluster.apply(obj)
    code, output = plan(kube, "--weights-commit", NEXT_COMMIT, "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["ok"] is True
    assert document["weights_commit"] == NEXT_COMMIT
    assert document["release_id"] == Release(spec, NEXT_COMMIT, document["image"]).release_id
    moved = {o["kind"] for o in document["objects"] if o["action"] != "unchanged"}
    assert "Deployment" in moved and "Namespace" not in moved
    assert document["summary"]["unchanged"] >= 3  # namespace, volume, claim, service, …


def test_a_field_edited_by_hand_is_a_conflict_and_exit_1(kube: Kube) -> None:
    spec = load_spec(DEMO_SPEC)
    cluster = ClusterClient(kube.api)
    for obj in manifests.platform_objects(spec):
        cluster.apply(obj)
    service = manifests.service(spec)
    label = next(iter(service["metadata"]["labels"]))
    edited = {**service, "metadata": {**service["metadata"], "labels": {label: "by-hand"}}}
    del edited["spec"]
    ClusterClient(kube.api, field_manager="kubectl-edit").apply(edited, force=True)
    code, output = plan(kube, "--weights-commit", COMMIT)
    assert code == 1
    assert f"! Service/{spec.namespace}/{spec.name}  conflict" in output
    assert f"metadata.labels.{label} is owned by" in output or "is owned by" in output
