"""The fit check in the CLI: `validate` checks what each spec declares (`sizing:`), `render`
checks the published weights' exact bytes and config.json (k8s/fit.py)."""

from __future__ import annotations

from pathlib import Path

import click

from llm_rollout.k8s.fit import FitReport, check_fit, weight_bytes
from llm_rollout.spec import LocatedProblem, ReleaseSpec
from llm_rollout.weights.model_files import published_model_files


def validate_fit(specs: dict[Path, ReleaseSpec]) -> list[LocatedProblem]:
    """The fit problems of every spec, from what it declares; warnings go to stderr as
    `warning: file: field: message` and do not fail validation."""
    problems: list[LocatedProblem] = []
    for path, spec in specs.items():
        report = check_fit(spec)
        problems += [LocatedProblem(path, p.field, f"fit: {p.message}") for p in report.problems]
        for warning in report.warnings:
            click.echo(f"warning: {path}: {warning.field}: fit: {warning.message}", err=True)
    return problems


def published_fit(spec: ReleaseSpec, weights_root: Path | None, commit: str) -> FitReport:
    """The fit of the published commit (the manifest's exact bytes, its config.json), or of
    what the spec declares when no weights root is given. Raises `WeightsError` when the
    published folder cannot be read."""
    if weights_root is None:
        return check_fit(spec)
    files = published_model_files(weights_root, spec.source.repo, commit)
    return check_fit(
        spec,
        weight_bytes(files.sizes),
        files.config,
        f"manifest of {commit[:12]}",
    )


def echo_fit(report: FitReport) -> None:
    """The fit summary on stdout, warnings and problems on stderr."""
    click.echo(f"fit: {report.summary()}")
    for warning in report.warnings:
        click.echo(f"warning: {warning.field}: {warning.message}", err=True)
    for problem in report.problems:
        click.echo(f"error: {problem.field}: {problem.message}", err=True)
