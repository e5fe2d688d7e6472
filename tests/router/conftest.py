"""A router in front of stand-in servers: two local releases and a cloud API, on free ports."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_rollout.router.config import RouterConfig
from llm_rollout.router.server import RouterThread
from sandbox.openai_standin import OpenAIStandin

LOCAL_MODEL = "tiny-llama"
CLOUD_MODEL = "gpt-cloud"
# The router re-reads its config this often in tests (1 s in production).
RELOAD_SECONDS = 0.05


@dataclass
class RouterWorld:
    """The router, what it routes to, and its config file."""

    stable: OpenAIStandin
    canary: OpenAIStandin
    cloud: OpenAIStandin
    config_path: Path
    router: RouterThread

    @property
    def url(self) -> str:
        return self.router.url

    def client(self, **headers: str) -> openai.OpenAI:
        """The official client through the router; it must not retry on its own."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key="unused",
            max_retries=0,
            timeout=20,
            default_headers=headers or None,
        )

    def reconfigure(self, **changes: Any) -> None:
        """Write the base config with `changes` and wait until the router has it in force."""
        document = base_config(self) | changes
        write_config(self.config_path, document)
        expected = RouterConfig.model_validate(document).model_dump(mode="json")

        def loaded() -> bool:
            shown = _get_json(f"{self.url}/router/config")
            shown.pop("last_reload_error")
            return bool(shown == expected)

        wait_until(loaded, "the router to load the new config")

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the router's /metrics (0 when the series does not exist yet)."""
        return metric_value(f"{self.url}/metrics", name, **labels)


def base_config(world: RouterWorld | None = None, **urls: str) -> dict[str, Any]:
    """One local release (stable) with a cloud fallback on every request."""
    stable = urls.get("stable") or (world.stable.url if world else "")
    cloud = urls.get("cloud") or (world.cloud.url if world else "")
    return {
        "model": LOCAL_MODEL,
        "releases": [{"id": "stable", "url": stable, "weight": 100}],
        "queue_poll_seconds": 0.05,
        "routing": {
            "cloud": {"cloud": {"base_url": f"{cloud}/v1", "model": CLOUD_MODEL}},
            "routes": [
                {
                    "name": "default",
                    "fallback": "cloud",
                    # generous: a loaded CI machine must not turn healthy answers into
                    # fallbacks; the timeout tests set their own
                    "first_token_timeout_seconds": 5,
                    "request_timeout_seconds": 30,
                }
            ],
        },
    }


def write_config(path: Path, document: dict[str, Any]) -> None:
    """Replace the file in one step, as a ConfigMap volume does (never a half-written file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def metric_value(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` with these labels on a Prometheus text page (the
    series' value when the labels name one series); 0 when there is none."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[RouterWorld]:
    """Stand-ins for a stable and a canary release and a cloud API, and a router before them
    (every request local on the stable release, falling back to the cloud)."""
    with (
        OpenAIStandin("stable", model=LOCAL_MODEL) as stable,
        OpenAIStandin("canary", model=LOCAL_MODEL) as canary,
        OpenAIStandin("cloud", model=CLOUD_MODEL) as cloud,
    ):
        path = tmp_path / "router.json"
        write_config(path, base_config(stable=stable.url, cloud=cloud.url))
        with RouterThread(path, reload_interval=RELOAD_SECONDS) as router:
            yield RouterWorld(stable, canary, cloud, path, router)
