"""The Kubernetes objects behind Dagster-on-Kubernetes for llm-rollout.

- `dagster_rbac`: for each model, its Role and ClusterRole (see `k8s.manifests.access`)
  bound to Dagster's service account in Dagster's namespace — nothing else is granted.
- `user_code_deployment` and `run_job`: the code-server Deployment and a run's Job as the
  chart and K8sRunLauncher build them from `values.yaml`, for the fields those values set.
  No Helm binary runs here, so these are our rendering of what the values ask for, checked
  against the Kubernetes schemas; the chart's own templates are not rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llm_rollout.k8s import manifests
from llm_rollout.spec import ReleaseSpec

HERE = Path(__file__).resolve().parent
VALUES = HERE / "values.yaml"
INSTANCE = HERE / "dagster.yaml"
DAGSTER_HOME = "/opt/dagster/dagster_home"
Manifest = dict[str, Any]


def load_values(path: Path = VALUES) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a mapping"
    return loaded


def dagster_rbac(
    specs: list[ReleaseSpec], namespace: str = "dagster", service_account: str = "llm-rollout"
) -> list[Manifest]:
    """Every model's access, granted to Dagster's service account."""
    return [obj for spec in specs for obj in manifests.access(spec, (namespace, service_account))]


def _code_server(values: dict[str, Any]) -> dict[str, Any]:
    deployments = values["dagster-user-deployments"]["deployments"]
    assert isinstance(deployments, list) and deployments, "no user-code deployment in values"
    return dict(deployments[0])


def _image(server: dict[str, Any]) -> str:
    return f"{server['image']['repository']}:{server['image']['tag']}"


def user_code_deployment(values: dict[str, Any], namespace: str = "dagster") -> Manifest:
    """The code server: `dagster api grpc` from the user-code image (the gate sensor runs here)."""
    server = _code_server(values)
    labels = {"app.kubernetes.io/name": "dagster-user-code", "deployment": server["name"]}
    port = int(server["port"])
    container = {
        "name": server["name"],
        "image": _image(server),
        "imagePullPolicy": server["image"].get("pullPolicy", "IfNotPresent"),
        "args": [
            "dagster",
            "api",
            "grpc",
            "-h",
            "0.0.0.0",
            "-p",
            str(port),
            *server["dagsterApiGrpcArgs"],
        ],
        "ports": [{"name": "grpc", "containerPort": port}],
        "env": [{"name": "DAGSTER_HOME", "value": DAGSTER_HOME}, *server.get("env", [])],
        "envFrom": [{"secretRef": {"name": s["name"]}} for s in server.get("envSecrets", [])],
        "resources": server.get("resources", {}),
        "readinessProbe": {
            "exec": {"command": ["dagster", "api", "grpc-health-check", "-p", str(port)]},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"dagster-{server['name']}", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": values["global"]["serviceAccountName"],
                    "containers": [container],
                },
            },
        },
    }


def run_job(values: dict[str, Any], namespace: str = "dagster", run_id: str = "0" * 36) -> Manifest:
    """The Job K8sRunLauncher creates for one run, from the launcher's values."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_config = launcher.get("runK8sConfig", {})
    env = [{"name": "DAGSTER_HOME", "value": DAGSTER_HOME}]
    env += [
        dict(zip(("name", "value"), item.split("=", 1), strict=True))
        for item in launcher.get("envVars", [])
    ]
    container = {
        "name": "dagster",
        "image": _image(_code_server(values)),
        "args": ["dagster", "api", "execute_run", "{serialized run arguments}"],
        "env": env,
        "envFrom": [{"secretRef": {"name": s["name"]}} for s in launcher.get("envSecrets", [])],
        "volumeMounts": launcher.get("volumeMounts", []),
        **run_config.get("containerConfig", {}),
    }
    name = f"dagster-run-{run_id}"
    labels = {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/component": "run_worker"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            **run_config.get("jobSpecConfig", {}),
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": launcher.get("volumes", []),
                    **run_config.get("podSpecConfig", {}),
                },
            },
        },
    }
