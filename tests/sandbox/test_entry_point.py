"""`python -m sandbox up` starts every stand-in from one command and stops them on Ctrl-C,
leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from kubernetes import client, config

from tests.conftest import REPO_ROOT
from tests.fixtures.cluster import deployment, wait_for


def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "up", "--dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        endpoints_file = tmp_path / "endpoints.json"
        deadline = time.monotonic() + 60
        while not endpoints_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "sandbox did not come up"
            time.sleep(0.1)
        endpoints = json.loads(endpoints_file.read_text())
        info = HfApi(endpoint=endpoints["hub"]).model_info(endpoints["hub_repo"])
        assert info.sha == endpoints["hub_commit"]
        for url in endpoints["metrics"].values():
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                assert b"vllm:time_to_first_token_seconds" in response.read()
        api = config.new_client_from_config(endpoints["kubeconfig"])
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        assert {n.metadata.name for n in core.list_node().items} >= {"gpu-node-1", "gpu-node-2"}
        apps.create_namespaced_deployment("default", deployment("emu", replicas=1))
        pod_ip = wait_for(
            lambda: next(
                (
                    p.status.pod_ip
                    for p in core.list_namespaced_pod("default").items
                    if p.status.pod_ip
                ),
                None,
            )
        )
        wait_for(lambda: _answers(f"http://{pod_ip}:8000/health"))
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert not endpoints_file.exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoints['hub']}/api/models/{endpoints['hub_repo']}", timeout=2)
    assert not _answers(f"http://{pod_ip}:8000/health")  # the pod's process is gone too
    leftovers = subprocess.run(["pgrep", "-f", f"--host {pod_ip}"], capture_output=True)
    assert leftovers.stdout == b"", leftovers.stdout


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def test_the_cluster_alone(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "cluster", "--dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(f"KUBECONFIG={tmp_path / 'kubeconfig'}")
        api = config.new_client_from_config(str(tmp_path / "kubeconfig"))
        assert client.CoreV1Api(api).list_namespace().items
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
