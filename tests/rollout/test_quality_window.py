"""How the controller folds the quality gate into a judged window: measured once per canary
and carried into later windows, an unmeasurable track is an Error measured again."""

from __future__ import annotations

from pathlib import Path

from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.history import History
from llm_rollout.monitoring.gate import Measurement, Outcome, Verdict
from llm_rollout.rollout.controller import with_quality
from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import Kube

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
