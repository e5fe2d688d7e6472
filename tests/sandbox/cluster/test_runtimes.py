"""How a vLLM container becomes a local process: the CPU build's server, its model path
rewritten to the NFS folder, its compute threads bound to the core the fewest other vLLM
servers on this machine are bound to."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.cluster.runtimes import VLLM_SERVER_MODULE, launch_for, least_busy_core
from sandbox.vllm_process import CORE_BINDING
from tests.fixtures.cluster import wait_for

# least_busy_core counts every vLLM server on the machine: these run in the lane where real
# vLLM servers start one test at a time (scripts/test.sh), so no other server moves the count
pytestmark = pytest.mark.real_vllm

CONTAINER = {
    "image": "vllm/vllm-openai:v0.32.0",
    "args": ["vllm", "serve", "/models/tiny", "--port", "8000"],
}


@pytest.fixture
def server_on_core_0() -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like a vLLM server in /proc (its command line names the server
    module) bound to core 0, as the kubelet binds one."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", VLLM_SERVER_MODULE],
        env={**os.environ, CORE_BINDING: "0"},
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_vllm_container_runs_the_cpu_server_bound_to_the_least_busy_core() -> None:
    launch = launch_for("vllm", CONTAINER, {}, [("/models", Path("/srv/nfs"))], "127.9.0.2")
    assert launch.argv[1:3] == ["-m", VLLM_SERVER_MODULE]
    assert launch.argv[3:7] == ["--model", "/srv/nfs/tiny", "--host", "127.9.0.2"]
    assert launch.env[CORE_BINDING] == least_busy_core()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell them apart")
def test_the_next_pod_gets_the_core_no_server_is_bound_to(
    server_on_core_0: subprocess.Popen[bytes],
) -> None:
    environ = Path(f"/proc/{server_on_core_0.pid}/environ")
    wait_for(lambda: f"{CORE_BINDING}=0".encode() in environ.read_bytes(), timeout=10)
    assert least_busy_core() == "1"
