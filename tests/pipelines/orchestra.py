"""The end-to-end harness: a sandbox world (cluster, Hub, Prometheus discovering pods), a
DAGSTER_HOME with the shipped dagster.yaml, the real Dagster daemon evaluating sensor ticks
and running the queue, and runs launched with `dagster job launch` — as a user runs it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from kubernetes import client

from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.history import History, ReleaseHistory
from llm_rollout.k8s.labels import workload_name
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.release import Release
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import Installed, RolloutRecord
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.cluster.cluster import NodeSpec
from sandbox.dagster_home import DagsterHome, DagsterProcess, gate_evaluations
from sandbox.ports import free_port
from sandbox.prometheus import PrometheusMissing
from sandbox.world import SandboxWorld
from tests.conftest import DEMO_SPEC, merged
from tests.fixtures import cluster as cluster_fixtures

EMULATOR = "registry.sandbox.local/vllm-metrics-emulator"
RUN_TIMEOUT = 240.0


# Each launch is a `dagster job launch` process (Dagster's imports; the code location is the
# shared server's): three at a time overlap their waits; nine at once beside the other lanes
# took over the CLI's 120 s in CI (when each launch also started a code server).
LAUNCHERS = 3


# The daemon's sensors tick every few seconds: polling each second sees every step, where
# every 0.2 s was ~80 CPU-s of the e2e module's test process (its share of a small machine).
POLL_SECONDS = 1.0


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "it") -> Any:
    """Poll `condition` each POLL_SECONDS until it is truthy (tests/fixtures/cluster.py)."""
    return cluster_fixtures.wait_for(condition, timeout, what, interval=POLL_SECONDS)


def emulated_spec(name: str, **changes: Any) -> dict[str, Any]:
    """The demo spec as a model of emulated vLLM pods with a fast gate, in its own namespace."""
    base = yaml.safe_load((DEMO_SPEC).read_text())
    fast = {
        "name": name,
        "namespace": name,
        "replicas": 1,
        "image": {"builder": "none", "reference": f"{EMULATOR}:healthy"},
        "rollout": {"progress_deadline_seconds": 60, "startup_budget_seconds": 30},
        "gate": {
            "interval_seconds": 5,
            "window": "10s",
            "warmup_seconds": 0,
            "min_requests": 10,
            "required_passes": 2,
            "failure_limit": 2,
            "consecutive_error_limit": 2,
            "bake_seconds": 10,
        },
    }
    return merged(merged(base, fast), changes)


@dataclass
class Orchestra:
    """Everything an end-to-end scenario drives and observes."""

    world: SandboxWorld
    home: DagsterHome
    daemon: DagsterProcess
    models_dir: Path
    log_dir: Path

    # -- models and cluster state ------------------------------------------------------

    def spec(self, name: str) -> ReleaseSpec:
        return load_spec(self.models_dir / f"{name}.yaml")

    @property
    def cluster(self) -> ClusterClient:
        assert self.world.api is not None
        return ClusterClient(self.world.api)

    def history(self, name: str) -> History:
        return ReleaseHistory(self.cluster, self.spec(name)).read()

    def record(self, name: str) -> RolloutRecord:
        """The release controller's record of the model."""
        return RolloutStore(self.cluster, self.spec(name)).read()

    def pod_urls(self, name: str, release: str) -> list[str]:
        """The addresses of a release's running pods (each an emulated vLLM)."""
        spec = self.spec(name)
        pods = client.CoreV1Api(self.world.api).list_namespaced_pod(
            spec.namespace, label_selector=f"llm-rollout.io/release={release}"
        )
        return [
            f"http://{p.status.pod_ip}:8000"
            for p in pods.items
            if p.status.pod_ip and p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]

    def deployment(self, name: str, release: str | None = None) -> Any:
        """A release's Deployment (default: the stable release's)."""
        spec = self.spec(name)
        release = release or self.history(name).stable
        assert release, f"{name} has no stable release"
        return client.AppsV1Api(self.world.api).read_namespaced_deployment(
            workload_name(spec, release), spec.namespace
        )

    # -- Dagster ------------------------------------------------------------------------

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.home.shared

    def close(self) -> None:
        self.home.close()

    def launch(self, job: str, run_config: dict[str, Any] | None = None) -> str:
        return self.home.launch(job, run_config)

    def rollout(self, name: str, image: str | None = None, revision: str | None = None) -> str:
        group = name.replace("-", "_")
        ops: dict[str, Any] = {}
        if image:
            ops[f"{group}__image"] = {"config": {"reference": image}}
        if revision:
            ops[f"{group}__weights"] = {"config": {"revision": revision}}
        return self.launch(f"{group}_rollout", {"ops": ops} if ops else None)

    def install(self, name: str) -> str:
        """The model's first release installed through the library, as the release asset
        installs one (Deployment at full size, history, the controller told), without a run:
        the set-up of scenarios that are not about the first install (each run costs ~6
        CPU-s of `dagster job launch` and a run process). Its release id."""
        spec = self.spec(name)
        image = spec.image.reference
        assert image, f"{name}: an emulated spec names its image"
        release = Release(spec, self.world.commit, image)
        lifecycle = Lifecycle(self.cluster, spec, poll_seconds=0.5)
        lifecycle.first_release(release)
        status = lifecycle.wait(lifecycle.workload_name(release.release_id), timeout=RUN_TIMEOUT)
        assert status.phase == "complete", f"{name}: {status.reason}"
        controller.report(spec, self.cluster, Installed(release.release_id))
        return release.release_id

    def materialize_all(
        self, name: str, image: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """What *Materialize all* on the model's asset group does: one run of every asset
        (weights → image → release → live) and their checks, here from `dagster asset
        materialize` (the run executes in that process, on this instance)."""
        group = name.replace("-", "_")
        ops = {f"{group}__image": {"config": {"reference": image}}} if image else {}
        return self.home.cli(
            "asset",
            "materialize",
            "--select",
            f"group:{group}",
            "-m",
            "llm_rollout.pipelines.definitions",
            "--config-json",
            json.dumps({"ops": ops}),
            # the whole group runs in this one process, its canary applied and awaited: beside
            # the other scenarios on a loaded CI machine it took over 120 s
            timeout=RUN_TIMEOUT,
        )

    def run(self, run_id: str) -> dg.DagsterRun:
        found = self.instance.get_run_by_id(run_id)
        assert found is not None, run_id
        return found

    def wait_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dg.DagsterRun:
        """Until the run finishes; fails with its error events when it did not succeed."""
        run = wait_for(lambda: _finished(self.run(run_id)), timeout, f"run {run_id} to finish")
        return run

    def released(self, run_id: str) -> str:
        """The release a rollout run applied: its release asset's `release_id` (the
        history may have moved on since, promoted or rolled back)."""
        events = self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        for record in events:
            materialization = record.asset_materialization
            if materialization and materialization.asset_key.path[-1] == "release":
                return str(materialization.metadata["release_id"].value)
        raise AssertionError(f"run {run_id} materialized no release:\n{self.errors(run_id)}")

    def errors(self, run_id: str) -> str:
        records = self.instance.all_logs(run_id)
        lines = []
        for record in records:
            event = record.dagster_event
            if event is None or not event.is_failure:
                continue
            error = getattr(event.event_specific_data, "error", None)
            lines.append(error.to_string() if error else record.user_message)
        return "\n".join(lines)

    def runs(self, job: str, status: dg.DagsterRunStatus | None = None) -> list[dg.DagsterRun]:
        filters = dg.RunsFilter(job_name=job, statuses=[status] if status else [])
        return list(self.instance.get_runs(filters))

    def run_times(self, run_id: str) -> tuple[float, float]:
        """When a run started and ended (epoch seconds)."""
        record = self.instance.get_run_record_by_id(run_id)
        assert record is not None and record.start_time and record.end_time, run_id
        return record.start_time, record.end_time

    def sensor_ticks(self, sensor: str) -> list[Any]:
        """The sensor's ticks, newest first."""
        instance = self.instance
        states = [s for s in instance.all_instigator_state() if s.instigator_name == sensor]
        assert states, f"no sensor named {sensor}"
        return list(
            instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=500)
        )

    def gate_evaluations(self, name: str) -> list[dict[str, Any]]:
        """The gate check's recorded evaluations (newest first): passed + metadata."""
        return gate_evaluations(self.instance, name.replace("-", "_"), limit=200)

    def restart_daemon(self, reset_cursor_of: str | None = None) -> None:
        """Stop the daemon, optionally delete a sensor's cursor (`dagster sensor cursor
        --delete`), and start the daemon again."""
        self.daemon.stop()
        if reset_cursor_of:
            result = self.home.cli(
                "sensor", "cursor", "--delete", reset_cursor_of, "-w", str(self.home.workspace)
            )
            assert result.returncode == 0, result.stderr
        self.daemon = DagsterProcess.daemon(
            self.home, (self.log_dir / "daemon.log").open("ab")
        ).start()


def _finished(run: dg.DagsterRun) -> dg.DagsterRun | None:
    return run if run.is_finished else None


def write_models(folder: Path, specs: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        (folder / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


@contextmanager
def orchestrated(
    root: Path,
    tiny_model_dir: Path,
    nodes: tuple[NodeSpec, ...],
    models: list[dict[str, Any]],
    installed_by_run: tuple[str, ...] = (),
    installed_by_library: tuple[str, ...] = (),
) -> Iterator[Orchestra]:
    """A module's world: the sandbox, the code location served once (as a user-code
    deployment does: the daemon and every `dagster job launch` connect to it instead of each
    starting its own), the real daemon, and each model's first release — by a rollout run
    where a test is about it (the first install shown by live) or needs its materializations,
    else through the library, as the release asset installs one (no run to wait for)."""
    models_dir = write_models(root / "models", models)
    world = SandboxWorld(root / "world", nodes, tiny_model_dir)
    try:
        world.start()
    except PrometheusMissing as missing:
        pytest.skip(str(missing))
    running: Orchestra | None = None
    code_server: DagsterProcess | None = None
    try:
        home = DagsterHome(root / "dagster-home", world.env(models_dir))
        port = free_port()
        code_server = DagsterProcess.code_server(home, port, (root / "code.log").open("ab"))
        code_server.start().wait_serving(port)
        home.use_code_server(port)
        daemon = DagsterProcess.daemon(home, (root / "daemon.log").open("ab")).start()
        running = Orchestra(world, home, daemon, models_dir, root)
        with ThreadPoolExecutor(max_workers=LAUNCHERS) as pool:
            first = dict(
                zip(installed_by_run, pool.map(running.rollout, installed_by_run), strict=True)
            )
            installed = pool.map(running.install, installed_by_library)
            for name, release_id in zip(installed_by_library, installed, strict=True):
                assert running.history(name).stable == release_id, name
        for name, run_id in first.items():
            run = running.wait_run(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS, f"{name}: {running.errors(run_id)}"
            assert running.history(name).stable is not None
        yield running
    finally:
        if running:
            running.close()
            running.daemon.stop()
        if code_server:
            code_server.stop()
        world.stop()
