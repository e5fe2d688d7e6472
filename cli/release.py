"""`llm-rollout render` and `llm-rollout status`: the release's manifests, and what is live."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from kubernetes.config import ConfigException

from cli.errors import fail
from cli.fit import echo_fit, published_fit
from cli.release_inputs import release_options, resolve_release
from cli.weights import load_or_exit
from images.context import render_context
from k8s import manifests
from k8s.cluster import ClusterClient, ClusterError
from k8s.history import ReleaseHistory
from k8s.lifecycle import Lifecycle, release_of
from k8s.validation import schema_problems
from k8s.yaml_text import to_yaml
from monitoring.artifacts import write_monitoring
from rollout.store import RolloutStore
from weights.errors import WeightsError


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@release_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout instead.")
def render(
    spec_path: Path,
    out: Path,
    weights_commit: str | None,
    weights_root: Path | None,
    image: str | None,
    as_json: bool,
) -> None:
    """Write every artifact of the spec's release into OUT: k8s/ (schema-validated for
    Kubernetes 1.29-1.33), monitoring/ (scrape job, rules, Alertmanager, Grafana, adapter,
    KEDA, Alloy, PodMonitor, PrometheusRule) and image/ (the build context). For GitOps:
    commit them.

    First the fit check (docs/sizing.md): the published weights' exact bytes and config.json
    (with --weights-root; otherwise the spec's `sizing:`) against the GPUs; a release that
    cannot fit is not rendered."""
    spec = load_or_exit(spec_path)
    release = resolve_release(spec, weights_commit, weights_root, image)
    try:
        fit = published_fit(spec, weights_root, release.weights_commit)
    except WeightsError as error:
        fail(str(error))
    if not as_json:
        echo_fit(fit)
    if not fit.fits:
        if as_json:
            click.echo(json.dumps({"ok": False, "fit": fit.to_json()}, indent=2))
        fail("the release does not fit its GPUs; nothing rendered (change what the errors say)")
    objects = manifests.all_objects(release)
    problems = schema_problems(objects)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(1)
    folder = out / "k8s"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for index, obj in enumerate(objects):
            name = f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            (folder / name).write_text(to_yaml(obj))
        monitoring = write_monitoring(spec, out / "monitoring", release.release_id)
        context = render_context(spec).write(out / "image")
    except OSError as error:
        fail(f"cannot write into --out {out}: {error.strerror or error}; choose a writable folder")
    if as_json:
        document = {
            "ok": True,
            "release_id": release.release_id,
            "objects": len(objects),
            "k8s": str(folder),
            "monitoring": str(out / "monitoring"),
            "image": str(context),
            "fit": fit.to_json(),
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(
        f"{release.release_id}: wrote {len(objects)} objects to {folder}, "
        f"{len(monitoring)} files to {out / 'monitoring'}, the image context to {context}"
    )


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("KUBECONFIG"),
)
def status(spec_path: Path, kubeconfig: Path | None) -> None:
    """Show the model's recorded releases, which is stable and canary, and their rollouts."""
    spec = load_or_exit(spec_path)
    try:
        cluster = ClusterClient.from_kubeconfig(str(kubeconfig) if kubeconfig else None)
    except ConfigException as error:
        fail(
            f"no usable Kubernetes credentials ({error}); set KUBECONFIG or pass --kubeconfig, "
            "or run inside a cluster"
        )
    try:
        history = ReleaseHistory(cluster, spec).read()
        record = RolloutStore(cluster, spec).read()
        click.echo(f"{spec.name} in {spec.namespace}")
        since = (
            datetime.fromtimestamp(record.since, UTC).isoformat(timespec="seconds")
            if record.since
            else "-"
        )
        click.echo(
            f"  phase   {record.phase.value} since {since}"
            + (f" ({record.release_id})" if record.release_id else "")
        )
        click.echo(f"  why     {record.reason or '-'}")
        if record.override:
            click.echo(f"  override {record.override}")
        if not history.releases:
            click.echo("  no releases recorded")
        for entry in reversed(history.releases):
            marks = [
                m
                for m, rid in (("stable", history.stable), ("canary", history.canary))
                if rid == entry.release_id
            ]
            click.echo(
                f"  {entry.release_id}  {entry.recorded_at}  weights "
                f"{entry.weights_commit[:12]}  {entry.image}"
                f"{'  <- ' + ', '.join(marks) if marks else ''}"
            )
            if entry.rejected:
                click.echo(f"      rolled back by the controller: {entry.rejected}")
            for decision in entry.decisions:
                click.echo(f"      by hand: {decision}")
        tracks = {history.stable: "stable", history.canary: "canary"}
        click.echo("  deployments (one per retained release)")
        for deployment in Lifecycle(cluster, spec).deployments():
            name = deployment["metadata"]["name"]
            release = release_of(deployment)
            rollout = cluster.rollout_status(name, spec.namespace)
            click.echo(
                f"  {tracks.get(release, 'idle'):7s} {name}: {rollout.available}/"
                f"{rollout.desired} available, {rollout.phase} ({rollout.reason})"
            )
    except ClusterError as error:
        fail(str(error))
