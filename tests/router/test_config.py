"""The router's config document: the controller rewrites it, the router follows; a broken
one is refused with the field named, at start and on reload (the old one stays in force)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_rollout.router.config import (
    Release,
    RouterConfigError,
    api_key_env_vars,
    config_for,
    load_config,
)
from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.routing import Routing
from tests.conftest import MINIMAL_SPEC, merged
from tests.router.conftest import LOCAL_MODEL, RouterWorld, base_config, wait_until, write_config

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def test_a_changed_config_moves_the_traffic(world: RouterWorld) -> None:
    client = world.client()
    assert (
        client.chat.completions.with_raw_response.create(
            model=LOCAL_MODEL, messages=MESSAGES
        ).headers["x-router-backend"]
        == "stable"
    )
    world.reconfigure(releases=[{"id": "canary", "url": world.canary.url, "weight": 1}])
    assert (
        client.chat.completions.with_raw_response.create(
            model=LOCAL_MODEL, messages=MESSAGES
        ).headers["x-router-backend"]
        == "canary"
    )
    assert world.metric("llm_rollout_router_config_reloads_total", outcome="ok") == 1


def test_a_broken_config_is_reported_and_the_old_one_kept(world: RouterWorld) -> None:
    broken = base_config(world)
    broken["releases"].append({"id": "stable", "url": world.canary.url, "weight": 5})
    write_config(world.config_path, broken)
    wait_until(
        lambda: world.metric("llm_rollout_router_config_reloads_total", outcome="error") == 1,
        "the router to refuse the broken config",
    )
    answer = world.client().chat.completions.create(model=LOCAL_MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == world.stable.answer_text()
    assert world.canary.received() == []
    assert world.router.router.last_reload_error is not None
    assert "releases: ids used twice: stable" in world.router.router.last_reload_error


BROKEN: list[Any] = [
    pytest.param("model: [", "not YAML or JSON", id="not YAML"),
    pytest.param("- a list", "expected a mapping, got list", id="a list"),
    pytest.param(
        {"model": "m", "releases": [{"id": "a", "url": "http://a", "weight": 0}]},
        "every weight is 0",
        id="no weight anywhere",
    ),
    pytest.param(
        {"model": "m", "releases": [{"id": "a", "url": "a:8000", "weight": 1}]},
        "releases.0.url: 'a:8000' is not an http(s) URL",
        id="URL without a scheme",
    ),
    pytest.param(
        {
            "model": "m",
            "releases": [{"id": "a", "url": "http://a", "weight": 1}],
            "shadow": {"release": "b", "share": 0.1},
        },
        "shadow.release: 'b' is not in releases (a)",
        id="shadow of an unknown release",
    ),
    pytest.param(
        {"model": "m", "routing": {"routes": [{"name": "a", "local_only": True, "fallback": "x"}]}},
        "routing.routes: routes[0] 'a': fallback 'x' is not a cloud backend",
        id="a broken route",
    ),
    pytest.param({"model": "m", "weights": {}}, "weights: Extra inputs", id="unknown field"),
]


@pytest.mark.parametrize(("document", "message"), BROKEN)
def test_a_broken_config_file_names_the_field(tmp_path: Path, document: Any, message: str) -> None:
    path = tmp_path / "router.yaml"
    if isinstance(document, str):
        path.write_text(document)
    else:
        write_config(path, document)
    with pytest.raises(RouterConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in caught.value.message


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RouterConfigError, match="cannot read: No such file"):
        load_config(tmp_path / "absent.yaml")


def test_the_controllers_config_carries_the_specs_routes_and_its_decisions() -> None:
    spec = ReleaseSpec.model_validate(
        merged(
            MINIMAL_SPEC,
            {
                "serving": {"vllm_version": "0.11.0", "served_model_name": "qwen"},
                "routing": {
                    "image": "registry.example.com/llm-rollout-user-code:1",
                    "cloud": {"openai": {"base_url": "https://api.example.com/v1", "model": "m"}},
                    "routes": [{"name": "default", "fallback": "openai"}],
                    "shadow_share": 0.1,
                },
            },
        )
    )
    releases = [
        Release(id="r1", url="http://qwen-r1:8000", weight=95),
        Release(id="r2", url="http://qwen-r2:8000", weight=5),
    ]
    config = config_for(spec, releases, degraded="gate held", shadow_release="r2")
    assert config.model == "qwen"
    assert config.routing == spec.routing
    assert config.shadow is not None and (config.shadow.release, config.shadow.share) == ("r2", 0.1)
    assert config.degraded == "gate held"
    plain = ReleaseSpec.model_validate(MINIMAL_SPEC)
    default = config_for(plain, releases[:1], shadow_release="r1")
    assert default.shadow is None  # no shadow share in the spec: no shadow
    assert [route.name for route in default.routing.routes] == ["default"]


def test_the_router_container_gets_each_cloud_key_from_its_secret() -> None:
    routing = Routing.model_validate(
        {
            "cloud": {
                "hosted-eu": {
                    "base_url": "https://eu.example.com/v1",
                    "model": "m",
                    "api_key_secret": {"name": "eu-key", "key": "token"},
                },
                "open": {"base_url": "http://mirror.internal/v1", "model": "m"},
            }
        }
    )
    assert api_key_env_vars(routing) == [
        {
            "name": "LLM_ROLLOUT_CLOUD_HOSTED_EU_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "eu-key", "key": "token"}},
        }
    ]
