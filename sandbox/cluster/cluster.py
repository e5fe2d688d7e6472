"""The sandbox cluster: API server, controllers, scheduler, kubelet and Service proxies in
one object, with a kubeconfig for the real `kubernetes` client and kubectl."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import platform
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import yaml

from sandbox.cluster.api import KUBERNETES_VERSION, ApiServer
from sandbox.cluster.controllers import DeploymentController
from sandbox.cluster.jobs import JobController
from sandbox.cluster.kubelet import Kubelet, nfs_path
from sandbox.cluster.leaderworkerset import LeaderWorkerSetController
from sandbox.cluster.objects import Obj, iso, labels, now, pod_is_ready
from sandbox.cluster.proxy import ServiceProxy
from sandbox.cluster.runtimes import ImageRegistry
from sandbox.cluster.scheduler import Scheduler
from sandbox.cluster.selectors import selector_from_match_labels
from sandbox.cluster.store import ApiError, ObjectStore
from sandbox.running import Running

log = logging.getLogger(__name__)
RECONCILE_SECONDS = 0.2  # how often controllers run; fast, so tests poll briefly
# With no write since the last pass only the kubelet (probes, restarts) runs every time; the
# other controllers still run this often for what time alone changes (progress deadlines).
IDLE_PASS_SECONDS = 1.0
NETWORK_CLAIMS = Path(tempfile.gettempdir()) / "llm-rollout-sandbox-networks"
GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"


def claim_network() -> tuple[int, IO[str]]:
    """A network number N (for 127.N.0.0/16) no other live sandbox on this machine holds: a
    lock on a file per number, held while the cluster runs and freed by the OS when its
    process ends."""
    NETWORK_CLAIMS.mkdir(exist_ok=True)
    candidates = list(range(1, 255))
    random.SystemRandom().shuffle(candidates)
    for network in candidates:
        claim = (NETWORK_CLAIMS / f"{network}.lock").open("a")
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            claim.close()
            continue
        return network, claim
    raise RuntimeError("all 254 sandbox networks (127.N.0.0/16) are held by running sandboxes")


@dataclass(frozen=True)
class NodeSpec:
    """A node of the sandbox cluster and what it can allocate."""

    name: str
    gpus: int = 0
    gpu_product: str = GPU_PRODUCT
    cpu: str = "64"
    memory: str = "512Gi"

    def to_object(self) -> Obj:
        node_labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux"}
        allocatable = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        taints = []
        if self.gpus:
            node_labels |= {
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
            }
            allocatable["nvidia.com/gpu"] = str(self.gpus)
            taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
        return {
            "metadata": {"name": self.name, "labels": node_labels},
            "spec": {"taints": taints},
            "status": {
                "capacity": allocatable,
                "allocatable": allocatable,
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                # every field the API marks required (the kubernetes client refuses a
                # NodeSystemInfo without them, e.g. "Invalid value for `boot_id`")
                "nodeInfo": {
                    "kubeletVersion": KUBERNETES_VERSION["gitVersion"],
                    "kubeProxyVersion": KUBERNETES_VERSION["gitVersion"],
                    "osImage": "llm-rollout sandbox",
                    "containerRuntimeVersion": "sandbox://local-processes",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "kernelVersion": platform.release(),
                    "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"boot.{self.name}")),
                    "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, f"machine.{self.name}").hex,
                    "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"system.{self.name}")),
                },
            },
        }


DEFAULT_NODES = (
    NodeSpec("gpu-node-1", gpus=4),
    NodeSpec("gpu-node-2", gpus=4),
    NodeSpec("cpu-node-1"),
)


class SandboxCluster(Running):
    """A local Kubernetes: start it, point a kubeconfig at it, stop it (no orphans)."""

    def __init__(
        self,
        root: Path,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        images: ImageRegistry | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = ObjectStore()
        # Each cluster gets its own 127.N.0.0/16 (pods 127.N.10+.x, Services 127.N.1.x), so
        # several sandboxes (parallel test runs, a demo) never fight over an address.
        self.network, self._network_claim = claim_network()
        self.kubelet = Kubelet(
            self.store, root, images or ImageRegistry.load(), self.record_event, self.network
        )
        self.api = ApiServer(self.store, self.kubelet.read_log)
        self.deployments = DeploymentController(self.store, self.record_event)
        self.jobs = JobController(self.store)
        self.leaderworkersets = LeaderWorkerSetController(self.store, self.record_event)
        self.scheduler = Scheduler(self.store, self.record_event)
        self._proxies: dict[tuple[str, str, int], ServiceProxy] = {}
        self._service_ips = (f"127.{self.network}.1.{n}" for n in range(1, 255))
        self._stopped = threading.Event()
        self._loop = threading.Thread(target=self._run, daemon=True, name="sandbox-controllers")
        for node in nodes:
            self.store.create(self.store.resource("nodes"), "", node.to_object())

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def nfs_export(self, server: str, path: str) -> Path:
        """The local folder behind an NFS export, created on demand (publish weights here)."""
        folder = nfs_path(self.root, server, path)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start(self) -> Self:
        self.api.start()
        self._write_kubeconfig()
        self._loop.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._loop.join(timeout=5)
        self.kubelet.stop()
        for proxy in self._proxies.values():
            proxy.stop()
        self.api.stop()
        self._network_claim.close()  # the network is free for another sandbox

    def record_event(self, obj: Obj, kind: str, reason: str, message: str, source: str) -> None:
        """Add an Event about `obj`, as `kubectl describe` shows them."""
        namespace = obj["metadata"].get("namespace") or "default"
        moment = iso(now())
        event = {
            "metadata": {"name": f"{obj['metadata']['name']}.{uuid.uuid4().hex[:16]}"},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": obj["metadata"]["name"],
                "namespace": namespace,
                "uid": obj["metadata"].get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "source": {"component": source},
            "reportingComponent": source,
        }
        with contextlib.suppress(ApiError):
            self.store.create(self.store.resource("events"), namespace, event)

    # -- the control loop ---------------------------------------------------------------

    def _run(self) -> None:
        every_step = (
            self._bind_claims,
            self.deployments.reconcile,
            self.jobs.reconcile,
            self.leaderworkersets.reconcile,
            self.scheduler.schedule,
            self.kubelet.sync,
            self._sync_services,
        )
        seen, last_full = -1, 0.0
        while not self._stopped.wait(RECONCILE_SECONDS):
            revision = self.store.revision  # before the pass: its own writes call for another
            full = revision != seen or time.monotonic() - last_full >= IDLE_PASS_SECONDS
            if full:
                seen, last_full = revision, time.monotonic()
            for step in every_step if full else (self.kubelet.sync,):
                try:
                    step()
                except Exception:  # a bug in one controller must not stop the others
                    log.exception("sandbox controller step %s failed", step.__name__)

    def _sync_services(self) -> None:
        services_resource = self.store.resource("services")
        services, _ = self.store.list(services_resource)
        wanted: set[tuple[str, str, int]] = set()
        for service in services:
            spec = service.get("spec") or {}
            if not spec.get("clusterIP"):
                service["spec"]["clusterIP"] = next(self._service_ips)
                service["spec"]["clusterIPs"] = [service["spec"]["clusterIP"]]
                service = self.store.replace(
                    services_resource,
                    service["metadata"]["namespace"],
                    service["metadata"]["name"],
                    service,
                )
            ip = service["spec"]["clusterIP"]
            for port in service["spec"].get("ports") or []:
                key = (service["metadata"]["uid"], ip, int(port["port"]))
                wanted.add(key)
                if key not in self._proxies:
                    self._proxies[key] = ServiceProxy(
                        ip, int(port["port"]), self._backends(service, port)
                    )
        for key in set(self._proxies) - wanted:
            self._proxies.pop(key).stop()

    def _backends(self, service: Obj, port: Obj) -> Any:
        namespace = service["metadata"]["namespace"]
        matches = selector_from_match_labels({"matchLabels": service["spec"].get("selector")})
        target = port.get("targetPort", port["port"])

        def endpoints() -> list[tuple[str, int]]:
            pods, _ = self.store.list(self.store.resource("pods"), namespace)
            found = []
            for pod in pods:
                if not (
                    service["spec"].get("selector") and matches(labels(pod)) and pod_is_ready(pod)
                ):
                    continue
                number = target
                if isinstance(target, str):
                    number = next(
                        (
                            p["containerPort"]
                            for c in pod["spec"]["containers"]
                            for p in c.get("ports") or []
                            if p.get("name") == target
                        ),
                        None,
                    )
                if number is not None and pod.get("status", {}).get("podIP"):
                    found.append((pod["status"]["podIP"], int(number)))
            return found

        return endpoints

    def _bind_claims(self) -> None:
        claims_resource = self.store.resource("persistentvolumeclaims")
        volumes_resource = self.store.resource("persistentvolumes")
        claims, _ = self.store.list(claims_resource)
        for claim in claims:
            if claim.get("status", {}).get("phase") == "Bound":
                continue
            volumes, _ = self.store.list(volumes_resource)
            wanted = claim["spec"].get("volumeName")
            volume = (
                next((v for v in volumes if v["metadata"]["name"] == wanted), None)
                if wanted
                else next(
                    (
                        v
                        for v in volumes
                        if not v.get("spec", {}).get("claimRef")
                        and v["spec"].get("storageClassName", "")
                        == claim["spec"].get("storageClassName", "")
                    ),
                    None,
                )
            )
            if volume is None:
                continue
            namespace, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
            volume["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": name,
                "uid": claim["metadata"]["uid"],
            }
            volume = self.store.replace(volumes_resource, "", volume["metadata"]["name"], volume)
            volume["status"] = {"phase": "Bound"}
            self.store.replace(
                volumes_resource, "", volume["metadata"]["name"], volume, subresource="status"
            )
            claim["status"] = {
                "phase": "Bound",
                "accessModes": volume["spec"].get("accessModes"),
                "capacity": volume["spec"].get("capacity"),
            }
            claim = self.store.replace(
                claims_resource, namespace, name, claim, subresource="status"
            )
            if not claim["spec"].get("volumeName"):
                claim["spec"]["volumeName"] = volume["metadata"]["name"]
                self.store.replace(claims_resource, namespace, name, claim)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sandbox",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "sandbox", "namespace": "default"},
                }
            ],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
