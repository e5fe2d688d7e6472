"""`llm-rollout weights …`: fetch, verify and prune published weights."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llm_rollout.cli.progress import TerminalProgress, human_bytes
from llm_rollout.k8s.fit import refuse_what_cannot_fit
from llm_rollout.spec import ReleaseSpec, SpecFileError, load_spec
from llm_rollout.weights.errors import WeightsError
from llm_rollout.weights.fetch import WeightsSource, fetch_weights, published_commit, storage_errors
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import RepoLayout
from llm_rollout.weights.retention import prune
from llm_rollout.weights.verify import verify_published

root_option = click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="LLM_ROLLOUT_WEIGHTS_ROOT",
    required=True,
    help="Where the weights volume is mounted here (env LLM_ROLLOUT_WEIGHTS_ROOT).",
)


def source_of(spec: ReleaseSpec) -> WeightsSource:
    """The weights source a spec names."""
    patterns = tuple(spec.source.allow_patterns) if spec.source.allow_patterns else None
    return WeightsSource(spec.source.repo, spec.source.revision, patterns)


def load_or_exit(path: Path) -> ReleaseSpec:
    """The spec at `path`, or its problems printed and exit status 1."""
    try:
        return load_spec(path)
    except SpecFileError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)


@click.group()
def weights() -> None:
    """Fetch a spec's weights from the Hub, verify them, publish them to the weights volume."""


@weights.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@root_option
def fetch(spec_path: Path, root: Path) -> None:
    """Resolve the spec's revision, download, verify every file and publish atomically.

    Honours HF_ENDPOINT (mirrors) and HF_TOKEN (gated repos).
    """
    spec = load_or_exit(spec_path)
    try:
        hub = HubClient()
        result = fetch_weights(
            source_of(spec),
            root,
            hub,
            progress=TerminalProgress(),
            before_download=refuse_what_cannot_fit(spec, hub),
        )
    except WeightsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    if not result.hub_reachable:
        click.echo("warning: the Hub was unreachable; the published copy was re-verified", err=True)
    how = "already published, re-verified" if result.already_published else "published"
    click.echo(
        f"{result.repo}@{result.revision} = {result.commit}: {how} at {result.folder} "
        f"({len(result.manifest.files)} files, {human_bytes(result.manifest.total_bytes)}, "
        f"{result.seconds:.1f}s)"
    )


@weights.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@root_option
@click.option("--full", is_flag=True, help="Re-hash every file, ignoring the stat cache.")
@click.option("--commit", help="A published commit (default: what the revision resolved to).")
def verify(spec_path: Path, root: Path, full: bool, commit: str | None) -> None:
    """Check a published revision against its manifest; exit 1 naming every bad file."""
    spec = load_or_exit(spec_path)
    try:
        with storage_errors(root):
            commit = commit or published_commit(root, source_of(spec))
            report = verify_published(
                RepoLayout(root, spec.source.repo), commit, full=full, progress=TerminalProgress()
            )
    except WeightsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    for problem in report.problems():
        click.echo(f"{report.folder}/{problem}")
    verdict = "ok" if report.ok else "FAILED"
    click.echo(
        f"{spec.source.repo}@{commit}: {verdict} ({report.files} files; re-hashed "
        f"{report.rehashed_files}, {human_bytes(report.rehashed_bytes)} in {report.seconds:.2f}s)"
    )
    sys.exit(0 if report.ok else 1)


@weights.command("prune")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@root_option
@click.option(
    "--keep",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Newest revisions to keep.",
)
@click.option("--protect", multiple=True, help="A commit that must stay (repeatable).")
def prune_command(spec_path: Path, root: Path, keep: int, protect: tuple[str, ...]) -> None:
    """Delete old published revisions, keeping the newest and every protected one; clear
    what killed fetches left in staging."""
    spec = load_or_exit(spec_path)
    try:
        with storage_errors(root):
            result = prune(root, spec.source.repo, keep, set(protect))
    except WeightsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    for commit in result.deleted:
        click.echo(f"deleted {commit}")
    click.echo(f"kept {len(result.kept)}, deleted {len(result.deleted)}")
