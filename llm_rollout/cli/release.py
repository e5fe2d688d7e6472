"""`llm-rollout render` and `llm-rollout status`: the release's manifests, and what is live."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from llm_rollout.cli.cluster import cluster_or_exit
from llm_rollout.cli.errors import fail
from llm_rollout.cli.fit import echo_fit, published_fit
from llm_rollout.cli.release_inputs import release_options, resolve_release
from llm_rollout.cli.weights import load_or_exit
from llm_rollout.images.context import render_context
from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.k8s.history import ReleaseHistory
from llm_rollout.k8s.lifecycle import Lifecycle, release_of
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.k8s.yaml_text import to_yaml
from llm_rollout.monitoring.artifacts import write_monitoring
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.errors import WeightsError


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
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout instead.")
def status(spec_path: Path, kubeconfig: Path | None, as_json: bool) -> None:
    """Show the model's recorded releases, which is stable and canary, and their rollouts."""
    spec = load_or_exit(spec_path)
    cluster = cluster_or_exit(kubeconfig)
    try:
        document = _status_document(spec, cluster)
    except ClusterError as error:
        fail(str(error))
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        _echo_status(document)


def _status_document(spec: ReleaseSpec, cluster: ClusterClient) -> dict[str, Any]:
    """`status --json`: the controller's record, the recorded releases (newest first) and
    the release workloads (Deployments, LeaderWorkerSets) with their rollouts."""
    history = ReleaseHistory(cluster, spec).read()
    record = RolloutStore(cluster, spec).read()
    since = datetime.fromtimestamp(record.since, UTC).isoformat(timespec="seconds")
    marks = {history.stable: "stable", history.canary: "canary"}
    deployments = []
    for deployment in Lifecycle(cluster, spec).workloads():
        name = deployment["metadata"]["name"]
        release = release_of(deployment)
        rollout = cluster.rollout_status(
            name, spec.namespace, deployment["kind"], spec.rollout.progress_deadline_seconds
        )
        deployments.append(
            {
                "name": name,
                "kind": deployment["kind"],
                "release_id": release,
                "track": marks.get(release, "idle"),
                "available": rollout.available,
                "desired": rollout.desired,
                "phase": rollout.phase,
                "reason": rollout.reason,
            }
        )
    return {
        "model": spec.name,
        "namespace": spec.namespace,
        "phase": record.phase.value,
        "since": since if record.since else None,
        "release_id": record.release_id or None,
        "reason": record.reason,
        "override": record.override or None,
        "stable": history.stable,
        "canary": history.canary,
        "releases": [
            {
                "release_id": entry.release_id,
                "recorded_at": entry.recorded_at,
                "weights_commit": entry.weights_commit,
                "image": entry.image,
                "marks": [
                    mark
                    for mark, rid in (("stable", history.stable), ("canary", history.canary))
                    if rid == entry.release_id
                ],
                "rejected": entry.rejected or None,
                "decisions": list(entry.decisions),
            }
            for entry in reversed(history.releases)
        ],
        "deployments": deployments,
    }


def _echo_status(document: dict[str, Any]) -> None:
    click.echo(f"{document['model']} in {document['namespace']}")
    click.echo(
        f"  phase   {document['phase']} since {document['since'] or '-'}"
        + (f" ({document['release_id']})" if document["release_id"] else "")
    )
    click.echo(f"  why     {document['reason'] or '-'}")
    if document["override"]:
        click.echo(f"  override {document['override']}")
    if not document["releases"]:
        click.echo("  no releases recorded")
    for entry in document["releases"]:
        click.echo(
            f"  {entry['release_id']}  {entry['recorded_at']}  weights "
            f"{entry['weights_commit'][:12]}  {entry['image']}"
            f"{'  <- ' + ', '.join(entry['marks']) if entry['marks'] else ''}"
        )
        if entry["rejected"]:
            click.echo(f"      rolled back by the controller: {entry['rejected']}")
        for decision in entry["decisions"]:
            click.echo(f"      by hand: {decision}")
    click.echo("  deployments (one per retained release)")
    for deployment in document["deployments"]:
        # a LeaderWorkerSet's replicas are groups of pods (a replica wider than a node)
        kind = "" if deployment["kind"] == "Deployment" else f" ({deployment['kind']}, groups)"
        click.echo(
            f"  {deployment['track']:7s} {deployment['name']}{kind}: {deployment['available']}/"
            f"{deployment['desired']} available, {deployment['phase']} ({deployment['reason']})"
        )
