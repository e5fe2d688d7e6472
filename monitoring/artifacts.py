"""Every monitoring file for a spec, as `llm-rollout render` writes them into monitoring/."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from monitoring.adapter import adapter_rules, keda_scaled_object
from monitoring.alertmanager import alertmanager_config
from monitoring.dashboard import dashboard
from monitoring.logs import alloy_config
from monitoring.rules import rule_groups
from monitoring.scrape import scrape_job
from spec import ReleaseSpec

DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


def monitoring_files(spec: ReleaseSpec, prometheus_url: str = DEFAULT_PROMETHEUS) -> dict[str, str]:
    """File name → content."""
    files = {
        "prometheus-scrape-job.yml": yaml.safe_dump(
            {"scrape_configs": [scrape_job(spec)]}, sort_keys=False
        ),
        "rules.yml": yaml.safe_dump(rule_groups(spec), sort_keys=False),
        "alertmanager.yml": yaml.safe_dump(alertmanager_config(), sort_keys=False),
        "grafana-dashboard.json": json.dumps(dashboard(spec), indent=2),
        "prometheus-adapter-rules.yml": yaml.safe_dump(adapter_rules(spec), sort_keys=False),
        "alloy.river": alloy_config(spec),
    }
    keda = keda_scaled_object(spec, prometheus_url)
    if keda is not None:
        files["keda-scaledobject.yml"] = yaml.safe_dump(keda, sort_keys=False)
    return files


def write_monitoring(spec: ReleaseSpec, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in monitoring_files(spec).items():
        (folder / name).write_text(content)
        written.append(folder / name)
    return written
