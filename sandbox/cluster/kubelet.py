"""Runs the sandbox cluster's pods as local processes: one worker thread per pod pulls (maps
the image to a runtime), starts, probes, restarts with backoff and stops its container."""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.cluster.objects import Obj, iso, now
from sandbox.cluster.runtimes import ImageRegistry, Launch, launch_for
from sandbox.cluster.store import ApiError, ObjectStore

logger = logging.getLogger(__name__)
TICK_SECONDS = 0.25
# Sandbox restarts back off 1, 2, 4 … up to 20 s (Kubernetes: 10 s up to 5 min), so
# crash loops show up within a test's patience.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0
# A pod's grace period, capped so a sandbox teardown never waits minutes.
MAX_GRACE_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 2.0
EventRecorder = Callable[[Obj, str, str, str, str], None]


DEFAULT_CONTAINER_PORT = 8000  # vLLM's, and the emulator's, when a container names none
PROBE_SECONDS = 0.2  # loopback answers or refuses at once
# How often a running pod's ConfigMap and Secret volumes are brought up to date. The kubelet
# does it on its periodic sync, within a minute or two of a change (kubelet sync period plus
# its ConfigMap cache TTL, "Mounted ConfigMaps are updated automatically", kubernetes.io);
# the sandbox takes a second, as it shortens restart backoff.
VOLUME_REFRESH_SECONDS = 1.0


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


class Kubelet:
    """Starts a worker for every pod bound to a node, and reads their logs."""

    def __init__(
        self,
        store: ObjectStore,
        root: Path,
        images: ImageRegistry,
        record_event: EventRecorder,
        network: int = 0,
    ) -> None:
        self.store = store
        self.root = root
        self.images = images
        self.record_event = record_event
        self.pods = store.resource("pods")
        self._workers: dict[str, PodWorker] = {}
        self._addresses = (
            f"127.{network}.{a}.{b}" for a, b in itertools.product(range(10, 250), range(1, 255))
        )
        self._lock = threading.Lock()

    def _free_address(self, pod: Obj) -> str:
        """The next pod IP nothing listens on yet. An IPAM never hands out an address in
        use; here one can be, when a process of a crashed sandbox that held this network
        outlived it (its claim on the network died with it, its pods did not)."""
        ports = [
            int(port["containerPort"])
            for container in pod["spec"].get("containers") or []
            for port in container.get("ports") or []
            if port.get("containerPort")
        ] or [DEFAULT_CONTAINER_PORT]
        for address in self._addresses:
            if not any(_listening(address, port) for port in ports):
                return address
            logger.warning("pod address %s is taken by another process; skipping it", address)
        raise RuntimeError("the sandbox network has no free pod address left")

    def sync(self) -> None:
        pods, _ = self.store.list(self.pods)
        with self._lock:
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if pod["spec"].get("nodeName") and uid not in self._workers:
                    worker = PodWorker(self, pod, self._free_address(pod))
                    self._workers[uid] = worker
                    worker.start()
            for uid, worker in list(self._workers.items()):
                if worker.finished.is_set():
                    del self._workers[uid]

    def read_log(self, namespace: str, name: str, container: str | None, tail: int | None) -> str:
        path = self.log_path(namespace, name)
        text = path.read_text(errors="replace") if path.exists() else ""
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        return text

    def log_path(self, namespace: str, name: str) -> Path:
        return self.root / "pods" / f"{namespace}_{name}" / "container.log"

    def stop(self) -> None:
        """Stop every container now (SIGTERM, then SIGKILL after a short grace)."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.shutdown.set()
        for worker in workers:
            worker.join(timeout=MAX_GRACE_SECONDS + 5)


class PodWorker(threading.Thread):
    """The lifecycle of one pod's (first) container."""

    def __init__(self, kubelet: Kubelet, pod: Obj, ip: str) -> None:
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.kubelet = kubelet
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.ip = ip
        self.shutdown = threading.Event()
        self.finished = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.backoff_until = 0.0
        self.started_at = 0.0
        self.started_ok = False
        self.ready = False
        self.live_failures = 0
        self.last_probe = 0.0
        self.pull_attempts = 0
        self.last_state: Obj | None = None
        self.completed = False  # a Never/OnFailure pod that finished for good
        self.volumes_refreshed = 0.0
        self.mount_failure_reported = False
        self.termination_log = (
            kubelet.root / "pods" / f"{self.namespace}_{self.name}" / ("termination-log")
        )

    # -- main loop ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.shutdown.is_set():
                try:
                    pod = self.kubelet.store.get(self.kubelet.pods, self.namespace, self.name)
                except ApiError:
                    break
                if "deletionTimestamp" in pod["metadata"]:
                    grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30))
                    self._terminate(min(grace, MAX_GRACE_SECONDS))
                    self.kubelet.record_event(
                        pod,
                        "Normal",
                        "Killing",
                        f"Stopping container {self._container(pod)['name']}",
                        "kubelet",
                    )
                    self.kubelet.store.finalize_pod(self.namespace, self.name)
                    return
                try:
                    self._step(pod)
                except Exception:  # a sandbox bug must not leave the pod without a kubelet
                    logger.exception("pod worker %s/%s failed a step", self.namespace, self.name)
                self.shutdown.wait(TICK_SECONDS)
            self._terminate(min(5.0, MAX_GRACE_SECONDS))
        finally:
            self.finished.set()

    def _step(self, pod: Obj) -> None:
        container = self._container(pod)
        if self.completed:
            return
        if self.process is None:
            if time.monotonic() < self.backoff_until:
                return
            runtime = self.kubelet.images.runtime_for(container["image"])
            if runtime is None:
                self._image_pull_failed(pod, container)
                return
            missing = self._missing_source(pod, container)
            if missing:
                # the kubelet does not start a container whose volume cannot be set up:
                # ContainerCreating, a FailedMount event, retried (volumemanager)
                if not self.mount_failure_reported:
                    self.mount_failure_reported = True
                    self.kubelet.record_event(
                        pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {missing}",
                        "kubelet",
                    )  # fmt: skip
                return
            self._start(pod, container, runtime)
            return
        code = self.process.poll()
        if code is not None:
            self._exited(pod, container, code)
            return
        if time.monotonic() - self.volumes_refreshed >= VOLUME_REFRESH_SECONDS:
            self.volumes_refreshed = time.monotonic()
            self._refresh_volumes(pod, container)
        self._probe(pod, container)

    # -- lifecycle ----------------------------------------------------------------------

    def _start(self, pod: Obj, container: Obj, runtime: str) -> None:
        log_path = self.kubelet.log_path(self.namespace, self.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            launch = launch_for(
                runtime, container, self._env(pod, container), self._mounts(pod, container), self.ip
            )
        except (ValueError, RuntimeError) as error:
            with log_path.open("a") as log:
                log.write(f"sandbox: cannot start container: {error}\n")
            self._exited(pod, container, 128)
            return
        with log_path.open("ab") as log:
            try:
                self.process = self._spawn(launch, log, log_path.parent)
            except OSError as error:  # no such executable, permission denied…
                log.write(f"sandbox: cannot run {launch.argv[0]!r}: {error}\n".encode())
                self._exited(pod, container, 127)
                return
        self.started_at = time.monotonic()
        self.started_ok = False
        self.ready = False
        self.live_failures = 0
        self.kubelet.record_event(
            pod, "Normal", "Started", f"Started container {container['name']}", "kubelet"
        )
        self._set_status(pod, container, {"running": {"startedAt": iso(now())}}, "Running")

    @staticmethod
    def _spawn(launch: Launch, log: Any, cwd: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            launch.argv,
            env=launch.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(cwd),
        )

    def _exited(self, pod: Obj, container: Obj, code: int) -> None:
        self.process = None
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            self._completed(pod, container, code)
            return
        self.restarts += 1
        delay = min(BACKOFF_BASE_SECONDS * 2 ** (self.restarts - 1), BACKOFF_MAX_SECONDS)
        self.backoff_until = time.monotonic() + delay
        self.ready = False
        self.last_state = {
            "terminated": {
                "exitCode": code,
                "reason": "Error" if code else "Completed",
                "finishedAt": iso(now()),
            }
        }
        self.kubelet.record_event(
            pod,
            "Warning",
            "BackOff",
            f"Back-off restarting failed container {container['name']} in pod {self.name}",
            "kubelet",
        )
        waiting = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container",
            }
        }
        self._set_status(pod, container, waiting, "Running")

    def _completed(self, pod: Obj, container: Obj, code: int) -> None:
        """A run-to-completion container ended: the pod Succeeded or Failed, for good."""
        self.completed = True
        self.ready = False
        message = ""
        if self.termination_log.exists():
            message = self.termination_log.read_text(errors="replace")[-4096:]
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "finishedAt": iso(now()),
            "message": message,
        }
        self._set_status(
            pod, container, {"terminated": terminated}, "Succeeded" if code == 0 else "Failed"
        )

    def _image_pull_failed(self, pod: Obj, container: Obj) -> None:
        self.pull_attempts += 1
        reason = "ErrImagePull" if self.pull_attempts == 1 else "ImagePullBackOff"
        message = (
            f'failed to pull image "{container["image"]}": not found in the sandbox '
            "image registry (sandbox/cluster/images.yaml)"
        )
        if self.pull_attempts == 1:
            self.kubelet.record_event(pod, "Warning", "Failed", message, "kubelet")
        self.backoff_until = time.monotonic() + min(
            BACKOFF_BASE_SECONDS * 2 ** (self.pull_attempts - 1), BACKOFF_MAX_SECONDS
        )
        self._set_status(
            pod, container, {"waiting": {"reason": reason, "message": message}}, "Pending"
        )

    def _terminate(self, grace: float) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # -- probes -------------------------------------------------------------------------

    def _probe(self, pod: Obj, container: Obj) -> None:
        elapsed = time.monotonic() - self.started_at
        startup = container.get("startupProbe")
        readiness = container.get("readinessProbe")
        liveness = container.get("livenessProbe")
        if not self.started_ok:
            probe = startup or readiness
            if probe is None or (self._due(probe) and self._check(probe, container)):
                self.started_ok = True
            elif probe is startup and elapsed > _budget(startup):
                self._restart(pod, container, "Startup probe failed")
                return
        period = float((readiness or {}).get("periodSeconds", 10))
        if self.started_ok and (
            readiness is None or time.monotonic() - self.last_probe >= period or not self.ready
        ):
            self.last_probe = time.monotonic()
            ready = True if readiness is None else self._check(readiness, container)
            if ready != self.ready:
                self.ready = ready
                self._set_status(pod, container, {"running": {"startedAt": iso(now())}}, "Running")
            if liveness is not None and self.started_ok:
                if self._check(liveness, container):
                    self.live_failures = 0
                else:
                    self.live_failures += 1
                    if self.live_failures >= int(liveness.get("failureThreshold", 3)):
                        self._restart(pod, container, "Liveness probe failed")

    def _due(self, probe: Obj) -> bool:
        return time.monotonic() - self.started_at >= float(probe.get("initialDelaySeconds", 0))

    def _check(self, probe: Obj, container: Obj) -> bool:
        action = probe.get("httpGet")
        if action is None:
            return True  # exec/tcp probes: the sandbox treats a running process as healthy
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next(
                (p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port),
                None,
            )
        url = f"http://{self.ip}:{port}{action.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _restart(self, pod: Obj, container: Obj, reason: str) -> None:
        self.kubelet.record_event(pod, "Warning", "Unhealthy", reason, "kubelet")
        self._terminate(
            min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS)
        )
        self._exited(pod, container, 137)

    # -- status -------------------------------------------------------------------------

    def _set_status(self, pod: Obj, container: Obj, state: Obj, phase: str) -> None:
        try:
            live = self.kubelet.store.get(self.kubelet.pods, self.namespace, self.name)
        except ApiError:
            return
        moment = iso(now())
        ready = "True" if self.ready else "False"
        status = {
            "phase": phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": "127.0.0.1",
            "startTime": live.get("status", {}).get("startTime", moment),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": moment},
                {"type": "Initialized", "status": "True", "lastTransitionTime": moment},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": moment},
                {"type": "Ready", "status": ready, "lastTransitionTime": moment},
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": self.ready,
                    "started": "running" in state,
                    "restartCount": self.restarts,
                    "state": state,
                    **({"lastState": self.last_state} if self.last_state else {}),
                }
            ],
        }
        live["status"] = status
        with contextlib.suppress(ApiError):
            self.kubelet.store.replace(
                self.kubelet.pods, self.namespace, self.name, live, subresource="status"
            )

    # -- inputs -------------------------------------------------------------------------

    @staticmethod
    def _container(pod: Obj) -> Obj:
        return pod["spec"]["containers"][0]  # type: ignore[no-any-return]

    def _env(self, pod: Obj, container: Obj) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "valueFrom" in item:
                value = self._value_from(pod, item["valueFrom"])
                if value is not None:
                    env[item["name"]] = value
        return env

    def _value_from(self, pod: Obj, source: Obj) -> str | None:
        store = self.kubelet.store
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            return {
                "status.podIP": self.ip,
                "metadata.name": self.name,
                "metadata.namespace": self.namespace,
                "spec.nodeName": pod["spec"].get("nodeName", ""),
            }.get(path)
        for kind, resource in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
            if kind in source:
                ref = source[kind]
                try:
                    obj = store.get(store.resource(resource), self.namespace, ref["name"])
                except ApiError:
                    return None
                value = (obj.get("data") or {}).get(ref["key"])
                if value is not None and resource == "secrets":
                    value = base64.b64decode(value).decode()
                return value
        return None

    def _mounts(self, pod: Obj, container: Obj) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        self.termination_log.parent.mkdir(parents=True, exist_ok=True)
        message_path = container.get("terminationMessagePath", "/dev/termination-log")
        mounts: list[tuple[str, Path]] = [(message_path, self.termination_log)]
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                continue
            local = self._volume_path(volume)
            if local is None:
                continue
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts.append((mount["mountPath"], local))
        return sorted(mounts, key=lambda m: -len(m[0]))

    def _refresh_volumes(self, pod: Obj, container: Obj) -> None:
        """Bring mounted ConfigMap and Secret volumes up to date; a subPath mount is a copy
        made at start and never changes (a documented Kubernetes limitation)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        store = self.kubelet.store
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            if mount.get("subPath"):
                continue
            if "configMap" in volume:
                self._projected(volume, store.resource("configmaps"), volume["configMap"]["name"])
            elif "secret" in volume:
                self._projected(volume, store.resource("secrets"), volume["secret"]["secretName"])

    def _missing_source(self, pod: Obj, container: Obj) -> str | None:
        """The ConfigMap or Secret a mounted, non-optional volume names that does not exist."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        store = self.kubelet.store
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            for kind, resource, key in (
                ("configMap", "configmaps", "name"),
                ("secret", "secrets", "secretName"),
            ):
                if kind in volume and not volume[kind].get("optional"):
                    try:
                        store.get(store.resource(resource), self.namespace, volume[kind][key])
                    except ApiError:
                        return f'{resource[:-1]} "{volume[kind][key]}" not found'
        return None

    def _projected(self, volume: Obj, resource: Any, name: str) -> Path | None:
        """A ConfigMap or Secret written out as files, as the kubelet projects them: each
        file replaced in one step and only when it changed, so a reader never sees half a
        file (the kubelet swaps a symlink to a new folder: atomic_writer.go)."""
        try:
            obj = self.kubelet.store.get(resource, self.namespace, name)
        except ApiError:
            return None
        folder = self.kubelet.root / "pods" / f"{self.namespace}_{self.name}" / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        files = _decoded(obj)
        kind = "configMap" if "configMap" in volume else "secret"
        items = volume[kind].get("items")
        for item in items or [{"key": key, "path": key} for key in files]:
            if item["key"] in files:
                target = folder / item["path"]
                if target.is_file() and target.read_bytes() == files[item["key"]]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.partial")
                partial.write_bytes(files[item["key"]])
                os.replace(partial, target)
        return folder

    def _volume_path(self, volume: Obj) -> Path | None:
        store = self.kubelet.store
        if "nfs" in volume:
            return nfs_path(self.kubelet.root, volume["nfs"]["server"], volume["nfs"]["path"])
        if "persistentVolumeClaim" in volume:
            try:
                claim = store.get(
                    store.resource("persistentvolumeclaims"),
                    self.namespace,
                    volume["persistentVolumeClaim"]["claimName"],
                )
                pv_name = claim["spec"].get("volumeName") or claim.get("status", {}).get(
                    "volumeName"
                )
                volume_obj = store.get(store.resource("persistentvolumes"), "", pv_name or "")
            except ApiError:
                return None
            nfs = volume_obj["spec"].get("nfs")
            return nfs_path(self.kubelet.root, nfs["server"], nfs["path"]) if nfs else None
        for kind, resource, key in (
            ("configMap", "configmaps", "name"),
            ("secret", "secrets", "secretName"),
        ):
            if kind in volume:
                return self._projected(volume, store.resource(resource), volume[kind][key])
        if "emptyDir" in volume:
            path = self.kubelet.root / "pods" / f"{self.namespace}_{self.name}" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            return path
        if "hostPath" in volume:
            return Path(volume["hostPath"]["path"])
        return None


def _decoded(obj: Obj) -> dict[str, bytes]:
    """The files a ConfigMap or Secret volume shows (Secret data is base64)."""
    files = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    for key, value in (obj.get("data") or {}).items():
        files[key] = base64.b64decode(value) if obj.get("kind") == "Secret" else value.encode()
    for key, value in (obj.get("stringData") or {}).items():
        files[key] = value.encode()
    return files


def nfs_path(root: Path, server: str, export: str) -> Path:
    """The local folder standing in for an NFS export."""
    return root / "nfs" / server / export.strip("/")


def _budget(probe: Obj) -> float:
    return float(probe.get("initialDelaySeconds", 0)) + float(probe.get("periodSeconds", 10)) * int(
        probe.get("failureThreshold", 3)
    )
