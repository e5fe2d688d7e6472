"""Every failure of #23 ends in one actionable line (path and what to do), in the library
and in the CLI: read-only volumes, corrupt or deleted manifests, prune's mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llm_rollout.cli.weights import weights
from llm_rollout.weights.errors import CorruptManifest, NotPublished, StorageError, UntrustedFolder
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import MANIFEST_NAME, RepoLayout
from llm_rollout.weights.retention import prune
from tests.conftest import DEMO_SPEC, REPO_ROOT
from tests.fixtures.sandbox_servers import TinyModelHub

CLI = str(Path(sys.executable).parent / "llm-rollout")
SPEC = str(DEMO_SPEC)


def one_line_error(result: Result) -> str:
    """The CLI failed with exit 1 and exactly one line, no traceback."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def published(hub_client: HubClient, source: WeightsSource, root: Path) -> str:
    return fetch_weights(source, root, hub_client).commit


def test_fetch_into_a_read_only_volume_is_one_line(
    tiny_hub: TinyModelHub, root: Path, read_only_view: Callable[[Path], Path]
) -> None:
    mounted = read_only_view(root)
    run = subprocess.run(
        [CLI, "weights", "fetch", SPEC, "--root", str(mounted)],
        env={**os.environ, "HF_ENDPOINT": tiny_hub.url}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot use {mounted}")
    assert "Read-only file system" in line and "read-write" in line


def test_verify_on_a_read_only_mount_gives_its_verdict(
    published: str, root: Path, layout: RepoLayout, read_only_view: Callable[[Path], Path]
) -> None:
    layout.stat_cache(published).unlink()
    result = CliRunner().invoke(weights, ["verify", SPEC, "--root", str(read_only_view(root))])
    assert result.exit_code == 0, result.output
    assert f"@{published}: ok" in result.output


def test_a_corrupt_manifest_is_one_line_everywhere(
    published: str, root: Path, layout: RepoLayout, hub_client: HubClient,
    source: WeightsSource,
) -> None:  # fmt: skip
    manifest = layout.commit_dir(published) / MANIFEST_NAME
    manifest.write_text('{"repo": "x", "files": [')
    with pytest.raises(CorruptManifest, match=rf"{manifest} is not a valid .* fetch again"):
        fetch_weights(source, root, hub_client)
    line = one_line_error(CliRunner().invoke(weights, ["verify", SPEC, "--root", str(root)]))
    assert str(manifest) in line and "delete" in line
    line = one_line_error(CliRunner().invoke(weights, ["prune", SPEC, "--root", str(root)]))
    assert str(manifest) in line


def test_a_manifest_naming_paths_outside_its_folder_is_corrupt(
    published: str, layout: RepoLayout
) -> None:
    manifest = layout.commit_dir(published) / MANIFEST_NAME
    data = json.loads(manifest.read_text())
    data["files"][0]["path"] = "../../etc/passwd"
    manifest.write_text(json.dumps(data))
    line = one_line_error(CliRunner().invoke(weights, ["verify", SPEC, "--root", str(layout.root)]))
    assert "outside its folder" in line


def test_a_deleted_manifest_is_refused_before_downloading_anything(
    tiny_hub: TinyModelHub, published: str, layout: RepoLayout, hub_client: HubClient,
    source: WeightsSource, root: Path,
) -> None:  # fmt: skip
    (layout.commit_dir(published) / MANIFEST_NAME).unlink()
    tiny_hub.server.stats.reset()
    with pytest.raises(UntrustedFolder, match=rf"{layout.commit_dir(published)} exists but"):
        fetch_weights(source, root, hub_client)
    assert dict(tiny_hub.server.stats.body_bytes) == {}  # refused before any download
    line = one_line_error(
        CliRunner().invoke(weights, ["verify", SPEC, "--root", str(root), "--commit", published])
    )
    assert "move it away or delete it" in line


def test_prune_on_a_missing_root_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    with pytest.raises(NotPublished, match="is the weights volume mounted"):
        prune(missing, "llm-rollout/tiny-llama", keep=1, protected=set())
    line = one_line_error(CliRunner().invoke(weights, ["prune", SPEC, "--root", str(missing)]))
    assert str(missing) in line
    assert not missing.exists()


def test_prune_on_a_read_only_volume_is_one_line(
    published: str, root: Path, read_only_view: Callable[[Path], Path]
) -> None:
    mounted = read_only_view(root)
    with pytest.raises(StorageError, match="read-write"):
        prune(mounted, "llm-rollout/tiny-llama", keep=1, protected=set())
    line = one_line_error(CliRunner().invoke(weights, ["prune", SPEC, "--root", str(mounted)]))
    assert "Read-only file system" in line
