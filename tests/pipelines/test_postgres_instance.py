"""The scale-out instance on a real Postgres: the production dagster.yaml loads, and the
daemon's sensor ticks, the run queue's per-model limit and real runs all live in Postgres."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s import K8sRunLauncher
from dagster_postgres import PostgresRunStorage

from llm_rollout.k8s.dagster.scaleout import INSTANCE
from sandbox.dagster_home import DagsterHome, DagsterProcess
from sandbox.prometheus import PrometheusMissing
from sandbox.world import SandboxWorld
from tests.fixtures.cluster import Kube
from tests.fixtures.postgres import LocalPostgres
from tests.pipelines.orchestra import Orchestra, emulated_spec, write_models

SUCCESS = dg.DagsterRunStatus.SUCCESS


def production_config(kubeconfig: Path | None = None) -> dict[str, object]:
    config = yaml.safe_load(INSTANCE.read_text())
    if kubeconfig is not None:  # outside a cluster: the launcher reads a kubeconfig instead
        launcher = config["run_launcher"]["config"]
        launcher["load_incluster_config"] = False
        launcher["kubeconfig_file"] = str(kubeconfig)
    return config


def test_the_production_instance_config_loads_on_postgres(
    postgres: LocalPostgres, kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump(production_config(kube.cluster.kubeconfig))
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.service_account_name == "llm-rollout"
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert limits[0]["key"] == "llm-rollout/deploy"


@pytest.fixture
def orchestra_on_postgres(
    postgres: LocalPostgres, tmp_path: Path, tiny_model_dir: Path
) -> Iterator[Orchestra]:
    models = write_models(tmp_path / "models", [emulated_spec("pg-model")])
    world = SandboxWorld(tmp_path / "world", tiny_model_dir=tiny_model_dir)
    try:
        world.start()
    except PrometheusMissing as missing:
        pytest.skip(str(missing))
    # the production storage, queue and monitoring; runs start as local processes, since a
    # Kubernetes Job of the user-code image cannot run in the sandbox
    config = production_config()
    del config["run_launcher"]
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text(yaml.safe_dump(config))
    running: Orchestra | None = None
    try:
        home = DagsterHome(tmp_path / "home", {**world.env(models), **postgres.env()})
        daemon = DagsterProcess(home, [], None)  # started by the test
        running = Orchestra(world, home, daemon, models, tmp_path)
        yield running
    finally:
        if running:
            running.close()
            running.daemon.stop()
        world.stop()


def psql(postgres: LocalPostgres, query: str) -> str:
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    result = subprocess.run(
        [str(bin_dir / "psql"), "-h", postgres.host, "-p", str(postgres.port), "-U",
         postgres.user, "-d", postgres.database, "-At", "-c", query],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.mark.daemon
def test_runs_sensor_ticks_and_the_per_model_queue_live_in_postgres(
    orchestra_on_postgres: Orchestra, postgres: LocalPostgres
) -> None:
    orchestra = orchestra_on_postgres
    first = orchestra.rollout("pg-model")
    second = orchestra.rollout("pg-model")
    assert {orchestra.run(r).status for r in (first, second)} == {dg.DagsterRunStatus.QUEUED}
    orchestra.restart_daemon()  # the daemon's first start: it finds both in the queue
    for run_id in (first, second):
        assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    spans = sorted(orchestra.run_times(r) for r in (first, second))
    assert spans[1][0] >= spans[0][1], f"the two rollouts overlapped: {spans}"
    assert orchestra.history("pg-model").stable is not None
    assert orchestra.sensor_ticks("pg_model_gate")
    # and it is all in Postgres: no SQLite files in DAGSTER_HOME
    assert psql(postgres, "select count(*) from runs where status = 'SUCCESS'") >= "2"
    assert int(psql(postgres, "select count(*) from job_ticks")) > 0
    assert int(psql(postgres, "select count(*) from event_logs")) > 0
    assert not list(orchestra.home.home.rglob("*.db"))
