"""End to end, when the daemon or Prometheus goes away: the gate holds while Prometheus is
down and resumes when it returns; a daemon restarted with no sensor cursor decides the same
from the cluster and launches the promotion once; the run queue runs one rollout of a model at
a time, another model's beside them.

Each scenario stops something every model's gate depends on, so they have a world of their
own (tests/pipelines/orchestra.py: the sandbox, the code location served once, the real
daemon) and go one at a time, while scripts/test.sh runs test_rollout_e2e.py's scenarios in
their world beside them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from sandbox.cluster.cluster import NodeSpec
from tests.pipelines.orchestra import EMULATOR, Orchestra, emulated_spec, orchestrated, wait_for

pytestmark = [pytest.mark.late, pytest.mark.daemon]

NODES = tuple(NodeSpec(f"gpu-node-{i}", gpus=4) for i in range(1, 3))
SUCCESS = dg.DagsterRunStatus.SUCCESS
MODELS = [
    emulated_spec("e2e-blip", gate={"required_passes": 3}),
    emulated_spec("e2e-restart", gate={"required_passes": 4}),
    emulated_spec("e2e-queue"),
    emulated_spec("e2e-other"),
]
# e2e-queue's first releases are the queue test's two rollouts
INSTALLED_BY_LIBRARY = ("e2e-blip", "e2e-restart", "e2e-other")


@pytest.fixture(scope="module")
def orchestra(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Orchestra]:
    with orchestrated(
        tmp_path_factory.mktemp("e2e-disruptions"),
        tiny_model_dir,
        NODES,
        MODELS,
        installed_by_library=INSTALLED_BY_LIBRARY,
    ) as running:
        yield running


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
