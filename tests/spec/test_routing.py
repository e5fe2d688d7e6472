"""The spec's routing: section: what a user may write, and the message for what they may not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llm_rollout.spec import SpecFileError, load_spec
from llm_rollout.spec.routing import Routing

CLOUD = {"openai": {"base_url": "https://api.example.com/v1/", "model": "gpt-4o-mini"}}


def routing(*routes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"cloud": CLOUD, "routes": list(routes), **fields}


def problems_of(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Routing.model_validate(document)
    return str(caught.value)


VALID = [
    pytest.param({}, id="nothing: every request goes to the local model"),
    pytest.param(
        routing(
            {"name": "private", "match": {"task_types": ["medical"]}, "local_only": True},
            {"name": "review", "match": {"task_types": ["code_review"]}, "backend": "openai"},
            {"name": "default", "fallback": "openai", "max_waiting_requests": 8},
        ),
        id="the seed's routes: private data local, code review in the cloud, the rest local",
    ),
    pytest.param(
        routing({"name": "aliases", "match": {"models": ["gpt-4o", "tiny"]}, "fallback": "openai"}),
        id="a route by requested model names only (no catch-all: the rest is 404)",
    ),
]


@pytest.mark.parametrize("document", VALID)
def test_valid_routing_loads(document: dict[str, Any]) -> None:
    Routing.model_validate(document)


INVALID = [
    pytest.param(
        routing({"name": "a", "local_only": True, "fallback": "openai"}),
        "routes[0] 'a': local_only forbids a fallback",
        id="local_only with a fallback",
    ),
    pytest.param(
        routing({"name": "a", "backend": "openai", "local_only": True}),
        "routes[0] 'a': local_only needs backend 'local', not 'openai'",
        id="local_only on a cloud route",
    ),
    pytest.param(
        routing({"name": "a", "fallback": "anthropic"}),
        "fallback 'anthropic' is not a cloud backend (defined: openai)",
        id="fallback to an undefined backend",
    ),
    pytest.param(
        {"routes": [{"name": "a", "backend": "openai"}]},
        "backend 'openai' is neither 'local' nor a cloud backend (defined: none (add one under "
        "routing.cloud))",
        id="cloud backend named but none defined",
    ),
    pytest.param(
        routing({"name": "a", "backend": "openai", "fallback": "openai"}),
        "a cloud route has no fallback",
        id="fallback on a cloud route",
    ),
    pytest.param(
        routing({"name": "a", "backend": "openai", "max_waiting_requests": 3}),
        "max_waiting_requests is the local vLLM queue; a cloud route has none",
        id="queue limit on a cloud route",
    ),
    pytest.param(
        routing({"name": "a", "max_waiting_requests": 3}),
        "max_waiting_requests needs a fallback to send the overflow to",
        id="queue limit without a fallback",
    ),
    pytest.param(
        routing({"name": "a", "first_token_timeout_seconds": 60, "request_timeout_seconds": 30}),
        "first_token_timeout_seconds (60) exceeds request_timeout_seconds (30)",
        id="first-token timeout longer than the request's",
    ),
    pytest.param(
        routing({"name": "all"}, {"name": "review", "match": {"task_types": ["code_review"]}}),
        "routes[0] 'all': matches every request, so 'review' can never match",
        id="a catch-all before another route",
    ),
    pytest.param(
        routing({"name": "a"}, {"name": "a", "match": {"models": ["x"]}}),
        "routes[1] 'a': the name is used by an earlier route",
        id="two routes with one name",
    ),
    pytest.param(
        {"cloud": {"local": CLOUD["openai"]}},
        "'local' names the model's own pods",
        id="a cloud backend called local",
    ),
    pytest.param(
        {"cloud": {"openai": {"base_url": "api.example.com", "model": "m"}}},
        "'api.example.com' is not an http(s) URL",
        id="cloud base URL without a scheme",
    ),
    pytest.param(
        {"task_header": "X Task"}, "'X Task' is not an HTTP header name", id="bad header name"
    ),
    pytest.param({"routes": []}, "at least 1 item", id="no routes"),
    pytest.param(
        routing({"name": "Default Route"}), "is not a route name", id="route name not a label"
    ),
    pytest.param({"shadow_share": 1.5}, "less than or equal to 1", id="shadow share above 1"),
]


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_invalid_routing_is_refused_naming_the_route_and_the_rule(
    document: dict[str, Any], message: str
) -> None:
    assert message in problems_of(document)


def test_every_broken_rule_is_reported_at_once() -> None:
    text = problems_of(
        routing(
            {"name": "a", "local_only": True, "fallback": "openai"},
            {"name": "b", "backend": "nowhere"},
        )
    )
    assert "routes[0] 'a': local_only forbids a fallback" in text
    assert "routes[1] 'b': backend 'nowhere'" in text


def test_the_first_matching_route_takes_the_request() -> None:
    routes = Routing.model_validate(
        routing(
            {"name": "private", "match": {"task_types": ["medical"]}, "local_only": True},
            {"name": "gpt", "match": {"models": ["gpt-4o"]}, "backend": "openai"},
            {"name": "both", "match": {"models": ["m"], "task_types": ["chat"]}},
            {"name": "default", "fallback": "openai"},
        )
    )
    assert routes.route_for("gpt-4o", "medical").name == "private"  # type: ignore[union-attr]
    assert routes.route_for("gpt-4o", None).name == "gpt"  # type: ignore[union-attr]
    assert routes.route_for("m", "chat").name == "both"  # type: ignore[union-attr]
    assert routes.route_for("m", "other").name == "default"  # type: ignore[union-attr]
    assert (
        Routing.model_validate(routing({"name": "x", "match": {"models": ["a"]}})).route_for(
            "b", None
        )
        is None
    )


def test_a_spec_file_with_a_broken_route_names_the_file_and_the_field(write_spec: Any) -> None:
    path: Path = write_spec(
        routing=routing({"name": "a", "local_only": True, "fallback": "openai"})
    )
    with pytest.raises(SpecFileError) as caught:
        load_spec(path)
    (problem,) = caught.value.problems
    assert problem.path == path
    assert problem.field == "routing.routes"
    assert "local_only forbids a fallback" in problem.message
    assert problem.line is not None


def test_a_spec_without_routing_has_no_router(write_spec: Any) -> None:
    assert load_spec(write_spec()).routing is None


def test_the_cloud_base_url_loses_its_trailing_slash() -> None:
    assert Routing.model_validate({"cloud": CLOUD}).cloud["openai"].base_url.endswith("/v1")
