"""`refresh.cron`: what Dagster's schedules accept, `validate` accepts; what Dagster refuses
(or misreads), `validate` refuses first, naming the field and what is allowed."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from dagster._utils.schedules import has_out_of_range_cron_interval, is_valid_cron_string

from llm_rollout.spec import SpecFileError, load_spec
from llm_rollout.spec.cron import cron_problem

WriteSpec = Any

# What users write, from the crontab(5) man page and Dagster's docs.
ECOSYSTEM_FORMS = [
    "0 3 * * *",
    "*/15 * * * *",
    "0 3 * * MON",
    "0 3 * * mon-fri",
    "30 2 1 jan,jul *",
    "0 0 * * 7",
    "0 22-2 * * *",
    "0 9 ? * sun",
    "5,35 */2 1-15 * 1-5",
    "@daily",
    "@hourly",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@midnight",
    "@Daily",
]


@pytest.mark.parametrize("expression", ECOSYSTEM_FORMS)
def test_what_dagster_and_crontab_accept_is_accepted(expression: str) -> None:
    assert is_valid_cron_string(expression)
    assert cron_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/0 * * * *", "minute field '*/0' has a step of 0"),
        ("0 3 * *", "must have 5 fields"),
        ("0 0 3 * * *", "must have 5 fields"),  # seconds: croniter takes it, Dagster does not
        ("0 25 * * *", "hour field '25' has 25, outside 0-23"),
        ("0 3 * * FRY", "day of week field 'FRY' has 'fry', which is not a number or a name"),
        ("0 3 * MON *", "month field 'MON'"),
        ("0 0 30 2 *", "never run"),
        ("0 0 31 feb *", "never run"),
        ("@reboot", "not a cron macro"),
        ("0 ? * * *", "hour field '?' may not be '?'"),
    ],
)
def test_what_dagster_refuses_is_refused_with_the_reason(expression: str, expected: str) -> None:
    assert not is_valid_cron_string(expression)
    problem = cron_problem(expression)
    assert problem is not None and expected in problem


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Dagster warns and runs hourly (dagster-io/dagster#15294)
        ("*/90 * * * *", "step of 90, beyond the range"),
        # croniter reads 'a-a' as every value: every day, not Mondays only
        ("0 3 * * 1-1", "reads as every value"),
    ],
)
def test_what_dagster_misreads_is_refused(expression: str, expected: str) -> None:
    assert is_valid_cron_string(expression)
    problem = cron_problem(expression)
    assert problem is not None and expected in problem


def test_everything_accepted_is_accepted_by_dagster_too() -> None:
    """Random expressions from cron's alphabet: none passes `validate` that Dagster's own
    check (the one `ScheduleDefinition` runs) would refuse or warn about."""
    rng = random.Random(20)
    atoms = ["*"] * 6 + ["?", "0", "1", "2", "5", "7", "12", "13", "23", "24", "29", "30"]
    atoms += ["31", "59", "60", "mon", "FRI", "sun", "jan", "Feb", "dec", "L", "1#2", "H", "W"]
    atoms += ["", "05"]

    def item() -> str:
        text = rng.choice(atoms)
        if rng.random() < 0.3:
            text += "-" + rng.choice(atoms)
        if rng.random() < 0.3:
            text += "/" + rng.choice(["0", "1", "2", "3", "15", "30", "59", "90"])
        return text

    accepted = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(20_000):
            fields = rng.choice([5] * 8 + [4, 6])
            expression = " ".join(
                ",".join(item() for _ in range(rng.choice([1, 1, 1, 2]))) for _ in range(fields)
            )
            if cron_problem(expression) is None:
                accepted += 1
                assert is_valid_cron_string(expression), expression
                assert not has_out_of_range_cron_interval(expression), expression
    assert accepted > 20  # the sample reaches the accepting side too


def test_a_spec_with_a_zero_step_cron_is_refused_at_its_line(write_spec: WriteSpec) -> None:
    path: Path = write_spec(refresh={"cron": "*/0 * * * *"})
    with pytest.raises(SpecFileError) as caught:
        load_spec(path)
    (problem,) = caught.value.problems
    assert problem.field == "refresh.cron"
    assert problem.line == path.read_text().splitlines().index("  cron: '*/0 * * * *'") + 1


@pytest.mark.parametrize("cron", ["@daily", "0 3 * * MON", "0 3 * * mon-fri", "0 9 ? * sun"])
def test_a_spec_accepts_macros_and_day_names(write_spec: WriteSpec, cron: str) -> None:
    assert load_spec(write_spec(refresh={"cron": cron})).refresh.cron == cron
