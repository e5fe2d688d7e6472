"""Dagster on Kubernetes: what the Helm values and the production dagster.yaml imply is
schema-valid, least-privilege, and agrees with the local instance's run queue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from llm_rollout.k8s.dagster.scaleout import (
    INSTANCE,
    dagster_rbac,
    load_values,
    run_job,
    user_code_deployment,
)
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.spec import load_specs, spec_files
from tests.conftest import EXAMPLES_DIR, REPO_ROOT

SPECS = load_specs(spec_files(EXAMPLES_DIR))
HADOLINT = str(Path(sys.executable).parent / "hadolint")


def test_the_rbac_user_code_deployment_and_run_job_validate_against_kubernetes_schemas() -> None:
    values = load_values()
    objects = [*dagster_rbac(SPECS), user_code_deployment(values), run_job(values)]
    assert [str(p) for p in schema_problems(objects)] == []


def test_rbac_grants_nothing_outside_each_models_namespace_but_named_objects_and_reads() -> None:
    objects = dagster_rbac(SPECS, "dagster", "llm-rollout")
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]  # the chart makes it
    namespaces = {spec.namespace for spec in SPECS}
    for obj in objects:
        if obj["kind"] in ("Role", "RoleBinding"):
            assert obj["metadata"]["namespace"] in namespaces
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert obj["subjects"] == [
                {"kind": "ServiceAccount", "name": "llm-rollout", "namespace": "dagster"}
            ]
        if obj["kind"] == "Role":
            kinds = {k for rule in obj["rules"] for k in rule["resources"]}
            assert kinds == {
                "deployments", "deployments/scale", "replicasets", "pods", "pods/log", "events",
                "services", "configmaps", "persistentvolumeclaims", "horizontalpodautoscalers",
                "poddisruptionbudgets", "networkpolicies",
            }  # fmt: skip
            assert "secrets" not in kinds
        if obj["kind"] == "ClusterRole":
            for rule in obj["rules"]:
                writes = set(rule["verbs"]) - {"get", "list", "watch"}
                # cluster-wide: writes only to objects named in the rule; reads for the GPU
                # preflight only
                # (but `create`, which RBAC cannot limit by name, of PersistentVolumes)
                assert (
                    not writes
                    or rule.get("resourceNames")
                    or (writes == {"create"} and rule["resources"] == ["persistentvolumes"])
                ), rule
                assert (
                    rule.get("resourceNames")
                    or set(rule["resources"]) <= {"nodes", "pods"}
                    or rule["verbs"] == ["create"]
                )


def test_runs_use_the_service_account_the_rbac_binds_and_the_code_servers_image() -> None:
    values = load_values()
    job = run_job(values)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == values["global"]["serviceAccountName"] == "llm-rollout"
    deployment = user_code_deployment(values)
    assert (
        pod["containers"][0]["image"]
        == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == "8"
    assert {"name": "weights", "mountPath": "/models"} in pod["containers"][0]["volumeMounts"]


def test_helm_values_production_and_local_instances_share_the_per_model_deploy_limit() -> None:
    helm = load_values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    production = yaml.safe_load(INSTANCE.read_text())["run_coordinator"]["config"]
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_queue"]
    assert helm["tagConcurrencyLimits"] == production["tag_concurrency_limits"]
    assert production["tag_concurrency_limits"] == local["tag_concurrency_limits"]
    assert local["tag_concurrency_limits"][0]["key"] == "llm-rollout/deploy"


def test_the_user_code_dockerfile_passes_hadolint() -> None:
    lint = subprocess.run(
        [
            HADOLINT,
            "--failure-threshold",
            "info",
            str(REPO_ROOT / "deploy" / "user-code.Dockerfile"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_dagster_rbac_command_prints_valid_documents_for_every_model() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "llm-rollout"), "dagster-rbac", str(EXAMPLES_DIR),
         "--namespace", "orchestration"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents == dagster_rbac(SPECS, "orchestration", "llm-rollout")
    assert {d["kind"] for d in documents} == {
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
