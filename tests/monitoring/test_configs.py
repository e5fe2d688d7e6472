"""Every generated monitoring file passes its real validator and fits the rest of the system."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llm_rollout.k8s import manifests
from llm_rollout.monitoring.artifacts import monitoring_files, operator_schema_problems
from llm_rollout.monitoring.dashboard import panel_queries
from llm_rollout.monitoring.logs import VLLM_LINE
from llm_rollout.monitoring.rules import rule_groups
from llm_rollout.spec import load_spec
from tests.conftest import SPEC_FILES

SPECS = [load_spec(SPEC_FILES[name]) for name in ("deepseek-v4", "demo-tiny")]
needs_tools = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None,
    reason="promtool/amtool (Debian prometheus, prometheus-alertmanager) are not installed",
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@needs_tools
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_prometheus_config_with_the_scrape_job_and_rules_passes_promtool(
    spec: object, tmp_path: Path
) -> None:
    files = monitoring_files(spec)  # type: ignore[arg-type]
    (tmp_path / "rules.yml").write_text(files["rules.yml"])
    config = yaml.safe_load(files["prometheus-scrape-job.yml"])
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    # Debian builds Prometheus without Kubernetes discovery ("field kubernetes_sd_configs not
    # found"): check everything else, with file discovery standing in, as in the gate tests
    job = config["scrape_configs"][0]
    assert job.pop("kubernetes_sd_configs") == [
        {"role": "pod", "namespaces": {"names": [spec.namespace]}}  # type: ignore[attr-defined]
    ]
    job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tools
def test_alertmanager_config_passes_amtool_and_routes_by_severity(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(monitoring_files(SPECS[0])["alertmanager.yml"])
    assert run("amtool", "check-config", str(path)).returncode == 0
    for severity, receiver in (("critical", "critical"), ("warning", "slack")):
        routed = run(
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            f"severity={severity}",
            "alertname=X",
        )
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr


@needs_tools
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_dashboard_queries_parse_and_use_recorded_series(spec: object, tmp_path: Path) -> None:
    recorded = {
        r["record"]
        for g in rule_groups(spec)["groups"]
        for r in g["rules"]  # type: ignore[arg-type]
        if "record" in r
    }
    queries = panel_queries(spec)  # type: ignore[arg-type]
    assert len(queries) == 12
    for query in queries:
        assert any(record in query for record in recorded), query
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(as_rules))
    result = run("promtool", "check", "rules", str(tmp_path / "queries.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    board = json.loads(monitoring_files(spec)["grafana-dashboard.json"])  # type: ignore[arg-type]
    assert board["annotations"]["list"][0]["titleFormat"] == "{{release}} first serving"
    assert {p["targets"][0]["legendFormat"] for p in board["panels"]} == {"{{release}}"}


def test_adapter_serves_the_metric_the_hpa_reads() -> None:
    spec = SPECS[0]
    hpa = manifests.autoscaler(spec, "rel-1")
    assert hpa is not None
    wanted = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = yaml.safe_load(monitoring_files(spec)["prometheus-adapter-rules.yml"])
    exposed = {rule["name"]["as"] for rule in adapter["rules"]}
    assert wanted in exposed
    for rule in adapter["rules"]:
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert "keda-scaledobject.yml" not in monitoring_files(spec)  # it scales one release
    keda = yaml.safe_load(monitoring_files(spec, release_id="rel-1")["keda-scaledobject.yml"])
    assert keda["spec"]["scaleTargetRef"]["name"] == f"{spec.name}-rel-1"
    assert "vllm:num_requests_waiting" in keda["spec"]["triggers"][0]["metadata"]["query"]


def test_the_alloy_pipeline_parses_real_vllm_log_lines() -> None:
    line = "(APIServer pid=3601) INFO 11-28 03:50:17 [launcher.py:195] Route: /health, Methods: GET"
    match = re.match(VLLM_LINE, line)
    assert match is not None
    assert match.groupdict() == {"process": "APIServer", "level": "INFO", "logger": "launcher.py"}
    config = monitoring_files(SPECS[1])["alloy.river"]
    assert 'names = ["llm-demo"]' in config and "loki.write" in config


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_prometheus_operator_objects_pass_the_operators_crd_schemas(spec: object) -> None:
    files = monitoring_files(spec)  # type: ignore[arg-type]
    monitor = yaml.safe_load(files["podmonitor.yml"])
    rule = yaml.safe_load(files["prometheusrule.yml"])
    assert operator_schema_problems([monitor, rule]) == []
    # the same scrape as the raw job: same pods, same relabelling (in the operator's spelling)
    job = yaml.safe_load(files["prometheus-scrape-job.yml"])["scrape_configs"][0]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == job["metrics_path"]
    assert endpoint["interval"] == job["scrape_interval"]
    spelled = [
        {
            {"source_labels": "sourceLabels", "target_label": "targetLabel"}.get(k, k): v
            for k, v in r.items()
        }
        for r in job["relabel_configs"]
    ]
    assert endpoint["relabelings"] == spelled
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [spec.namespace]}  # type: ignore[attr-defined]
    # the same rules as rules.yml
    assert rule["spec"] == yaml.safe_load(files["rules.yml"])


def test_the_crd_schemas_catch_a_wrong_field() -> None:
    monitor = yaml.safe_load(monitoring_files(SPECS[0])["podmonitor.yml"])
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["source_labels"] = ["x"]
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    rule = yaml.safe_load(monitoring_files(SPECS[0])["prometheusrule.yml"])
    del rule["spec"]["groups"][0]["name"]
    not_operator = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rules"}}
    problems = operator_schema_problems([monitor, rule, not_operator])
    assert len(problems) == 4, problems
    assert any(p.startswith("ConfigMap/rules: not a monitoring.coreos.com/v1") for p in problems)
    assert any("source_labels" in p and "relabelings.0" in p for p in problems)
    assert any("interval" in p for p in problems)
    assert any("PrometheusRule/" in p and "'name' is a required property" in p for p in problems)


@needs_tools
def test_the_keda_query_over_its_threshold_gives_the_replicas_needed(tmp_path: Path) -> None:
    spec = SPECS[0]  # autoscaling on num_requests_waiting, 5 per pod
    keda = yaml.safe_load(monitoring_files(spec, release_id="rel-stable")["keda-scaledobject.yml"])
    assert keda["spec"]["scaleTargetRef"]["name"] == f"{spec.name}-rel-stable"
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["metricType"] == "AverageValue"
    query, threshold = trigger["metadata"]["query"], float(trigger["metadata"]["threshold"])
    # two stable pods with 12 and 8 requests waiting (and a canary the HPA does not scale):
    # 20 waiting at 5 per pod needs 4 pods, so KEDA's value / threshold must be 4
    series = [("rel-stable", "a", 12), ("rel-stable", "b", 8), ("rel-canary", "c", 30)]
    (tmp_path / "none.yml").write_text("groups: []\n")
    tests = {
        "rule_files": ["none.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'vllm:num_requests_waiting{{namespace="{spec.namespace}",'
                        f'model="{spec.name}",release="{release}",pod="{pod}"}}',
                        "values": f"{waiting}x5",
                    }
                    for release, pod, waiting in series
                ],
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "2m",
                        "exp_samples": [{"labels": "{}", "value": 20}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "keda_test.yml").write_text(yaml.safe_dump(tests))
    result = run("promtool", "test", "rules", str(tmp_path / "keda_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert math.ceil(20 / threshold) == 4
