"""How the controller folds the quality gate into a judged window: measured once per canary
and carried into later windows, an unmeasurable track is an Error measured again."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests

from llm_rollout.k8s import labels as names
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.history import History
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.monitoring.gate import Measurement, Outcome, Verdict
from llm_rollout.monitoring.quality import QualityError
from llm_rollout.rollout.controller import api_key, ready_pod_url, with_quality
from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import EMULATOR_IMAGE, Kube

PASSING = Verdict(
    Outcome.PASS,
    "every measurement within limits",
    [Measurement("ttft_p99", 0.1, 0.1, "≤ 2s", Outcome.PASS, "within limits")],
)


def quality_spec(tmp_path: Path, **quality: object) -> ReleaseSpec:
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    demo = load_spec(DEMO_SPEC)
    return ReleaseSpec.model_validate(
        {**demo.model_dump(), "quality": {"prompts": str(golden), **quality}}
    )


def test_a_failed_quality_measurement_is_carried_into_every_later_window(
    kube: Kube, tmp_path: Path
) -> None:
    spec = quality_spec(tmp_path)
    stored = [["agreement", 0.5, 1.0, "≥ 0.9", "Fail", "fr: differs from token 0"]]
    record = RolloutRecord("rel-new", Phase.GATING, quality=stored)
    verdict, rows = with_quality(
        spec, ClusterClient(kube.api), record, History([], "rel-old", "rel-new"), PASSING
    )
    assert verdict.window is Outcome.FAIL and "agreement" in verdict.reason
    assert rows == stored  # nothing was measured again
    carried = next(m for m in verdict.measurements if m.name == "agreement")
    assert "measured once for this canary" in carried.reason


def test_a_canary_without_a_ready_pod_is_an_error_measured_again(
    kube: Kube, tmp_path: Path
) -> None:
    spec = quality_spec(tmp_path)
    kube.namespace(spec.namespace)
    record = RolloutRecord("rel-new", Phase.GATING)
    verdict, rows = with_quality(
        spec, ClusterClient(kube.api), record, History([], "rel-old", "rel-new"), PASSING
    )
    assert verdict.window is Outcome.ERROR
    assert "no ready canary pod of rel-new" in verdict.reason
    assert rows == []  # the next window measures again


def test_the_gate_sends_the_models_api_key_to_pods_that_require_it(
    kube: Kube, tmp_path: Path
) -> None:
    """Pods of a model with the Secret '<model>-api-key' refuse requests without it (vLLM
    reads VLLM_API_KEY; here the emulated pods do the same): the gate reads the Secret and
    measures, where it used to get 401 and call the window an Error."""
    spec = quality_spec(tmp_path)
    cluster = ClusterClient(kube.api)
    kube.namespace(spec.namespace)
    key = "sk-gate-test"
    kube.core.create_namespaced_secret(
        spec.namespace,
        {
            "metadata": {"name": names.api_key_secret_name(spec)},
            "data": {names.API_KEY_SECRET_KEY: base64.b64encode(key.encode()).decode()},
        },
    )
    lifecycle = Lifecycle(cluster, spec, poll_seconds=0.2)
    stable = Release(spec, "c" * 40, EMULATOR_IMAGE)
    lifecycle.first_release(stable)
    canary = Release(spec, "c" * 40, EMULATOR_IMAGE.replace(":1", ":2"))
    lifecycle.start_canary(canary)
    for release in (stable, canary):
        assert lifecycle.wait(lifecycle.workload_name(release.release_id), timeout=60).phase == (
            "complete"
        )
    pod = ready_pod_url(cluster, spec, "canary", canary.release_id)
    refused = requests.post(f"{pod}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert refused.status_code == 401  # the key is really required

    record = RolloutRecord(canary.release_id, Phase.GATING)
    history = History([], stable.release_id, canary.release_id)
    verdict, rows = with_quality(spec, cluster, record, history, PASSING)
    measured = {m.name: m for m in verdict.measurements}
    assert "quality" not in measured, verdict.table()  # no Error: both pods answered
    assert measured["prompt_identity"].outcome is Outcome.PASS, verdict.table()
    # each emulated pod names itself in its answer: they disagree, and it was measured
    assert measured["agreement"].outcome is Outcome.FAIL and rows, verdict.table()


def test_an_api_key_secret_that_is_not_base64_is_a_clear_error(kube: Kube, tmp_path: Path) -> None:
    spec = quality_spec(tmp_path)
    kube.namespace(spec.namespace)
    kube.core.create_namespaced_secret(
        spec.namespace,
        {"metadata": {"name": names.api_key_secret_name(spec)}, "data": {"api-key": "***"}},
    )
    with pytest.raises(QualityError, match="not base64"):
        api_key(spec, ClusterClient(kube.api))
