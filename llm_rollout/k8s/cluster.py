"""The cluster client: server-side apply with our field manager, bounded retries, rollout
status with reasons, scale, delete. Built on the `kubernetes` package's ApiClient."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from llm_rollout.k8s import workloads
from llm_rollout.k8s.labels import FIELD_MANAGER, RELEASE

log = logging.getLogger(__name__)
T = TypeVar("T")
Obj = dict[str, Any]

# 429/5xx and transport errors are retried with exponential backoff, this many attempts:
# enough to ride out an API server restart or throttling, bounded so a dead API fails.
ATTEMPTS = 5
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# (connect, read) timeouts of one request.
REQUEST_TIMEOUT = (5.0, 30.0)
# A stale-resourceVersion 409 on a read-modify-write is re-read and retried this often.
CONFLICT_RETRIES = 5

# kind → (API prefix, plural, namespaced) for the kinds llm-rollout manages
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "PersistentVolume": ("/api/v1", "persistentvolumes", False),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Pod": ("/api/v1", "pods", True),
    "Node": ("/api/v1", "nodes", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Job": ("/apis/batch/v1", "jobs", True),
    # multi-node replicas (kubernetes-sigs/lws): the CRD must be installed to use them
    "LeaderWorkerSet": ("/apis/leaderworkerset.x-k8s.io/v1", "leaderworkersets", True),
}


class ClusterError(Exception):
    """A cluster operation failed; the message says what and what to do."""


class ClusterUnavailable(ClusterError):
    """The API server kept failing (5xx, 429, timeouts) after bounded retries."""


class NotFound(ClusterError):
    """The object does not exist."""


class FieldOwnershipConflict(ClusterError):
    """Applying would overwrite fields another manager owns (someone edited by hand).

    `conflicts` holds (manager, field) pairs; `owners` the API server's full name of each
    field's owner, e.g. '"llm-rollout" with subresource "scale" using apps/v1' (a write to
    /scale is a manager of its own: k8s.io/apimachinery managedfields/internal/conflict.go)."""

    def __init__(
        self,
        kind: str,
        name: str,
        conflicts: list[tuple[str, str]],
        owners: list[str] | None = None,
    ) -> None:
        self.kind, self.name, self.conflicts = kind, name, conflicts
        self.owners = owners or [f'"{manager}"' for manager, _ in conflicts]
        owned = "; ".join(
            f"{field} is owned by {owner}"
            for (_, field), owner in zip(conflicts, self.owners, strict=True)
        )
        super().__init__(
            f"{kind}/{name}: {owned}. Someone changed it outside llm-rollout; llm-rollout did "
            "not overwrite it. Undo the change (or let llm-rollout take the fields over with "
            "force) and run again."
        )

    def only_replicas_scaled_by(self, manager: str) -> bool:
        """True when the one contested field is spec.replicas, last set through /scale by
        `manager` itself (not by a person or another controller)."""
        ours = f'"{manager}" with subresource "scale"'
        return bool(self.conflicts) and all(
            field == ".spec.replicas" and (owner == ours or owner.startswith(ours + " "))
            for (_, field), owner in zip(self.conflicts, self.owners, strict=True)
        )


UNSCHEDULABLE = "Unschedulable"  # the reason a pod's PodScheduled condition gives


@dataclass(frozen=True)
class RolloutStatus:
    """Where a Deployment's rollout stands, trusting status only once it is observed."""

    phase: Literal["progressing", "complete", "stalled"]
    reason: str
    desired: int
    updated: int
    available: int
    ready: int
    unschedulable: bool = False  # stalled only because no node has room for a pod (yet)

    @property
    def done(self) -> bool:
        return self.phase != "progressing"


class ClusterClient:
    """Typed access to the objects of a serving namespace."""

    def __init__(
        self,
        api: client.ApiClient,
        field_manager: str = FIELD_MANAGER,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        self.api = api
        self.field_manager = field_manager
        self.request_timeout = request_timeout
        # the first retry's wait, doubling up to BACKOFF_MAX_SECONDS (tests of faults shorten it)
        self.backoff_seconds = backoff_seconds

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> ClusterClient:
        """From a kubeconfig file ($KUBECONFIG when none is given), else in-cluster
        credentials, else ~/.kube/config (read now, not when the client was imported)."""
        path = path or os.environ.get("KUBECONFIG") or None
        if path is None:
            try:
                config.load_incluster_config()
                return cls(client.ApiClient())
            except config.ConfigException:
                pass
        return cls(config.new_client_from_config(config_file=path, context=context))

    # -- basic operations ---------------------------------------------------------------

    def apply(self, obj: Obj, force: bool = False, dry_run: bool = False) -> Obj:
        """Server-side apply `obj` as our field manager; idempotent, so safe to retry. With
        `dry_run` the server answers with the result and persists nothing (dryRun=All)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        path = self._path(kind, obj["metadata"].get("namespace"), name)
        query = [("fieldManager", self.field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))

        def call() -> Obj:
            return self._call("PATCH", path, query, obj, "application/apply-patch+yaml")

        try:
            return self._retrying(call)
        except ApiException as error:
            if error.status == 409:
                conflicts = _field_conflicts(error)
                if conflicts:
                    owners = [owner for owner, _ in conflicts]
                    pairs = [(_manager_name(owner), field) for owner, field in conflicts]
                    raise FieldOwnershipConflict(kind, name, pairs, owners) from error
            raise ClusterError(f"applying {kind}/{name} failed: {_message(error)}") from error

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        try:
            return self._retrying(lambda: self._call("GET", self._path(kind, namespace, name)))
        except ApiException as error:
            if error.status == 404:
                raise NotFound(f"{kind}/{name} not found in {namespace or 'the cluster'}") from None
            raise ClusterError(f"reading {kind}/{name} failed: {_message(error)}") from error

    def find(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def list_objects(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[Obj]:
        query = [("labelSelector", selector)] if selector else []
        path = self._path(kind, namespace, None)
        try:
            result = self._retrying(lambda: self._call("GET", path, query))
        except ApiException as error:
            raise ClusterError(f"listing {kind} failed: {_message(error)}") from error
        return list(result.get("items") or [])

    def replace(self, obj: Obj) -> Obj:
        """PUT with the object's resourceVersion (optimistic concurrency: 409 when stale)."""
        path = self._path(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return self._retrying(
            lambda: self._call("PUT", path, [("fieldManager", self.field_manager)], obj)
        )

    def create(self, obj: Obj) -> Obj:
        path = self._path(obj["kind"], obj["metadata"].get("namespace"), None)
        return self._retrying(
            lambda: self._call("POST", path, [("fieldManager", self.field_manager)], obj)
        )

    def update_with_retry(
        self, kind: str, name: str, namespace: str, change: Callable[[Obj | None], Obj]
    ) -> Obj:
        """Read, change, write; a stale-resourceVersion 409 is re-read and retried."""
        for _ in range(CONFLICT_RETRIES):
            current = self.find(kind, name, namespace)
            wanted = change(current)
            try:
                return self.replace(wanted) if current is not None else self.create(wanted)
            except ApiException as error:
                if error.status != 409:
                    raise ClusterError(
                        f"writing {kind}/{name} failed: {_message(error)}"
                    ) from error
                log.info("%s/%s changed while we wrote it; re-reading", kind, name)
        raise ClusterError(f"{kind}/{name} kept changing under us ({CONFLICT_RETRIES} tries)")

    def scale(
        self, name: str, namespace: str, replicas: int, kind: str = workloads.DEPLOYMENT
    ) -> None:
        """Set a workload's replicas through its scale subresource (a Deployment's, or a
        LeaderWorkerSet's: the CRD declares /scale on .spec.replicas)."""
        path = self._path(kind, namespace, name) + "/scale"
        self._merge_patch(path, {"spec": {"replicas": replicas}}, kind, name, namespace)

    def merge_patch(self, kind: str, name: str, namespace: str | None, patch: Obj) -> Obj:
        """A JSON merge patch (RFC 7386) of the fields in `patch` only, recorded as an
        update by our field manager (metadata a rollout moves, such as a track label)."""
        return self._merge_patch(self._path(kind, namespace, name), patch, kind, name, namespace)

    def _merge_patch(
        self, path: str, patch: Obj, kind: str, name: str, namespace: str | None
    ) -> Obj:
        try:
            return self._retrying(
                lambda: self._call(
                    "PATCH",
                    path,
                    [("fieldManager", self.field_manager)],
                    patch,
                    "application/merge-patch+json",
                )
            )
        except ApiException as error:
            if error.status == 404:
                raise NotFound(f"{kind}/{name} not found in {namespace or 'the cluster'}") from None
            raise ClusterError(f"patching {kind}/{name} failed: {_message(error)}") from error

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete an object and (in the background) what it owns."""
        query = [("propagationPolicy", "Background")]
        try:
            self._retrying(lambda: self._call("DELETE", self._path(kind, namespace, name), query))
        except ApiException as error:
            if error.status != 404:
                raise ClusterError(f"deleting {kind}/{name} failed: {_message(error)}") from error

    def read_log(self, pod: str, namespace: str, tail_lines: int | None = None) -> str:
        """A pod's container output (the last `tail_lines` lines)."""
        query = [("tailLines", str(tail_lines))] if tail_lines else []
        path = self._path("Pod", namespace, pod) + "/log"

        def call() -> str:
            response = self.api.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
            return bytes(response.data).decode(errors="replace")

        try:
            return self._retrying(call)
        except ApiException as error:
            raise ClusterError(f"reading the log of {pod} failed: {_message(error)}") from error

    # -- rollout status -----------------------------------------------------------------

    def rollout_status(
        self,
        name: str,
        namespace: str,
        kind: str = workloads.DEPLOYMENT,
        progress_deadline_seconds: int | None = None,
    ) -> RolloutStatus:
        """progressing, complete or stalled (with the reason) for a release's workload. A
        Deployment keeps its own progress deadline; a LeaderWorkerSet has none, so the
        caller's (the spec's `progress_deadline_seconds`) is applied to it here."""
        workload = self.get(kind, name, namespace)
        if kind == workloads.LEADER_WORKER_SET:
            return self._group_status(workload, progress_deadline_seconds)
        return self._deployment_status(workload)

    def _deployment_status(self, deployment: Obj) -> RolloutStatus:
        spec, status = deployment["spec"], deployment.get("status") or {}
        desired = int(spec.get("replicas", 1))
        counts: dict[str, Any] = {
            "desired": desired,
            "updated": int(status.get("updatedReplicas", 0)),
            "available": int(status.get("availableReplicas", 0)),
            "ready": int(status.get("readyReplicas", 0)),
        }
        if not _observed(deployment):
            return RolloutStatus(
                "progressing", "waiting for the controller to see the change", **counts
            )
        progressing: Obj = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
        )
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            detail = self._pod_trouble(deployment) or progressing.get("message", "")
            return RolloutStatus("stalled", f"ProgressDeadlineExceeded: {detail}", **counts)
        trouble = self._pod_trouble(deployment, only_fatal=True)
        if trouble:
            waiting = trouble.startswith(UNSCHEDULABLE)
            return RolloutStatus("stalled", trouble, **counts, unschedulable=waiting)
        if (
            counts["updated"] >= desired
            and counts["available"] >= desired
            and int(status.get("replicas", 0)) == desired
        ):
            return RolloutStatus("complete", "all replicas updated and available", **counts)
        return RolloutStatus(
            "progressing",
            f"{counts['updated']} of {desired} updated, {counts['available']} available",
            **counts,
        )

    def _group_status(self, lws: Obj, deadline_seconds: int | None) -> RolloutStatus:
        """A LeaderWorkerSet's rollout, in groups: updatedReplicas and readyReplicas count
        groups (surge groups too) and `replicas` the groups created; done when the
        controller has seen the change, Available holds and no surge group is left (lws
        v0.10 leaderworkerset_controller.go, updateStatus and updateConditions).

        Stalled when a pod of any group cannot run (a worker's image, no node for a worker),
        or past `deadline_seconds` of Progressing. LWS has no progress deadline of its own,
        and a crash loop never shows as one: a restarting pod takes its group down and the
        group is created again with fresh pods (restartPolicy RecreateGroupOnPodRestart)."""
        status = lws.get("status") or {}
        desired = workloads.replicas(lws)
        ready = int(status.get("readyReplicas", 0))
        counts: dict[str, Any] = {
            "desired": desired,
            "updated": int(status.get("updatedReplicas", 0)),
            "available": ready,
            "ready": ready,
        }
        if not _observed(lws):
            return RolloutStatus(
                "progressing", "waiting for the controller to see the change", **counts
            )
        trouble = self._pod_trouble(lws, only_fatal=True)
        if trouble:
            waiting = trouble.startswith(UNSCHEDULABLE)
            return RolloutStatus("stalled", trouble, **counts, unschedulable=waiting)
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        if (
            conditions.get("Available", {}).get("status") == "True"
            and counts["updated"] >= desired
            and ready >= desired
            and int(status.get("replicas", 0)) == desired
        ):
            return RolloutStatus("complete", "all groups updated and ready", **counts)
        progressing = conditions.get("Progressing", {})
        since = _seconds_since(progressing.get("lastTransitionTime"))
        if (
            deadline_seconds is not None
            and progressing.get("status") == "True"
            and since is not None
            and since > deadline_seconds
        ):
            detail = self._pod_trouble(lws) or (
                "groups did not become ready (a pod that restarts has its group recreated)"
            )
            return RolloutStatus(
                "stalled",
                f"ProgressDeadlineExceeded: progressing for {since:.0f}s, over the "
                f"{deadline_seconds}s deadline: {detail}",
                **counts,
            )
        return RolloutStatus(
            "progressing",
            f"{counts['updated']} of {desired} groups updated, {ready} ready",
            **counts,
        )

    def _pod_trouble(self, workload: Obj, only_fatal: bool = False) -> str | None:
        """Why the newest pods do not become ready: pull errors, crash loops, no GPU — of
        any pod of the release (a LeaderWorkerSet's workers included)."""
        namespace = workload["metadata"]["namespace"]
        release = workloads.pods_release(workload)
        for pod in self.list_objects("Pod", namespace, workloads.pod_selector(workload)):
            labels = pod["metadata"].get("labels") or {}
            if release and labels.get(RELEASE) != release:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue
            status = pod.get("status") or {}
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                if reason == "ImagePullBackOff" or (reason == "ErrImagePull" and not only_fatal):
                    return f"{reason}: {waiting.get('message', container.get('image'))}"
                if reason == "CrashLoopBackOff" and int(container.get("restartCount", 0)) >= 2:
                    return (
                        f"CrashLoopBackOff: container {container['name']} of "
                        f"{pod['metadata']['name']} restarted {container['restartCount']} times"
                    )
            for condition in status.get("conditions") or []:
                if (
                    condition.get("type") == "PodScheduled"
                    and condition.get("reason") == "Unschedulable"
                ):
                    return f"{UNSCHEDULABLE}: {condition.get('message', '')}"
        return None

    # -- plumbing -----------------------------------------------------------------------

    def _path(self, kind: str, namespace: str | None, name: str | None) -> str:
        if kind not in KINDS:
            raise ClusterError(f"llm-rollout does not manage {kind} objects")
        prefix, plural, namespaced = KINDS[kind]
        path = prefix
        if namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{plural}"
        return f"{path}/{name}" if name else path

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Obj:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        response = self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,  # we parse JSON ourselves: plain dicts, no model classes
            _request_timeout=self.request_timeout,
        )
        raw = response.data
        parsed = json.loads(raw) if raw else {}
        return parsed if isinstance(parsed, dict) else {}

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call()
            except ApiException as error:
                if error.status not in RETRYABLE_STATUS or attempt == ATTEMPTS:
                    if error.status in RETRYABLE_STATUS:
                        raise ClusterUnavailable(
                            f"the Kubernetes API kept failing ({error.status} {error.reason}) "
                            f"after {ATTEMPTS} attempts; nothing more was changed"
                        ) from error
                    raise
                delay = _retry_after(error) or min(
                    self.backoff_seconds * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS
                )
            except (urllib3.exceptions.HTTPError, OSError) as error:
                if attempt == ATTEMPTS:
                    raise ClusterUnavailable(
                        f"cannot reach the Kubernetes API ({type(error).__name__}: {error}) after "
                        f"{ATTEMPTS} attempts; nothing more was changed"
                    ) from error
                delay = min(self.backoff_seconds * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS)
            log.warning(
                "Kubernetes API call failed (attempt %d of %d); retrying in %.1fs",
                attempt,
                ATTEMPTS,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")


def _observed(workload: Obj) -> bool:
    """Whether the workload's controller has seen its latest spec: status.observedGeneration
    (a LeaderWorkerSet's too, since lws v0.9: status.observedGeneration, kubernetes-sigs/lws
    #807)."""
    observed = int((workload.get("status") or {}).get("observedGeneration", 0))
    return observed >= int(workload["metadata"].get("generation", 1))


def _seconds_since(timestamp: str | None) -> float | None:
    """Seconds since an RFC 3339 timestamp of the API server, or None without one."""
    if not timestamp:
        return None
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError):
        return f"{error.status} {error.reason}"


def _field_conflicts(error: ApiException) -> list[tuple[str, str]]:
    """(owner as the API server names it, field) for each FieldManagerConflict cause."""
    try:
        causes = json.loads(error.body).get("details", {}).get("causes") or []
    except (TypeError, ValueError):
        return []
    return [
        (str(cause.get("message", "")).removeprefix("conflict with "), str(cause.get("field", "")))
        for cause in causes
        if cause.get("type") == "FieldManagerConflict"
    ]


def _manager_name(owner: str) -> str:
    """'"kubectl" with subresource "scale" using apps/v1' → 'kubectl'."""
    return owner.removeprefix('"').split('"')[0]


def _retry_after(error: ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After") if error.headers else None
    try:
        return float(value) if value else None
    except ValueError:
        return None
