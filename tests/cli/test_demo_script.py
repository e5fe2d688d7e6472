"""`bash scripts/demo.sh` (one of the README's two set-up commands) checks the demo's spec
before it starts anything, under `set -e`: that check must pass on the repository as it is.
It once validated the whole `sandbox/specs/` folder, where the demo's overlays (routing,
quality: fragments merged in at start) are not specs, so the script stopped there."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_the_demo_scripts_spec_check_passes() -> None:
    script = (REPO_ROOT / "scripts" / "demo.sh").read_text().splitlines()
    (line,) = [line for line in script if line.startswith("llm-rollout validate")]
    args = shlex.split(line, comments=True)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "llm-rollout"), *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo-tiny.yaml: ok" in result.stdout
