"""`python -m sandbox demo --headless`: the loop with real vLLM pods, as a newcomer runs it,
in one world (each vLLM pod takes a minute or more to load on this machine): a good release
canaried and promoted under chat traffic through the model's router, which gives the gated
canary its weight (stable never below its replicas, no request failed, every quality
measurement identical to stable's); a subtly bad one — one layer's weights changed, every
request 200 and fast — rolled back by the output-quality gate alone, every other measurement
passing, its gate check showing the prompts whose answers changed; then a stuck one rolled
back on its own, the router sending requests to its "cloud" stand-in while the model is held
or rolling back. This is the real-vLLM end-to-end test of the release loop;
tests/cli/test_demo_browser.py launches the subtle one from the Dagster UI. The demo's *bad*
revision (a chat template rejecting the traffic) takes the same path as the subtle one to its
rollback; what only a real server shows of it — vLLM's 400s failing the gate's success rate —
is tests/monitoring/test_real_vllm_gate.py's, on the session's warm vLLM pair (here it cost
~140 s of CI for no code path of its own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sandbox.vllm_process import VllmNotInstalled, vllm_python
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.real_vllm  # scripts/test.sh runs these in their own lane

DEMO_TIMEOUT_SECONDS = 2400


def test_the_headless_demo_promotes_a_good_release_and_rolls_back_a_subtle_and_a_stuck_one(
    tmp_path: Path,
) -> None:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(f"real vLLM is not installed here: {missing}")
    folder = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "sandbox", "demo"),
            "--headless",
            "--dir",
            str(folder),
            *("--scenario", "good", "--scenario", "subtle", "--scenario", "stuck"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for scenario in ("good", "subtle", "stuck"):
        assert f"PASS {scenario}" in output, output[-6000:]
    assert "pass/fail/err" in output  # the live table
    assert "sending chat traffic through its router" in output
    assert "answered by the cloud" in output  # the router's fallback, counted per scenario

    with dg.DagsterInstance.from_config(str(folder / "dagster-home")) as instance:
        runs = {
            status: [r.job_name for r in instance.get_runs(dg.RunsFilter(statuses=[status]))]
            for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        }
        rollbacks = {
            r.tags["llm-rollout/release"]: str(r.run_config)
            for r in instance.get_runs(dg.RunsFilter(job_name="demo_tiny_rollback"))
        }
        key = dg.AssetCheckKey(dg.AssetKey(["demo_tiny", "release"]), "gate")
        evaluations = [
            r.event.dagster_event.event_specific_data  # type: ignore[union-attr]
            for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
        ]
    assert not runs[dg.DagsterRunStatus.FAILURE]
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollback") == 2
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_promote") == 1
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollout") == 4
    promoted = [e for e in evaluations if e.metadata["phase"].value == "Promoting"]
    assert len(promoted) == 1 and promoted[0].passed
    assert promoted[0].metadata["canary_ttft_p99"].value > 0  # real vLLM histograms

    def windows(release: str) -> list[dict[str, str]]:
        return [
            e.metadata["outcomes"].value
            for e in evaluations
            if e.metadata["release_id"].value == release and "outcomes" in e.metadata
        ]

    quality = ("prompt_identity", "agreement", "logprob_drift")
    # the good release: its golden answers were stable's, in every window (no false failure)
    good = promoted[0].metadata["release_id"].value
    assert windows(good) and all(w[m] == "Pass" for w in windows(good) for m in quality)
    stuck = [release for release, config in rollbacks.items() if "stalled" in config]
    assert len(stuck) == 1, rollbacks
    (subtle,) = set(rollbacks) - set(stuck)
    assert "agreement" in rollbacks[subtle], rollbacks[subtle]
    # rolled back by the quality gate alone: in each failing window every latency, error and
    # KV-cache measurement passed, and the table shows the prompts whose answers changed
    failing = [e for e in evaluations if e.metadata["release_id"].value == subtle]
    failing = [e for e in failing if e.metadata["window"].value == "Fail"]
    assert len(failing) >= 3, [e.metadata["window_reason"].value for e in failing]
    for evaluation in failing:
        outcomes = evaluation.metadata["outcomes"].value
        assert outcomes["agreement"] == "Fail", outcomes
        others = {m: o for m, o in outcomes.items() if m not in (*quality, "expectations")}
        assert {"ttft_p99", "success_rate"} <= set(others), outcomes
        assert set(others.values()) == {"Pass"}, outcomes
    assert "differs from token" in failing[0].metadata["measurements"].value
