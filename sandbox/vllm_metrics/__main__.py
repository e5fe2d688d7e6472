"""`python -m sandbox.vllm_metrics`: one emulated vLLM pod, as the sandbox cluster runs it for
an emulator image. Only what the emulator needs is imported: a pod start costs ~0.2 CPU-s,
where `python -m sandbox metrics` (the same server, behind every sandbox command's imports:
Dagster, the Kubernetes client) cost ~1.2 — multiplied by every pod of every test."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from sandbox.vllm_metrics.behaviour import SCENARIOS
from sandbox.vllm_metrics.server import MetricsEmulator


def serve(
    scenario: str, latency_scale: float, host: str, port: int, model_name: str, load_seconds: float
) -> None:
    """Wait `load_seconds` (a model loading), serve until SIGTERM or SIGINT."""
    time.sleep(load_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with MetricsEmulator(
        scenario, latency_scale=latency_scale, host=host, port=port, model_name=model_name
    ) as emulator:
        print(f"{emulator.url}/metrics  ({scenario})", flush=True)
        stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.vllm_metrics", description=__doc__)
    parser.add_argument("--scenario", default="healthy", choices=sorted(SCENARIOS))
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model-name", default="tiny-llama")
    parser.add_argument("--load-seconds", type=float, default=0.0)
    options = parser.parse_args(argv)
    serve(
        options.scenario,
        options.latency_scale,
        options.host,
        options.port,
        options.model_name,
        options.load_seconds,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
