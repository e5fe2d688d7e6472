"""Rollout benchmark, in the sandbox with the real Dagster daemon and emulated vLLM pods:

  launch → canary applied   from `dagster job launch` to the canary recorded in the cluster
                            (weights already published and re-verified; builder `none`)
  breach → rollback run     from a canary turning bad (its next scrape shows it) to the
                            rollback run being created by the gate sensor

each beside a baseline measured in the same run: the same canary applied by calling the
library directly (no Dagster), and the gate loop run in-process at the same interval.

    .venv/bin/python bench/rollout.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from llm_rollout.k8s.cluster import ClusterClient  # noqa: E402
from llm_rollout.k8s.history import ReleaseHistory  # noqa: E402
from llm_rollout.k8s.labels import workload_name  # noqa: E402
from llm_rollout.k8s.lifecycle import Lifecycle  # noqa: E402
from llm_rollout.k8s.release import Release  # noqa: E402
from llm_rollout.rollout import controller  # noqa: E402
from llm_rollout.rollout.controller import Metrics  # noqa: E402
from llm_rollout.rollout.machine import Phase, RunState, Started  # noqa: E402
from llm_rollout.spec import ReleaseSpec, load_spec  # noqa: E402
from sandbox.dagster_home import DagsterHome, DagsterProcess  # noqa: E402
from sandbox.prometheus import SCRAPE_INTERVAL_SECONDS  # noqa: E402
from sandbox.world import SandboxWorld  # noqa: E402

EMULATOR = "registry.sandbox.local/vllm-metrics-emulator"
GATE = {
    "interval_seconds": 5,
    "window": "10s",
    "warmup_seconds": 0,
    "min_requests": 10,
    "required_passes": 100,  # never promote during the benchmark
    "failure_limit": 2,
    "consecutive_error_limit": 2,
}


def model(name: str) -> dict[str, Any]:
    base = yaml.safe_load((REPO_ROOT / "sandbox" / "specs" / "demo-tiny.yaml").read_text())
    base.update(
        name=name,
        namespace=name,
        replicas=1,
        image={"builder": "none", "reference": f"{EMULATOR}:healthy"},
        gate={**base["gate"], **GATE},
    )
    return base


def poll(condition: Any, timeout: float = 300, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError("the benchmark waited too long")


def finished(home: DagsterHome, run_id: str) -> dg.DagsterRun:
    def done() -> dg.DagsterRun | None:
        with home.instance() as instance:
            run = instance.get_run_by_id(run_id)
        return run if run and run.is_finished else None

    run = poll(done)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {run_id} of {run.job_name} failed")
    return run


def image_config(spec: ReleaseSpec, tag: str) -> dict[str, Any]:
    group = spec.name.replace("-", "_")
    return {"ops": {f"{group}__image": {"config": {"reference": f"{EMULATOR}:{tag}"}}}}


def launch_to_canary(
    home: DagsterHome, cluster: ClusterClient, spec: ReleaseSpec, tag: str
) -> float:
    started = time.monotonic()
    run_id = home.launch(f"{spec.name.replace('-', '_')}_rollout", image_config(spec, tag))
    poll(lambda: ReleaseHistory(cluster, spec).read().canary)
    seconds = time.monotonic() - started
    finished(home, run_id)
    return seconds


def breach_to_rollback(home: DagsterHome, cluster: ClusterClient, spec: ReleaseSpec) -> float:
    canary = poll(lambda: ReleaseHistory(cluster, spec).read().canary)
    name = workload_name(spec, canary)
    poll(lambda: cluster.rollout_status(name, spec.namespace).phase == "complete")
    time.sleep(spec.gate.interval_seconds * 2)  # a couple of passing windows first
    pod = next(
        p for p in cluster.list_objects("Pod", spec.namespace, f"llm-rollout.io/release={canary}")
    )
    address = f"http://{pod['status']['podIP']}:8000/_scenario"
    body = json.dumps({"scenario": "errors"}).encode()
    request = urllib.request.Request(address, body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()
    breached = time.time()
    time.sleep(SCRAPE_INTERVAL_SECONDS)  # scrapeable from the next scrape on
    job = f"{spec.name.replace('-', '_')}_rollback"

    def rollback_run() -> dg.RunRecord | None:
        with home.instance() as instance:
            records = instance.get_run_records(dg.RunsFilter(job_name=job), limit=1)
        return (
            records[0] if records and records[0].create_timestamp.timestamp() > breached else None
        )

    record = poll(rollback_run)
    seconds = record.create_timestamp.timestamp() - breached - SCRAPE_INTERVAL_SECONDS
    finished(home, record.dagster_run.run_id)
    return seconds


def baseline_apply(cluster: ClusterClient, spec: ReleaseSpec, commit: str, tag: str) -> float:
    lifecycle = Lifecycle(cluster, spec)
    started = time.monotonic()
    lifecycle.start_canary(Release(spec, commit, f"{EMULATOR}:{tag}"))
    seconds = time.monotonic() - started
    lifecycle.abort()
    return seconds


def baseline_gate(
    world: SandboxWorld, cluster: ClusterClient, spec: ReleaseSpec, commit: str
) -> float:
    """The same breach judged by the controller called in a loop at the gate interval."""
    lifecycle = Lifecycle(cluster, spec)
    release = Release(spec, commit, f"{EMULATOR}:errors")
    lifecycle.start_canary(release)
    stable = lifecycle.history.read().stable or ""
    controller.report(spec, cluster, Started(release.release_id, stable, "canary"))
    assert world.prometheus is not None
    metrics = Metrics(world.prometheus.url, SCRAPE_INTERVAL_SECONDS)
    poll(lambda: cluster.rollout_status(f"{spec.name}-canary", spec.namespace).phase == "complete")
    started = time.monotonic()

    def no_runs(run_key: str) -> tuple[RunState, str]:
        return RunState.NONE, ""

    while controller.tick(spec, cluster, metrics, no_runs).record.phase is not Phase.ROLLING_BACK:
        time.sleep(1)
    seconds = time.monotonic() - started
    lifecycle.rollback()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        models = root / "models"
        models.mkdir()
        for name in ("bench-dagster", "bench-direct"):
            (models / f"{name}.yaml").write_text(yaml.safe_dump(model(name)))
        with SandboxWorld(root / "world") as world:
            home = DagsterHome(root / "home", world.env(models))
            with DagsterProcess.daemon(home, (root / "daemon.log").open("ab")):
                assert world.api is not None
                cluster = ClusterClient(world.api)
                spec = load_spec(models / "bench-dagster.yaml")
                direct = load_spec(models / "bench-direct.yaml")
                for name in (spec.name, direct.name):
                    finished(home, home.launch(f"{name.replace('-', '_')}_rollout"))
                commit = ReleaseHistory(cluster, direct).read().releases[0].weights_commit
                launch, apply, breach, loop = [], [], [], []
                for index in range(rounds):
                    apply.append(baseline_apply(cluster, direct, commit, f"healthy-{index}"))
                    launch.append(launch_to_canary(home, cluster, spec, f"healthy-{index}"))
                    breach.append(breach_to_rollback(home, cluster, spec))
                    loop.append(baseline_gate(world, cluster, direct, commit))
                    print(
                        f"round {index + 1}: launch→canary {launch[-1]:.1f}s, "
                        f"breach→rollback run {breach[-1]:.1f}s",
                        flush=True,
                    )
    report("launch → canary applied", launch, "library call", apply)
    report("breach → rollback run created", breach, "in-process gate loop", loop)
    print(
        f"(gate: every {GATE['interval_seconds']}s over {GATE['window']}, "
        f"{GATE['failure_limit']} failing windows to roll back; scrape every "
        f"{SCRAPE_INTERVAL_SECONDS}s)"
    )


def report(what: str, values: list[float], baseline_name: str, baseline: list[float]) -> None:
    median, base = statistics.median(values), statistics.median(baseline)
    print(
        f"{what:32} median {median:6.1f}s (min {min(values):.1f}, max {max(values):.1f}); "
        f"{baseline_name} {base:.1f}s; ratio {median / base:.1f}×"
    )


if __name__ == "__main__":
    main()
