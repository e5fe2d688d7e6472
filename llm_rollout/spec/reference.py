"""The spec reference: every field of the release spec with its default, what it accepts and
its description, generated from the schema (spec/schema.py and its section models) so that
docs/spec.md cannot drift from what `validate` and `llm-rollout schema` use.

Regenerate the page's tables after changing a field:

    python -m llm_rollout.spec.reference docs/spec.md  # rewrite the generated part in place
    python -m llm_rollout.spec.reference docs/spec.md --check  # exit 1 when it is out of date

Only the text between `BEGIN_MARKER` and `END_MARKER` is generated; the prose around it is
the page's own.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from llm_rollout.spec.schema import ReleaseSpec

BEGIN_MARKER = "<!-- generated: spec fields (python -m llm_rollout.spec.reference docs/spec.md) -->"
END_MARKER = "<!-- end: spec fields -->"
REGENERATE_COMMAND = "python -m llm_rollout.spec.reference docs/spec.md"
REQUIRED = "required"
UNSET = "unset"  # a None default: the description says what that means
TOP_LEVEL = "Top level"  # the section of the fields that are no section of their own
# A description names another page as docs/<page>.md[#anchor]; on docs/spec.md it is a link.
DOC_PAGE = re.compile(r"\bdocs/([a-z0-9-]+\.md)(#[a-z0-9-]+)?")


class ReferenceMarkersMissing(ValueError):
    """The page has no place for the generated reference."""


@dataclass(frozen=True)
class FieldRow:
    """One field of the spec, as the reference shows it."""

    path: str  # as written in YAML: "gate.window", "routing.routes[].match.models"
    default: str  # YAML text, REQUIRED, or UNSET
    accepts: str  # the type and bounds, e.g. "integer in [1, 64]"
    description: str
    model: type[BaseModel]  # the model that declares the field
    field: str


@dataclass(frozen=True)
class Section:
    """A top-level part of the spec: its own fields, or the top-level scalar fields."""

    title: str
    presence: str  # "" (has defaults), "required" or "optional"
    description: str
    rows: tuple[FieldRow, ...]


def nested_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field's values are made of and how its path continues, or None.

    `Storage.nfs: NfsVolume | None` → (NfsVolume, "."); `list[Route]` → (Route, "[]."),
    `dict[str, CloudBackend]` → (CloudBackend, ".<name>.").
    """
    annotation = _without_none(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "."
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and len(args) == 1:
        item = nested_model(args[0])
        return (item[0], "[].") if item else None
    if origin is dict and len(args) == 2:
        value = nested_model(args[1])
        return (value[0], ".<name>.") if value else None
    return None


def field_rows(model: type[BaseModel], prefix: str = "") -> Iterator[FieldRow]:
    """A row for every field of `model` and, depth first, of the models inside it."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield FieldRow(
            path=path,
            default=default_text(info),
            accepts=accepts_text(info),
            description=description_text(info),
            model=model,
            field=name,
        )
        inner = nested_model(info.annotation)
        if inner is not None:
            yield from field_rows(inner[0], f"{path}{inner[1]}")


def sections(spec: type[BaseModel] = ReleaseSpec) -> list[Section]:
    """The spec's top-level fields first, then one section per top-level part, in schema order."""
    top_level = [
        row
        for row in field_rows(spec)
        if "." not in row.path and nested_model(spec.model_fields[row.path].annotation) is None
    ]
    found = [Section(TOP_LEVEL, "", _one_line(spec.__doc__ or ""), tuple(top_level))]
    for name, info in spec.model_fields.items():
        inner = nested_model(info.annotation)
        if inner is None:
            continue
        presence = REQUIRED if info.is_required() else ("optional" if info.default is None else "")
        rows = tuple(field_rows(inner[0], f"{name}{inner[1]}"))
        found.append(Section(name, presence, description_text(info), rows))
    return found


def default_text(info: FieldInfo) -> str:
    """The default as a user would write it in YAML, REQUIRED, or UNSET."""
    if info.is_required():
        return REQUIRED
    value = info.get_default(call_default_factory=True)
    if value is None:
        return UNSET
    return yaml_text(_plain(value))


def yaml_text(value: Any) -> str:
    """A plain value as one line of flow-style YAML: `[X-Session-ID, X-User-ID]`, `true`."""
    text: str = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=math.inf
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


def accepts_text(info: FieldInfo) -> str:
    """The kind of value a field takes and its bounds, as the reference shows them."""
    annotation = _without_none(info.annotation)
    for item in info.metadata:
        # a value converted before validation (a quantity given as a number) accepts its input
        if isinstance(item, BeforeValidator) and item.json_schema_input_type is not Any:
            annotation = item.json_schema_input_type
    kind = _kind(annotation)
    bounds = _bounds(info.metadata)
    return f"{kind} {bounds}" if bounds else kind


def description_text(info: FieldInfo) -> str:
    """The field's description (`description=` in the schema), on one line."""
    return _one_line(info.description or "")


def render_sections(found: Sequence[Section]) -> str:
    """The Markdown the page holds between the markers: a heading and a table per section."""
    parts: list[str] = []
    for section in found:
        heading = "Top-level fields" if section.title == TOP_LEVEL else f"`{section.title}`"
        if section.presence:
            heading += f" ({section.presence})"
        parts.append(f"### {heading}\n\n{_markdown(section.description)}\n")
        lines = ["| field | default | accepts | meaning |", "|---|---|---|---|"]
        for row in section.rows:
            default = row.default if row.default in (REQUIRED, UNSET) else f"`{row.default}`"
            description = _markdown(row.description)
            cells = [f"`{row.path}`", _cell(default), _cell(row.accepts), description]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def rewrite(page: str, found: Sequence[Section] | None = None) -> str:
    """`page` with the text between the markers replaced by the generated reference."""
    start, end = page.find(BEGIN_MARKER), page.find(END_MARKER)
    if start < 0 or end < start:
        raise ReferenceMarkersMissing(
            f"the page has no '{BEGIN_MARKER}' … '{END_MARKER}' pair, in that order: add both "
            "lines where the field reference belongs"
        )
    generated = render_sections(sections() if found is None else found)
    return f"{page[: start + len(BEGIN_MARKER)]}\n\n{generated}\n{page[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or with --check, compare) the generated reference in a Markdown page."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_rollout.spec.reference", description=__doc__
    )
    parser.add_argument("page", type=Path, help="the page to update, e.g. docs/spec.md")
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    try:
        current = args.page.read_text(encoding="utf-8")
        updated = rewrite(current)
    except (OSError, ReferenceMarkersMissing) as error:
        print(f"error: {args.page}: {error}", file=sys.stderr)
        return 2
    if updated == current:
        print(f"{args.page}: the spec reference is current")
        return 0
    if args.check:
        print(f"{args.page}: the spec reference is out of date; run {REGENERATE_COMMAND}")
        return 1
    args.page.write_text(updated, encoding="utf-8")
    print(f"{args.page}: spec reference rewritten")
    return 0


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
        return Union[tuple(rest)]  # noqa: UP007 - rebuilt from a runtime tuple
    return annotation


def _kind(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        values = [f"`{yaml_text(value)}`" for value in args]
        return "one of " + ", ".join(values)
    if origin in (Union, types.UnionType):
        kinds = [_kind(arg) for arg in args if arg is not type(None)]
        if "number" in kinds and "integer" in kinds:
            kinds.remove("integer")  # every integer is a number
        return " or ".join(kinds)
    if origin is list:
        item = _kind(args[0]) if args else "value"
        return f"list of {item}s" if not item.startswith("one of") else f"list, each {item}"
    if origin is dict:
        if args and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            return "mapping of names to mappings"
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(metadata: Sequence[Any]) -> str:
    lower = upper = ""
    low_value: Any = None
    high_value: Any = None
    min_length = None
    # pydantic keeps `ge=1` and the like as annotated-types constraints, one attribute each
    for item in metadata:
        if getattr(item, "ge", None) is not None:
            lower, low_value = "[", item.ge
        elif getattr(item, "gt", None) is not None:
            lower, low_value = "(", item.gt
        elif getattr(item, "le", None) is not None:
            upper, high_value = "]", item.le
        elif getattr(item, "lt", None) is not None:
            upper, high_value = ")", item.lt
        elif getattr(item, "min_length", None) is not None:
            min_length = item.min_length
    if lower and upper:
        return f"in {lower}{_number(low_value)}, {_number(high_value)}{upper}"
    if lower:
        return f"{'≥' if lower == '[' else '>'} {_number(low_value)}"
    if upper:
        return f"{'≤' if upper == ']' else '<'} {_number(high_value)}"
    if min_length:
        return "(not empty)" if min_length == 1 else f"(at least {min_length})"
    return ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    """Models as the mappings a user writes (only what differs from their defaults)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    # a '|' inside a cell would end it, code spans included (GitHub-flavoured Markdown)
    return text.replace("|", "\\|")


def _markdown(text: str) -> str:
    """A description as Markdown: docs/<page>.md becomes a link, and outside code spans
    `<` is escaped, since `team:<name>` would otherwise read as an HTML tag."""
    pieces = text.split("`")
    for index in range(0, len(pieces), 2):  # the even pieces are outside code spans
        prose = pieces[index].replace("<", "&lt;")
        pieces[index] = DOC_PAGE.sub(
            lambda m: f"[{m.group(1)}]({m.group(1)}{m.group(2) or ''})", prose
        )
    return _cell("`".join(pieces))


if __name__ == "__main__":
    sys.exit(main())
