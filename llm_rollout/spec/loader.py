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

from llm_rollout.spec.rules import Problem, SpecRuleViolations
from llm_rollout.spec.schema import ReleaseSpec

TOP_LEVEL = "(top level)"
SPEC_SUFFIXES = (".yaml", ".yml")
# A release spec is a few KB; a megabyte is the wrong file (weights, a log), and reading
# it whole could exhaust a code server's memory.
MAX_SPEC_BYTES = 1024 * 1024
# YAML nodes after expanding aliases. A spec has about a hundred; a "billion laughs" alias
# bomb composes quickly but expands to 10^9 nodes, which validation would walk until
# MemoryError (tens of seconds, at code-location load too).
MAX_SPEC_NODES = 10_000


@dataclass(frozen=True)
class LocatedProblem:
    """A problem in one spec file, with the YAML line and column of the field when known."""

    path: Path
    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.field}: {self.message}"
        return f"{self.path}:{self.line}:{self.column or 1}: {self.field}: {self.message}"


class SpecFileError(Exception):
    """A spec file could not be read or is not a valid release spec."""

    def __init__(self, problems: list[LocatedProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class SpecLoad:
    """The outcome of loading several spec files: the valid ones and every problem."""

    specs: dict[Path, ReleaseSpec]
    problems: list[LocatedProblem]

    def problems_by_file(self) -> dict[Path, list[LocatedProblem]]:
        """The problems grouped by the file they are in, in the order files were given."""
        grouped: dict[Path, list[LocatedProblem]] = {}
        for problem in self.problems:
            grouped.setdefault(problem.path, []).append(problem)
        return grouped


def load_spec(path: Path) -> ReleaseSpec:
    """Parse and validate one spec file; raise `SpecFileError` naming every problem."""
    text = _read_text(path)
    node = _compose(path, text)
    if not isinstance(node, yaml.MappingNode):
        data = None if node is None else _construct(path, text)
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, f"expected a mapping of spec fields, got {kind}")]
        )
    lines = _position_index(path, node)
    data = _construct(path, text)
    try:
        # relative paths in the spec (the golden prompts) are the spec's folder's
        return ReleaseSpec.model_validate(data, context={"spec_dir": path.parent})
    except ValidationError as error:
        problems = [_from_pydantic(path, detail, lines) for detail in error.errors()]
    except SpecRuleViolations as error:
        problems = [_located(path, problem, lines) for problem in error.problems]
    raise SpecFileError(problems)


def load_all(paths: Iterable[Path]) -> SpecLoad:
    """Load every spec file, collecting problems instead of stopping at the first bad file.

    Two specs may not release the same model name into the same namespace: the later file
    is the one with the problem.
    """
    specs: dict[Path, ReleaseSpec] = {}
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
        specs[path] = spec
    return SpecLoad(specs, problems)


def load_specs(paths: Iterable[Path]) -> list[ReleaseSpec]:
    """Load several spec files; raise one `SpecFileError` with the problems of all of them."""
    loaded = load_all(paths)
    if loaded.problems:
        raise SpecFileError(loaded.problems)
    return list(loaded.specs.values())


def spec_files(directory: Path) -> list[Path]:
    """The spec files in a models folder, in a stable order; a missing folder or one
    without any spec is a `SpecFileError` naming the folder."""
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise SpecFileError([LocatedProblem(directory, TOP_LEVEL, f"the models folder {what}")])
    files = sorted(p for p in directory.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())
    if not files:
        raise SpecFileError(
            [
                LocatedProblem(
                    directory,
                    TOP_LEVEL,
                    "no spec files (*.yaml, *.yml) in this folder; copy one from examples/ "
                    "or point at the folder that holds your specs",
                )
            ]
        )
    return files


def _read_text(path: Path) -> str:
    """The file as text; size, binary content and encoding problems name the file."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, f"cannot read: {error.strerror}")]
        ) from error
    if len(data) > MAX_SPEC_BYTES:
        raise SpecFileError(
            [
                LocatedProblem(
                    path,
                    TOP_LEVEL,
                    f"larger than {MAX_SPEC_BYTES // 1024} KiB, far more than any release "
                    "spec; is this the right file?",
                )
            ]
        )
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, "a binary file, not a YAML spec", line)]
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise SpecFileError(
            [
                LocatedProblem(
                    path,
                    TOP_LEVEL,
                    f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8",
                    line,
                    column,
                )
            ]
        ) from error


def _yaml_problem(path: Path, error: yaml.YAMLError) -> SpecFileError:
    mark = getattr(error, "problem_mark", None)
    reason = getattr(error, "problem", None) or str(error)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return SpecFileError([LocatedProblem(path, TOP_LEVEL, f"invalid YAML: {reason}", line, column)])


def _compose(path: Path, text: str) -> yaml.Node | None:
    """The document's node graph (aliases not yet expanded), or None for an empty file."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise _yaml_problem(path, error) from error
    except RecursionError as error:
        raise SpecFileError(
            [LocatedProblem(path, TOP_LEVEL, "invalid YAML: nested too deeply for a spec")]
        ) from error
    return node


def _construct(path: Path, text: str) -> Any:
    """Python values of a document already checked by `_position_index`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _yaml_problem(path, error) from error


def _located(
    path: Path, problem: Problem, lines: dict[tuple[str, ...], Position]
) -> LocatedProblem:
    position = _line_of(problem.field, lines) or ()
    return LocatedProblem(path, problem.field, problem.message, *position)


def _from_pydantic(
    path: Path, detail: ErrorDetails, lines: dict[tuple[str, ...], Position]
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
    return LocatedProblem(path, field, message, *_line_of(field, lines) or ())


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):  # a list position in a YAML key path
            text += part
        else:
            text += f".{part}" if text else part
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


Position = tuple[int, int]


def _position_index(path: Path, node: yaml.Node) -> dict[tuple[str, ...], Position]:
    """Map each key path in the YAML document to its 1-based (line, column).

    Refuses, naming the line, what YAML allows but a spec must not have: a key given twice
    (YAML keeps the last silently) and more than `MAX_SPEC_NODES` nodes once aliases are
    expanded (an alias bomb).
    """
    index: dict[tuple[str, ...], Position] = {}
    problems: list[LocatedProblem] = []
    visited = 0

    def position(of: yaml.Node) -> Position:
        return of.start_mark.line + 1, of.start_mark.column + 1

    def walk(current: yaml.Node, prefix: tuple[str, ...]) -> None:
        nonlocal visited
        visited += 1
        if visited > MAX_SPEC_NODES:
            line, column = position(current)
            raise SpecFileError(
                [
                    LocatedProblem(
                        path,
                        _dotted(prefix) or TOP_LEVEL,
                        f"more than {MAX_SPEC_NODES} YAML values once aliases are expanded "
                        "(an alias bomb?); a spec needs no more than a few hundred",
                        line,
                        column,
                    )
                ]
            )
        if isinstance(current, yaml.MappingNode):
            first_seen: dict[str, int] = {}
            for key, value in current.value:
                name = str(key.value)
                key_path = (*prefix, name)
                if name in first_seen and name != "<<":
                    line, column = position(key)
                    problems.append(
                        LocatedProblem(
                            path,
                            _dotted(key_path),
                            f"duplicate key (first at line {first_seen[name]}); YAML would "
                            "silently keep only the last, remove one",
                            line,
                            column,
                        )
                    )
                first_seen.setdefault(name, position(key)[0])
                index.setdefault(key_path, position(key))
                walk(value, key_path)
        elif isinstance(current, yaml.SequenceNode):
            for item_number, item in enumerate(current.value):
                item_path = (*prefix, f"[{item_number}]")
                index.setdefault(item_path, position(item))
                walk(item, item_path)

    walk(node, ())
    if problems:
        raise SpecFileError(problems)
    return index


def _line_of(field: str, lines: dict[tuple[str, ...], Position]) -> Position | None:
    parts = tuple(part for part in field.replace("[", ".[").split(".") if part)
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return None
