"""Real vLLM pods (CPU build, tiny model) in the sandbox cluster, driven by the `kubernetes`
client and kubectl. The pods start once for this module: each takes ~40 s to load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.vllm_process import VllmNotInstalled, vllm_python
from tests.fixtures.cluster import GPU_TOLERATION, Kube, start_kube, wait_for

pytestmark = pytest.mark.real_vllm  # scripts/test.sh runs these in their own lane

NAMESPACE = "llm"
KUBECTL = Path(sys.executable).parent / "kubectl"
REPLICAS = 2  # one per core of a two-core machine (each pod gets its own core)
STARTUP_SECONDS = 420  # CPU vLLM servers loading at once on two cores


def vllm_deployment(extra_args: list[str]) -> dict[str, Any]:
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.32.0",
        "args": [
            "vllm",
            "serve",
            "/models/tiny-llama",
            "--served-model-name",
            "tiny-llama",
            "--max-model-len",
            "256",
            "--port",
            "8000",
            *extra_args,
        ],
        "ports": [{"containerPort": 8000, "name": "http"}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": STARTUP_SECONDS // 2,
        },
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "weights", "mountPath": "/models", "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny"},
        "spec": {
            "replicas": REPLICAS,
            "progressDeadlineSeconds": 900,
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "tiny"}},
            "template": {
                "metadata": {"labels": {"app": "tiny"}},
                "spec": {
                    "tolerations": [GPU_TOLERATION],
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "weights",
                            "nfs": {"server": "nfs.sandbox.local", "path": "/exports/models"},
                        }
                    ],
                },
            },
        },
    }


def rolled_out(kube: Kube) -> bool:
    live = kube.apps.read_namespaced_deployment("tiny", NAMESPACE)
    status = live.status
    return bool(
        status
        and (status.observed_generation or 0) >= live.metadata.generation
        and status.updated_replicas == REPLICAS
        and status.available_replicas == REPLICAS
        and status.replicas == REPLICAS
    )


@pytest.fixture(scope="module")
def vllm_kube(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Kube]:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(f"real vLLM is not installed here: {missing}")
    kube = start_kube(tmp_path_factory.mktemp("vllm-cluster"))
    try:
        shutil.copytree(
            tiny_model_dir,
            kube.cluster.nfs_export("nfs.sandbox.local", "/exports/models") / "tiny-llama",
        )
        kube.namespace(NAMESPACE)
        kube.apply(NAMESPACE, vllm_deployment([]))
        kube.core.create_namespaced_service(
            NAMESPACE,
            {
                "metadata": {"name": "tiny"},
                "spec": {
                    "selector": {"app": "tiny"},
                    "ports": [{"port": 8000, "targetPort": "http"}],
                },
            },
        )
        wait_for(lambda: rolled_out(kube), timeout=STARTUP_SECONDS, interval=1)
        yield kube
    finally:
        kube.cluster.stop()


def kubectl(kube: Kube, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kube.cluster.kubeconfig)},
    )


def test_a_request_through_the_service_gets_a_completion(vllm_kube: Kube) -> None:
    ip = vllm_kube.core.read_namespaced_service("tiny", NAMESPACE).spec.cluster_ip
    request = urllib.request.Request(
        f"http://{ip}:8000/v1/completions",
        data=json.dumps({"model": "tiny-llama", "prompt": "the canary", "max_tokens": 8}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert body["model"] == "tiny-llama"
    assert body["usage"]["completion_tokens"] == 8


def test_kubectl_logs_shows_the_vllm_startup_log(vllm_kube: Kube) -> None:
    pod = vllm_kube.core.list_namespaced_pod(NAMESPACE).items[0].metadata.name
    result = kubectl(vllm_kube, "logs", pod, "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    assert "vLLM" in result.stdout or "vllm" in result.stdout
    assert "Starting vLLM" in result.stdout or "Application startup complete" in result.stdout


def test_rolling_update_of_real_vllm_keeps_all_available(vllm_kube: Kube) -> None:
    vllm_kube.apply(NAMESPACE, vllm_deployment(["--max-num-seqs", "32"]))
    follow = subprocess.Popen(
        [
            str(KUBECTL),
            "rollout",
            "status",
            "deployment/tiny",
            "-n",
            NAMESPACE,
            f"--timeout={STARTUP_SECONDS}s",
        ],
        env={**os.environ, "KUBECONFIG": str(vllm_kube.cluster.kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lowest = REPLICAS
    while not rolled_out(vllm_kube):
        status = vllm_kube.apps.read_namespaced_deployment("tiny", NAMESPACE).status
        lowest = min(lowest, status.available_replicas or 0)
        assert follow.poll() is None or follow.returncode == 0
    assert lowest >= REPLICAS
    output, _ = follow.communicate(timeout=60)
    assert follow.returncode == 0, output
    assert 'deployment "tiny" successfully rolled out' in output
    history = kubectl(vllm_kube, "rollout", "history", "deployment/tiny", "-n", NAMESPACE)
    assert history.stdout.split()[-2:] == ["2", "<none>"]


def test_kubectl_get_and_describe(vllm_kube: Kube) -> None:
    def listed() -> bool:  # old pods are listed while they terminate, as in a real cluster
        pods = kubectl(vllm_kube, "get", "pods", "-n", NAMESPACE)
        assert pods.returncode == 0, pods.stderr
        return pods.stdout.count("tiny-") == REPLICAS

    wait_for(listed, timeout=30, interval=1)
    described = kubectl(vllm_kube, "describe", "deployment", "tiny", "-n", NAMESPACE)
    assert "Replicas:" in described.stdout and f"{REPLICAS} available" in described.stdout
