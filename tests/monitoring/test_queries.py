"""The gate's PromQL evaluated by Prometheus' own engine (`promtool test rules` with
`promql_expr_test`) on series shaped like real clusters': two models in one namespace, a
vLLM upgrade that renamed metrics, `/v1/models` polling, a p99 above the top bucket, the
canary's very first 5xx. Each case states the range the measured value must fall in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llm_rollout.monitoring.queries import TrackSource, gate_queries
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC

_demo = load_spec(DEMO_SPEC)
SPEC = _demo.model_copy(update={"gate": _demo.gate.model_copy(update={"window": "2m"})})
EVAL_AT = "15m"  # 900 s; the window is (780 s, 900 s]
CANARY = TrackSource("canary", "rel-new", (0, 11, 0))
STABLE = TrackSource("stable", "rel-old", (0, 10, 0))  # before the metric renames
BUCKETS = ["0.1", "0.5", "1", "5", "+Inf"]

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed"
)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    base = {
        "namespace": SPEC.namespace,
        "model": SPEC.name,
        "release": "rel-new",
        "pod": "demo-tiny-canary-1",
    }
    text = ",".join(f'{k}="{v}"' for k, v in {**base, **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def chat(status: str, values: str, **labels: str) -> dict[str, str]:
    return series(
        "http_requests_total", values, handler="/v1/chat/completions", status=status, **labels
    )


def promql(metric: str, track: str = "canary") -> str:
    queries = gate_queries(SPEC, canary=CANARY, stable=STABLE)
    return next(q.promql for q in queries if (q.metric, q.track) == (metric, track))


CASES = {
    # another model's pods in the same namespace, 100× busier, do not count
    "two models in one namespace": (
        [chat("2xx", "0+1x60"), chat("2xx", "0+100x60", model="other-model", pod="other-1")],
        "requests",
        "canary",
        (6, 10),
    ),
    # health checks and SDK clients listing models are not traffic and not successes
    "GET /v1/models polling": (
        [
            chat("2xx", "0+9x60"),
            chat("5xx", "0+1x60"),
            series("http_requests_total", "0+100x60", handler="/v1/models", status="2xx"),
        ],
        "success_rate",
        "canary",
        (0.89, 0.91),
    ),
    # the first 5xx creates its series at 1 inside the window: it counts
    "the canary's first 5xx": (
        [chat("2xx", "0+10x60"), chat("5xx", "_x55 1x5")],
        "success_rate",
        "canary",
        (0.95, 0.989),
    ),
    # every observation above the top finite bucket (5 s): the p99 cannot be placed
    "a p99 in the +Inf bucket": (
        [
            series(
                "vllm:time_to_first_token_seconds_bucket",
                "0+10x60" if le == "+Inf" else "0x60",
                le=le,
            )
            for le in BUCKETS
        ],
        "ttft_p99_above_top",
        "canary",
        (0.99, 1.01),
    ),
    # stable runs vLLM 0.10 (time_per_output_token), the canary 0.11 (inter_token_latency)
    "stable on the metric names before the rename": (
        [
            series(
                "vllm:time_per_output_token_seconds_sum",
                "0+0.5x60",
                release="rel-old",
            ),
            series(
                "vllm:time_per_output_token_seconds_count",
                "0+10x60",
                release="rel-old",
            ),
        ],
        "itl_mean",
        "stable",
        (0.049, 0.051),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_gate_measures_what_real_clusters_report(case: str, tmp_path: Path) -> None:
    inputs, metric, track, (low, high) = CASES[case]
    expr = promql(metric, track)
    within = f"((({expr}) >= bool {low}) * (({expr}) <= bool {high}))"
    test = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": within,
                        "eval_time": EVAL_AT,
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "case.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{metric}/{track} not in [{low}, {high}]:\n{result.stdout}"
