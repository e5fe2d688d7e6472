"""Rendered manifests: the seed's lessons, and schema-valid for Kubernetes 1.29-1.33."""

from __future__ import annotations

from typing import Any

import pytest

from llm_rollout.k8s import manifests
from llm_rollout.k8s.release import Release, default_image
from llm_rollout.k8s.validation import SUPPORTED_VERSIONS, schema_problems
from llm_rollout.k8s.vllm_args import vllm_args
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import SPEC_FILES

SPECS = {name: load_spec(SPEC_FILES[name]) for name in ("deepseek-v4", "demo-tiny")}


def release_of(spec: ReleaseSpec) -> Release:
    return Release(spec, "a" * 40, default_image(spec))


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", SPECS)
def test_every_object_validates_for_every_supported_version(name: str) -> None:
    release = release_of(SPECS[name])
    objects = manifests.all_objects(release)
    # the release's own Deployment, no canary: a canary is a step the controller takes, and
    # applying render's output must not start an extra GPU pod
    assert [o["kind"] for o in objects].count("Deployment") == 1
    assert schema_problems(objects, SUPPORTED_VERSIONS) == []


def test_the_deepseek_deployment_carries_the_seeds_lessons() -> None:
    spec = SPECS["deepseek-v4"]
    deployment = manifests.release_objects(release_of(spec))[0]
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # created at the autoscaler's minimum; the HPA (which moves with the stable release)
    # takes replicas over through /scale
    assert spec.autoscaling is not None
    assert deployment["spec"]["replicas"] == spec.autoscaling.min
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= spec.rollout.startup_budget_seconds
    )
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert env["HF_HUB_OFFLINE"] == "1"
    weights = next(m for m in container["volumeMounts"] if m["name"] == "weights")
    assert weights == {
        "name": "weights",
        "mountPath": "/models",
        "readOnly": True,
        "subPath": f"deepseek-ai--DeepSeek-V4/{'a' * 40}",
    }
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] > spec.serving.shutdown_timeout_seconds
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for key in ("name", "instance", "version", "component", "part-of", "managed-by"):
        assert f"app.kubernetes.io/{key}" in labels
    annotations = deployment["metadata"]["annotations"]
    assert annotations["llm-rollout.io/weights-commit"] == "a" * 40


def test_vllm_arguments_follow_the_version() -> None:
    spec = SPECS["deepseek-v4"]
    args = vllm_args(spec, "/models")
    assert args[0] == "/models"  # `vllm serve MODEL` since 0.9
    for flag, value in (
        ("--tensor-parallel-size", "2"),
        ("--max-model-len", "32768"),
        ("--gpu-memory-utilization", "0.92"),
        ("--served-model-name", "deepseek-v4"),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--enable-prefix-caching" in args
    assert args[-1] == "--trust-remote-code"
    old = spec.model_copy(
        update={"serving": spec.serving.model_copy(update={"vllm_version": "0.8.5"})}
    )
    assert vllm_args(old, "/models")[:2] == ["--model", "/models"]
    assert "--shutdown-timeout" in vllm_args(SPECS["demo-tiny"], "/models")


def test_each_release_has_its_own_deployment_behind_the_one_service() -> None:
    spec = SPECS["demo-tiny"]
    old, new = Release(spec, "a" * 40, "img:1"), Release(spec, "a" * 40, "img:2")
    service = manifests.service(spec)
    assert service["metadata"]["name"] != "vllm"
    deployments = [manifests.deployment(r, 1) for r in (old, new)]
    for release, deployment in zip((old, new), deployments, strict=True):
        assert deployment["metadata"]["name"] == f"demo-tiny-{release.release_id}"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # no track on the pods: promotion must not change the pod template
        assert "track" not in labels and "llm-rollout.io/track" not in labels
    assert deployments[0]["spec"]["selector"] != deployments[1]["spec"]["selector"]


def test_a_recorded_two_deployment_release_converts_to_its_own_deployment() -> None:
    spec = SPECS["demo-tiny"]
    release = Release(spec, "a" * 40, "img:1")
    legacy = manifests.deployment(release, 2)
    legacy["metadata"]["name"] = "demo-tiny"
    legacy["metadata"]["labels"]["track"] = "stable"
    legacy["spec"]["selector"] = {
        "matchLabels": {"app.kubernetes.io/name": "demo-tiny", "track": "stable"}
    }
    legacy["spec"]["template"]["metadata"]["labels"]["track"] = "stable"
    converted = manifests.versioned(legacy, spec)
    assert converted == manifests.deployment(release, 2)
    assert manifests.versioned(converted, spec) == converted


def test_the_hpa_reads_the_adapter_metric() -> None:
    hpa = manifests.autoscaler(SPECS["deepseek-v4"], "rel-0123456789")
    assert hpa is not None
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "vllm_num_requests_waiting"
    assert metric["target"] == {"type": "AverageValue", "averageValue": "5"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_release_ids_are_stable_and_change_with_inputs() -> None:
    spec = SPECS["demo-tiny"]
    same = Release(spec, "a" * 40, "img:1")
    assert same.release_id == Release(spec, "a" * 40, "img:1").release_id
    assert same.release_id != Release(spec, "b" * 40, "img:1").release_id
    assert same.release_id != Release(spec, "a" * 40, "img:2").release_id
    # fields added later leave the ids of releases recorded before them as they were
    assert same.release_id == "rel-6b1b1a9cf0"


def test_the_specs_environment_variables_reach_the_vllm_container_and_make_a_new_release() -> None:
    spec = SPECS["demo-tiny"]
    batch_invariant = spec.model_copy(
        update={"serving": spec.serving.model_copy(update={"env": {"VLLM_BATCH_INVARIANT": "1"}})}
    )
    release = Release(batch_invariant, "a" * 40, "img:1")
    (container,) = manifests.deployment(release, 1)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VLLM_BATCH_INVARIANT"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert release.release_id != Release(spec, "a" * 40, "img:1").release_id


def test_rbac_grants_only_the_namespace_and_the_volume() -> None:
    objects = manifests.access(SPECS["deepseek-v4"])
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["metadata"]["namespace"] == "llm-serving"
    kinds = {kind for rule in role["rules"] for kind in rule["resources"]}
    assert "secrets" not in kinds and "nodes" not in kinds
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": ["llm-serving"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumes"],
            "resourceNames": ["llm-serving-deepseek-v4-weights"],
            "verbs": ["get", "patch", "update"],
        },
        # the first release creates the volume; RBAC cannot limit create by name
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create"]},
        # the GPU preflight counts free GPUs on the nodes: read-only, nothing else
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
    ]


def test_the_drain_uses_the_sleep_action_only_where_it_is_on_by_default() -> None:
    release = release_of(SPECS["demo-tiny"])
    # Kubernetes 1.29 (the default target: the oldest we support) has PodLifecycleSleepAction
    # alpha, off: the image's `sleep` binary waits instead
    oldest = container_of(manifests.deployment(release, 1))
    assert oldest["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}
    newer = container_of(manifests.deployment(release, 1, kubernetes_version="1.30.2"))
    assert newer["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
    for version in SUPPORTED_VERSIONS:
        objects = manifests.all_objects(release, kubernetes_version=version)
        assert schema_problems(objects, [version]) == []


def test_shutdown_timeout_is_passed_only_to_vllm_versions_that_have_it() -> None:
    spec = SPECS["demo-tiny"]

    def args_for(version: str) -> list[str]:
        serving = spec.serving.model_copy(update={"vllm_version": version})
        return vllm_args(spec.model_copy(update={"serving": serving}), "/models")

    # vllm-project/vllm#36666 re-landed the flag after v0.17; v0.18.0 is the first release
    # whose CLI reference lists it, and an unknown flag stops `vllm serve`
    for old in ("0.11.0", "0.14.1", "0.17.1"):
        assert "--shutdown-timeout" not in args_for(old)
    new = args_for("0.18.0")
    assert new[new.index("--shutdown-timeout") + 1] == str(spec.serving.shutdown_timeout_seconds)


def test_replicas_of_a_model_prefer_different_nodes() -> None:
    release = release_of(SPECS["deepseek-v4"])
    for replicas in (1, 2):  # a canary and a stable release alike: spread over the model
        pod = manifests.deployment(release, replicas)["spec"]["template"]
        assert pod["spec"]["topologySpreadConstraints"] == [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "deepseek-v4",
                        "app.kubernetes.io/part-of": "llm-rollout",
                    }
                },
            }
        ]
        selector = pod["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_without_restrict_ingress_no_network_policy_is_applied() -> None:
    # an upgrade must never start cutting off clients nobody labelled yet
    kinds = {o["kind"] for o in manifests.platform_objects(SPECS["deepseek-v4"])}
    assert "NetworkPolicy" not in kinds


def test_only_labelled_clients_and_prometheus_reach_the_pods() -> None:
    base = SPECS["deepseek-v4"]
    network = {"restrict_ingress": True, "client_namespaces": ["dagster"]}
    spec = type(base).model_validate({**base.model_dump(), "network": network})
    objects = manifests.platform_objects(spec)
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    assert schema_problems([policy]) == []
    assert policy["metadata"]["namespace"] == "llm-serving"
    pod_labels = manifests.deployment(release_of(spec), 1)["spec"]["template"]["metadata"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    client = {"llm-rollout.io/client": "true"}
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": client}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": client}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dagster"}}},
    ]
    role = next(o for o in manifests.access(spec) if o["kind"] == "Role")
    assert any("networkpolicies" in r["resources"] for r in role["rules"])


def test_the_api_key_comes_from_an_optional_secret() -> None:
    container = container_of(manifests.deployment(release_of(SPECS["demo-tiny"]), 1))
    key = next(e for e in container["env"] if e["name"] == "VLLM_API_KEY")
    assert key == {
        "name": "VLLM_API_KEY",
        "valueFrom": {
            "secretKeyRef": {"name": "demo-tiny-api-key", "key": "api-key", "optional": True}
        },
    }
    assert "--api-key" not in container["args"]  # never in the pod's args, which anyone reads


def test_a_multi_node_models_leaders_take_ray_traffic_from_its_workers() -> None:
    base = SPECS["deepseek-v4"]
    data = {**base.model_dump(), "network": {"restrict_ingress": True}}
    data["serving"] |= {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
    data["resources"] |= {"gpus": 8, "gpus_per_node": 4}
    spec = type(base).model_validate(data)
    policy = manifests.network_policy(spec)
    assert schema_problems([policy]) == []
    clients, ray = policy["spec"]["ingress"]
    assert clients["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert "ports" not in ray  # every port: Ray's are many, some random
    lws = manifests.workload(release_of(spec), 1)
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"]["labels"]
    (peer,) = ray["from"]
    assert peer["podSelector"]["matchLabels"].items() <= worker.items()
    # and a single-node model's policy has the clients' rule only
    assert (
        len(
            manifests.network_policy(base.model_copy(update={"network": spec.network}))["spec"][
                "ingress"
            ]
        )
        == 1
    )
