"""`llm-rollout router`: run a model's router, or check a router config document."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from llm_rollout.cli.errors import fail
from llm_rollout.router.config import RouterConfigError, api_key_env, load_config

CONFIG_PATH = click.Path(path_type=Path, dir_okay=False)


@click.group()
def router() -> None:
    """The model's front door: routes, cloud fallback, canary weights (docs/router.md)."""


@router.command()
@click.argument("config_path", metavar="CONFIG", type=CONFIG_PATH)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(config_path: Path, host: str, port: int, log_level: str) -> None:
    """Serve the OpenAI-compatible API from CONFIG (YAML or JSON), re-reading it when it
    changes (an invalid change is logged and the previous config kept). Cloud API keys come
    from LLM_ROLLOUT_CLOUD_<NAME>_API_KEY."""
    from llm_rollout.router.server import (
        serve as run,  # aiohttp's server loads only for this command
    )

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(config_path, host, port)
    except RouterConfigError as error:
        fail(str(error))


@router.command()
@click.argument("config_path", metavar="CONFIG", type=CONFIG_PATH)
def check(config_path: Path) -> None:
    """Validate CONFIG; print what it routes where. Exit 1 naming each problem."""
    try:
        config = load_config(config_path)
    except RouterConfigError as error:
        fail(str(error))
    total = sum(release.weight for release in config.releases) or 1.0
    click.echo(f"{config_path}: ok (model {config.model})")
    for release in config.releases:
        click.echo(f"  release {release.id}: {100 * release.weight / total:.1f}% → {release.url}")
    for route in config.routing.routes:
        match = json.dumps(route.match.model_dump(exclude_defaults=True)) or "{}"
        extra = " local_only" if route.local_only else ""
        fallback = f", fallback {route.fallback}" if route.fallback else ""
        click.echo(f"  route {route.name} {match}: {route.backend}{fallback}{extra}")
    for name in config.routing.cloud:
        click.echo(f"  cloud {name}: API key from ${api_key_env(name)}")
    if config.degraded:
        click.echo(f"  degraded: {config.degraded}")
