"""The spec reference (docs/spec.md): generated from the schema's field descriptions, with every
field of every spec model in it; the page, the schema and `llm-rollout schema` cannot drift."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from llm_rollout.spec.reference import (
    BEGIN_MARKER,
    END_MARKER,
    REGENERATE_COMMAND,
    TOP_LEVEL,
    FieldRow,
    ReferenceMarkersMissing,
    Section,
    accepts_text,
    default_text,
    field_rows,
    main,
    render_sections,
    rewrite,
    sections,
)
from llm_rollout.spec.routing import Route, Routing
from llm_rollout.spec.schema import Gate, ReleaseSpec, Resources, Rollout, Serving, Source, Storage

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PAGE = REPO_ROOT / "docs" / "spec.md"


def spec_models() -> set[type[BaseModel]]:
    """Every model a release spec is made of, found from the annotations alone (not by the
    generator's own walk, so a field type it failed to follow still shows up here)."""
    found: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [ReleaseSpec]
    while todo:
        model = todo.pop()
        if model not in found:
            found.add(model)
            for info in model.model_fields.values():
                todo.extend(_models_in(info.annotation))
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def generated_part(page: str) -> str:
    return page[page.index(BEGIN_MARKER) : page.index(END_MARKER)]


def all_descriptions(document: Any) -> set[str]:
    """Every `description` anywhere in a JSON Schema document."""
    if isinstance(document, dict):
        found = {document["description"]} if isinstance(document.get("description"), str) else set()
        return found.union(*(all_descriptions(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(all_descriptions(value) for value in document))
    return set()


def test_docs_spec_md_holds_the_reference_the_schema_generates() -> None:
    page = SPEC_PAGE.read_text(encoding="utf-8")

    expected = rewrite(page)

    diff = "".join(
        list(
            difflib.unified_diff(
                page.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                "docs/spec.md",
                "generated from spec/*.py",
            )
        )[:40]
    )
    assert page == expected, (
        f"docs/spec.md's field reference differs from the schema's descriptions; run "
        f"`{REGENERATE_COMMAND}` (edit descriptions in spec/*.py, not the tables):\n{diff}"
    )


def test_every_field_of_every_spec_model_is_on_the_page() -> None:
    found = sections()
    rows = [row for section in found for row in section.rows]
    # a top-level part (`gate`) is a section of its own, with a heading instead of a row
    headed = {(ReleaseSpec, section.title) for section in found if section.title != TOP_LEVEL}
    covered = {(row.model, row.field) for row in rows} | headed
    every_field = {(model, name) for model in spec_models() for name in model.model_fields}

    missing = sorted(f"{model.__name__}.{name}" for model, name in every_field - covered)
    assert not missing, f"the generated reference has no row for {missing}"
    reference = generated_part(SPEC_PAGE.read_text(encoding="utf-8"))
    absent = [row.path for row in rows if f"| `{row.path}` |" not in reference]
    absent += [name for _, name in headed if f"### `{name}`" not in reference]
    assert not absent, f"docs/spec.md lacks {absent}; run `{REGENERATE_COMMAND}`"
    assert len(rows) > 100  # the whole spec, nested sections included


def test_every_field_has_a_description_in_the_schema() -> None:
    lacking = sorted(
        f"{model.__module__}.{model.__name__}.{name}"
        for model in spec_models()
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    )

    assert not lacking, f"add description= to {lacking}: the reference and editors show it"


def test_the_json_schema_gives_editors_the_same_descriptions() -> None:
    from llm_rollout.cli.main import cli

    result = CliRunner().invoke(cli, ["schema"])

    assert result.exit_code == 0, result.output
    shown = all_descriptions(json.loads(result.stdout))
    missing = [row.path for row in field_rows(ReleaseSpec) if row.description not in shown]
    assert not missing, f"llm-rollout schema lacks the descriptions of {missing}"


@pytest.mark.parametrize(
    ("model", "field", "shown"),
    [
        (Source, "repo", "required"),
        (Storage, "nfs", "unset"),
        (Gate, "window", "5m"),
        (Serving, "enable_prefix_caching", "true"),
        (Serving, "extra_args", "[]"),
        (Routing, "session_headers", "[X-Session-ID, X-User-ID]"),
        # a list of models as a user writes it: only what differs from each item's defaults
        (Resources, "tolerations", "[{key: nvidia.com/gpu, effect: NoSchedule}]"),
        (Routing, "routes", "[{name: default}]"),
        (Route, "match", "{}"),
    ],
)
def test_a_default_is_shown_as_written_in_yaml(
    model: type[BaseModel], field: str, shown: str
) -> None:
    assert default_text(model.model_fields[field]) == shown


@pytest.mark.parametrize(
    ("model", "field", "shown"),
    [
        (Resources, "gpus", "integer in [1, 64]"),
        (Serving, "gpu_memory_utilization", "number in (0, 1]"),
        (Serving, "max_model_len", "integer ≥ 16"),
        (Gate, "max_e2e_p99_seconds", "number in (0, 86400]"),
        (Rollout, "strategy", "one of `canary`, `rolling`"),
        (Rollout, "max_surge", "integer or string"),
        # Kubernetes takes `cpu: 16`: the quantity is a string or a number
        (Resources, "cpu", "string or number"),
        (Routing, "routes", "list of mappings (not empty)"),
        (Routing, "cloud", "mapping of names to mappings"),
    ],
)
def test_what_a_field_accepts_is_its_type_and_bounds(
    model: type[BaseModel], field: str, shown: str
) -> None:
    assert accepts_text(model.model_fields[field]) == shown


def test_a_description_becomes_markdown_that_renders_as_written() -> None:
    row = FieldRow(
        path="owners",
        default="[]",
        accepts="list of strings",
        description="`team:<name>` or team:<name>; |Δ|; see docs/router.md#routes.",
        model=ReleaseSpec,
        field="owners",
    )

    markdown = render_sections([Section("owners", "", "Who (docs/sizing.md).", (row,))])

    assert "Who ([sizing.md](sizing.md))." in markdown
    assert (
        "| `owners` | `[]` | list of strings | `team:<name>` or team:&lt;name>; \\|Δ\\|; "
        "see [router.md](router.md#routes). |"
    ) in markdown


def test_rewriting_replaces_only_the_text_between_the_markers() -> None:
    page = f"# Intro\n\nprose before\n\n{BEGIN_MARKER}\nstale table\n{END_MARKER}\n\nprose after\n"

    updated = rewrite(page)

    assert updated.startswith(f"# Intro\n\nprose before\n\n{BEGIN_MARKER}\n")
    assert updated.endswith(f"{END_MARKER}\n\nprose after\n")
    assert "stale table" not in updated
    assert "| `gate.window` | `5m` |" in updated
    assert rewrite(updated) == updated


def test_a_page_without_the_markers_is_refused_naming_them() -> None:
    with pytest.raises(ReferenceMarkersMissing, match="generated: spec fields"):
        rewrite("# A page\n\nno place for the reference\n")


def test_the_command_checks_and_rewrites_a_stale_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "spec.md"
    stale = f"prose\n{BEGIN_MARKER}\nold\n{END_MARKER}\n"
    page.write_text(stale, encoding="utf-8")

    assert main([str(page), "--check"]) == 1
    assert page.read_text(encoding="utf-8") == stale
    assert REGENERATE_COMMAND in capsys.readouterr().out

    assert main([str(page)]) == 0
    assert main([str(page), "--check"]) == 0
    assert "| `name` | required |" in page.read_text(encoding="utf-8")


def test_the_command_names_the_page_when_it_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.md"

    assert main([str(missing)]) == 2

    assert str(missing) in capsys.readouterr().err
