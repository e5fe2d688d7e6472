"""Dagster as a user runs it, on this machine: a DAGSTER_HOME holding the repository's
dagster.yaml, the daemon (sensors, schedules, run queue, run monitoring) and `dagster dev` as
real processes, and runs launched with `dagster job launch`. For the demo and the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO, Any, Self

import dagster as dg

from sandbox.running import Running

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = REPO_ROOT / "workspace.yaml"
SHIPPED_INSTANCE_CONFIG = REPO_ROOT / "dagster.yaml"
STOP_TIMEOUT_SECONDS = 30  # the daemon finishes its current iteration first


def dagster_bin(name: str) -> str:
    """A console script installed beside this Python (dagster, dagster-daemon, …)."""
    return str(Path(sys.executable).parent / name)


class DagsterHome:
    """A DAGSTER_HOME with the shipped dagster.yaml, and the environment its processes see."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(SHIPPED_INSTANCE_CONFIG, home / "dagster.yaml")
        self._shared: dg.DagsterInstance | None = None
        # create the SQLite storage once, before several processes race to create it
        with self.instance():
            pass

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env, "DAGSTER_HOME": str(self.home)}

    def instance(self) -> dg.DagsterInstance:
        """The instance, opened in this process (its storage is shared with the daemon)."""
        # the instance's own settings (e.g. DAGSTER_PG_* for Postgres) are read from the
        # environment when it is opened
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("DAGSTER_")})
        return dg.DagsterInstance.from_config(str(self.home))

    @property
    def shared(self) -> dg.DagsterInstance:
        """One instance kept open for this process's polling: opening one costs more CPU than
        a query (a fresh one per poll was most of the e2e test process's CPU). `close()`
        disposes of it."""
        if self._shared is None:
            self._shared = self.instance()
        return self._shared

    def close(self) -> None:
        if self._shared is not None:
            self._shared.dispose()
            self._shared = None

    def launch(
        self,
        job: str,
        run_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """`dagster job launch`: submit a run to the queue; its run id."""
        run_id = str(uuid.uuid4())
        args = ["job", "launch", "-w", str(WORKSPACE), "-j", job, "--run-id", run_id]
        args += ["--config-json", json.dumps(run_config or {})]
        if tags:
            args += ["--tags", json.dumps(tags)]
        result = self.cli(*args)
        if result.returncode != 0:
            raise RuntimeError(f"dagster job launch {job} failed:\n{result.stderr[-3000:]}")
        return run_id

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the `dagster` command line against this home."""
        return subprocess.run(
            [dagster_bin("dagster"), *args],
            cwd=REPO_ROOT,
            env=self.environ(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


class DagsterProcess(Running):
    """`dagster-daemon run` or `dagster dev` for a DagsterHome, stopped with its children."""

    def __init__(self, home: DagsterHome, command: list[str], log: IO[bytes] | None) -> None:
        self.home = home
        self.command = command
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def daemon(cls, home: DagsterHome, log: IO[bytes] | None = None) -> DagsterProcess:
        return cls(home, [dagster_bin("dagster-daemon"), "run", "-w", str(WORKSPACE)], log)

    @classmethod
    def dev(cls, home: DagsterHome, port: int, log: IO[bytes] | None = None) -> DagsterProcess:
        command = [dagster_bin("dagster"), "dev", "-w", str(WORKSPACE), "-p", str(port)]
        return cls(home, [*command, "-h", "127.0.0.1"], log)

    def start(self) -> Self:
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.home.environ(),
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code servers and runs stop with it
        )
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
