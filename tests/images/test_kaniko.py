"""The kaniko builder: its Job validates, and it runs to completion against the sandbox
cluster (whose stand-in for the kaniko image pushes a small real image) and a real registry."""

from __future__ import annotations

import pytest

from llm_rollout.images.builders import BuildFailed
from llm_rollout.images.context import BuildContext, render_context
from llm_rollout.images.kaniko import KanikoBuilder, build_objects
from llm_rollout.images.registry import Credentials, RegistryClient
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.cluster import Kube
from tests.fixtures.registry import LocalRegistry

DEMO = load_spec(DEMO_SPEC)


def kaniko_spec(registry: str) -> ReleaseSpec:
    return DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "kaniko", "registry": f"{registry}/llm"}
            )
        }
    )


def test_the_build_objects_validate() -> None:
    context = render_context(kaniko_spec("registry.example.com"))
    for credentials in (None, Credentials("u", "p")):
        objects = build_objects(context, "builds", insecure=False, credentials=credentials)
        assert schema_problems(objects) == []
        job = objects[-1]
        assert job["spec"]["backoffLimit"] == 0
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--destination={context.reference}" in args


def test_a_build_runs_to_completion_and_is_not_repeated(
    kube: Kube, registry: LocalRegistry
) -> None:
    kube.namespace("builds")
    client = RegistryClient(insecure_registries=(registry.host,))
    builder = KanikoBuilder(ClusterClient(kube.api), client, "builds", timeout=120)
    context = render_context(kaniko_spec(registry.host))
    lines: list[str] = []
    built = builder.build(context, lines.append)
    assert not built.skipped
    assert built.digest == client.manifest_digest(context.reference)
    assert any("Pushed" in line for line in lines)  # the build log reached us
    assert not kube.core.list_namespaced_config_map("builds").items  # cleaned up
    assert not kube.batch.list_namespaced_job("builds").items
    again = builder.build(context, lines.append)
    assert again.skipped and again.digest == built.digest


def test_a_failing_build_reports_its_log_tail_and_pushes_nothing(
    kube: Kube, registry: LocalRegistry
) -> None:
    kube.namespace("builds")
    client = RegistryClient(insecure_registries=(registry.host,))
    spec = kaniko_spec(registry.host)
    broken = BuildContext(spec, {"Dockerfile": b"FROM vllm/vllm-openai:v0.32.0\nRUN exit 1\n"})
    builder = KanikoBuilder(ClusterClient(kube.api), client, "builds", timeout=120)
    with pytest.raises(BuildFailed, match=r"(?s)failed.*RUN exit 1.*error building image"):
        builder.build(broken, print)
    assert client.manifest_digest(broken.reference) is None


def test_a_build_pushing_to_a_registry_that_needs_a_login(
    kube: Kube, private_registry: LocalRegistry
) -> None:
    kube.namespace("builds")
    credentials = Credentials("builder", "secret-pw")
    client = RegistryClient(credentials, (private_registry.host,))
    builder = KanikoBuilder(ClusterClient(kube.api), client, "builds", credentials, timeout=120)
    built = builder.build(render_context(kaniko_spec(private_registry.host)), print)
    assert built.digest and built.digest.startswith("sha256:")
    assert not kube.core.list_namespaced_secret("builds").items  # the login is cleaned up
