"""The router's rendered objects: what `render` writes for a model with `routing:`, and the
phase → traffic table the release controller writes into the router's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import manifests, router_manifests
from llm_rollout.k8s.pod_security import violations
from llm_rollout.k8s.release import Release
from llm_rollout.k8s.validation import validate_objects
from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.rollout.traffic import Traffic, traffic_for
from llm_rollout.router.config import parse_config
from llm_rollout.spec import ReleaseSpec, SpecFileError, load_spec
from llm_rollout.spec.rules import SpecRuleViolations
from tests.conftest import DEMO_SPEC

IMAGE = "registry.example.com/llm/llm-rollout-user-code:0.1.0"
CLOUD = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "api_key_secret": {"name": "openai-api-key"},
    }
}


def routed(**rollout: object) -> ReleaseSpec:
    document = load_spec(DEMO_SPEC).model_dump(mode="json")
    document["routing"] = {
        "image": IMAGE,
        "cloud": CLOUD,
        "routes": [{"name": "default", "fallback": "openai"}],
    }
    document["rollout"].update(rollout)
    return ReleaseSpec.model_validate(document)


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_render_adds_the_router_and_the_release_service_for_a_routed_model() -> None:
    spec = routed()
    release = Release(spec, "c" * 40, "vllm/vllm-openai:v0.32.0")
    objects = manifests.all_objects(release)
    validate_objects(objects)
    found = by_kind(objects)
    router, own = f"{spec.name}-router", f"{spec.name}-{release.release_id}"
    assert {("Deployment", router), ("Service", router), ("PodDisruptionBudget", router)} <= set(
        found
    )
    assert found[("Service", own)]["spec"]["selector"] == {
        "app.kubernetes.io/name": spec.name,
        names.RELEASE: release.release_id,
    }
    config = found[("ConfigMap", router)]["data"]["router.yaml"]
    loaded = parse_config(Path("router.yaml"), config.encode())
    assert [(r.id, r.weight, r.url) for r in loaded.releases] == [
        (release.release_id, 100, f"http://{own}.{spec.namespace}.svc:8000")
    ]


def test_without_routing_nothing_changes() -> None:
    spec = load_spec(DEMO_SPEC)
    release = Release(spec, "c" * 40, "vllm/vllm-openai:v0.32.0")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in manifests.all_objects(release)]
    assert not [k for k in kinds if "router" in k[1]]
    assert ("Service", f"{spec.name}-{release.release_id}") not in kinds


def test_the_router_pod_is_restricted_reads_its_config_volume_and_its_cloud_key() -> None:
    spec = routed()
    deployment = router_manifests.router_deployment(spec)
    pod = deployment["spec"]["template"]["spec"]
    assert violations(pod, "restricted") == []
    container = pod["containers"][0]
    assert container["command"][:4] == [
        "llm-rollout",
        "router",
        "serve",
        "/etc/llm-rollout/router.yaml",
    ]
    # a whole ConfigMap volume: the kubelet updates it; a subPath file never changes
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/llm-rollout", "readOnly": True}
    ]
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": f"{spec.name}-router"}}]
    assert container["env"] == [
        {
            "name": "LLM_ROLLOUT_CLOUD_OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "openai-api-key", "key": "api-key"}},
        }
    ]
    # no checksum annotation: new weights must not restart the router's pods
    assert "annotations" not in deployment["spec"]["template"]["metadata"]


def test_with_a_maximum_an_hpa_scales_the_router_and_owns_its_replicas() -> None:
    document = routed().model_dump(mode="json")
    document["routing"].update(replicas=2, max_replicas=6)
    spec = ReleaseSpec.model_validate(document)
    objects = by_kind(router_manifests.router_objects(spec))
    validate_objects(list(objects.values()))
    hpa = objects[("HorizontalPodAutoscaler", f"{spec.name}-router")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"]["name"] == f"{spec.name}-router"
    assert "replicas" not in objects[("Deployment", f"{spec.name}-router")]["spec"]
    fixed = by_kind(router_manifests.router_objects(routed()))
    assert fixed[("Deployment", f"{spec.name}-router")]["spec"]["replicas"] == 2
    assert not [kind for kind, _ in fixed if kind == "HorizontalPodAutoscaler"]
    document["routing"]["max_replicas"] = 1
    with pytest.raises(ValueError, match=r"fewer than replicas \(2\)"):
        ReleaseSpec.model_validate(document)


def test_the_router_is_outside_the_models_selectors_but_may_reach_its_pods() -> None:
    spec = routed()
    labels = router_manifests.router_deployment(spec)["spec"]["template"]["metadata"]["labels"]
    model_selector = dict(part.split("=") for part in names.model_selector(spec).split(","))
    assert not model_selector.items() <= labels.items()  # the lifecycle never scales it
    assert not names.service_selector(spec).items() <= labels.items()  # nor the model's PDB
    assert labels[names.CLIENT] == names.CLIENT_VALUE  # admitted by the NetworkPolicy


def test_a_spec_with_routing_but_no_router_image_is_refused(tmp_path: Path) -> None:
    text = DEMO_SPEC.read_text() + "routing:\n  routes: [{name: default}]\n"
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(SpecFileError, match=r"routing\.image"):
        load_spec(path)


@pytest.mark.parametrize(
    ("steps", "routing", "message"),
    [
        ([25, 5], True, "rising percentages between 1 and 99"),
        ([5, 5], True, "rising percentages"),
        ([5, 100], True, "between 1 and 99"),
        ([5, 25], False, "add a routing: section"),
    ],
)
def test_canary_steps_must_rise_and_need_a_router(
    steps: list[int], routing: bool, message: str
) -> None:
    document = routed().model_dump(mode="json")
    document["rollout"]["canary_steps"] = steps
    if not routing:
        document["routing"] = None
    with pytest.raises(SpecRuleViolations, match=message):
        ReleaseSpec.model_validate(document)


STABLE, CANARY = "rel-stable", "rel-canary"
SERVING = {STABLE: 66.67, CANARY: 33.33}


@pytest.mark.parametrize(
    ("phase", "strategy", "expected"),
    [
        (Phase.STARTING, "canary", Traffic({STABLE: 100})),
        (Phase.GATING, "canary", Traffic({STABLE: 75, CANARY: 25}, None, CANARY)),
        (
            Phase.HOLDING,
            "canary",
            Traffic({STABLE: 75, CANARY: 25}, f"holding {CANARY}: why", CANARY),
        ),
        (Phase.PROMOTING, "canary", Traffic(SERVING)),
        (Phase.BAKING, "canary", Traffic(SERVING)),
        (Phase.STARTING, "rolling", Traffic(SERVING)),
        (Phase.ROLLING_BACK, "canary", Traffic(SERVING, f"rolling back {CANARY}: why")),
        (Phase.ROLLED_BACK, "canary", Traffic({STABLE: 100})),
        (Phase.DONE, "canary", Traffic({STABLE: 100})),
    ],
)
def test_each_phase_tells_the_router(phase: Phase, strategy: str, expected: Traffic) -> None:
    record = RolloutRecord(release_id=CANARY, phase=phase, reason="why", strategy=strategy)
    assert traffic_for(routed(canary_weight=25), record, STABLE, SERVING) == expected


def test_a_stepped_canary_gets_its_current_step() -> None:
    spec = routed(canary_steps=[5, 25, 50])
    for step, share in ((0, 5), (1, 25), (2, 50)):
        record = RolloutRecord(release_id=CANARY, phase=Phase.GATING, step=step)
        assert traffic_for(spec, record, STABLE, {}).weights == {STABLE: 100 - share, CANARY: share}


def test_while_nothing_serves_the_stable_release_keeps_everything() -> None:
    record = RolloutRecord(release_id=CANARY, phase=Phase.PROMOTING)
    assert traffic_for(routed(), record, STABLE, {}) == Traffic({STABLE: 100})
