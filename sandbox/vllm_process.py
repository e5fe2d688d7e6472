"""Real vLLM (the CPU build, in its own virtualenv) run as a local process on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Self

from sandbox.ports import free_port
from sandbox.running import Running

VLLM_VERSION = "0.32.0"
DEFAULT_VLLM_VENV = Path.home() / ".cache" / "llm-rollout" / f"vllm-{VLLM_VERSION}"
# A tiny model on CPU is healthy in ~40 s; leave room for a loaded CI machine.
STARTUP_TIMEOUT_SECONDS = 240
STOP_GRACE_SECONDS = 10
# What vLLM needs on a machine without a GPU or the internet.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # Keep compiled kernels in torch inductor's own cache, keyed by the graph itself, which every
    # server of the same architecture shares. vLLM's AOT cache (the default) points inductor at a
    # folder keyed by the model's path and every VLLM_* variable, the core binding included, so
    # a pod on another core or serving another commit compiled afresh: ~80 s of a start here,
    # and a promoted stable pod (the canary's commit on stable's core) always did.
    "VLLM_USE_AOT_COMPILE": "0",
    # Run the model in the engine process (vLLM's uni executor), as vLLM does on one GPU. The CPU
    # platform forces its multiprocess executor unless this is 0 (vllm/platforms/cpu.py,
    # check_and_update_config), and that executor's worker busy-polls shared memory for a
    # second after every step (distributed/device_communicators/shm_broadcast.py,
    # SpinCondition busy_loop_s=1): at the demo's 1.5 requests/s each pod's worker never slept
    # and took a whole core (21 CPU-s in 20 s of serving; 1 CPU-s with this).
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


# vLLM's CPU build binds its compute threads to these cores ("0": the first core only). Two
# CPU servers whose compute threads share cores spin against each other and slow down badly.
# (Pinning the whole process instead, with taskset, made two servers loading side by side
# take 151 s instead of 92 s: their imports and API servers then share one core each.)
CORE_BINDING = "VLLM_CPU_OMP_THREADS_BIND"


class VllmNotInstalled(RuntimeError):
    """The vLLM runtime virtualenv is missing."""


def vllm_python() -> Path:
    """The Python of the vLLM runtime virtualenv (`LLM_ROLLOUT_VLLM_PYTHON` overrides)."""
    configured = os.environ.get("LLM_ROLLOUT_VLLM_PYTHON")
    python = Path(configured) if configured else DEFAULT_VLLM_VENV / "bin" / "python"
    if not python.exists():
        raise VllmNotInstalled(
            f"no vLLM runtime at {python}; `bash scripts/test.sh` or `bash scripts/demo.sh` "
            f"installs vllm-cpu=={VLLM_VERSION} there (or set LLM_ROLLOUT_VLLM_PYTHON)"
        )
    return python


def api_server_command(python: Path, args: list[str]) -> list[str]:
    """The command that runs vLLM's OpenAI server; the `vllm` console script fails in vllm-cpu."""
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", *args]


class VllmProcess(Running):
    """One vLLM OpenAI-compatible server serving `model_dir` on 127.0.0.1."""

    def __init__(
        self,
        model_dir: Path,
        *,
        served_model_name: str = "tiny-llama",
        max_model_len: int = 256,
        extra_args: list[str] | None = None,
        log: IO[bytes] | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        core: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.core = core
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            "--model", str(model_dir),
            "--served-model-name", served_model_name,
            "--max-model-len", str(max_model_len),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            *(extra_args or []),
        ]  # fmt: skip
        self._log = log
        self._env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the server (returns at once; see `wait_healthy`)."""
        binding = {} if self.core is None else {CORE_BINDING: self.core}
        self.process = subprocess.Popen(
            api_server_command(vllm_python(), self.args),
            env={**os.environ, **CPU_ENV, **binding, **self._env},
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its engine subprocesses are stopped with it
        )
        return self

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Block until /health answers 200; raise if the process exits or time runs out."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited with code {self.process.returncode} while starting"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM not healthy at {self.url} after {timeout:.0f}s")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL after the grace period."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
