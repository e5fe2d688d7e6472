"""`llm-rollout`: the command-line entry point and its subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llm_rollout.cli.errors import CommandGroup
from llm_rollout.cli.fit import validate_fit
from llm_rollout.cli.gate import gate
from llm_rollout.cli.image import image
from llm_rollout.cli.plan import plan
from llm_rollout.cli.release import render, status
from llm_rollout.cli.router import router
from llm_rollout.cli.weights import weights
from llm_rollout.k8s.dagster.scaleout import dagster_rbac
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.k8s.yaml_text import to_yaml_all
from llm_rollout.monitoring.quality import QualityError, load_prompts
from llm_rollout.spec import (
    LocatedProblem,
    ReleaseSpec,
    SpecFileError,
    load_all,
    load_specs,
    spec_files,
)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-rollout")
def cli() -> None:
    """Release open-weight LLMs to Kubernetes with vLLM, gated on Prometheus."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout instead.")
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check release specs (files, or folders of *.yaml / *.yml); one line per problem,
    `file:line:column: field: message` (`file: field: message` where no line applies).

    Every file is checked even when others are broken. Exits 0 when every spec is valid,
    1 otherwise (also for a missing or empty folder).
    """
    files, problems = _expand_collecting(paths)
    loaded = load_all(files)
    problems += loaded.problems
    problems += _golden_prompt_problems(loaded.specs)
    problems += validate_fit(loaded.specs)
    broken_paths = {problem.path for problem in problems}
    valid = [
        (path, loaded.specs[path])
        for path in files
        if path in loaded.specs and path not in broken_paths
    ]
    if as_json:
        click.echo(json.dumps(_validation_document(valid, problems), indent=2))
    else:
        for path, spec in valid:
            click.echo(f"{path}: ok ({spec.name} in namespace {spec.namespace})")
        for problem in problems:
            click.echo(str(problem))
    if problems:
        broken = len({problem.path for problem in problems})
        click.echo(
            f"error: {len(problems)} problem(s) in {broken} of {len(files)} spec file(s)",
            err=True,
        )
        sys.exit(1)


def _golden_prompt_problems(specs: dict[Path, ReleaseSpec]) -> list[LocatedProblem]:
    """The quality gate's golden prompt files, read as the gate reads them."""
    problems = []
    for path, spec in specs.items():
        if spec.quality is None:
            continue
        try:
            load_prompts(Path(spec.quality.prompts))
        except QualityError as error:
            problems.append(LocatedProblem(path, "quality.prompts", str(error)))
    return problems


def _validation_document(
    valid: list[tuple[Path, ReleaseSpec]], problems: list[LocatedProblem]
) -> dict[str, object]:
    """`validate --json`: the valid specs and every problem with its position."""
    return {
        "ok": not problems,
        "valid": [
            {"path": str(path), "name": spec.name, "namespace": spec.namespace}
            for path, spec in valid
        ],
        "problems": [
            {
                "path": str(problem.path),
                "line": problem.line,
                "column": problem.column if problem.line is not None else None,
                "field": problem.field,
                "message": problem.message,
            }
            for problem in problems
        ],
    }


@cli.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a release spec, for editors (e.g. the YAML language
    server: `# yaml-language-server: $schema=llm-rollout-spec.json`)."""
    document = ReleaseSpec.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    click.echo(json.dumps(document, indent=2))


@cli.command("dagster-rbac")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--namespace", default="dagster", show_default=True, help="Dagster's namespace.")
@click.option(
    "--service-account",
    default="llm-rollout",
    show_default=True,
    help="The account Dagster's code server and run pods use (Helm: global.serviceAccountName).",
)
def dagster_rbac_command(paths: tuple[Path, ...], namespace: str, service_account: str) -> None:
    """Print the RBAC that lets Dagster on Kubernetes release these models (YAML documents,
    schema-validated): per model a Role in its namespace (with LeaderWorkerSets for a model
    whose replica spans nodes) and a ClusterRole for its own Namespace and volume by name plus
    read-only nodes/pods (the GPU preflight)."""
    try:
        specs = load_specs(_expand(paths))
    except SpecFileError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    objects = dagster_rbac(specs, namespace, service_account)
    schema = schema_problems(objects)
    for schema_problem in schema:
        click.echo(f"error: {schema_problem}", err=True)
    if schema:
        sys.exit(1)
    click.echo(to_yaml_all(objects), nl=False)


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Folders become the spec files inside them; files stay as given; a folder without
    specs is a `SpecFileError`."""
    files, problems = _expand_collecting(paths)
    if problems:
        raise SpecFileError(problems)
    return files


def _expand_collecting(paths: tuple[Path, ...]) -> tuple[list[Path], list[LocatedProblem]]:
    """Like `_expand`, returning the problems of empty folders instead of raising."""
    files: list[Path] = []
    problems: list[LocatedProblem] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)  # a missing file is reported when it is read
            continue
        try:
            files.extend(spec_files(path))
        except SpecFileError as error:
            problems.extend(error.problems)
    return files, problems


cli.add_command(weights)
cli.add_command(render)
cli.add_command(plan)
cli.add_command(status)
cli.add_command(image)
cli.add_command(gate)
cli.add_command(router)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="llm-rollout")


if __name__ == "__main__":
    main()
