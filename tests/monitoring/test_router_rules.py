"""The router's rules pass `promtool check rules`; each alert fires on the series it is for and
stays quiet on healthy ones (`promtool test rules`, Prometheus' own engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_rollout.monitoring.router_rules import router_panels, router_rule_group
from llm_rollout.spec import ReleaseSpec
from tests.conftest import MINIMAL_SPEC, merged

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed"
)

SPEC = ReleaseSpec.model_validate(merged(MINIMAL_SPEC, {"namespace": "llm-demo"}))
LABELS = 'namespace="llm-demo",model="qwen-small"'


def series(name: str, labels: str, per_minute: int) -> dict[str, str]:
    return {"series": f"{name}{{{LABELS},{labels}}}", "values": f"0+{per_minute}x40"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "router-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [router_rule_group(SPEC)]}, sort_keys=False))
    return path


def annotations(alert: str, labels: dict[str, Any]) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them for these labels."""
    rule = next(r for r in router_rule_group(SPEC)["rules"] if r.get("alert") == alert)
    return {
        key: text.replace("{{ $labels.route }}", labels["route"])
        for key, text in rule["annotations"].items()
    }


def alert_test(
    rules: Path, inputs: list[dict[str, str]], alert: str, fired: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": alert,
                        "exp_alerts": [
                            {"exp_labels": labels, "exp_annotations": annotations(alert, labels)}
                            for labels in fired
                        ],
                    }
                ],
            }
        ],
    }
    path = rules.parent / f"{alert}_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return promtool("test", "rules", str(path))


def test_the_router_rules_pass_promtool(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(write_rules(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_route_answered_40_percent_by_the_cloud_fires_the_fallback_alert(tmp_path: Path) -> None:
    inputs = [
        series("llm_rollout_router_requests_total", 'route="default",backend="r1",outcome="ok"', 6),
        series(
            "llm_rollout_router_requests_total", 'route="default",backend="oai",outcome="ok"', 4
        ),
        series("llm_rollout_router_fallbacks_total", 'route="default",reason="degraded"', 4),
    ]
    fired = [
        {"namespace": "llm-demo", "model": "qwen-small", "route": "default", "severity": "warning"}
    ]
    result = alert_test(write_rules(tmp_path), inputs, "LlmRouterSustainedFallback", fired)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_route_answered_10_percent_by_the_cloud_stays_quiet(tmp_path: Path) -> None:
    inputs = [
        series("llm_rollout_router_requests_total", 'route="default",backend="r1",outcome="ok"', 9),
        series(
            "llm_rollout_router_requests_total", 'route="default",backend="oai",outcome="ok"', 1
        ),
        series("llm_rollout_router_fallbacks_total", 'route="default",reason="queue_full"', 1),
    ]
    result = alert_test(write_rules(tmp_path), inputs, "LlmRouterSustainedFallback", [])
    assert result.returncode == 0, result.stdout + result.stderr


def test_refused_local_only_requests_fire_the_unavailable_alert(tmp_path: Path) -> None:
    refused = 'route="private",backend="r1",outcome="unavailable"'
    inputs = [series("llm_rollout_router_requests_total", refused, 2)]
    fired = [
        {"namespace": "llm-demo", "model": "qwen-small", "route": "private", "severity": "critical"}
    ]
    rules = write_rules(tmp_path)
    result = alert_test(rules, inputs, "LlmRouterLocalOnlyUnavailable", fired)
    assert result.returncode == 0, result.stdout + result.stderr
    served = [series("llm_rollout_router_requests_total", refused.replace("unavailable", "ok"), 2)]
    result = alert_test(rules, served, "LlmRouterLocalOnlyUnavailable", [])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_panels_queries_parse(tmp_path: Path) -> None:
    panels = router_panels(SPEC, first_id=100, y=40)
    assert [panel["id"] for panel in panels] == [100, 101, 102]
    records = [
        {"record": f"panel:query{index}", "expr": panel["targets"][0]["expr"]}
        for index, panel in enumerate(panels)
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": records}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
