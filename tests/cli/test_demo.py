"""`python -m sandbox demo --headless`: the loop with real vLLM pods, as a newcomer runs it,
in one world (each vLLM pod takes a minute or more to load on this machine): a good release
canaried and promoted under chat traffic through the model's router, which gives the gated
canary its weight (stable never below its replicas, no request failed, every quality
measurement identical to stable's); then a stuck one rolled back on its own, the router
sending requests to its "cloud" stand-in while the model is held or rolling back. This is the
real-vLLM end-to-end test of the release loop. The subtly bad release — one layer's weights
changed, every request 200 and fast, rolled back by the output-quality gate alone — is
tests/cli/test_demo_browser.py's, launched from the Dagster UI into the same demo code, with
the same checks of every failing window (running it here too cost ~100 s of CI for no code
path of its own but the result line's, whose verdict tests/cli/test_demo_verdict.py tables).
The demo's *bad* revision (a chat template rejecting the traffic) takes the same path as the
subtle one to its rollback; what only a real server shows of it — vLLM's 400s failing the
gate's success rate — is tests/monitoring/test_real_vllm_gate.py's, on the session's warm
vLLM pair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sandbox.dagster_home import gate_evaluations
from sandbox.demo import GROUP, gate_windows
from sandbox.vllm_process import VllmNotInstalled, vllm_python
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.real_vllm  # scripts/test.sh runs these in their own lane

DEMO_TIMEOUT_SECONDS = 2400


def test_the_headless_demo_promotes_a_good_release_and_rolls_back_a_stuck_one(
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
            *("--scenario", "good", "--scenario", "stuck"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for scenario in ("good", "stuck"):
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
        promoted = [e for e in gate_evaluations(instance, GROUP) if e["phase"] == "Promoting"]
        assert len(promoted) == 1 and promoted[0]["passed"]
        good = [outcomes for _, outcomes in gate_windows(instance, promoted[0]["release_id"])]
    assert not runs[dg.DagsterRunStatus.FAILURE]
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollback") == 1
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_promote") == 1
    assert runs[dg.DagsterRunStatus.SUCCESS].count("demo_tiny_rollout") == 3
    assert promoted[0]["canary_ttft_p99"] > 0  # real vLLM histograms

    quality = ("prompt_identity", "agreement", "logprob_drift")
    # the good release: its golden answers were stable's, in every window (no false failure)
    assert good and all(w[m] == "Pass" for w in good for m in quality)
    (stuck,) = rollbacks
    assert "stalled" in rollbacks[stuck], rollbacks
