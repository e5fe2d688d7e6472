"""The router's OpenAI-compatible front: answers pass through unchanged, routes pick the
backend by model name and task header, the `model` is rewritten per backend."""

from __future__ import annotations

import asyncio
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import openai
import pytest

from tests.router.conftest import CLOUD_MODEL, LOCAL_MODEL, RouterWorld, base_config, wait_until

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def seed_routes(world: RouterWorld) -> dict[str, Any]:
    """The seed's smart_route as routes: code review in the cloud, 'gpt-4o' an alias of local."""
    routing = base_config(world)["routing"]
    return {
        **routing,
        "routes": [
            {"name": "review", "match": {"task_types": ["code_review"]}, "backend": "cloud"},
            {"name": "alias", "match": {"models": ["gpt-4o"]}, "fallback": "cloud"},
            {"name": "local", "match": {"models": [LOCAL_MODEL]}, "fallback": "cloud"},
        ],
    }


def test_a_chat_answer_passes_through_unchanged(world: RouterWorld) -> None:
    answer = world.client().chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == world.stable.answer_text()
    assert answer.model == LOCAL_MODEL
    assert answer.usage is not None and answer.usage.completion_tokens == 4


def test_a_stream_passes_through_token_by_token(world: RouterWorld) -> None:
    stream = world.client().chat.completions.create(
        model=LOCAL_MODEL, messages=MESSAGES, stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert pieces == ["", "stable-0", " stable-1", " stable-2", " stable-3", None]


def test_completions_and_embeddings_pass_through(world: RouterWorld) -> None:
    client = world.client()
    completion = client.completions.create(model=LOCAL_MODEL, prompt="once", max_tokens=4)
    assert completion.choices[0].text == world.stable.answer_text()
    streamed = client.completions.create(model=LOCAL_MODEL, prompt="once", stream=True)
    assert "".join(c.choices[0].text for c in streamed) == world.stable.answer_text()
    embedding = client.embeddings.create(model=LOCAL_MODEL, input="once")
    assert embedding.data[0].embedding == [0.25, -0.5, 0.125]
    paths = [r.path for r in world.stable.received()]
    assert paths == ["/v1/completions", "/v1/completions", "/v1/embeddings"]


def test_the_request_id_reaches_the_backend_and_comes_back(world: RouterWorld) -> None:
    raw = world.client(**{"X-Request-ID": "req-42"}).chat.completions.with_raw_response.create(
        model=LOCAL_MODEL, messages=MESSAGES
    )
    assert raw.headers["x-request-id"] == "req-42"
    assert world.stable.received()[0].headers["x-request-id"] == "req-42"


def test_a_task_header_sends_code_review_to_the_cloud_with_its_key_and_model(
    world: RouterWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_ROLLOUT_CLOUD_CLOUD_API_KEY", "sk-cloud")
    world.reconfigure(routing=seed_routes(world))
    client = world.client(**{"X-Task-Type": "code_review", "Authorization": "Bearer client"})
    answer = client.chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == world.cloud.answer_text()
    (sent,) = world.cloud.received()
    assert sent.body["model"] == CLOUD_MODEL
    assert sent.headers["authorization"] == "Bearer sk-cloud"  # never the client's own key
    assert world.stable.received() == []
    assert world.metric("llm_rollout_router_cloud_tokens_total", kind="completion") == 4


def test_a_model_alias_is_served_locally_under_the_local_name(world: RouterWorld) -> None:
    world.reconfigure(routing=seed_routes(world))
    world.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert world.stable.received()[0].body["model"] == LOCAL_MODEL
    listed = [model.id for model in world.client().models.list()]
    assert listed == [LOCAL_MODEL, "gpt-4o"]


def test_a_request_no_route_takes_is_a_404_naming_model_and_task(world: RouterWorld) -> None:
    world.reconfigure(routing=seed_routes(world))
    with pytest.raises(openai.NotFoundError) as caught:
        world.client(**{"X-Task-Type": "poetry"}).chat.completions.create(
            model="llama-70b", messages=MESSAGES
        )
    assert "no route takes model 'llama-70b' and X-Task-Type 'poetry'" in caught.value.message


def test_a_body_that_is_not_json_is_a_400(world: RouterWorld) -> None:
    request = urllib.request.Request(
        f"{world.url}/v1/chat/completions", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400


def test_requests_are_counted_by_route_backend_and_outcome(world: RouterWorld) -> None:
    client = world.client()
    for _ in range(3):
        client.chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    world.stable.faults.status = 400  # a client error is passed on, not a reason to fall back
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    requests = "llm_rollout_router_requests_total"
    assert world.metric(requests, route="default", backend="stable", outcome="ok") == 3
    assert world.metric(requests, route="default", backend="stable", outcome="client_error") == 1
    assert world.cloud.received() == []
    assert world.metric("llm_rollout_router_request_duration_seconds_count", backend="stable") == 4


def test_many_streams_at_once_all_reach_the_release_without_waiting_in_the_router(
    world: RouterWorld,
) -> None:
    # 150 long streams, more than aiohttp's default pool of 100 upstream connections
    streams, token_gap = 150, 12.0
    routing = base_config(world)["routing"]
    routing["routes"][0]["first_token_timeout_seconds"] = 5  # a loaded machine connects slowly
    routing["routes"][0]["request_timeout_seconds"] = 60
    world.reconfigure(routing=routing)
    world.stable.state.tokens = 2
    world.stable.faults.token_delay = token_gap
    body = {"model": LOCAL_MODEL, "prompt": "x", "stream": True}

    async def clients() -> list[bytes]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> bytes:
                async with session.post(f"{world.url}/v1/completions", json=body) as response:
                    return await response.read()

            return await asyncio.gather(*(one() for _ in range(streams)))

    with ThreadPoolExecutor(1) as pool:
        answering = pool.submit(asyncio.run, clients())

        def all_open_at_once() -> bool:
            received = world.stable.received()
            return len(received) == streams and not any(r.finished for r in received)

        wait_until(all_open_at_once, f"{streams} streams open at the release", token_gap - 1)
        answers = answering.result(timeout=60)
    assert all(answer.endswith(b"data: [DONE]\n\n") for answer in answers)
    assert world.cloud.received() == []
