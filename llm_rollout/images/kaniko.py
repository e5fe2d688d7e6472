"""The `kaniko` builder: a Kubernetes Job runs the kaniko executor on the rendered context
(delivered as a ConfigMap), pushes, and reports the digest through its termination message.
The Job, its ConfigMap and its registry Secret are created, watched and cleaned up through
our cluster client."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from llm_rollout.images.builders import BuildFailed, BuiltImage, Log, already_built
from llm_rollout.images.context import BuildContext, ImageError
from llm_rollout.images.registry import Credentials, ImageReference, RegistryClient
from llm_rollout.k8s.cluster import ClusterClient, ClusterError

KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
BUILD_TIMEOUT_SECONDS = 3600.0  # a CUDA build of vLLM takes tens of minutes
POLL_SECONDS = 2.0
LOG_TAIL_LINES = 30


def build_objects(
    context: BuildContext, namespace: str, insecure: bool, credentials: Credentials | None
) -> list[dict[str, Any]]:
    """The ConfigMap (context), optional Secret (registry login) and Job of one build."""
    name = job_name(context)
    labels = {
        "app.kubernetes.io/name": context.spec.name,
        "app.kubernetes.io/component": "image-build",
        "app.kubernetes.io/managed-by": "llm-rollout",
    }
    meta = {"name": name, "namespace": namespace, "labels": labels}
    reference = context.reference
    args = [
        "--context=dir:///workspace",
        "--dockerfile=Dockerfile",
        f"--destination={reference}",
        "--digest-file=/dev/termination-log",
        "--reproducible",
        "--cache=false",
    ]
    if insecure:
        args.append(f"--insecure-registry={ImageReference.parse(reference).registry}")
    mounts = [{"name": "context", "mountPath": "/workspace", "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "context", "configMap": {"name": name}}]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "binaryData": {
                key: base64.b64encode(data).decode() for key, data in context.files.items()
            },
        }
    ]
    if credentials is not None:
        host = ImageReference.parse(reference).registry
        login = base64.b64encode(f"{credentials.username}:{credentials.password}".encode())
        config = json.dumps({"auths": {host: {"auth": login.decode()}}})
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta,
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
            }
        )
        mounts.append({"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": name,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    objects.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                "backoffLimit": 0,  # a failed build is reported, not silently retried
                "activeDeadlineSeconds": int(BUILD_TIMEOUT_SECONDS),
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "kaniko",
                                "image": KANIKO_IMAGE,
                                "args": args,
                                "env": [{"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"}],
                                "volumeMounts": mounts,
                                "terminationMessagePath": "/dev/termination-log",
                                "resources": {
                                    "requests": {"cpu": "1", "memory": "2Gi"},
                                    "limits": {"memory": "8Gi"},
                                },
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            },
        }
    )
    return objects


def job_name(context: BuildContext) -> str:
    return f"{context.spec.name}-image-{context.content_hash[:10]}"


@dataclass
class KanikoBuilder:
    """Builds in the cluster with kaniko; needs a namespace where Jobs may run."""

    cluster: ClusterClient
    registry: RegistryClient
    namespace: str
    credentials: Credentials | None = None
    timeout: float = BUILD_TIMEOUT_SECONDS
    name: str = field(default="kaniko")

    def build(self, context: BuildContext, log: Log) -> BuiltImage:
        reference = context.reference
        started = time.monotonic()
        existing = already_built(self.registry, context, self.name, log)
        if existing is not None:
            return existing
        insecure = ImageReference.parse(reference).registry in self.registry.insecure
        objects = build_objects(context, self.namespace, insecure, self.credentials)
        name = job_name(context)
        try:
            for obj in objects:
                self.cluster.apply(obj)
            log(f"build Job {self.namespace}/{name} started for {reference}")
            digest = self._wait(name, reference, log)
        except ClusterError as error:
            raise ImageError(f"the build Job {name} could not run: {error}") from error
        finally:
            for obj in reversed(objects):
                try:
                    self.cluster.delete(obj["kind"], name, self.namespace)
                except ClusterError as error:
                    log(f"cleanup of {obj['kind']}/{name} failed: {error}")
        return BuiltImage(
            reference, digest, self.name, context.content_hash, time.monotonic() - started, False
        )

    def _wait(self, name: str, reference: str, log: Log) -> str:
        deadline = time.monotonic() + self.timeout
        shown = 0
        while True:
            job = self.cluster.get("Job", name, self.namespace)
            pods = self.cluster.list_objects("Pod", self.namespace, f"job-name={name}")
            lines: list[str] = []
            if pods:
                text = self.cluster.read_log(pods[-1]["metadata"]["name"], self.namespace)
                lines = text.splitlines()
                for line in lines[shown:]:
                    log(line)
                shown = len(lines)
            conditions = {
                c["type"]: c
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("status") == "True"
            }
            if "Complete" in conditions:
                digest = _termination_message(pods[-1]) if pods else ""
                if not digest.startswith("sha256:"):
                    raise BuildFailed(f"the build of {reference} reported no digest")
                return digest
            if "Failed" in conditions or time.monotonic() > deadline:
                why = conditions.get("Failed", {}).get("message", "timed out")
                raise BuildFailed(
                    f"build of {reference} failed ({why})\n--- last lines ---\n"
                    + "\n".join(lines[-LOG_TAIL_LINES:])
                )
            time.sleep(POLL_SECONDS)


def _termination_message(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            return str(terminated["message"]).strip()
    return ""
