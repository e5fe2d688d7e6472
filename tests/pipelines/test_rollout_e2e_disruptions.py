"""End to end, the scenarios that stop Prometheus or the Dagster daemon: in a world of their
own (cluster, Hub, Prometheus, daemon; the harness of test_rollout_e2e.py), one at a time, so
that what they stop is only theirs — scripts/test.sh runs this module beside that one.

- Prometheus down mid-gate: the gate holds (an error is never a pass) and resumes.
- The daemon restarted with its sensor's cursor deleted: the decision is re-read from the
  cluster and asking for the same run again launches nothing.
- Two rollouts of one model queued while the daemon is down run one at a time; another
  model's is not held up behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from sandbox.prometheus import PrometheusMissing
from tests.pipelines.orchestra import (
    EMULATOR,
    SUCCESS,
    Orchestra,
    emulated_spec,
    orchestra_world,
    wait_for,
)

pytestmark = [pytest.mark.late, pytest.mark.daemon]

MODELS = [
    emulated_spec("e2e-blip", gate={"required_passes": 3}),
    emulated_spec("e2e-restart", gate={"required_passes": 4}),
    emulated_spec("e2e-queue"),
    emulated_spec("e2e-other"),
]
INSTALLED_FIRST = ["e2e-blip", "e2e-restart", "e2e-other"]  # e2e-queue: the queue test's


@pytest.fixture(scope="module")
def orchestra(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Orchestra]:
    try:
        with orchestra_world(
            tmp_path_factory.mktemp("e2e-disruptions"), tiny_model_dir, MODELS, INSTALLED_FIRST
        ) as running:
            yield running
    except PrometheusMissing as missing:
        pytest.skip(str(missing))


def test_prometheus_down_during_the_gate_holds_and_the_gate_resumes_when_it_returns(
    orchestra: Orchestra,
) -> None:
    prometheus = orchestra.world.prometheus
    assert prometheus is not None
    run_id = orchestra.rollout("e2e-blip", image=f"{EMULATOR}:healthy-v2")
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    canary = orchestra.history("e2e-blip").canary
    wait_for(
        lambda: orchestra.deployment("e2e-blip", canary).status.available_replicas,
        60,
        "the canary to be ready",
    )
    prometheus.stop()
    try:
        held = wait_for(
            lambda: [
                e
                for e in orchestra.gate_evaluations("e2e-blip")
                if e["release_id"] == canary and e["phase"] == "Holding"
            ],
            90,
            "the gate to hold while Prometheus is down",
        )
        assert held[0]["window"] == "Error" and not held[0]["passed"]
        assert "prometheus" in held[0]["measurements"]
        assert not orchestra.runs("e2e_blip_promote") and not orchestra.runs("e2e_blip_rollback")
        assert orchestra.history("e2e-blip").canary == canary
    finally:
        prometheus.restart()
    promote = wait_for(
        lambda: orchestra.runs("e2e_blip_promote"), 120, "the gate to resume and promote"
    )[0]
    assert orchestra.wait_run(promote.run_id).status == SUCCESS, orchestra.errors(promote.run_id)
    assert orchestra.history("e2e-blip").stable == canary
    assert not orchestra.runs("e2e_blip_rollback")


def test_a_restarted_daemon_with_no_cursor_decides_the_same_and_launches_one_run(
    orchestra: Orchestra,
) -> None:
    run_id = orchestra.rollout("e2e-restart", image=f"{EMULATOR}:healthy-v2")
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    canary = orchestra.history("e2e-restart").canary
    record = wait_for(
        lambda: (r := orchestra.record("e2e-restart")) and r.passes >= 1 and r,
        90,
        "a first passing window",
    )
    orchestra.restart_daemon(reset_cursor_of="e2e_restart_gate")
    after = orchestra.record("e2e-restart")
    assert after.passes >= record.passes or after.phase.value == "Promoting"  # kept in the cluster
    promote = wait_for(
        lambda: orchestra.runs("e2e_restart_promote"), 120, "the promotion after the restart"
    )[0]
    assert orchestra.wait_run(promote.run_id).status == SUCCESS, orchestra.errors(promote.run_id)
    # the decision is re-read from the cluster, and asking for the same run again is a no-op
    ticks_before = len(orchestra.sensor_ticks("e2e_restart_gate"))
    orchestra.restart_daemon(reset_cursor_of="e2e_restart_gate")
    wait_for(
        lambda: len(orchestra.sensor_ticks("e2e_restart_gate")) >= ticks_before + 2,
        60,
        "two more gate ticks",
    )
    assert len(orchestra.runs("e2e_restart_promote")) == 1
    assert orchestra.history("e2e-restart").stable == canary


def test_two_rollouts_of_one_model_run_one_at_a_time(orchestra: Orchestra) -> None:
    # both are in the queue before the daemon looks at it (so neither can finish first)
    orchestra.daemon.stop()
    first = orchestra.rollout("e2e-queue")
    second = orchestra.rollout("e2e-queue")
    other = orchestra.rollout("e2e-other")  # another model is not held up by them
    assert {orchestra.run(r).status for r in (first, second, other)} == {dg.DagsterRunStatus.QUEUED}
    orchestra.restart_daemon()
    for run_id in (first, second, other):
        assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    spans = sorted(orchestra.run_times(r) for r in (first, second))
    assert spans[1][0] >= spans[0][1], f"the two rollouts overlapped: {spans}"
    other_start, _ = orchestra.run_times(other)
    assert other_start < spans[1][0], "the other model's rollout waited behind them"
