"""Router benchmark: what the router adds to time to first token and what it can carry,
beside a direct connection, measured in one run against the same upstream.

    .venv/bin/python bench/router.py                  # 300 streams per path, 16 concurrent
    .venv/bin/python bench/router.py --requests 1000 --concurrency 32

The upstream is the sandbox's OpenAI stand-in answering at once (no model), so every
millisecond measured is the HTTP path's. Paths: direct; through `llm-rollout router serve`
(a separate process, as in a pod); and, when vllm-router is installed, through our router
in front of vllm-router (the layering docs/router.md recommends). Latency requests are sent
one at a time, the paths interleaved so drift hits each alike; throughput is requests per
second with `--concurrency` clients.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sandbox.openai_standin import OpenAIStandin  # noqa: E402
from sandbox.ports import free_port  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "tiny-llama"
STARTUP_SECONDS = 30


def start(command: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a server process and wait until `url`/v1/models answers."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            client.models.list()
            return process
        except openai.APIConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command[0]} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def router_process(upstream: str, folder: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    config = folder / f"{name}.json"
    release = {"id": "r1", "url": upstream, "weight": 1}
    config.write_text(json.dumps({"model": MODEL, "releases": [release]}))
    port = free_port()
    command = [str(BIN / "llm-rollout"), "router", "serve", str(config), "--port", str(port),
               "--host", "127.0.0.1", "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return start(command, url, folder / f"{name}.log"), url


def vllm_router_process(upstream: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [str(BIN / "vllm-router"), "--worker-urls", upstream, "--policy", "consistent_hash",
               "--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(free_port()),
               "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return start(command, url, folder / "vllm-router.log"), url


def first_token_seconds(client: openai.OpenAI, session: str) -> float:
    """Time from sending a streamed chat request to its first content token."""
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"X-Session-ID": session},
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    assert first is not None, "no token came back"
    return first


def throughput(url: str, requests: int, concurrency: int) -> float:
    """Non-streamed requests per second with `concurrency` clients."""
    clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
               for _ in range(concurrency)]  # fmt: skip

    def one(index: int) -> None:
        clients[index % concurrency].completions.create(model=MODEL, prompt="x", max_tokens=4)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # connections open, code warm
        started = time.perf_counter()
        list(pool.map(one, range(requests)))
    return requests / (time.perf_counter() - started)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="streams per path")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder, OpenAIStandin("pod", model=MODEL) as upstream:
        try:
            paths = {"direct": upstream.url}
            process, paths["router"] = router_process(upstream.url, Path(folder), "router")
            processes.append(process)
            if (BIN / "vllm-router").exists():
                process, engine = vllm_router_process(upstream.url, Path(folder))
                processes.append(process)
                process, paths["router→vllm-router"] = router_process(engine, Path(folder), "r2")
                processes.append(process)
            clients = {name: openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
                       for name, url in paths.items()}  # fmt: skip
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for index in range(args.requests):
                for name, client in clients.items():
                    samples[name].append(first_token_seconds(client, f"s{index % 50}"))
            rates = {name: throughput(url, args.requests, args.concurrency)
                     for name, url in paths.items()}  # fmt: skip
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
    base_p50 = statistics.median(samples["direct"])
    print(f"{args.requests} streams per path one at a time; throughput with "
          f"{args.concurrency} concurrent clients (non-streamed)")  # fmt: skip
    print(f"{'path':<20} {'TTFT p50':>10} {'p99':>10} {'added p50':>10} {'req/s':>8}")
    for name, values in samples.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        added = f"{1000 * (p50 - base_p50):+.2f}ms" if name != "direct" else "—"
        print(f"{name:<20} {1000 * p50:>8.2f}ms {1000 * p99:>8.2f}ms {added:>10} "
              f"{rates[name]:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
