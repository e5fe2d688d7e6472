"""Canary weights, stickiness and shadow copies, over real HTTP through the router."""

from __future__ import annotations

from collections import Counter
from typing import Any

import openai

from tests.router.conftest import LOCAL_MODEL, RouterWorld, wait_until
from tests.router.test_selection import binomial_bounds

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def two_releases(world: RouterWorld, stable: float, canary: float) -> list[dict[str, Any]]:
    return [
        {"id": "stable", "url": world.stable.url, "weight": stable},
        {"id": "canary", "url": world.canary.url, "weight": canary},
    ]


def backend_of(client: openai.OpenAI, **headers: str) -> str:
    """Which release answered one request."""
    raw = client.completions.with_raw_response.create(
        model=LOCAL_MODEL, prompt="hi", max_tokens=1, extra_headers=headers or None
    )
    return str(raw.headers["x-router-backend"])


def test_a_canary_at_10_percent_gets_exactly_100_of_1000_requests(world: RouterWorld) -> None:
    world.reconfigure(releases=two_releases(world, 90, 10))
    client = world.client()
    counts = Counter(backend_of(client) for _ in range(1000))
    assert counts == {"stable": 900, "canary": 100}
    assert len(world.canary.received()) == 100
    assert (
        world.metric(
            "llm_rollout_router_requests_total", route="default", backend="canary", outcome="ok"
        )
        == 100
    )


def test_sessions_at_10_percent_stay_within_binomial_bounds_and_stick(world: RouterWorld) -> None:
    world.reconfigure(releases=two_releases(world, 90, 10))
    client = world.client()
    n = 400
    first = {i: backend_of(client, **{"X-Session-ID": f"chat-{i}"}) for i in range(n)}
    low, high = binomial_bounds(n, 0.10)
    assert low <= Counter(first.values())["canary"] <= high
    # the same conversations again: each lands where it landed before
    for i in range(0, n, 4):
        assert backend_of(client, **{"X-Session-ID": f"chat-{i}"}) == first[i]
    # the session header reaches the release (a per-release vllm-router hashes on it)
    assert {r.headers["x-session-id"] for r in world.canary.received()} <= {
        f"chat-{i}" for i in range(n)
    }


def test_a_user_header_keeps_a_user_on_one_release(world: RouterWorld) -> None:
    world.reconfigure(releases=two_releases(world, 50, 50))
    client = world.client()
    for user in ("ada", "bob", "cy"):
        seen = {backend_of(client, **{"X-User-ID": user}) for _ in range(10)}
        assert len(seen) == 1


def test_shadow_copies_exactly_its_share_to_the_canary_and_drops_the_answers(
    world: RouterWorld,
) -> None:
    world.reconfigure(
        releases=two_releases(world, 100, 0), shadow={"release": "canary", "share": 0.2}
    )
    client = world.client()
    for _ in range(25):
        answer = client.chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
        assert answer.choices[0].message.content == world.stable.answer_text()
        stream = client.chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
            world.stable.answer_text()
        )
    assert len(world.stable.received()) == 50
    wait_until(
        lambda: world.metric("llm_rollout_router_shadow_requests_total", release="canary") == 10,
        "the shadow copies to finish",
    )
    copies = world.canary.received()
    assert len(copies) == 10
    assert all(copy.finished for copy in copies)  # read to the end, streams included
    assert {copy.headers["x-request-id"].endswith("-shadow") for copy in copies} == {True}
    assert sum(1 for copy in copies if copy.body.get("stream")) == 5
