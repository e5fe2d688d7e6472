"""kubectl against the sandbox cluster, as a user would try it (emulated vLLM pods)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.cluster import Kube, wait_for

KUBECTL = Path(sys.executable).parent / "kubectl"
MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: kubectl-demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: emu, namespace: kubectl-demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: emu}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: emu}}
    spec:
      containers:
      - name: vllm
        image: registry.sandbox.local/vllm-metrics-emulator:1
        ports: [{containerPort: 8000, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
"""


def kubectl(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kube.cluster.kubeconfig)},
    )


def test_apply_rollout_history_and_logs(kube: Kube, tmp_path: Path) -> None:
    manifest = tmp_path / "emu.yaml"
    manifest.write_text(MANIFEST)
    applied = kubectl(kube, "apply", "--server-side", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/emu serverside-applied" in applied.stdout
    status = kubectl(kube, "rollout", "status", "deployment/emu", "-n", "kubectl-demo")
    assert 'deployment "emu" successfully rolled out' in status.stdout, status.stderr
    image = kubectl(
        kube,
        "set",
        "image",
        "deployment/emu",
        "vllm=registry.sandbox.local/vllm-metrics-emulator:2",
        "-n",
        "kubectl-demo",
    )
    assert image.returncode == 0, image.stderr
    status = kubectl(kube, "rollout", "status", "deployment/emu", "-n", "kubectl-demo")
    assert 'deployment "emu" successfully rolled out' in status.stdout, status.stderr
    history = kubectl(kube, "rollout", "history", "deployment/emu", "-n", "kubectl-demo")
    rows = [line.split()[0] for line in history.stdout.splitlines() if line.strip()]
    assert rows[-2:] == ["1", "2"]
    described = kubectl(kube, "describe", "deployment", "emu", "-n", "kubectl-demo")
    assert "2 desired | 2 updated | 2 total | 2 available | 0 unavailable" in described.stdout
    assert "RollingUpdate" in described.stdout

    def one_pod() -> str | None:
        names = kubectl(kube, "get", "pods", "-n", "kubectl-demo", "-o", "name").stdout.split()
        return names[0] if len(names) == 2 else None

    pod = wait_for(one_pod)
    logs = kubectl(kube, "logs", pod, "-n", "kubectl-demo")
    assert logs.returncode == 0, logs.stderr
    assert "/metrics" in logs.stdout
    # `set image` took ownership of the image: re-applying the old manifest is a conflict
    again = kubectl(kube, "apply", "--server-side", "-f", str(manifest))
    assert again.returncode == 1
    assert 'conflict with "kubectl-set"' in again.stderr
    assert ".spec.template.spec.containers" in again.stderr
    forced = kubectl(kube, "apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert forced.returncode == 0, forced.stderr


def columns(output: str) -> list[list[str]]:
    """`kubectl get` output as rows of cells (cells are separated by 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


def test_get_prints_the_servers_columns(kube: Kube, tmp_path: Path) -> None:
    manifest = tmp_path / "emu.yaml"
    manifest.write_text(MANIFEST)
    applied = kubectl(kube, "apply", "--server-side", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    kube.core.create_namespaced_config_map(
        "kubectl-demo", {"metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}}
    )
    kube.core.create_namespaced_service(
        "kubectl-demo",
        {
            "metadata": {"name": "emu"},
            "spec": {"selector": {"app": "emu"}, "ports": [{"port": 80, "targetPort": 8000}]},
        },
    )
    status = kubectl(kube, "rollout", "status", "deployment/emu", "-n", "kubectl-demo")
    assert status.returncode == 0, status.stderr

    def get(*args: str) -> list[list[str]]:
        result = kubectl(kube, "get", *args, "-n", "kubectl-demo")
        assert result.returncode == 0, result.stderr
        return columns(result.stdout)

    deployments = get("deployments")
    assert deployments[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deployments[1][:4] == ["emu", "2/2", "2", "2"]
    assert re.fullmatch(r"\d+s", deployments[1][4])
    wide = get("deployments", "-o", "wide")
    assert wide[0][5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][5:] == ["vllm", "registry.sandbox.local/vllm-metrics-emulator:1", "app=emu"]
    replicasets = get("replicasets")
    assert replicasets[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert replicasets[1][1:4] == ["2", "2", "2"]
    pods = get("pods")
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [row[1:4] for row in pods[1:]] == [["1/1", "Running", "0"]] * 2
    services = get("services")
    assert services[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert services[1][:2] == ["emu", "ClusterIP"]
    assert services[1][3:5] == ["<none>", "80/TCP"]
    configmaps = get("configmaps")
    assert configmaps[0] == ["NAME", "DATA", "AGE"]
    assert configmaps[1][:2] == ["settings", "2"]
    nodes = columns(kubectl(kube, "get", "nodes").stdout)
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1][1:3] == ["Ready", "<none>"]
    everywhere = columns(kubectl(kube, "get", "deployments", "--all-namespaces").stdout)
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"]  # from each row's object metadata
    assert everywhere[1][:2] == ["kubectl-demo", "emu"]


def test_explain_and_strict_field_validation(kube: Kube, tmp_path: Path) -> None:
    explained = kubectl(kube, "explain", "deployment.spec.replicas")
    assert explained.returncode == 0, explained.stderr
    assert "FIELD: replicas <integer>" in explained.stdout
    assert "Number of desired pods." in explained.stdout
    # kubectl finds fieldValidation in the OpenAPI v3 document, sends fieldValidation=Strict
    # and leaves the check to the server, which rejects an unknown field as a cluster does
    typo = tmp_path / "typo.yaml"
    typo.write_text(MANIFEST.replace("  replicas: 2\n", "  replicas: 2\n  replica: 3\n"))
    applied = kubectl(kube, "apply", "--server-side", "-f", str(typo))
    assert applied.returncode == 1
    assert (
        "failed to create typed patch object (kubectl-demo/emu; apps/v1, Kind=Deployment): "
        ".spec.replica: field not declared in schema"
    ) in applied.stderr
    created = kubectl(kube, "create", "-f", str(typo))
    assert (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replica"'
    ) in created.stderr
    # --validate=false is still accepted: kubectl sends fieldValidation=Ignore
    ignored = kubectl(kube, "apply", "--server-side", "--validate=false", "-f", str(typo))
    assert ignored.returncode == 0, ignored.stderr
    assert "deployment.apps/emu serverside-applied" in ignored.stdout


def test_describe_shows_the_deployment_controllers_scaling_events(
    kube: Kube, tmp_path: Path
) -> None:
    manifest = tmp_path / "emu.yaml"
    manifest.write_text(MANIFEST)
    assert kubectl(kube, "apply", "--server-side", "-f", str(manifest)).returncode == 0
    status = kubectl(kube, "rollout", "status", "deployment/emu", "-n", "kubectl-demo")
    assert status.returncode == 0, status.stderr
    scaled = kubectl(kube, "scale", "deployment/emu", "--replicas=1", "-n", "kubectl-demo")
    assert scaled.returncode == 0, scaled.stderr

    def events() -> list[list[str]] | None:
        described = kubectl(kube, "describe", "deployment", "emu", "-n", "kubectl-demo").stdout
        rows = [
            re.split(r"\s{2,}", line.strip())
            for line in described.split("Events:")[-1].splitlines()
            if "ScalingReplicaSet" in line
        ]
        return rows if len(rows) == 2 else None

    rows = wait_for(events, what="two ScalingReplicaSet events")
    replicaset = kube.apps.list_namespaced_replica_set("kubectl-demo").items[0].metadata.name
    assert [row[0] for row in rows] == ["Normal", "Normal"]
    # in either order: kubectl sorts events by lastTimestamp, whole seconds, with an unstable
    # sort (k8s.io/kubectl pkg/util/event SortableEvents), so two in one second may swap
    assert sorted(row[-2:] for row in rows) == [
        ["deployment-controller", f"Scaled down replica set {replicaset} from 2 to 1"],
        ["deployment-controller", f"Scaled up replica set {replicaset} from 0 to 2"],
    ]
