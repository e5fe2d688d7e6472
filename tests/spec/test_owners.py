"""`owners:` in a spec: what `validate` accepts is exactly what Dagster accepts as an asset
owner, so a spec that validates never fails the code location's load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dagster._core.definitions.utils import is_valid_owner

from llm_rollout.spec import SpecFileError, load_spec

OWNERS = [
    "ml-platform@example.com",
    "first.last+llm@corp.example.co.uk",
    "team:ml-platform",
    "team:inference_ops",
    "team:",
    "ml-platform",
    "@example.com",
    "someone@localhost",
    "TEAM:x",
]


@pytest.mark.parametrize("owner", OWNERS)
def test_the_spec_accepts_an_owner_exactly_when_dagster_does(
    write_spec: Callable[..., Path], owner: str
) -> None:
    path = write_spec(owners=[owner])
    if is_valid_owner(owner):
        assert load_spec(path).owners == [owner]
    else:
        with pytest.raises(SpecFileError, match=r"owners.*email address or 'team:<name>'"):
            load_spec(path)


def test_owners_default_to_none(write_spec: Callable[..., Path]) -> None:
    assert load_spec(write_spec()).owners == []
