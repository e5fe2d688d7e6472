"""Every command, walked through the mistakes users make: each ends with a non-zero exit
and one `error:` line that says what to change — never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llm_rollout.cli.main import cli
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC

SPEC = str(DEMO_SPEC)
DEEPSEEK = str(DEEPSEEK_SPEC)
COMMIT = "d" * 40

# (command words, arguments after them, what the error line must say). `{tmp}` is a fresh
# folder, `{binary}` a spec file holding binary bytes, `{empty}` a folder without specs.
BAD_INPUTS: list[tuple[str, list[str], str]] = [
    ("validate", ["{empty}"], "1 problem(s) in 1 of 0 spec file(s)"),
    ("validate", ["{tmp}/nope.yaml"], "1 problem(s) in 1 of 1 spec file(s)"),
    ("validate", ["{binary}"], "1 problem(s) in 1 of 1 spec file(s)"),
    ("dagster-rbac", ["{empty}"], "no spec files (*.yaml, *.yml) in this folder"),
    ("dagster-rbac", ["{binary}"], "a binary file, not a YAML spec"),
    ("render", [SPEC, "--out", "/proc/llm-rollout", "--weights-commit", COMMIT], "--out"),
    ("render", [SPEC, "--out", "{tmp}/out", "--weights-commit", "abc"], "not a full commit"),
    ("render", [SPEC, "--out", "{tmp}/out"], "give --weights-commit"),
    ("render", [DEEPSEEK, "--out", "{tmp}/out", "--weights-commit", COMMIT], "pass --image"),
    ("render", ["{binary}", "--out", "{tmp}/out"], "a binary file"),
    ("status", [SPEC, "--kubeconfig", "{tmp}/no-such-kubeconfig"], "set KUBECONFIG"),
    ("status", [SPEC], "set KUBECONFIG or pass --kubeconfig"),  # none at all
    ("plan", [SPEC, "--weights-commit", COMMIT], "set KUBECONFIG or pass --kubeconfig"),
    ("plan", [DEEPSEEK, "--weights-commit", COMMIT], "pass --image"),
    ("plan", [SPEC, "--weights-commit", "abc"], "not a full commit"),
    ("status", ["{binary}"], "a binary file"),
    ("weights fetch", ["{binary}", "--root", "{tmp}"], "a binary file"),
    ("weights verify", [SPEC, "--root", "{tmp}/nowhere"], "is not published under"),
    ("weights prune", [SPEC, "--root", "{tmp}", "--keep", "-1"], "'--keep'"),
    ("weights prune", ["{binary}", "--root", "{tmp}"], "a binary file"),
    ("image render", [SPEC, "--out", "/proc/llm-rollout"], "--out"),
    ("image build", ["{binary}"], "a binary file"),
    ("gate", [SPEC], "'--prometheus'"),
    ("gate", ["{binary}", "--prometheus", "http://127.0.0.1:9"], "a binary file"),
    ("schema", ["--bogus"], "No such option"),
    ("router check", ["{tmp}/nope.yaml"], "cannot read"),
    ("router serve", ["{binary}", "--port", "0"], "not YAML or JSON"),
]


def command_paths(group: click.Group, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths |= command_paths(command, f"{prefix}{name} ")
        else:
            paths.add(f"{prefix}{name}")
    return paths


def test_the_table_covers_every_command() -> None:
    assert command_paths(cli) == {command for command, _, _ in BAD_INPUTS}


@pytest.mark.parametrize(
    ("command", "arguments", "expected"),
    BAD_INPUTS,
    ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD_INPUTS],
)
def test_a_mistake_is_one_error_line_not_a_traceback(
    tmp_path: Path,
    write_spec: Callable[..., Path],
    command: str,
    arguments: list[str],
    expected: str,
) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "empty").mkdir()
    filled = [a.format(tmp=tmp_path, binary=binary, empty=tmp_path / "empty") for a in arguments]
    # no kubeconfig anywhere: not in the environment, not in ~/.kube, not in a cluster
    environment = {"KUBECONFIG": None, "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": None}
    result = CliRunner(env=environment).invoke(cli, [*command.split(), *filled])
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
