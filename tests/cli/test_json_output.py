"""`--json` on `status` and `gate`: one JSON document a script can read, with what the text
shows (the other commands' `--json` are tested beside them)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import Kube
from tests.k8s.conftest import release


def status(kube: Kube, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["status", str(DEMO_SPEC), "--kubeconfig", str(kube.cluster.kubeconfig), *args]
    )
    return result.exit_code, result.output


def test_status_json_of_a_model_never_released(kube: Kube) -> None:
    code, output = status(kube, "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["model"] == "demo-tiny"
    assert document["phase"] == "Idle"
    assert (document["stable"], document["releases"], document["deployments"]) == (None, [], [])


def test_status_json_names_the_stable_release_and_its_deployment(kube: Kube) -> None:
    spec = load_spec(DEMO_SPEC)
    first = release(spec, 1)
    Lifecycle(ClusterClient(kube.api), spec).first_release(first)
    code, output = status(kube, "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["stable"] == first.release_id
    (entry,) = document["releases"]
    assert (entry["release_id"], entry["marks"]) == (first.release_id, ["stable"])
    assert entry["weights_commit"] == first.weights_commit
    (deployment,) = document["deployments"]
    assert (deployment["release_id"], deployment["track"]) == (first.release_id, "stable")
    # the text shows the same document
    code, text = status(kube)
    assert code == 0
    assert f"{first.release_id}" in text and "<- stable" in text
    assert f"stable  {deployment['name']}: " in text


def test_gate_json_reports_an_unreachable_prometheus_as_an_error_window() -> None:
    result = CliRunner().invoke(
        cli,
        [
            *("gate", str(DEMO_SPEC), "--prometheus", "http://127.0.0.1:9"),
            *("--canary", "rel-canary", "--stable", "rel-stable", "--json"),
        ],
    )
    assert result.exit_code == 3, result.output
    document = json.loads(result.output)
    assert (document["outcome"], document["canary"], document["stable"]) == (
        "Error",
        "rel-canary",
        "rel-stable",
    )
    assert document["measurements"][0]["outcome"] == "Error"
    assert document["measurements"][0]["canary"] is None  # null, never NaN
    assert any("rel-canary" in query["promql"] for query in document["queries"])
