"""`llm-rollout demo --headless`: the loop with real vLLM pods, as a newcomer runs it — a bad
release and a stuck one rolled back on their own, in one world (each vLLM pod takes a minute
to load on this machine). The good scenario's promotion under load is exercised by
tests/pipelines/test_rollout_real_vllm.py; running it here too would add a third and fourth
vLLM pod to a two-core machine and ten minutes to CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sandbox.vllm_process import VllmNotInstalled, vllm_python
from tests.conftest import REPO_ROOT

DEMO_TIMEOUT_SECONDS = 2400


def test_the_headless_demo_rolls_back_a_bad_and_a_stuck_release(
    tmp_path: Path,
) -> None:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(f"real vLLM is not installed here: {missing}")
    folder = tmp_path / "demo"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "llm-rollout"),
            "demo",
            "--headless",
            "--dir",
            str(folder),
            *("--scenario", "bad", "--scenario", "stuck"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for scenario in ("bad", "stuck"):
        assert f"PASS {scenario}" in output, output[-6000:]
    assert "pass/fail/err" in output  # the live table

    with dg.DagsterInstance.from_config(str(folder / "dagster-home")) as instance:
        runs = {
            status: [r.job_name for r in instance.get_runs(dg.RunsFilter(statuses=[status]))]
            for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        }
        key = dg.AssetCheckKey(dg.AssetKey(["demo_tiny", "release"]), "gate")
        evaluations = [
            r.event.dagster_event.event_specific_data  # type: ignore[union-attr]
            for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
        ]
    assert not runs[dg.DagsterRunStatus.FAILURE]
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollback") == 2
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_promote") == 0
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollout") == 3
    failed = [e for e in evaluations if e.metadata["decision"].value == "rollback"]
    assert failed and "success_rate" in str(failed[0].metadata["measurements"].value)
