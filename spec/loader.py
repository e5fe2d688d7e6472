"""Reading release spec files: YAML in, a `ReleaseSpec` or every problem with its field out."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from spec.rules import Problem, SpecRuleViolations
from spec.schema import ReleaseSpec

TOP_LEVEL = "(top level)"


@dataclass(frozen=True)
class LocatedProblem:
    """A problem in one spec file, with the YAML line of the field when it is known."""

    path: Path
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}: {self.field}: {self.message}{where}"


class SpecFileError(Exception):
    """A spec file could not be read or is not a valid release spec."""

    def __init__(self, problems: list[LocatedProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_spec(path: Path) -> ReleaseSpec:
    """Parse and validate one spec file; raise `SpecFileError` naming every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, f"cannot read: {error.strerror}")]
        ) from error
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = getattr(error, "problem", None) or str(error)
        line = mark.line + 1 if mark is not None else None
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, f"invalid YAML: {reason}", line)]
        ) from error
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, f"expected a mapping of spec fields, got {kind}")]
        )
    lines = _line_index(node)
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as error:
        problems = [_from_pydantic(path, detail, lines) for detail in error.errors()]
    except SpecRuleViolations as error:
        problems = [_located(path, problem, lines) for problem in error.problems]
    raise SpecFileError(problems)


def load_specs(paths: Iterable[Path]) -> list[ReleaseSpec]:
    """Load several spec files; raise one `SpecFileError` with the problems of all of them.

    Two specs may not release the same model name into the same namespace.
    """
    specs: list[ReleaseSpec] = []
    problems: list[LocatedProblem] = []
    owners: dict[tuple[str, str], Path] = {}
    for path in paths:
        try:
            spec = load_spec(path)
        except SpecFileError as error:
            problems.extend(error.problems)
            continue
        key = (spec.namespace, spec.name)
        if key in owners:
            problems.append(
                LocatedProblem(
                    path,
                    "name",
                    f"'{spec.name}' in namespace '{spec.namespace}' is also "
                    f"released by {owners[key]}; names must be unique per namespace",
                )
            )
            continue
        owners[key] = path
        specs.append(spec)
    if problems:
        raise SpecFileError(problems)
    return specs


def spec_files(directory: Path) -> list[Path]:
    """The spec files in a models folder, in a stable order."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def _located(path: Path, problem: Problem, lines: dict[tuple[str, ...], int]) -> LocatedProblem:
    return LocatedProblem(path, problem.field, problem.message, _line_of(problem.field, lines))


def _from_pydantic(
    path: Path, detail: ErrorDetails, lines: dict[tuple[str, ...], int]
) -> LocatedProblem:
    loc = detail["loc"]
    field = _dotted(loc) or TOP_LEVEL
    kind = detail["type"]
    message = detail["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_fields(loc[:-1]))
        message = f"unknown field; allowed here: {allowed}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("literal_error", "bool_parsing", "bool_type") or kind.startswith(
        ("int_", "float_", "string_", "list_", "dict_", "model_")
    ):
        message = f"{message} (got {detail['input']!r})"
    return LocatedProblem(path, field, message, _line_of(field, lines))


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_fields(loc: Sequence[int | str]) -> list[str]:
    """The field names of the spec section at `loc`, for 'unknown field' messages."""
    model: type[BaseModel] = ReleaseSpec
    for part in loc:
        if isinstance(part, int):
            continue
        nested = _model_in(model.model_fields[part].annotation)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
        list,
    ):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _line_index(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each mapping key path in the YAML document to its 1-based line."""
    index: dict[tuple[str, ...], int] = {}

    def walk(current: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                path = (*prefix, str(key.value))
                index[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(current, yaml.SequenceNode):
            for position, item in enumerate(current.value):
                path = (*prefix, f"[{position}]")
                index[path] = item.start_mark.line + 1
                walk(item, path)

    if node is not None:
        walk(node, ())
    return index


def _line_of(field: str, lines: dict[tuple[str, ...], int]) -> int | None:
    parts = tuple(part for part in field.replace("[", ".[").split(".") if part)
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return None
