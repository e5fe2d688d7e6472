"""Cron expressions for `refresh.cron`, checked the way Dagster's schedules will read them.

Dagster parses cron with its vendored croniter and refuses what does not expand to five
fields (`dagster._utils.schedules.is_valid_cron_string`); `ScheduleDefinition` then fails the
whole code location. This module accepts a subset of that grammar — macros, numbers, names,
`*`, `?`, ranges, steps and lists — so everything it accepts Dagster accepts too
(tests/spec/test_cron.py checks that against Dagster itself). Quartz extensions (`L`, `W`,
`#`) and Jenkins hashes (`H`) are refused with a message rather than half-supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# croniter's aliases (croniter.py `_expand`, `expr_aliases`).
MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_ITEM = re.compile(r"^(?P<start>\*|[0-9]+|[a-z]+)(-(?P<end>[0-9]+|[a-z]+))?(/(?P<step>[0-9]+))?$")
_FEBRUARY = 2
_LAST_DAY_OF_FEBRUARY = 29


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: dict[str, int]
    question_mark: bool = False  # `?` means "any" in the two day fields only

    def allowed(self) -> str:
        """The grammar of this field, for messages."""
        names = list(self.names)
        names_hint = f", names {names[0]}-{names[-1]}" if names else ""
        return (
            f"*, numbers {self.low}-{self.high}{names_hint}, ranges a-b, steps */n or a-b/n, lists"
        )


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}, question_mark=True),
    _Field("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTH_NAMES)}),
    # croniter takes 7 as Sunday too
    _Field("day of week", 0, 7, {name: i for i, name in enumerate(WEEKDAY_NAMES)}, True),
)


class _FieldProblem(Exception):
    """One field of a cron expression is not in the accepted grammar."""


def cron_problem(expression: str) -> str | None:
    """Say why Dagster would refuse (or misread) `expression` as a schedule, or return None."""
    text = expression.strip().lower()
    if text.startswith("@"):
        if text in MACROS:
            return None
        return f"'{expression}' is not a cron macro; allowed: {', '.join(MACROS)}"
    parts = text.split()
    if len(parts) != len(_FIELDS):
        return (
            f"'{expression}' must have 5 fields (minute hour day-of-month month day-of-week) "
            f"or be a macro such as @daily; got {len(parts)}"
        )
    values: list[set[int]] = []
    for part, original, field in zip(parts, expression.split(), _FIELDS, strict=True):
        try:
            values.append(_field_values(part, field))
        except _FieldProblem as problem:
            return (
                f"'{expression}': {field.label} field '{original}' {problem}; "
                f"allowed: {field.allowed()}"
            )
    days, months = values[2], values[3]
    if months == {_FEBRUARY} and min(days) > _LAST_DAY_OF_FEBRUARY:
        return f"'{expression}' names only days after February 29th, so it would never run"
    return None


def _field_values(text: str, field: _Field) -> set[int]:
    """The values one field selects; raise `_FieldProblem` when Dagster would refuse it."""
    if text == "?":
        if not field.question_mark:
            raise _FieldProblem("may not be '?' (only the day fields may)")
        return set(range(field.low, field.high + 1))
    selected: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise _FieldProblem(f"has '{item}', which is not a value, range or step")
        start_text, end_text, step_text = match["start"], match["end"], match["step"]
        step = int(step_text) if step_text is not None else 1
        if step == 0:
            raise _FieldProblem("has a step of 0, which never advances")
        if start_text == "*":
            if end_text is not None:
                raise _FieldProblem("has '*' as the start of a range")
            low, high = field.low, field.high
        else:
            low = _value(start_text, field)
            if end_text is not None:
                high = _value(end_text, field)
            elif step_text is not None:  # 'a/n' runs from a to the end, as croniter reads it
                high = field.high
            else:
                high = low
            if end_text is not None and low == high:
                # croniter reads 'a-a' as the whole cycle, not the single value a
                raise _FieldProblem(f"has the range '{item}', which Dagster reads as every value")
        if step_text is not None and step > high:
            # Dagster warns and fires more often than asked (dagster-io/dagster#15294)
            raise _FieldProblem(
                f"has a step of {step}, beyond the range it steps through (Dagster would run "
                "it more often than asked)"
            )
        if low <= high:
            selected.update(range(low, high + 1, step))
        else:  # croniter wraps around: 22-2 in hours is 22, 23, 0, 1, 2
            selected.update(range(low, field.high + 1, step))
            selected.update(range(field.low, high + 1, step))
    return selected


def _value(text: str, field: _Field) -> int:
    if text.isdigit():
        value = int(text)
    elif text in field.names:
        value = field.names[text]
    else:
        raise _FieldProblem(f"has '{text}', which is not a number or a name of this field")
    if not field.low <= value <= field.high:
        raise _FieldProblem(f"has {value}, outside {field.low}-{field.high}")
    return value
