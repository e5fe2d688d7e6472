"""How a container of the sandbox cluster becomes a local process: the image registry file
maps image references to runtimes, and each runtime turns command, args, env and volume
mounts into a command line on this machine."""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.vllm_metrics.behaviour import SCENARIOS
from sandbox.vllm_process import CORE_BINDING, CPU_ENV, api_server_command, vllm_python

DEFAULT_REGISTRY = Path(__file__).with_name("images.yaml")
VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_DEFAULT_PORT = 8000
# Seconds every emulated vLLM pod waits before it listens, unless its container says otherwise.
EMULATOR_LOAD_SECONDS = "LLM_ROLLOUT_SANDBOX_LOAD_SECONDS"


@dataclass(frozen=True)
class ImageRegistry:
    """Image reference patterns → runtime names, first match wins."""

    rules: tuple[tuple[str, str], ...]

    @classmethod
    def load(cls, path: Path = DEFAULT_REGISTRY) -> ImageRegistry:
        data = yaml.safe_load(path.read_text()) or {}
        return cls(tuple((rule["match"], rule["runtime"]) for rule in data.get("images", [])))

    def runtime_for(self, image: str) -> str | None:
        for pattern, runtime in self.rules:
            if fnmatch.fnmatchcase(image, pattern):
                return runtime
        return None


@dataclass(frozen=True)
class Launch:
    """A process to start for a container."""

    argv: list[str]
    env: dict[str, str]


def rewrite_paths(token: str, mounts: list[tuple[str, Path]]) -> str:
    """Map container paths under a mountPath to the local folder backing it."""
    if token.startswith("--") and "=" in token:
        prefix, separator, value = token.partition("=")
    else:
        prefix, separator, value = "", "", token
    scheme = "dir://" if value.startswith("dir://") else ""  # kaniko's --context=dir://…
    value = value.removeprefix(scheme)
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            value = str(local) + value[len(mount_path.rstrip("/")) :]
            break
    value = scheme + value
    return f"{prefix}{separator}{value}" if separator else value


def launch_for(
    runtime: str,
    container: dict[str, Any],
    env: dict[str, str],
    mounts: list[tuple[str, Path]],
    pod_ip: str,
) -> Launch:
    """The local command that stands in for `container` under `runtime`."""
    tokens = [
        rewrite_paths(t, mounts)
        for t in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    env = {k: rewrite_paths(v, mounts) for k, v in env.items()}
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONUNBUFFERED": "1",
    }
    if runtime == "vllm":
        # each real vLLM pod gets the core fewest other vLLM servers are bound to, as each
        # real one gets its own GPU
        pinned = {CORE_BINDING: least_busy_core()}
        return Launch(_vllm_argv(tokens, pod_ip), {**base, **pinned, **env, **CPU_ENV})
    if runtime == "metrics-emulator":
        port = _first_port(container) or VLLM_DEFAULT_PORT
        # `…/vllm-metrics-emulator:slow_decoding` is a release that behaves that way
        tag = str(container.get("image", "")).rpartition(":")[2]
        scenario = env.get("SCENARIO") or (tag if tag in SCENARIOS else "healthy")
        argv = [
            sys.executable,
            "-m",
            "sandbox.vllm_metrics",  # not `sandbox metrics`: a pod start imports only this
            "--host",
            pod_ip,
            "--port",
            str(port),
            "--scenario",
            scenario,
            "--latency-scale",
            env.get("LATENCY_SCALE", "1.0"),
            "--model-name",
            env.get("MODEL_NAME", "tiny-llama"),
            # how long the pod "loads its model" before it listens: the container's
            # LOAD_SECONDS, else the sandbox's own (bench/promotion.py sets it for all pods)
            "--load-seconds",
            env.get("LOAD_SECONDS") or os.environ.get(EMULATOR_LOAD_SECONDS, "0"),
        ]
        return Launch(argv, {**base, **env, "PYTHONPATH": str(Path(__file__).parents[2])})
    if runtime == "kaniko":
        argv = [sys.executable, "-m", "sandbox.kaniko_stub", *tokens]
        return Launch(argv, {**base, **env, "PYTHONPATH": str(Path(__file__).parents[2])})
    if runtime == "process":
        if not tokens:
            raise ValueError("a 'process' container needs a command")
        bin_dir = str(Path(sys.executable).parent)
        # every address of a pod's own network namespace is its pod IP: a server told to
        # listen on all of them (0.0.0.0) listens on that one, beside the other pods
        tokens = [_own_addresses(token, pod_ip) for token in tokens]
        return Launch(
            tokens,
            {
                **base,
                **env,
                "PATH": f"{bin_dir}:{base['PATH']}",
                "POD_IP": pod_ip,
                "PYTHONPATH": str(Path(__file__).parents[2]),
            },
        )
    raise ValueError(f"unknown runtime {runtime!r}")


def _own_addresses(token: str, pod_ip: str) -> str:
    """'0.0.0.0' (alone or as '--flag=0.0.0.0') → the pod's IP."""
    if token == "0.0.0.0":
        return pod_ip
    if token.startswith("--") and token.endswith("=0.0.0.0"):
        return token.removesuffix("0.0.0.0") + pod_ip
    return token


def least_busy_core() -> str:
    """The CPU core the fewest running vLLM servers on this machine are bound to (read from
    their environment in /proc; a server that ended frees its core)."""
    counts = dict.fromkeys(range(os.cpu_count() or 1), 0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if VLLM_SERVER_MODULE.encode() not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        for item in environ:
            if item.startswith(CORE_BINDING.encode() + b"="):
                core = item.split(b"=", 1)[1].decode()
                if core.isdigit() and int(core) in counts:
                    counts[int(core)] += 1
    return str(min(counts, key=lambda core: (counts[core], core)))


def _vllm_argv(tokens: list[str], pod_ip: str) -> list[str]:
    """`vllm serve MODEL …` or `python3 -m vllm.entrypoints.openai.api_server --model …`
    (or bare args to the image's `vllm serve` entrypoint) → the CPU build's server."""
    rest = list(tokens)
    if rest[:2] == ["vllm", "serve"]:
        rest = rest[2:]
    elif VLLM_SERVER_MODULE in rest:
        rest = rest[rest.index(VLLM_SERVER_MODULE) + 1 :]
    model: str | None = None
    if rest and not rest[0].startswith("-"):
        model, rest = rest[0], rest[1:]
    cleaned: list[str] = []
    skip = False
    for index, token in enumerate(rest):
        if skip:
            skip = False
            continue
        if token in ("--host", "--model"):
            if token == "--model" and index + 1 < len(rest):
                model = rest[index + 1]
            skip = True
            continue
        if token.startswith(("--host=", "--model=")):
            if token.startswith("--model="):
                model = token.split("=", 1)[1]
            continue
        cleaned.append(token)
    if model is None:
        raise ValueError("the vLLM container names no model (positional or --model)")
    return api_server_command(vllm_python(), ["--model", model, "--host", pod_ip, *cleaned])


def _first_port(container: dict[str, Any]) -> int | None:
    ports = container.get("ports") or []
    return int(ports[0]["containerPort"]) if ports else None
