"""When the local model cannot answer, the route's cloud backend does; when nothing may leave
the cluster, the client gets a 503 saying why; once tokens are out, nothing is retried."""

from __future__ import annotations

import socket
import time
from typing import Any

import openai
import pytest

from tests.router.conftest import CLOUD_MODEL, LOCAL_MODEL, RouterWorld, base_config, wait_until

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def ask(world: RouterWorld, **headers: str) -> Any:
    """One non-streamed chat request; the raw response (headers) with its parsed answer."""
    raw = world.client(**headers).chat.completions.with_raw_response.create(
        model=LOCAL_MODEL, messages=MESSAGES
    )
    return raw


def answered_by(raw: Any) -> tuple[str, str | None, str]:
    """(backend, fallback reason, answer text) of a raw response."""
    text = raw.parse().choices[0].message.content
    return raw.headers["x-router-backend"], raw.headers.get("x-router-fallback"), text


def local_only_routes(world: RouterWorld) -> dict[str, Any]:
    routing = base_config(world)["routing"]
    return {
        **routing,
        "routes": [
            {"name": "private", "match": {"task_types": ["medical"]}, "local_only": True,
             "first_token_timeout_seconds": 5, "request_timeout_seconds": 30},
            *routing["routes"],
        ],
    }  # fmt: skip


def test_a_healthy_local_model_answers_and_the_cloud_sees_nothing(world: RouterWorld) -> None:
    backend, reason, text = answered_by(ask(world))
    assert (backend, reason) == ("stable", None)
    assert text == world.stable.answer_text()
    assert world.cloud.received() == []


def test_local_5xx_falls_back_to_the_cloud_with_the_cloud_model(world: RouterWorld) -> None:
    world.stable.faults.status = 500
    backend, reason, text = answered_by(ask(world))
    assert (backend, reason, text) == ("cloud", "local_error", world.cloud.answer_text())
    (sent,) = world.cloud.received()
    assert sent.body["model"] == CLOUD_MODEL
    assert world.metric("llm_rollout_router_fallbacks_total", reason="local_error") == 1


def test_local_down_falls_back(world: RouterWorld) -> None:
    world.stable.stop()
    backend, reason, _ = answered_by(ask(world))
    assert (backend, reason) == ("cloud", "local_unreachable")


def test_a_slow_first_token_falls_back_before_the_client_waits_long(world: RouterWorld) -> None:
    routing = base_config(world)["routing"]
    routing["routes"][0]["first_token_timeout_seconds"] = 0.5
    world.reconfigure(routing=routing)
    world.stable.faults.first_token_delay = 30.0
    started = time.monotonic()
    stream = world.client().chat.completions.create(
        model=LOCAL_MODEL, messages=MESSAGES, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == world.cloud.answer_text()
    assert time.monotonic() - started < 15  # the fallback did not wait for the local token
    assert world.metric("llm_rollout_router_fallbacks_total", reason="local_timeout") == 1


def test_a_full_local_queue_sends_requests_to_the_cloud(world: RouterWorld) -> None:
    routing = base_config(world)["routing"]
    routing["routes"][0]["max_waiting_requests"] = 5
    world.reconfigure(routing=routing)
    world.stable.set_waiting(12)  # vllm:num_requests_waiting on the release's /metrics
    wait_until(
        lambda: world.metric("llm_rollout_router_release_waiting_requests", release="stable") == 12,
        "the router to read the release's queue",
    )
    backend, reason, _ = answered_by(ask(world))
    assert (backend, reason) == ("cloud", "queue_full")
    assert world.stable.received() == []
    world.stable.set_waiting(5)  # at the limit is not above it
    wait_until(
        lambda: world.metric("llm_rollout_router_release_waiting_requests", release="stable") == 5,
        "the router to read the shorter queue",
    )
    assert answered_by(ask(world))[:2] == ("stable", None)


def test_a_degraded_model_sends_requests_to_the_cloud(world: RouterWorld) -> None:
    world.reconfigure(degraded="rolling back release abc123")
    backend, reason, _ = answered_by(ask(world))
    assert (backend, reason) == ("cloud", "degraded")
    assert world.stable.received() == []
    assert world.metric("llm_rollout_router_degraded") == 1


def test_degraded_with_the_cloud_down_too_is_still_served_locally(world: RouterWorld) -> None:
    world.reconfigure(degraded="gate held")
    world.cloud.faults.status = 503
    backend, reason, _ = answered_by(ask(world))
    assert (backend, reason) == ("stable", None)


def test_local_only_with_local_down_is_a_503_naming_the_reason(world: RouterWorld) -> None:
    world.reconfigure(routing=local_only_routes(world))
    world.stable.faults.status = 500
    with pytest.raises(openai.InternalServerError) as caught:
        world.client(**{"X-Task-Type": "medical"}).chat.completions.create(
            model=LOCAL_MODEL, messages=MESSAGES
        )
    assert caught.value.status_code == 503
    assert "route 'private' is local_only" in caught.value.message
    assert "answered 500" in caught.value.message
    assert world.cloud.received() == []
    assert (
        world.metric("llm_rollout_router_requests_total", route="private", outcome="unavailable")
        == 1
    )


def test_local_only_ignores_degraded_and_stays_local(world: RouterWorld) -> None:
    world.reconfigure(routing=local_only_routes(world), degraded="rolling back")
    backend, reason, _ = answered_by(ask(world, **{"X-Task-Type": "medical"}))
    assert (backend, reason) == ("stable", None)
    assert world.cloud.received() == []


def test_cloud_down_too_returns_the_local_error_quickly(world: RouterWorld) -> None:
    world.stable.faults.status = 500
    world.cloud.stop()
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        world.client().chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    assert caught.value.status_code == 500
    assert "stable failed" in caught.value.message  # the local server's own error body
    assert time.monotonic() - started < 10  # not the cloud's 120 s timeout


def test_a_stream_that_breaks_after_tokens_is_not_retried(world: RouterWorld) -> None:
    world.stable.faults.die_after_tokens = 2
    # tokens 0.2 s apart: the router has relayed them before the server dies (a death within
    # the first read is a failure before any token, which rightly falls back)
    world.stable.faults.token_delay = 0.2
    received: list[str] = []
    stream = world.client().chat.completions.create(
        model=LOCAL_MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "stable-0 stable-1"
    assert "broke off mid-stream" in caught.value.message
    assert world.cloud.received() == []
    assert (
        world.metric("llm_rollout_router_requests_total", backend="stable", outcome="stream_broken")
        == 1
    )


def test_a_client_that_leaves_mid_stream_closes_the_local_stream(world: RouterWorld) -> None:
    world.stable.state.tokens = 200
    world.stable.faults.token_delay = 0.05
    stream = world.client().chat.completions.create(
        model=LOCAL_MODEL, messages=MESSAGES, stream=True
    )
    next(iter(stream))
    stream.close()
    wait_until(
        lambda: world.stable.received()[0].client_gone, "the local server to see the client gone"
    )
    assert not world.stable.received()[0].finished


def test_a_stream_that_dies_before_its_first_token_falls_back(world: RouterWorld) -> None:
    world.stable.faults.die_after_tokens = 0  # headers sent, then the process is gone
    stream = world.client().completions.create(model=LOCAL_MODEL, prompt="once", stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == world.cloud.answer_text()
    assert world.metric("llm_rollout_router_fallbacks_total", reason="local_error") == 1


def test_a_release_that_refuses_connections_is_skipped_before_any_fallback(
    world: RouterWorld,
) -> None:
    """A release scaled to zero while this router still reads the old weights (a ConfigMap
    volume updates within the kubelet's sync period): its Service refuses connections, the
    request never reached it, so another release answers it — not the cloud, not an error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    world.reconfigure(
        releases=[
            {"id": "gone", "url": gone, "weight": 50},
            {"id": "stable", "url": world.stable.url, "weight": 50},
        ]
    )
    answers = [answered_by(ask(world)) for _ in range(10)]
    assert {(backend, reason) for backend, reason, _ in answers} == {("stable", None)}
    assert world.cloud.received() == []
    assert world.metric("llm_rollout_router_release_retries_total", release="gone") == 5
    assert world.metric("llm_rollout_router_fallbacks_total", reason="local_unreachable") == 0
