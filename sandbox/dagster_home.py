"""Dagster as a user runs it, on this machine: a DAGSTER_HOME holding the repository's
dagster.yaml, the daemon (sensors, schedules, run queue, run monitoring) and `dagster dev` as
real processes, runs launched with `dagster job launch`, and optionally the code location
served once over gRPC (`dagster api grpc`, as a user-code deployment on Kubernetes serves it)
for the daemon and every launch to share. For the demo and the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any, Self

import dagster as dg
import yaml

from llm_rollout.assets.release import GATE_CHECK
from sandbox.running import Running

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = REPO_ROOT / "workspace.yaml"
# the code location the repository's workspace loads: its module and name
CODE_LOCATION = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["python_module"]
CODE_SERVER_UP_SECONDS = 180  # imports Dagster and the code location; slow beside other work
SHIPPED_INSTANCE_CONFIG = REPO_ROOT / "dagster.yaml"
STOP_TIMEOUT_SECONDS = 30  # the daemon finishes its current iteration first


def gate_evaluations(
    instance: dg.DagsterInstance, group: str, limit: int = 500
) -> list[dict[str, Any]]:
    """A model's gate-check evaluations (its asset group's `release` check), newest first:
    `passed` and every metadata value (phase, window, release_id, outcomes, …)."""
    key = dg.AssetCheckKey(dg.AssetKey([group, "release"]), GATE_CHECK)
    found = []
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=limit):
        event = record.event.dagster_event if record.event else None
        evaluation = event.event_specific_data if event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            found.append(
                {
                    "passed": evaluation.passed,
                    **{k: v.value for k, v in evaluation.metadata.items()},
                }
            )
    return found


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
        # what the daemon, `dagster dev` and launches load (use_code_server changes it)
        self.workspace = WORKSPACE
        # create the SQLite storage once, before several processes race to create it
        with self.instance():
            pass

    def use_code_server(self, port: int) -> None:
        """Point the daemon and every launch at a code server on `port` (DagsterProcess.
        code_server) instead of each loading the code location in a server of its own: a
        `dagster job launch` then costs its own imports only (it started a server, ~4 CPU-s)."""
        self.workspace = self.home / "workspace.yaml"
        server = {
            "host": "127.0.0.1",
            "port": port,
            "location_name": CODE_LOCATION["location_name"],
        }
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": server}]}))

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
        args = ["job", "launch", "-w", str(self.workspace), "-j", job, "--run-id", run_id]
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
        return cls(home, [dagster_bin("dagster-daemon"), "run", "-w", str(home.workspace)], log)

    @classmethod
    def dev(cls, home: DagsterHome, port: int, log: IO[bytes] | None = None) -> DagsterProcess:
        command = [dagster_bin("dagster"), "dev", "-w", str(home.workspace), "-p", str(port)]
        return cls(home, [*command, "-h", "127.0.0.1"], log)

    @classmethod
    def code_server(
        cls, home: DagsterHome, port: int, log: IO[bytes] | None = None
    ) -> DagsterProcess:
        """The repository's code location served over gRPC on `port`; then
        `home.use_code_server(port)`."""
        command = [dagster_bin("dagster"), "api", "grpc", "-m", CODE_LOCATION["module_name"]]
        command += ["--location-name", CODE_LOCATION["location_name"]]
        return cls(home, [*command, "-h", "127.0.0.1", "-p", str(port)], log)

    def wait_serving(self, port: int, timeout: float = CODE_SERVER_UP_SECONDS) -> None:
        """Until the code server on `port` answers a gRPC ping (it has loaded the code)."""
        # Dagster's own client, as the daemon's workspace uses it
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping("up")
                return
            except DagsterUserCodeUnreachableError as error:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"the code server on port {port} exited") from error
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the code server on port {port} did not come up") from error
                time.sleep(0.5)

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
