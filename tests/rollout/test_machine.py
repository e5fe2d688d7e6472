"""The release controller's transitions, as tables of plain values: the record, what was
observed, the judged window and the time in; the next record and the runs to launch out.
Every fault of the release-safety issue that the controller decides has a row here."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from llm_rollout.monitoring.gate import Measurement, Outcome, Verdict
from llm_rollout.rollout.machine import (
    ActionFailed,
    Facts,
    Installed,
    Override,
    Phase,
    Promoted,
    RolledBack,
    RolledOut,
    Rollout,
    RolloutRecord,
    RunState,
    Started,
    judgment_due,
    may_promote,
    report,
    tick,
)
from llm_rollout.rollout.store import DATA_KEY, parse
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC

T0 = 1_000_000.0
NEW, OLD = "rel-new", "rel-old"


@pytest.fixture
def spec() -> ReleaseSpec:
    demo = load_spec(DEMO_SPEC)
    gate = demo.gate.model_copy(
        update={
            "interval_seconds": 10,
            "window": "20s",
            "warmup_seconds": 15,
            "required_passes": 2,
            "failure_limit": 2,
            "consecutive_error_limit": 2,
            "max_gating_seconds": 300,
            "max_hold_seconds": 120,
            "bake_seconds": 60,
        }
    )
    rollout = demo.rollout.model_copy(update={"capacity_wait_seconds": 100})
    return demo.model_copy(update={"gate": gate, "rollout": rollout})


def window(outcome: Outcome, reason: str = "", stable_ttft: float = 0.1) -> Verdict:
    ttft = Measurement("ttft_mean", 0.1, stable_ttft, "", outcome, reason or outcome.value)
    return Verdict(outcome, reason or outcome.value, [ttft])


def record(phase: Phase, **changes: object) -> RolloutRecord:
    base = RolloutRecord(release_id=NEW, phase=phase, since=T0, previous=OLD, ready_at=T0)
    return replace(base, **changes)  # type: ignore[arg-type]


GATING_FACTS = Facts(stable=OLD, canary=NEW, canary_rollout=Rollout("complete"))


# -- starting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rollout", "waited", "phase", "reason"),
    [
        (Rollout("progressing", "0 of 1 updated"), 5, Phase.STARTING, "waiting for the canary"),
        (Rollout("complete"), 5, Phase.GATING, "canary ready"),
        (Rollout("stalled", "ImagePullBackOff: x"), 5, Phase.ROLLING_BACK, "ImagePullBackOff"),
        # an autoscaling GPU pool: a node may be joining
        (Rollout("stalled", "Unschedulable: 0/3", True), 50, Phase.STARTING, "capacity 50s"),
        (Rollout("stalled", "Unschedulable: 0/3", True), 101, Phase.ROLLING_BACK, "no capacity"),
    ],
)
def test_a_starting_canary(
    spec: ReleaseSpec, rollout: Rollout, waited: float, phase: Phase, reason: str
) -> None:
    start = record(Phase.STARTING, ready_at=0.0, waiting_since=T0 if waited > 5 else 0.0)
    result = tick(spec, start, replace(GATING_FACTS, canary_rollout=rollout), None, T0 + waited)
    assert result.record.phase is phase, result.record.reason
    assert reason in result.record.reason
    assert [launch.job for launch in result.launches] == (
        ["rollback"] if phase is Phase.ROLLING_BACK else []
    )


# -- gating ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "outcome", "phase", "launch"),
    [
        (record(Phase.GATING), Outcome.PASS, Phase.GATING, None),
        (record(Phase.GATING, passes=1), Outcome.PASS, Phase.PROMOTING, "promote"),
        (record(Phase.GATING, passes=1), Outcome.INCONCLUSIVE, Phase.GATING, None),
        (record(Phase.GATING, failures=1), Outcome.FAIL, Phase.ROLLING_BACK, "rollback"),
        (record(Phase.GATING, failures=1), Outcome.PASS, Phase.GATING, None),
        (record(Phase.GATING, errors=1), Outcome.ERROR, Phase.HOLDING, None),
        (record(Phase.HOLDING, errors=2), Outcome.ERROR, Phase.HOLDING, None),
        (record(Phase.HOLDING, errors=2), Outcome.PASS, Phase.GATING, None),
        (record(Phase.HOLDING, errors=2, passes=1), Outcome.PASS, Phase.PROMOTING, "promote"),
        (record(Phase.HOLDING, errors=2, failures=1), Outcome.FAIL, Phase.ROLLING_BACK, "rollback"),
    ],
)
def test_a_judged_window(
    spec: ReleaseSpec, before: RolloutRecord, outcome: Outcome, phase: Phase, launch: str | None
) -> None:
    result = tick(spec, before, GATING_FACTS, window(outcome), T0 + 60)
    assert result.record.phase is phase, result.record.reason
    assert [x.job for x in result.launches] == ([launch] if launch else [])
    assert result.record.evaluated_at == T0 + 60


def test_canary_steps_are_climbed_one_passing_window_each_then_the_passes_promote(
    spec: ReleaseSpec,
) -> None:
    rollout = spec.rollout.model_copy(update={"canary_steps": [5, 25, 50]})
    stepped = spec.model_copy(update={"rollout": rollout})
    current, seen = record(Phase.GATING), []
    outcomes = [Outcome.PASS, Outcome.INCONCLUSIVE, Outcome.PASS, Outcome.PASS, Outcome.PASS]
    for minute, outcome in enumerate(outcomes, start=1):
        current = tick(stepped, current, GATING_FACTS, window(outcome), T0 + 60 * minute).record
        seen.append((current.phase, current.step, current.passes))
    assert seen == [
        (Phase.GATING, 1, 0),  # 5 % passed: 25 %
        (Phase.GATING, 1, 0),  # no verdict: the step holds
        (Phase.GATING, 2, 0),  # 25 % passed: 50 %, the last step
        (Phase.GATING, 2, 1),
        (Phase.PROMOTING, 2, 0),  # required_passes (2) at the last step
    ]


def test_a_failing_window_never_climbs_a_step(spec: ReleaseSpec) -> None:
    rollout = spec.rollout.model_copy(update={"canary_steps": [5, 25]})
    stepped = spec.model_copy(update={"rollout": rollout})
    result = tick(stepped, record(Phase.GATING), GATING_FACTS, window(Outcome.FAIL), T0 + 60)
    assert (result.record.step, result.record.failures) == (0, 1)


def test_promotion_records_stables_numbers_as_the_bakes_baseline(spec: ReleaseSpec) -> None:
    result = tick(spec, record(Phase.GATING, passes=1), GATING_FACTS, window(Outcome.PASS), T0)
    assert result.record.baseline == {"ttft_mean": 0.1}
    assert result.record.decided_by == "gate"
    assert result.launches[0].run_key == f"{NEW}:promote:1"


@pytest.mark.parametrize(
    ("on_timeout", "phase"), [("rollback", Phase.ROLLING_BACK), ("hold", Phase.HOLDING)]
)
def test_a_canary_whose_metric_never_appears_is_not_gated_forever(
    spec: ReleaseSpec, on_timeout: str, phase: Phase
) -> None:
    spec = spec.model_copy(update={"gate": spec.gate.model_copy(update={"on_timeout": on_timeout})})
    never = window(
        Outcome.INCONCLUSIVE,
        "itl_p99: no data: the track reports no itl_p99 (vllm:inter_token_latency_seconds)",
    )
    early = tick(spec, record(Phase.GATING), GATING_FACTS, never, T0 + 299)
    assert early.record.phase is Phase.GATING
    late = tick(spec, early.record, GATING_FACTS, never, T0 + 301)
    assert late.record.phase is phase
    assert "no decision after 301s" in late.record.reason
    assert "inter_token_latency" in late.record.reason


@pytest.mark.parametrize(
    ("on_timeout", "phase", "launches"),
    [("rollback", Phase.ROLLING_BACK, ["rollback"]), ("hold", Phase.HOLDING, [])],
)
def test_prometheus_down_longer_than_the_hold_limit(
    spec: ReleaseSpec, on_timeout: str, phase: Phase, launches: list[str]
) -> None:
    spec = spec.model_copy(update={"gate": spec.gate.model_copy(update={"on_timeout": on_timeout})})
    held = record(Phase.HOLDING, since=T0 + 30, errors=2)
    down = window(Outcome.ERROR, "prometheus: cannot reach Prometheus")
    assert tick(spec, held, GATING_FACTS, down, T0 + 149).record.phase is Phase.HOLDING
    result = tick(spec, held, GATING_FACTS, down, T0 + 151)
    assert result.record.phase is phase
    assert "held 121s" in result.record.reason
    assert [x.job for x in result.launches] == launches


def test_a_canary_that_stops_serving_while_gated_is_rolled_back(spec: ReleaseSpec) -> None:
    crashing = replace(GATING_FACTS, canary_rollout=Rollout("stalled", "CrashLoopBackOff: vllm"))
    result = tick(spec, record(Phase.GATING, passes=1), crashing, None, T0)
    assert result.record.phase is Phase.ROLLING_BACK
    assert "CrashLoopBackOff" in result.record.reason


@pytest.mark.parametrize(
    ("phase", "evaluated", "now", "due"),
    [
        (Phase.GATING, 0.0, T0 + 34, False),  # warm-up 15 s + one 20 s window
        (Phase.GATING, 0.0, T0 + 35, True),
        (Phase.GATING, T0 + 40, T0 + 49, True),  # a tick a little early still judges
        (Phase.GATING, T0 + 40, T0 + 44, False),  # a second tick within the interval
        (Phase.STARTING, 0.0, T0 + 100, False),
        (Phase.PROMOTING, 0.0, T0 + 100, False),
        (Phase.BAKING, 0.0, T0 + 19, False),  # the first window holds only the new stable
        (Phase.BAKING, 0.0, T0 + 20, True),
    ],
)
def test_when_a_window_is_judged(
    spec: ReleaseSpec, phase: Phase, evaluated: float, now: float, due: bool
) -> None:
    assert judgment_due(spec, record(phase, evaluated_at=evaluated), now) is due


# -- promoting, baking, rolling back ----------------------------------------------------


@pytest.mark.parametrize(
    ("run", "phase", "launch"),
    [
        (RunState.NONE, Phase.PROMOTING, f"{NEW}:promote:1"),  # (re)asked: the key dedups
        (RunState.ACTIVE, Phase.PROMOTING, None),
        (RunState.FAILED, Phase.ROLLING_BACK, f"{NEW}:rollback:1"),  # GPUs gone, run killed
    ],
)
def test_a_promotion_in_flight(
    spec: ReleaseSpec, run: RunState, phase: Phase, launch: str | None
) -> None:
    facts = replace(GATING_FACTS, run=run, run_error="run 1234 ended FAILURE")
    result = tick(spec, record(Phase.PROMOTING, attempt=1), facts, None, T0)
    assert result.record.phase is phase
    assert [x.run_key for x in result.launches] == ([launch] if launch else [])


def test_a_promotion_that_failed_midway_is_rolled_back_to_the_previous_stable(
    spec: ReleaseSpec,
) -> None:
    promoting = record(Phase.PROMOTING, attempt=1)
    failed = report(spec, promoting, ActionFailed(NEW, "InsufficientGpus: 0 free", "promote"), T0)
    assert failed.phase is Phase.ROLLING_BACK
    assert "InsufficientGpus" in failed.reason and OLD in failed.reason


def test_a_rollback_that_fails_is_retried_under_a_new_run_key(spec: ReleaseSpec) -> None:
    rolling_back = record(Phase.ROLLING_BACK, attempt=1)
    facts = Facts(stable=OLD, canary=NEW, run=RunState.FAILED)
    result = tick(spec, rolling_back, facts, None, T0)
    assert result.record.phase is Phase.ROLLING_BACK
    assert [x.run_key for x in result.launches] == [f"{NEW}:rollback:2"]


@pytest.mark.parametrize(
    ("before", "outcome", "now", "phase"),
    [
        (record(Phase.BAKING), Outcome.PASS, T0 + 30, Phase.BAKING),
        (record(Phase.BAKING), Outcome.PASS, T0 + 61, Phase.DONE),
        (record(Phase.BAKING, failures=1), Outcome.FAIL, T0 + 30, Phase.ROLLING_BACK),
        (record(Phase.BAKING, failures=1), Outcome.FAIL, T0 + 90, Phase.ROLLING_BACK),
        (record(Phase.BAKING), Outcome.ERROR, T0 + 61, Phase.BAKING),  # not Done unmeasured
        (record(Phase.BAKING), Outcome.INCONCLUSIVE, T0 + 61, Phase.DONE),
    ],
)
def test_the_bake_after_promotion(
    spec: ReleaseSpec, before: RolloutRecord, outcome: Outcome, now: float, phase: Phase
) -> None:
    result = tick(spec, before, Facts(stable=NEW), window(outcome), now)
    assert result.record.phase is phase, result.record.reason
    if phase is Phase.ROLLING_BACK:
        assert "the bake caught" in result.record.reason
        assert [x.job for x in result.launches] == ["rollback"]


@pytest.mark.parametrize(
    ("before", "event", "phase"),
    [
        (RolloutRecord(), Started(NEW, OLD, "canary"), Phase.STARTING),
        (RolloutRecord(), Installed(NEW), Phase.DONE),
        (record(Phase.STARTING, strategy="rolling"), RolledOut(NEW), Phase.BAKING),
        (
            record(Phase.STARTING, strategy="rolling"),
            ActionFailed(NEW, "x", "start"),
            Phase.ROLLING_BACK,
        ),
        # a run-failure report that arrives after the rollback began is stale
        (record(Phase.ROLLING_BACK), ActionFailed(NEW, "x", "start"), Phase.ROLLING_BACK),
        (record(Phase.PROMOTING), Promoted(NEW), Phase.BAKING),
        (record(Phase.ROLLING_BACK), RolledBack(NEW), Phase.ROLLED_BACK),
        (record(Phase.ROLLING_BACK), RolledBack("rel-other"), Phase.ROLLING_BACK),  # stale run
        (record(Phase.GATING), Override(NEW, "promote", "run ab", "launch day"), Phase.PROMOTING),
        (record(Phase.DONE), Override(NEW, "rollback", "run ab", "users"), Phase.ROLLING_BACK),
    ],
)
def test_what_jobs_and_people_report(
    spec: ReleaseSpec, before: RolloutRecord, event: object, phase: Phase
) -> None:
    after = report(spec, before, event, T0 + 5)  # type: ignore[arg-type]
    assert after.phase is phase
    if isinstance(event, Override):
        assert after.override == f"run ab: {event.reason}" and event.reason in after.reason


@pytest.mark.parametrize(
    ("before", "canary", "allowed"),
    [
        (record(Phase.PROMOTING), NEW, True),
        (record(Phase.STARTING), NEW, False),  # Materialize all: release, then live at once
        (record(Phase.GATING, passes=1), NEW, False),
        (record(Phase.ROLLING_BACK), NEW, False),
        (record(Phase.PROMOTING), "rel-another", False),  # the decision was for another release
        (record(Phase.PROMOTING), None, False),
    ],
)
def test_only_the_stored_decision_for_that_release_promotes(
    before: RolloutRecord, canary: str | None, allowed: bool
) -> None:
    assert (may_promote(before, canary) is None) is allowed


def test_a_canary_the_record_does_not_know_is_taken_up_from_the_start(spec: ReleaseSpec) -> None:
    done = RolloutRecord(release_id=OLD, phase=Phase.DONE, since=T0)
    facts = Facts(stable=OLD, canary=NEW, canary_rollout=Rollout("progressing"))
    result = tick(spec, done, facts, None, T0)
    assert (result.record.release_id, result.record.phase) == (NEW, Phase.STARTING)
    assert result.record.previous == OLD


@pytest.mark.parametrize("phase", list(Phase))
def test_a_restarted_daemon_decides_the_same_in_every_phase(
    spec: ReleaseSpec, phase: Phase
) -> None:
    # what a restarted daemon has is the record as the cluster stores it (JSON in the
    # ConfigMap): every field must come back as it was, so the next tick is the same
    stored = record(
        phase,
        attempt=1,
        evaluated_at=T0,
        passes=1,
        baseline={"ttft_mean": 0.1},
        quality=[["agreement", 1.0, 1.0, "≥ 0.9", "Pass", "within limits"]],
    )
    config_map = {"data": {DATA_KEY: json.dumps(asdict(stored))}}
    reread = parse(config_map)
    assert reread == stored
    facts = replace(GATING_FACTS, run=RunState.ACTIVE)
    assert tick(spec, reread, facts, None, T0 + 30) == tick(spec, stored, facts, None, T0 + 30)
