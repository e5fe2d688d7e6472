"""`llm-rollout weights fetch|verify|prune` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from sandbox.hub import Fault
from tests.conftest import DEMO_SPEC, REPO_ROOT
from tests.fixtures.sandbox_servers import TinyModelHub

CLI = str(Path(sys.executable).parent / "llm-rollout")
SPEC = str(DEMO_SPEC)


def run(hub: TinyModelHub, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "weights", *args],
        env={**os.environ, "HF_ENDPOINT": hub.url, **env},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_fetch_then_verify(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    root = str(tmp_path / "weights")
    fetched = run(tiny_hub, "fetch", SPEC, "--root", root)
    assert fetched.returncode == 0, fetched.stderr
    assert f"llm-rollout/tiny-llama@main = {tiny_hub.commit}: published at" in fetched.stdout
    assert "fetch llm-rollout/tiny-llama@" in fetched.stderr  # the progress line
    assert "MiB/s" in fetched.stderr or "KiB/s" in fetched.stderr
    verified = run(tiny_hub, "verify", SPEC, "--full", "--root", root)
    assert verified.returncode == 0, verified.stderr
    assert f"{tiny_hub.commit}: ok (7 files; re-hashed 7" in verified.stdout
    again = run(tiny_hub, "fetch", SPEC, LLM_ROLLOUT_WEIGHTS_ROOT=root)
    assert "already published, re-verified" in again.stdout


def test_verify_names_a_damaged_file_and_exits_1(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    root = tmp_path / "weights"
    assert run(tiny_hub, "fetch", SPEC, "--root", str(root)).returncode == 0
    damaged = root / "llm-rollout--tiny-llama" / tiny_hub.commit / "config.json"
    damaged.write_text(damaged.read_text().replace("llama", "LLAMA"))
    result = run(tiny_hub, "verify", SPEC, "--root", str(root))
    assert result.returncode == 1
    assert f"{damaged}: sha256 is" in result.stdout
    assert "FAILED" in result.stdout


def test_a_corrupt_download_exits_1_with_the_reason(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    tiny_hub.server.inject(Fault("corrupt", path="model.safetensors", offset=99))
    result = run(tiny_hub, "fetch", SPEC, "--root", str(tmp_path))
    assert result.returncode == 1
    assert "error: model.safetensors of llm-rollout/tiny-llama@" in result.stderr
    assert "nothing was published" in result.stderr


def test_the_token_never_appears_in_output(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    secret = "hf_SuperSecretToken123"
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, secret)
    denied = run(tiny_hub, "fetch", SPEC, "--root", str(tmp_path), HF_TOKEN="hf_wrong_token")
    assert denied.returncode == 1
    # a token of an account without access: the Hub answers 403, and the message says so
    assert "HF_TOKEN has not been granted access" in denied.stderr
    assert "hf_wrong_token" not in denied.stdout + denied.stderr
    allowed = run(tiny_hub, "fetch", SPEC, "--root", str(tmp_path), HF_TOKEN=secret)
    assert allowed.returncode == 0, allowed.stderr
    assert secret not in allowed.stdout + allowed.stderr
    manifest_dir = tmp_path / "llm-rollout--tiny-llama" / tiny_hub.commit
    assert all(secret not in p.read_text(errors="ignore") for p in manifest_dir.glob("*.json"))


def test_prune_keeps_what_it_is_told(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    assert run(tiny_hub, "fetch", SPEC, "--root", str(tmp_path)).returncode == 0
    result = run(tiny_hub, "prune", SPEC, "--root", str(tmp_path), "--keep", "1")
    assert result.returncode == 0
    assert "kept 1, deleted 0" in result.stdout


def test_a_model_that_cannot_fit_its_gpus_is_refused_before_its_download(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["sizing"] = {"gpu_memory_gib": 2}  # less than vLLM's own overhead per GPU
    path = tmp_path / "undersized.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "weights"
    result = run(tiny_hub, "fetch", str(path), "--root", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot fit the spec's GPUs; nothing was downloaded" in result.stderr, result.stderr
    assert "error: sizing.gpu_memory_gib" in result.stderr or "error: resources" in result.stderr
    assert not list(root.rglob("model.safetensors*"))  # only config.json was read
