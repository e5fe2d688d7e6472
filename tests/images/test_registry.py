"""Tag checks against a real registry (distribution 2.8) holding an image we pushed."""

from __future__ import annotations

import pytest

from llm_rollout.images.registry import (
    Credentials,
    ImageReference,
    RegistryAuthRequired,
    RegistryClient,
)
from tests.fixtures.registry import LocalRegistry


def test_a_pushed_tag_exists_with_its_digest_and_others_do_not(registry: LocalRegistry) -> None:
    digest = registry.push_image("llm/demo-tiny-vllm", "0.32.0-abc")
    client = RegistryClient(insecure_registries=(registry.host,))
    assert client.manifest_digest(f"{registry.host}/llm/demo-tiny-vllm:0.32.0-abc") == digest
    assert client.manifest_digest(f"{registry.host}/llm/demo-tiny-vllm:0.32.0-def") is None
    assert not client.exists(f"{registry.host}/llm/other:1")


def test_a_registry_that_needs_a_login(private_registry: LocalRegistry) -> None:
    digest = private_registry.push_image("llm/x-vllm", "1")
    reference = f"{private_registry.host}/llm/x-vllm:1"
    anonymous = RegistryClient(insecure_registries=(private_registry.host,))
    with pytest.raises(RegistryAuthRequired, match="needs credentials"):
        anonymous.exists(reference)
    wrong = RegistryClient(Credentials("builder", "nope"), (private_registry.host,))
    with pytest.raises(RegistryAuthRequired, match="refused the credentials"):
        wrong.exists(reference)
    right = RegistryClient(Credentials("builder", "secret-pw"), (private_registry.host,))
    assert right.manifest_digest(reference) == digest
    assert "secret-pw" not in repr(right.credentials)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("vllm/vllm-openai:v0.11.0", ("registry-1.docker.io", "vllm/vllm-openai", "v0.11.0")),
        ("ubuntu", ("registry-1.docker.io", "library/ubuntu", "latest")),
        ("registry.example.com/llm/x-vllm:1-abc", ("registry.example.com", "llm/x-vllm", "1-abc")),
        ("localhost:5000/a/b:c", ("localhost:5000", "a/b", "c")),
        ("r.io/a@sha256:00", ("r.io", "a", "sha256:00")),
    ],
)
def test_references_parse(reference: str, expected: tuple[str, str, str]) -> None:
    image = ImageReference.parse(reference)
    assert (image.registry, image.repository, image.tag) == expected
