"""`llm-rollout validate`: what a user sees for good and bad specs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from llm_rollout.cli.main import cli
from tests.conftest import DEMO_SPEC, EXAMPLES_DIR, REPO_ROOT, SPEC_FILES


def test_bundled_specs_validate_through_the_installed_command() -> None:
    command = Path(sys.executable).parent / "llm-rollout"
    result = subprocess.run(
        [str(command), "validate", *map(str, SPEC_FILES.values())],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deepseek-v4.yaml: ok" in result.stdout
    assert "demo-tiny.yaml: ok" in result.stdout


def test_a_folder_validates_every_spec_in_it() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES_DIR)])
    assert result.exit_code == 0
    assert result.output.count(": ok") == len(list(EXAMPLES_DIR.glob("*.yaml")))


def test_bad_specs_print_file_field_message_and_exit_1(
    write_spec: Callable[..., Path],
) -> None:
    bad = write_spec("bad.yaml", name="vllm", serving={"tensor_parallel_size": 4})
    broken = write_spec("broken.yaml", text="name: [unclosed\n")
    good = write_spec("good.yaml")
    result = CliRunner().invoke(cli, ["validate", str(bad), str(broken), str(good)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{good}: ok (qwen-small in namespace llm-serving)"
    assert lines[1].startswith(f"{bad}:1:1: name: 'vllm' is reserved")
    # resources.gpus is the default, so no line of the file holds it
    assert lines[2].startswith(f"{bad}: resources.gpus: 1 GPUs per replica")
    assert lines[3].startswith(f"{broken}:2:1: (top level): invalid YAML")
    assert len(lines) == 4
    assert "error: 3 problem(s) in 2 of 3 spec file(s)" in result.stderr


def test_two_specs_for_the_same_model_collide(write_spec: Callable[..., Path]) -> None:
    first, second = write_spec("a.yaml"), write_spec("b.yaml")
    result = CliRunner().invoke(cli, ["validate", str(first), str(second)])
    assert result.exit_code == 1
    assert f"{second}: name: 'qwen-small' in namespace 'llm-serving' is also released by" in (
        result.stdout
    )


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: (top level): cannot read: No such file or directory" in result.stdout


def test_an_empty_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}: (top level): no spec files (*.yaml, *.yml) in this folder" in (
        result.stdout
    )


def test_a_binary_spec_is_one_line_and_the_rest_of_the_folder_is_validated(
    write_spec: Callable[..., Path],
) -> None:
    good = write_spec("b-good.yaml")
    binary = good.parent / "a-binary.yaml"
    binary.write_bytes(b"\x00\x01\x02")
    latin1 = good.parent / "c-latin1.yaml"
    latin1.write_bytes(good.read_bytes().replace(b"qwen-small", b"caf\xe9"))
    result = CliRunner().invoke(cli, ["validate", str(good.parent)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not an uncaught error
    assert result.stdout.splitlines() == [
        f"{good}: ok (qwen-small in namespace llm-serving)",
        f"{binary}:1:1: (top level): a binary file, not a YAML spec",
        f"{latin1}:1:10: (top level): not UTF-8 text (byte 0xe9); save the file as UTF-8",
    ]


def test_validate_refuses_what_dagster_would_refuse_later(
    write_spec: Callable[..., Path],
) -> None:
    path = write_spec(refresh={"cron": "*/0 * * * *"})
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert "refresh.cron: '*/0 * * * *': minute field '*/0' has a step of 0" in result.stdout


def test_json_output_lists_valid_specs_and_problems_with_positions(
    write_spec: Callable[..., Path],
) -> None:
    good = write_spec("good.yaml")
    bad = write_spec("bad.yaml", name="bad", resources={"gpu_product": "NVIDIA A100"})
    result = CliRunner().invoke(cli, ["validate", "--json", str(good), str(bad)])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["valid"] == [
        {"path": str(good), "name": "qwen-small", "namespace": "llm-serving"}
    ]
    (problem,) = document["problems"]
    line = bad.read_text().splitlines().index("  gpu_product: NVIDIA A100") + 1
    assert problem["path"] == str(bad)
    assert (problem["line"], problem["column"], problem["field"]) == (
        line,
        3,
        "resources.gpu_product",
    )
    assert "not a Kubernetes label value" in problem["message"]


def test_the_schema_command_prints_a_json_schema_the_bundled_specs_satisfy() -> None:
    import jsonschema
    import yaml

    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SPEC_FILES.values():
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
    # what Kubernetes accepts, the schema accepts too (editors must not flag `cpu: 16`)
    assert validator.is_valid({**yaml.safe_load((DEMO_SPEC).read_text()), "resources": {"cpu": 16}})
    assert not validator.is_valid({"name": "x", "replica": 2})
