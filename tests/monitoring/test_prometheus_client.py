"""How the gate's Prometheus client fails, against servers that are not a healthy Prometheus:
each failure is PrometheusFailed naming what happened (the gate turns it into an Error
window), never a guess. The real Prometheus's answers are test_gate_prometheus.py's."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from llm_rollout.monitoring.prometheus import PrometheusFailed, measure, measure_range
from llm_rollout.monitoring.queries import TrackSource, gate_queries
from llm_rollout.spec import load_spec
from sandbox.openai_standin import OpenAIStandin
from sandbox.ports import free_port
from tests.conftest import DEMO_SPEC

QUERIES = gate_queries(
    load_spec(DEMO_SPEC), TrackSource("canary", "rel-new"), TrackSource("stable", "rel-old")
)


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that takes the connection and never answers (a hung Prometheus)."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"


def test_a_prometheus_that_does_not_answer_in_time_is_named(silent: str) -> None:
    with pytest.raises(PrometheusFailed, match=r"did not answer in 1s"):
        measure(silent, QUERIES, timeout=1)


def test_nothing_listening_is_unreachable() -> None:
    with pytest.raises(PrometheusFailed, match="cannot reach Prometheus"):
        measure(f"http://127.0.0.1:{free_port()}", QUERIES, timeout=1)


def test_a_server_that_is_not_prometheus_is_a_failure_with_its_answer() -> None:
    with OpenAIStandin("not-prometheus") as other:  # /api/v1/query: 404
        with pytest.raises(PrometheusFailed, match=r"failed: .*404"):
            measure(other.url, QUERIES, timeout=2)
        with pytest.raises(PrometheusFailed, match=r"failed: .*404"):
            measure_range(other.url, QUERIES, seconds=60, step=15, timeout=2)
