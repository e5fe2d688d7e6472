"""The router in front of real vLLM (the CPU build serving the tiny model, the session's pair:
one as the stable release, one as the canary), with the official `openai` client, streaming
and not: answers are vLLM's own, the canary gets its configured weight, its queue is read from
vLLM's real /metrics, and the cloud fallback is not used while vLLM answers."""

from __future__ import annotations

import collections
import urllib.request
from pathlib import Path

import openai

from llm_rollout.router.server import RouterThread
from sandbox.openai_standin import OpenAIStandin
from tests.fixtures.sandbox_servers import VllmPair
from tests.router.conftest import (
    CLOUD_MODEL,
    LOCAL_MODEL,
    RELOAD_SECONDS,
    base_config,
    write_config,
)

CANARY_WEIGHT = 20
REQUESTS = 30
MESSAGES = [{"role": "user", "content": "the canary sings"}]


def test_the_router_serves_real_vllm_with_the_canarys_weight_streaming_and_not(
    real_vllm_pair: VllmPair, tmp_path: Path
) -> None:
    stable, canary = real_vllm_pair.stable, real_vllm_pair.canary
    with OpenAIStandin("cloud", model=CLOUD_MODEL) as cloud:
        config = base_config(stable=stable.url, cloud=cloud.url)
        config["releases"] = [
            {"id": "stable", "url": stable.url, "weight": 100 - CANARY_WEIGHT},
            {"id": "canary", "url": canary.url, "weight": CANARY_WEIGHT},
        ]
        route = config["routing"]["routes"][0]
        # a queue limit makes the router read vLLM's own vllm:num_requests_waiting
        route["max_waiting_requests"] = 50
        # CPU vLLM on a busy machine: never a fallback
        route.update(first_token_timeout_seconds=60, request_timeout_seconds=120)
        path = tmp_path / "router.json"
        write_config(path, config)
        with RouterThread(path, reload_interval=RELOAD_SECONDS) as router:
            client = openai.OpenAI(
                base_url=f"{router.url}/v1", api_key="unused", max_retries=0, timeout=60
            )
            answered: collections.Counter[str] = collections.Counter()
            for _ in range(REQUESTS):
                raw = client.chat.completions.with_raw_response.create(
                    model=LOCAL_MODEL,
                    messages=MESSAGES,
                    max_tokens=4,
                    temperature=0,  # type: ignore[arg-type]
                )
                completion = raw.parse()
                # vLLM's own answer (the tiny model's text may be only whitespace)
                assert completion.model == LOCAL_MODEL and completion.choices[0].finish_reason
                assert completion.usage and completion.usage.completion_tokens >= 1, completion
                answered[raw.headers["X-Router-Backend"]] += 1
            # smooth weighted round robin on one router: the share to one request
            assert abs(answered["canary"] - REQUESTS * CANARY_WEIGHT / 100) <= 1, answered
            assert answered["stable"] + answered["canary"] == REQUESTS, answered

            stream = client.chat.completions.create(
                model=LOCAL_MODEL,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=8,
                temperature=0,
                stream=True,
            )
            chunks = list(stream)
            pieces = [c.choices[0].delta.content for c in chunks if c.choices]
            assert sum(piece is not None for piece in pieces) >= 2, chunks  # token by token
            assert any(c.choices and c.choices[0].finish_reason for c in chunks), chunks
            with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:
                metrics = response.read().decode()
        for release in ("stable", "canary"):  # read from each vLLM's own /metrics
            assert f'llm_rollout_router_release_waiting_requests{{release="{release}"}}' in metrics
        assert not cloud.received(), "the cloud fallback answered while vLLM was healthy"
