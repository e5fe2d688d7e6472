"""Builders: `none` against a real registry; `docker` against a real daemon where one runs."""

from __future__ import annotations

import os
import socket

import pytest

from llm_rollout.images.builders import DockerBuilder, NoneBuilder
from llm_rollout.images.context import ImageError, render_context
from llm_rollout.images.registry import RegistryAuthRequired, RegistryClient
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.registry import LocalRegistry

DEMO = load_spec(DEMO_SPEC)


def prebuilt(reference: str) -> object:
    return DEMO.model_copy(
        update={"image": DEMO.image.model_copy(update={"reference": reference, "registry": None})}
    )


def test_none_uses_the_prebuilt_image_pinned_by_digest(registry: LocalRegistry) -> None:
    digest = registry.push_image("vllm/vllm-openai", "v0.32.0")
    spec = prebuilt(f"{registry.host}/vllm/vllm-openai:v0.32.0")
    builder = NoneBuilder(RegistryClient(insecure_registries=(registry.host,)))
    built = builder.build(render_context(spec), print)  # type: ignore[arg-type]
    assert built.digest == digest
    assert built.pinned == f"{registry.host}/vllm/vllm-openai@{digest}"
    assert built.skipped


def test_none_refuses_an_image_that_does_not_exist(registry: LocalRegistry) -> None:
    spec = prebuilt(f"{registry.host}/vllm/vllm-openai:v9.9.9")
    builder = NoneBuilder(RegistryClient(insecure_registries=(registry.host,)))
    with pytest.raises(ImageError, match="does not exist"):
        builder.build(render_context(spec), print)  # type: ignore[arg-type]


def test_none_without_a_reachable_registry_uses_the_reference_unpinned() -> None:
    spec = prebuilt("127.0.0.1:9/vllm/vllm-openai:v0.32.0")  # nothing listens on port 9
    lines: list[str] = []
    built = NoneBuilder(RegistryClient(insecure_registries=("127.0.0.1:9",))).build(
        render_context(spec), lines.append
    )  # type: ignore[arg-type]
    assert built.digest is None and built.pinned == "127.0.0.1:9/vllm/vllm-openai:v0.32.0"
    assert "registry not reachable" in lines[0]


def test_docker_skips_the_build_when_the_tag_exists(registry: LocalRegistry) -> None:
    spec = DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "docker", "registry": f"{registry.host}/llm"}
            )
        }
    )
    context = render_context(spec)
    repository, tag = context.reference.split("/", 1)[1].rsplit(":", 1)
    digest = registry.push_image(repository, tag)
    built = DockerBuilder(RegistryClient(insecure_registries=(registry.host,))).build(
        context, print
    )
    assert (built.skipped, built.digest) == (True, digest)


def test_docker_with_a_registry_that_needs_a_login(private_registry: LocalRegistry) -> None:
    spec = DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "docker", "registry": f"{private_registry.host}/llm"}
            )
        }
    )
    builder = DockerBuilder(RegistryClient(insecure_registries=(private_registry.host,)))
    with pytest.raises(RegistryAuthRequired, match="needs credentials"):
        builder.build(render_context(spec), print)


def docker_daemon_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a TCP daemon: let the test try it
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(host.removeprefix("unix://"))
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    not docker_daemon_answers(),
    reason="no Docker daemon answers on DOCKER_HOST (none can run on this "
    "machine); the docker builder is exercised where one does",
)
def test_docker_builds_and_pushes_for_real(registry: LocalRegistry) -> None:
    spec = DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "docker", "registry": f"{registry.host}/llm"}
            )
        }
    )
    built = DockerBuilder(RegistryClient(insecure_registries=(registry.host,))).build(
        render_context(spec), print
    )
    assert built.digest and not built.skipped
