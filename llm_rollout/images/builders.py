"""Image builders behind one interface: `none` (a prebuilt image), `docker` (the Docker
Engine API), `kaniko` (a Kubernetes Job; see `images.kaniko`). Each returns the pushed
reference and digest, and skips the build when the registry already has the tag."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llm_rollout.images.context import BuildContext, ImageError
from llm_rollout.images.registry import (
    Credentials,
    ImageReference,
    RegistryClient,
    RegistryUnreachable,
)

Log = Callable[[str], None]
LOG_TAIL_LINES = 30  # build output kept for the error message of a failed build


class BuildFailed(ImageError):
    """The builder ran and failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class BuiltImage:
    """The image a release runs: its reference, digest (when known) and how it was made."""

    reference: str
    digest: str | None
    builder: str
    context_hash: str | None
    seconds: float
    skipped: bool  # the registry already had the tag

    @property
    def pinned(self) -> str:
        """The reference pinned by digest (`repo@sha256:…`) when the digest is known."""
        if not self.digest:
            return self.reference
        image = ImageReference.parse(self.reference)
        name = self.reference.split("@")[0]
        if name.endswith(f":{image.tag}"):
            name = name[: -len(image.tag) - 1]
        return f"{name}@{self.digest}"


def already_built(
    registry: RegistryClient, context: BuildContext, builder: str, log: Log
) -> BuiltImage | None:
    """The image, when the registry already has the context's tag: nothing to build."""
    started = time.monotonic()
    existing = registry.manifest_digest(context.reference)
    if existing is None:
        return None
    log(f"{context.reference} already in the registry ({existing}); not rebuilding")
    seconds = time.monotonic() - started
    return BuiltImage(context.reference, existing, builder, context.content_hash, seconds, True)


class Builder(Protocol):
    """Builds (or finds) the image for a rendered context."""

    name: str

    def build(self, context: BuildContext, log: Log) -> BuiltImage: ...


@dataclass
class NoneBuilder:
    """Builds nothing: the spec's prebuilt reference, or the official vLLM image."""

    registry: RegistryClient
    resolve_digest: bool = True  # off where no registry may be asked (air-gapped demo)
    name: str = "none"

    def build(self, context: BuildContext, log: Log) -> BuiltImage:
        spec = context.spec
        reference = spec.image.reference or f"vllm/vllm-openai:v{spec.serving.vllm_version}"
        started = time.monotonic()
        if not self.resolve_digest:
            return BuiltImage(reference, None, self.name, None, 0.0, True)
        try:
            digest = self.registry.manifest_digest(reference)
        except RegistryUnreachable as error:
            log(f"registry not reachable, using {reference} unpinned: {error}")
            digest = None
        else:
            if digest is None:
                raise ImageError(f"{reference} does not exist in its registry")
        return BuiltImage(reference, digest, self.name, None, time.monotonic() - started, True)


@dataclass
class DockerBuilder:
    """Builds with a Docker daemon (`DOCKER_HOST`) through the `docker` package and pushes."""

    registry: RegistryClient
    credentials: Credentials | None = None
    name: str = "docker"

    def build(self, context: BuildContext, log: Log) -> BuiltImage:
        reference = context.reference
        started = time.monotonic()
        existing = already_built(self.registry, context, self.name, log)
        if existing is not None:
            return existing
        import docker  # the Docker SDK is only needed where a daemon builds

        try:
            api = docker.from_env().api
        except docker.errors.DockerException as error:
            raise ImageError(f"no Docker daemon answers (DOCKER_HOST): {error}") from error
        tail: list[str] = []
        for chunk in api.build(
            fileobj=_tar(context),
            custom_context=True,
            tag=reference,
            rm=True,
            pull=True,
            decode=True,
        ):
            _follow(chunk, log, tail, reference, "build")
        auth = (
            {"username": self.credentials.username, "password": self.credentials.password}
            if self.credentials
            else None
        )
        repository, tag = reference.rsplit(":", 1)
        digest = None
        for chunk in api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            _follow(chunk, log, tail, reference, "push")
            digest = (chunk.get("aux") or {}).get("Digest") or digest
        return BuiltImage(
            reference,
            digest or self.registry.manifest_digest(reference),
            self.name,
            context.content_hash,
            time.monotonic() - started,
            False,
        )


def _follow(chunk: dict[str, Any], log: Log, tail: list[str], reference: str, step: str) -> None:
    line = str(chunk.get("stream") or chunk.get("status") or "").rstrip()
    if line:
        log(line)
        tail.append(line)
        del tail[:-LOG_TAIL_LINES]
    if "error" in chunk or "errorDetail" in chunk:
        message = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
        raise BuildFailed(
            f"{step} of {reference} failed: {message}\n--- last lines ---\n" + "\n".join(tail)
        )


def _tar(context: BuildContext) -> io.BytesIO:
    """The context as an uncompressed tar, with fixed metadata (reproducible)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(context.files):
            info = tarfile.TarInfo(name)
            info.size = len(context.files[name])
            info.mtime = 0
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(context.files[name]))
    buffer.seek(0)
    return buffer
