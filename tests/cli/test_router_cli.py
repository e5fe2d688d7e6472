"""`llm-rollout router serve` and `router check`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sandbox.openai_standin import OpenAIStandin
from sandbox.ports import free_port
from tests.router.conftest import LOCAL_MODEL, base_config, wait_until, write_config

COMMAND = str(Path(sys.executable).parent / "llm-rollout")


@pytest.fixture
def local_and_cloud() -> Iterator[tuple[OpenAIStandin, OpenAIStandin]]:
    with OpenAIStandin("stable", model=LOCAL_MODEL) as stable, OpenAIStandin("cloud") as cloud:
        yield stable, cloud


def test_serve_answers_through_the_router_process(
    tmp_path: Path, local_and_cloud: tuple[OpenAIStandin, OpenAIStandin]
) -> None:
    stable, cloud = local_and_cloud
    config = tmp_path / "router.json"
    write_config(config, base_config(stable=stable.url, cloud=cloud.url))
    port = free_port()
    process = subprocess.Popen(
        [COMMAND, "router", "serve", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)

        def answers() -> bool:
            try:
                client.models.list()
                return True
            except openai.APIConnectionError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                return False

        wait_until(answers, "the router process to listen", timeout=30)
        answer = client.chat.completions.create(
            model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == stable.answer_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_with_a_broken_config_exits_1_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"model": "m", "releases": [{"id": "a", "weight": 1}]}))
    result = subprocess.run(
        [COMMAND, "router", "serve", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"error: {config}: releases.0.url: Field required" in result.stderr


def test_check_prints_where_the_traffic_goes(tmp_path: Path) -> None:
    config = tmp_path / "router.json"
    document = base_config(stable="http://r1:8000", cloud="https://api.example.com")
    document["releases"].append({"id": "canary", "url": "http://r2:8000", "weight": 25})
    write_config(config, document)
    result = subprocess.run(
        [COMMAND, "router", "check", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "release stable: 80.0% → http://r1:8000" in result.stdout
    assert "release canary: 20.0% → http://r2:8000" in result.stdout
    assert "cloud cloud: API key from $LLM_ROLLOUT_CLOUD_CLOUD_API_KEY" in result.stdout
