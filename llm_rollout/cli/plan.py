"""`llm-rollout plan`: what applying a release would change in the cluster, from a
server-side dry run, before anything is applied."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from llm_rollout.cli.cluster import cluster_or_exit
from llm_rollout.cli.errors import fail
from llm_rollout.cli.release_inputs import release_options, resolve_release
from llm_rollout.cli.weights import load_or_exit
from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterError
from llm_rollout.k8s.plan import ObjectPlan, Plan, plan_objects
from llm_rollout.k8s.validation import schema_problems

SYMBOLS = {"create": "+", "change": "~", "unchanged": "=", "conflict": "!"}
# Long values (a whole container spec, a pod template) are cut in the text output; --json
# has them whole.
MAX_VALUE_CHARS = 120


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@release_options
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("KUBECONFIG"),
    help="The cluster to ask (default $KUBECONFIG, else in-cluster, else ~/.kube/config).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout instead.")
def plan(
    spec_path: Path,
    weights_commit: str | None,
    weights_root: Path | None,
    image: str | None,
    kubeconfig: Path | None,
    as_json: bool,
) -> None:
    """Show what applying the spec's release would change in the cluster: each object
    created, changed (field by field) or unchanged, from a server-side dry run (dryRun=All:
    the API server merges, defaults and validates, and persists nothing).

    Exits 0 when the release could be applied, 1 when an object would conflict with fields
    another manager owns (someone edited it by hand) or the input is wrong."""
    spec = load_or_exit(spec_path)
    release = resolve_release(spec, weights_commit, weights_root, image)
    objects = manifests.all_objects(release)
    problems = schema_problems(objects)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    cluster = cluster_or_exit(kubeconfig)
    try:
        result = plan_objects(cluster, objects)
    except ClusterError as error:
        fail(str(error))
    if as_json:
        document = {
            "ok": not result.count("conflict"),
            "model": spec.name,
            "namespace": spec.namespace,
            "release_id": release.release_id,
            "weights_commit": release.weights_commit,
            "image": release.image,
            **result.to_json(),
        }
        click.echo(json.dumps(document, indent=2))
    else:
        _echo_plan(spec.name, release.release_id, result)
    if result.count("conflict"):
        sys.exit(1)


def _echo_plan(model: str, release_id: str, result: Plan) -> None:
    click.echo(f"{model} {release_id}: server-side dry run, nothing was applied")
    for obj in result.objects:
        click.echo(f"  {SYMBOLS[obj.action]} {obj.ref}  {_describe(obj)}")
        for change in obj.changes:
            click.echo(f"      {change.path}: {_value(change.before)} -> {_value(change.after)}")
        for manager, field in obj.conflicts:
            click.echo(f"      {field} is owned by {manager}")
    click.echo(
        f"{result.count('create')} to create, {result.count('change')} to change, "
        f"{result.count('unchanged')} unchanged"
        + (f", {result.count('conflict')} in conflict" if result.count("conflict") else "")
    )


def _describe(obj: ObjectPlan) -> str:
    if obj.action == "conflict":
        return "conflict: applying would take fields another manager owns (use `status`)"
    return f"{obj.action}" + (f" ({obj.note})" if obj.note else "")


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
