"""The router on the sandbox cluster in front of real CPU vLLM pods (#19): the tiny model's
weights published to the cluster's NFS export, a stable and a canary release each a real
vLLM pod (the official image's runtime), the router pod (`llm-rollout router serve` from the
llm-rollout image) with the weights the release controller gave the gated canary, and the
official `openai` client sending through the router's Service, streaming and not.

The share is exact, not statistical: without a session header the router's weighted round
robin gives each release its weight's share of every 100 requests (router/selection.py), and
each vLLM pod's own `vllm:request_success_total` counts what it answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import router_manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import Installed, Phase, Started
from llm_rollout.spec import ReleaseSpec, load_spec
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from sandbox.prometheus import PrometheusMissing
from sandbox.tiny_model import REPO_ID
from sandbox.vllm_process import VllmNotInstalled, vllm_python
from sandbox.world import SandboxWorld
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import wait_for
from tests.k8s.test_router_release import ROUTER_IMAGE, Clients, tick_until, wait_loaded, weights
from tests.router.conftest import metric_value

pytestmark = pytest.mark.real_vllm

CANARY_WEIGHT = 30
REQUESTS = 50  # non-streaming, then STREAMS streams: 60 in all, 18 of them the canary's
STREAMS = 10
# two tags of the official image: two releases, both served by the CPU build here
STABLE_IMAGE = "vllm/vllm-openai:v0.32.0"
CANARY_IMAGE = "docker.io/vllm/vllm-openai:v0.32.0"
LOAD_SECONDS = 300  # a CPU vLLM pod loads in ~20-60 s here, more beside the other lanes


@pytest.fixture
def world(tmp_path: Path, tiny_model_dir: Path) -> Iterator[SandboxWorld]:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(f"real vLLM is not installed here: {missing}")
    started = SandboxWorld(tmp_path / "world", tiny_model_dir=tiny_model_dir)
    try:
        started.start()
    except PrometheusMissing as missing:
        pytest.skip(str(missing))
    try:
        yield started
    finally:
        started.stop()


def routed_spec(world: SandboxWorld) -> ReleaseSpec:
    demo = load_spec(DEMO_SPEC).model_dump(mode="json")
    demo["routing"] = {"image": ROUTER_IMAGE, "replicas": 1}
    demo["rollout"]["canary_weight"] = CANARY_WEIGHT
    demo["source"]["revision"] = world.commit
    return ReleaseSpec.model_validate(demo)


def answered(cluster: ClusterClient, spec: ReleaseSpec, release: str) -> float:
    """Requests the release's vLLM pod answered (every finish reason), from its own /metrics."""
    (pod,) = cluster.list_objects("Pod", spec.namespace, f"{names.RELEASE}={release}")
    url = f"http://{pod['status']['podIP']}:{names.HTTP_PORT}/metrics"
    return metric_value(url, "vllm:request_success_total")


def test_the_router_gives_a_real_vllm_canary_exactly_its_weight_streaming_and_not(
    world: SandboxWorld,
) -> None:
    assert world.api is not None
    cluster = ClusterClient(world.api)
    spec = routed_spec(world)
    hub = HubClient(endpoint=world.hub.url)
    commit = fetch_weights(WeightsSource(REPO_ID, world.commit), world.weights_root, hub).commit
    lifecycle = Lifecycle(cluster, spec, poll_seconds=0.5)

    stable = Release(spec, commit, STABLE_IMAGE)
    lifecycle.first_release(stable)
    status = lifecycle.wait(lifecycle.workload_name(stable.release_id), timeout=LOAD_SECONDS)
    assert status.phase == "complete", status.reason
    controller.report(spec, cluster, Installed(stable.release_id))
    router = lifecycle.wait(router_manifests.router_name(spec), timeout=60)
    assert router.phase == "complete", router.reason

    canary = Release(spec, commit, CANARY_IMAGE)
    lifecycle.start_canary(canary)
    controller.report(spec, cluster, Started(canary.release_id, stable.release_id, "canary"))
    status = lifecycle.wait(lifecycle.workload_name(canary.release_id), timeout=LOAD_SECONDS)
    assert status.phase == "complete", status.reason
    tick_until(spec, cluster, Phase.GATING)
    expected = {stable.release_id: 100 - CANARY_WEIGHT, canary.release_id: CANARY_WEIGHT}
    assert weights(cluster, spec) == expected
    clients = Clients(cluster, spec)
    wait_loaded(clients, cluster, spec)

    before = {r: answered(cluster, spec, r) for r in expected}
    by_header: dict[str, int] = dict.fromkeys(expected, 0)
    client = openai.OpenAI(base_url=f"{clients.url}/v1", api_key="unused", max_retries=0)
    for index in range(REQUESTS):
        raw = client.chat.completions.with_raw_response.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": f"how does canary {index} sing?"}],
            max_tokens=8,
        )
        assert raw.parse().choices[0].message.content is not None
        by_header[raw.headers["x-router-backend"]] += 1
    for index in range(STREAMS):
        with client.chat.completions.with_streaming_response.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": f"sing, canary {index}"}],
            max_tokens=8,
            stream=True,
            extra_body={"ignore_eos": True},  # vLLM's: the random tiny model may end at once
        ) as streamed:
            # chunks as tokens come (vLLM holds back a token that ends mid-character, so
            # fewer than 8), the last one saying why it stopped
            chunks = [c for c in streamed.parse() if c.choices]
            assert len(chunks) > 3, f"not streamed token by token: {chunks}"
            assert chunks[-1].choices[0].finish_reason == "length"
            by_header[streamed.headers["x-router-backend"]] += 1

    total = REQUESTS + STREAMS
    share = total * CANARY_WEIGHT // 100
    assert by_header == {stable.release_id: total - share, canary.release_id: share}
    # what each vLLM pod itself counted (its /metrics lag the response by a moment)
    wait_for(
        lambda: all(answered(cluster, spec, r) - before[r] == by_header[r] for r in expected),
        30,
        f"each vLLM pod to count what the router sent it: {by_header}",
    )
