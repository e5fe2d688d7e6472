"""`python -m sandbox up` starts every stand-in from one command and stops them on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.conftest import REPO_ROOT


def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "up", "--dir", str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        endpoints_file = tmp_path / "endpoints.json"
        deadline = time.monotonic() + 60
        while not endpoints_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "sandbox did not come up"
            time.sleep(0.1)
        endpoints = json.loads(endpoints_file.read_text())
        info = HfApi(endpoint=endpoints["hub"]).model_info(endpoints["hub_repo"])
        assert info.sha == endpoints["hub_commit"]
        for url in endpoints["metrics"].values():
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                assert b"vllm:time_to_first_token_seconds" in response.read()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    assert not endpoints_file.exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoints['hub']}/api/models/{endpoints['hub_repo']}", timeout=2)
