"""The spec's `quality` section: the golden prompt file is found beside the spec, or
`validate` names the field and the path it looked at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from llm_rollout.cli.main import validate
from llm_rollout.spec import load_spec
from llm_rollout.spec.loader import SpecFileError


def test_the_golden_prompts_are_read_beside_the_spec(write_spec: Callable[..., Path]) -> None:
    path = write_spec(quality={"prompts": "golden.jsonl", "min_agreement": 0.8})
    (path.parent / "golden.jsonl").write_text('{"messages": []}\n')
    spec = load_spec(path)
    assert spec.quality is not None
    assert spec.quality.prompts == str((path.parent / "golden.jsonl").resolve())


def test_a_missing_golden_prompt_file_is_a_spec_error(write_spec: Callable[..., Path]) -> None:
    path = write_spec(quality={"prompts": "golden.jsonl"})
    with pytest.raises(SpecFileError, match=r"quality\.prompts.*no golden prompt file at"):
        load_spec(path)


def test_quality_is_off_unless_asked_for(write_spec: Callable[..., Path]) -> None:
    assert load_spec(write_spec()).quality is None


def test_validate_reads_the_golden_prompts_as_the_gate_does(
    write_spec: Callable[..., Path],
) -> None:
    path = write_spec(quality={"prompts": "golden.jsonl"})
    (path.parent / "golden.jsonl").write_text('{"messages": "not a list"}\n')
    result = CliRunner().invoke(validate, [str(path)])
    assert result.exit_code == 1
    assert "quality.prompts" in result.output and "golden.jsonl:1" in result.output
