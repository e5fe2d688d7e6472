"""The generated rules pass `promtool check rules`, and every alert has a `promtool test
rules` unit test that fires it and one that does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_rollout.monitoring.rules import rule_groups
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC, SPEC_FILES

SPEC = load_spec(DEMO_SPEC)  # TTFT SLO 2s, ITL 0.5s, success ≥ 0.99
POD = {
    "namespace": "llm-demo",
    "model": "demo-tiny",
    "release": "rel-1",
    "pod": "demo-tiny-canary-abc",
    "model_name": "tiny-llama",
    "engine": "0",
}
GROUP = {"namespace": "llm-demo", "model": "demo-tiny", "release": "rel-1"}

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed"
)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**POD, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in merged.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def histogram(name: str, bucket_with_all: str, buckets: list[str]) -> list[dict[str, str]]:
    """Ten observations a minute, all in the bucket `bucket_with_all` and above."""
    rows = []
    for le in [*buckets, "+Inf"]:
        full = le == "+Inf" or float(le) >= float(bucket_with_all)
        rows.append(series(f"{name}_bucket", "0+10x30" if full else "0+0x30", le=le))
    return rows


def phase_series(phase: str) -> dict[str, str]:
    """kube-state-metrics' series of the controller's record, in `phase` for 30 minutes."""
    return {
        "series": 'kube_configmap_labels{namespace="llm-demo",configmap="demo-tiny-rollout",'
        f'label_llm_rollout_io_phase="{phase}"}}',
        "values": "1x30",
    }


LATENCY_BUCKETS = ["0.1", "0.25", "0.5", "1.0", "2.5", "5.0"]
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]]] = {
    "VllmQueueDepthHigh": (
        [series("vllm:num_requests_waiting", "20x30")],
        [series("vllm:num_requests_waiting", "2x30")],
        {"namespace": "llm-demo", "severity": "warning"},
    ),
    "VllmKvCacheNearlyFull": (
        [series("vllm:kv_cache_usage_perc", "0.99x30")],
        [series("vllm:kv_cache_usage_perc", "0.5x30")],
        {"namespace": "llm-demo", "release": "rel-1", "severity": "warning"},
    ),
    "VllmTtftP99OverSlo": (
        histogram("vllm:time_to_first_token_seconds", "5.0", LATENCY_BUCKETS),
        histogram("vllm:time_to_first_token_seconds", "0.1", LATENCY_BUCKETS),
        {**GROUP, "severity": "critical"},
    ),
    "VllmItlP99OverSlo": (
        histogram("vllm:inter_token_latency_seconds", "1.0", LATENCY_BUCKETS),
        histogram("vllm:inter_token_latency_seconds", "0.1", LATENCY_BUCKETS),
        {**GROUP, "severity": "critical"},
    ),
    "VllmErrorRateHigh": (
        [
            series("http_requests_total", "0+100x30", handler="/v1/completions", status="2xx"),
            series("http_requests_total", "0+10x30", handler="/v1/completions", status="5xx"),
        ],
        [
            series("http_requests_total", "0+100x30", handler="/v1/completions", status="2xx"),
            series("http_requests_total", "0+0x30", handler="/v1/completions", status="5xx"),
        ],
        {"namespace": "llm-demo", "release": "rel-1", "severity": "critical"},
    ),
    "VllmPreempting": (
        [series("vllm:num_preemptions_total", "0+60x30")],
        [series("vllm:num_preemptions_total", "0+0x30")],
        {"namespace": "llm-demo", "release": "rel-1", "severity": "warning"},
    ),
    "VllmPodRestarting": (
        [
            {
                "series": 'kube_pod_container_status_restarts_total{namespace="llm-demo",'
                'pod="demo-tiny-abc",container="vllm"}',
                "values": "0+1x30",
            }
        ],
        [
            {
                "series": 'kube_pod_container_status_restarts_total{namespace="llm-demo",'
                'pod="demo-tiny-abc",container="vllm"}',
                "values": "0x30",
            }
        ],
        {
            "namespace": "llm-demo",
            "pod": "demo-tiny-abc",
            "container": "vllm",
            "severity": "warning",
        },
    ),
    "LlmRolloutStuck": (
        [
            {
                "series": 'kube_deployment_status_condition{namespace="llm-demo",'
                'deployment="demo-tiny-canary",condition="Progressing",status="false"}',
                "values": "1x30",
            }
        ],
        [
            {
                "series": 'kube_deployment_status_condition{namespace="llm-demo",'
                'deployment="demo-tiny-canary",condition="Progressing",status="false"}',
                "values": "0x30",
            }
        ],
        {
            "namespace": "llm-demo",
            "deployment": "demo-tiny-canary",
            "condition": "Progressing",
            "status": "false",
            "severity": "critical",
        },
    ),
    "LlmRolloutHolding": (
        [phase_series("Holding")],
        [phase_series("Gating")],
        {
            "namespace": "llm-demo",
            "configmap": "demo-tiny-rollout",
            "label_llm_rollout_io_phase": "Holding",
            "severity": "warning",
        },
    ),
    "LlmRolloutRollbackStuck": (
        [phase_series("RollingBack")],
        [phase_series("RolledBack")],
        {
            "namespace": "llm-demo",
            "configmap": "demo-tiny-rollout",
            "label_llm_rollout_io_phase": "RollingBack",
            "severity": "critical",
        },
    ),
}


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(yaml.safe_dump(rule_groups(SPEC), sort_keys=False))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", ["demo-tiny", "deepseek-v4"])
def test_rules_pass_promtool_check(name: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule_groups(load_spec(SPEC_FILES[name]))))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_cases() -> None:
    alerts = {r["alert"] for g in rule_groups(SPEC)["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == set(CASES)


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_and_stays_quiet(alert: str, rules_file: Path, tmp_path: Path) -> None:
    firing, quiet, labels = CASES[alert]
    annotations = next(
        r for g in rule_groups(SPEC)["groups"] for r in g["rules"] if r.get("alert") == alert
    )["annotations"]
    expected: dict[str, Any] = {
        "exp_labels": {**labels, "model": "demo-tiny"},
        "exp_annotations": annotations,
    }
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": firing,
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": alert, "exp_alerts": [expected]}
                ],
            },
            {
                "interval": "1m",
                "input_series": quiet,
                "alert_rule_test": [{"eval_time": "25m", "alertname": alert, "exp_alerts": []}],
            },
        ],
    }
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
