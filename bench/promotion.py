"""Promotion benchmark: one Deployment per release (canary pods become stable) against the
two-Deployment design llm-rollout used before (promotion rewrites stable's pod template, so
every stable replica loads the model again, then the canary is scaled to zero), measured in
the same run on the same sandbox cluster, for `replicas` = 1 and 3:

  pod starts        pods created from the canary's start to the end of the promotion
  GPU pod-seconds   GPUs held by the model's pods over that time (scheduled pods hold them)
  peak GPUs         the most GPUs the model's pods held at once (a surge needs a spare slot)
  promotion         wall time of the promotion itself (the canary already serving)

Emulated vLLM pods "load the model" for --load-seconds before they listen (as vLLM opens its
port only once loaded), so pod starts cost time as they do on a GPU cluster.

    .venv/bin/python bench/promotion.py [--load-seconds 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llm_rollout.k8s import manifests  # noqa: E402
from llm_rollout.k8s.cluster import ClusterClient, RolloutStatus  # noqa: E402
from llm_rollout.k8s.labels import legacy_deployment_names  # noqa: E402
from llm_rollout.k8s.lifecycle import Lifecycle  # noqa: E402
from llm_rollout.k8s.release import Release  # noqa: E402
from llm_rollout.spec import ReleaseSpec, load_spec  # noqa: E402
from sandbox.cluster.cluster import SandboxCluster  # noqa: E402
from sandbox.cluster.runtimes import EMULATOR_LOAD_SECONDS  # noqa: E402

EMULATOR = "registry.sandbox.local/vllm-metrics-emulator"
COMMIT = "c" * 40
SAMPLE_SECONDS = 0.25


@dataclass
class PodMeter:
    """Samples a namespace's pods: which were created, and GPU-seconds held."""

    cluster: ClusterClient
    namespace: str
    gpus_per_pod: int
    seen: set[str] = field(default_factory=set)
    gpu_seconds: float = 0.0
    peak_gpus: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PodMeter:
        self.before = {p["metadata"]["uid"] for p in self._pods()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def started(self) -> int:
        return len(self.seen - self.before)

    def _pods(self) -> list[dict[str, Any]]:
        return self.cluster.list_objects("Pod", self.namespace)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.monotonic()
            pods = self._pods()
            holding = [
                p
                for p in pods
                if p["spec"].get("nodeName")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            self.seen |= {p["metadata"]["uid"] for p in pods}
            self.gpu_seconds += len(holding) * self.gpus_per_pod * (now - last)
            self.peak_gpus = max(self.peak_gpus, len(holding) * self.gpus_per_pod)
            last = now


class TwoDeployments:
    """The earlier design, as it ran: '<model>' (stable) and '<model>-canary'; promotion
    applies the canary's release to stable's pod template (a rolling update, maxSurge 1)
    and then scales the canary to zero."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster, self.spec = cluster, spec
        self.stable_name, self.canary_name = legacy_deployment_names(spec)

    def deployment(self, release: Release, track: str, replicas: int) -> dict[str, Any]:
        name = self.stable_name if track == "stable" else self.canary_name
        made = manifests.deployment(release, replicas)
        made["metadata"]["name"] = name
        selector = {"app.kubernetes.io/name": self.spec.name, "track": track}
        made["spec"]["selector"] = {"matchLabels": selector}
        made["spec"]["template"]["metadata"]["labels"].update(
            {**selector, "app.kubernetes.io/instance": name}
        )
        return made

    def install(self, release: Release) -> None:
        for obj in manifests.platform_objects(self.spec):
            self.cluster.apply(obj)
        self.cluster.apply(self.deployment(release, "stable", self.spec.replicas))
        self.wait(self.stable_name)

    def start_canary(self, release: Release) -> None:
        self.cluster.apply(self.deployment(release, "canary", self.spec.rollout.canary_replicas))
        self.wait(self.canary_name)

    def promote(self, release: Release) -> RolloutStatus:
        self.cluster.apply(self.deployment(release, "stable", self.spec.replicas))
        status = self.wait(self.stable_name)
        self.cluster.scale(self.canary_name, self.spec.namespace, 0)
        return status

    def wait(self, name: str) -> RolloutStatus:
        while True:
            status = self.cluster.rollout_status(name, self.spec.namespace)
            if status.done:
                return status
            time.sleep(0.2)


@dataclass
class Measured:
    pod_starts: int
    gpu_pod_seconds: float
    peak_gpus: int
    promotion_seconds: float


def versioned(
    cluster: ClusterClient, spec: ReleaseSpec, first: Release, second: Release
) -> Measured:
    lifecycle = Lifecycle(cluster, spec, poll_seconds=0.2)
    lifecycle.first_release(first)
    lifecycle.wait(lifecycle.workload_name(first.release_id))
    with PodMeter(cluster, spec.namespace, spec.resources.gpus) as meter:
        lifecycle.start_canary(second)
        lifecycle.wait(lifecycle.workload_name(second.release_id))
        started = time.monotonic()
        assert lifecycle.promote().phase == "complete"
        promotion = time.monotonic() - started
    return Measured(meter.started, meter.gpu_seconds, meter.peak_gpus, promotion)


def two_deployments(
    cluster: ClusterClient, spec: ReleaseSpec, first: Release, second: Release
) -> Measured:
    old = TwoDeployments(cluster, spec)
    old.install(first)
    with PodMeter(cluster, spec.namespace, spec.resources.gpus) as meter:
        old.start_canary(second)
        started = time.monotonic()
        assert old.promote(second).phase == "complete"
        promotion = time.monotonic() - started
    return Measured(meter.started, meter.gpu_seconds, meter.peak_gpus, promotion)


def remove_pods(cluster: ClusterClient, namespace: str) -> None:
    for deployment in cluster.list_objects("Deployment", namespace):
        cluster.delete("Deployment", deployment["metadata"]["name"], namespace)
    deadline = time.monotonic() + 120
    while cluster.list_objects("Pod", namespace) and time.monotonic() < deadline:
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-seconds", type=float, default=8.0)
    load = parser.parse_args().load_seconds
    os.environ[EMULATOR_LOAD_SECONDS] = str(load)
    base = load_spec(REPO_ROOT / "sandbox" / "specs" / "demo-tiny.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as folder, SandboxCluster(Path(folder)) as sandbox:
        from kubernetes import config

        cluster = ClusterClient(config.new_client_from_config(str(sandbox.kubeconfig)))
        for replicas in (1, 3):
            results = {}
            for design, run in (("versioned", versioned), ("two Deployments", two_deployments)):
                namespace = f"bench-{replicas}-{design.split()[0].lower()}"
                spec = base.model_copy(update={"replicas": replicas, "namespace": namespace})
                first, second = (Release(spec, COMMIT, f"{EMULATOR}:healthy-{n}") for n in (1, 2))
                results[design] = run(cluster, spec, first, second)
                print(f"replicas {replicas}, {design}: {results[design]}", flush=True)
                remove_pods(cluster, namespace)  # the next case gets every GPU
            rows.append((replicas, results["versioned"], results["two Deployments"]))
    print(f"\npods load for {load:.0f}s; each pod holds {base.resources.gpus} GPU(s)")
    print(f"{'replicas':>8}  {'':18} {'versioned':>10} {'two Deployments':>16} {'ratio':>6}")
    for replicas, new, old in rows:
        for what, a, b in (
            ("pod starts", new.pod_starts, old.pod_starts),
            ("GPU pod-seconds", new.gpu_pod_seconds, old.gpu_pod_seconds),
            ("peak GPUs", new.peak_gpus, old.peak_gpus),
            ("promotion (s)", new.promotion_seconds, old.promotion_seconds),
        ):
            print(f"{replicas:>8}  {what:18} {a:>10.1f} {b:>16.1f} {a / b if b else 0:>5.2f}×")


if __name__ == "__main__":
    main()
