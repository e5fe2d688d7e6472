"""`llm-rollout image render|build`: the serving image's context, tag and build."""

from __future__ import annotations

import os
from pathlib import Path

import click
from kubernetes.config import ConfigException

from llm_rollout.cli.errors import fail
from llm_rollout.cli.weights import load_or_exit
from llm_rollout.images.context import ImageError, render_context
from llm_rollout.images.kaniko import KanikoBuilder
from llm_rollout.images.registry import Credentials, RegistryClient
from llm_rollout.images.select import builder_for
from llm_rollout.k8s.cluster import ClusterClient


def registry_from_env() -> tuple[RegistryClient, Credentials | None]:
    """Registry access from LLM_ROLLOUT_REGISTRY_USERNAME/PASSWORD and
    LLM_ROLLOUT_INSECURE_REGISTRIES (comma-separated hosts spoken to over plain HTTP)."""
    username = os.environ.get("LLM_ROLLOUT_REGISTRY_USERNAME")
    password = os.environ.get("LLM_ROLLOUT_REGISTRY_PASSWORD", "")
    credentials = Credentials(username, password) if username else None
    insecure = tuple(
        h for h in os.environ.get("LLM_ROLLOUT_INSECURE_REGISTRIES", "").split(",") if h
    )
    return RegistryClient(credentials, insecure), credentials


@click.group()
def image() -> None:
    """Render the vLLM serving image's build context, and build it."""


@image.command("render")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
def render_image(spec_path: Path, out: Path) -> None:
    """Write the build context (Dockerfile, healthcheck) into OUT and print its tag."""
    spec = load_or_exit(spec_path)
    context = render_context(spec)
    try:
        context.write(out)
    except OSError as error:
        fail(f"cannot write into --out {out}: {error.strerror or error}; choose a writable folder")
    tag = context.reference if spec.image.registry else context.tag
    click.echo(f"{out}: {spec.image.base} base, content {context.content_hash[:12]}, tag {tag}")


@image.command("build")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
def build_image(spec_path: Path) -> None:
    """Build and push the image (skipped when the registry has the tag); print the digest."""
    spec = load_or_exit(spec_path)
    registry, credentials = registry_from_env()
    try:
        builder = builder_for(
            spec,
            registry,
            credentials,
            lambda: KanikoBuilder(
                ClusterClient.from_kubeconfig(os.environ.get("KUBECONFIG")),
                registry,
                spec.namespace,
                credentials,
            ),
        )
        built = builder.build(render_context(spec), lambda line: click.echo(line, err=True))
    except ImageError as error:
        fail(str(error))
    except ConfigException as error:
        fail(f"no usable Kubernetes credentials for the Kaniko build ({error}); set KUBECONFIG")
    if built.builder == "none":
        how = "prebuilt"
    else:
        how = "already in the registry" if built.skipped else f"built in {built.seconds:.0f}s"
    click.echo(f"{built.pinned} ({built.builder}, {how})")
