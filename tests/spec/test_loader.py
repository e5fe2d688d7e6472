"""Reading spec files: what YAML allows but a spec must not have is refused at its line,
quickly, as one problem naming the file — never a traceback or a hang."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_rollout.spec import LocatedProblem, SpecFileError, load_all, load_spec, spec_files
from llm_rollout.spec.loader import MAX_SPEC_BYTES, MAX_SPEC_NODES

WriteSpec = Callable[..., Path]
VALID = (
    "name: qwen-small\n"
    "source: {repo: Qwen/Qwen3-0.6B}\n"
    "storage: {existing_claim: weights}\n"
    "serving: {vllm_version: '0.11.0'}\n"
)


def only_problem(path: Path) -> LocatedProblem:
    with pytest.raises(SpecFileError) as caught:
        load_spec(path)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def test_a_duplicate_key_is_refused_at_its_line(write_spec: WriteSpec) -> None:
    path = write_spec(text=VALID + "replicas: 2\nname: other\n")
    problem = only_problem(path)
    assert (problem.field, problem.line, problem.column) == ("name", 6, 1)
    assert "duplicate key (first at line 1)" in problem.message
    assert str(problem) == f"{path}:6:1: name: {problem.message}"


def test_a_duplicate_nested_key_names_the_section(write_spec: WriteSpec) -> None:
    path = write_spec(text=VALID + "gate:\n  window: 5m\n  window: 10m\n")
    problem = only_problem(path)
    assert (problem.field, problem.line, problem.column) == ("gate.window", 7, 3)


def test_an_alias_bomb_is_refused_fast(write_spec: WriteSpec) -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write_spec(text=VALID + "\n".join(levels) + "\n")
    started = time.monotonic()
    problem = only_problem(path)
    assert time.monotonic() - started < 5  # the unchecked loader ran out of memory after 39 s
    assert f"more than {MAX_SPEC_NODES} YAML values once aliases are expanded" in problem.message
    assert problem.line is not None


def test_anchors_within_the_limit_still_work(write_spec: WriteSpec) -> None:
    text = VALID + "resources: {tolerations: [&t {key: a, operator: Exists}, *t]}\n"
    spec = load_spec(write_spec(text=text))
    assert [t.key for t in spec.resources.tolerations] == ["a", "a"]


def test_an_oversized_file_is_refused_without_parsing(write_spec: WriteSpec) -> None:
    path = write_spec(text=VALID + "#" * MAX_SPEC_BYTES + "\n")
    problem = only_problem(path)
    assert "larger than 1024 KiB" in problem.message


def test_deep_nesting_is_a_problem_not_a_crash(write_spec: WriteSpec) -> None:
    path = write_spec(text="name: " + "[" * 5_000 + "]" * 5_000 + "\n")
    assert "nested too deeply" in only_problem(path).message


def test_a_latin1_file_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes((VALID + "# café\n").encode("latin-1"))
    problem = only_problem(path)
    assert (problem.line, problem.column) == (5, 6)
    assert problem.message == "not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_a_binary_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "weights.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert only_problem(path).message == "a binary file, not a YAML spec"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_spec(path).name == "qwen-small"


def test_one_unreadable_file_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "a-binary.yaml").write_bytes(b"\x00\x01")
    (tmp_path / "b-good.yaml").write_text(VALID)
    loaded = load_all(spec_files(tmp_path))
    assert [spec.name for spec in loaded.specs.values()] == ["qwen-small"]
    assert [problem.path.name for problem in loaded.problems] == ["a-binary.yaml"]


def test_a_missing_models_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="models folder does not exist") as caught:
        spec_files(tmp_path / "modles")
    assert caught.value.problems[0].path == tmp_path / "modles"


def test_an_empty_models_folder_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("specs go here")
    with pytest.raises(SpecFileError, match="no spec files") as caught:
        spec_files(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: (top level): no spec files")


def test_yml_files_count_as_specs(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(VALID)
    assert spec_files(tmp_path) == [tmp_path / "a.yml"]


def test_a_problem_without_a_line_has_no_position(tmp_path: Path) -> None:
    problem = LocatedProblem(tmp_path / "x.yaml", "name", "bad")
    assert str(problem) == f"{tmp_path / 'x.yaml'}: name: bad"
