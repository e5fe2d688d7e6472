"""Our router in front of vllm-router, the engine that balances one release's pods: the
release is chosen by weight (ours), the pod by consistent hashing of the same session header
(vllm-router's), so a conversation stays on one pod of one release."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from llm_rollout.router.server import RouterThread
from sandbox.openai_standin import OpenAIStandin
from sandbox.ports import free_port
from tests.router.conftest import LOCAL_MODEL, RELOAD_SECONDS, wait_until, write_config
from tests.router.test_selection import binomial_bounds

VLLM_ROUTER = Path(sys.executable).parent / "vllm-router"
# vllm-router waits for its workers' /health before it serves; the stand-ins answer at once.
STARTUP_SECONDS = 30


@dataclass
class Layered:
    """Two releases of two pods each, a vllm-router per release, our router before them."""

    pods: dict[str, list[OpenAIStandin]]
    client: openai.OpenAI


def start_vllm_router(pods: list[OpenAIStandin], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """vllm-router over `pods`, hashing the session header (its `consistent_hash` policy)."""
    port = free_port()
    command = [
        str(VLLM_ROUTER),
        "--worker-urls", *[pod.url for pod in pods],
        "--policy", "consistent_hash",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--prometheus-port", str(free_port()),
        "--worker-startup-timeout-secs", str(STARTUP_SECONDS),
        "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def layered(tmp_path: Path) -> Iterator[Layered]:
    with ExitStack() as stack:
        pods = {
            release: [
                stack.enter_context(OpenAIStandin(f"{release}{pod}", model=LOCAL_MODEL))
                for pod in ("a", "b")
            ]
            for release in ("r1", "r2")
        }
        urls = {}
        for release, members in pods.items():
            process, urls[release] = start_vllm_router(members, tmp_path / f"{release}.log")
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
        config = tmp_path / "router.json"
        write_config(
            config,
            {
                "model": LOCAL_MODEL,
                "releases": [
                    {"id": "r1", "url": urls["r1"], "weight": 75,
                     "metrics_urls": [f"{pod.url}/metrics" for pod in pods["r1"]]},
                    {"id": "r2", "url": urls["r2"], "weight": 25,
                     "metrics_urls": [f"{pod.url}/metrics" for pod in pods["r2"]]},
                ],
            },
        )  # fmt: skip
        router = stack.enter_context(RouterThread(config, reload_interval=RELOAD_SECONDS))
        client = openai.OpenAI(base_url=f"{router.url}/v1", api_key="x", max_retries=0)

        def serving() -> bool:
            try:
                for url in urls.values():
                    direct = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
                    direct.models.list()  # vllm-router asks one of its pods
                return True
            except openai.APIConnectionError:
                return False

        wait_until(serving, "the vllm-routers to serve", timeout=STARTUP_SECONDS)
        yield Layered(pods, client)


def pod_of(layered: Layered, session: str) -> str:
    """The pod that answered (its name opens every answer, e.g. 'r2b-0 r2b-1 …')."""
    answer = layered.client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Session-ID": session},
    )
    content = answer.choices[0].message.content or ""
    return content.split("-")[0]


def test_a_conversation_stays_on_one_pod_of_one_release(layered: Layered) -> None:
    first = {session: pod_of(layered, session) for session in (f"chat-{i}" for i in range(120))}
    assert all(pod_of(layered, session) == pod for session, pod in list(first.items())[::3])
    releases = Counter(pod[:2] for pod in first.values())
    low, high = binomial_bounds(120, 0.25)
    assert low <= releases["r2"] <= high
    assert len(set(first.values())) == 4  # vllm-router spreads each release's sessions
    # the model name reached the pods through both routers unchanged
    assert {r.body["model"] for p in layered.pods["r1"] for r in p.received()} == {LOCAL_MODEL}


def test_sessionless_requests_get_the_releases_exact_shares(layered: Layered) -> None:
    before = {r: sum(len(p.received()) for p in pods) for r, pods in layered.pods.items()}
    for _ in range(200):
        layered.client.completions.create(model=LOCAL_MODEL, prompt="x", max_tokens=1)
    after = {r: sum(len(p.received()) for p in pods) for r, pods in layered.pods.items()}
    assert after["r2"] - before["r2"] == 50
    assert after["r1"] - before["r1"] == 150
