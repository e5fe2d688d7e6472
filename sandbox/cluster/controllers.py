"""The Deployment and ReplicaSet controllers, with Kubernetes' rolling-update arithmetic:
a ReplicaSet per pod-template hash, maxSurge rounded up and maxUnavailable rounded down,
revision annotations, Progressing/Available conditions and ProgressDeadlineExceeded."""

from __future__ import annotations

import copy
import secrets
import string
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sandbox.cluster.objects import (
    REVISION,
    TEMPLATE_HASH,
    Obj,
    is_owned_by,
    iso,
    labels,
    now,
    owner_reference,
    parse_time,
    pod_is_ready,
    scaled_value,
    template_hash,
)
from sandbox.cluster.store import ApiError, ObjectStore

if TYPE_CHECKING:
    from sandbox.cluster.kubelet import EventRecorder

DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_HISTORY_LIMIT = 10
MANAGER = "sandbox-controller-manager"


class DeploymentController:
    """Reconciles every Deployment and ReplicaSet in the store, one pass at a time."""

    def __init__(self, store: ObjectStore, record_event: EventRecorder | None = None) -> None:
        self.store = store
        self.record_event = record_event
        self._deployment: Obj | None = None  # the Deployment being reconciled, for its Events
        self.deployments = store.resource("deployments.apps")
        self.replicasets = store.resource("replicasets.apps")
        self.pods = store.resource("pods")
        # per deployment uid: last observed progress tuple, to detect progress
        self._progress: dict[str, tuple[Any, ...]] = {}

    def reconcile(self) -> None:
        deployments, _ = self.store.list(self.deployments)
        replicasets, _ = self.store.list(self.replicasets)
        for deployment in deployments:
            if "deletionTimestamp" not in deployment["metadata"]:
                self._guard(self._reconcile_deployment, deployment, replicasets)
        replicasets, _ = self.store.list(self.replicasets)
        pods, _ = self.store.list(self.pods)
        for replicaset in replicasets:
            self._guard(self._reconcile_replicaset, replicaset, pods)

    @staticmethod
    def _guard(step: Any, *args: Any) -> None:
        try:
            step(*args)
        except ApiError as error:
            if error.code not in (404, 409):  # raced with a client: next pass sees the new state
                raise

    # -- Deployment ---------------------------------------------------------------------

    def _reconcile_deployment(self, deployment: Obj, all_replicasets: list[Obj]) -> None:
        self._deployment = deployment
        try:
            self._sync_deployment(deployment, all_replicasets)
        finally:
            self._deployment = None

    def _sync_deployment(self, deployment: Obj, all_replicasets: list[Obj]) -> None:
        namespace = deployment["metadata"]["namespace"]
        spec = deployment["spec"]
        desired = int(spec.get("replicas", 1))
        owned = [rs for rs in all_replicasets if is_owned_by(rs, deployment)]
        template = spec["template"]
        digest = template_hash(template)
        new = next((rs for rs in owned if labels(rs).get(TEMPLATE_HASH) == digest), None)
        old = [rs for rs in owned if rs is not new]
        max_revision = max(
            (int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) for rs in owned), default=0
        )
        created = False
        if new is None:
            new = self._create_replicaset(deployment, digest, max_revision + 1)
            created = True
        elif int(new["metadata"].get("annotations", {}).get(REVISION, 0)) < max_revision:
            # a rollback to an earlier template reuses its ReplicaSet under a new revision
            new["metadata"].setdefault("annotations", {})[REVISION] = str(max_revision + 1)
            new = self.store.replace(self.replicasets, namespace, new["metadata"]["name"], new)
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            self._recreate(new, old, desired)
        else:
            rolling = strategy.get("rollingUpdate") or {}
            surge = scaled_value(rolling.get("maxSurge"), desired, True, "25%")
            unavailable = scaled_value(rolling.get("maxUnavailable"), desired, False, "25%")
            if surge == 0 and unavailable == 0:
                unavailable = 1  # as Kubernetes does, so an update can progress
            self._rolling(new, old, desired, surge, unavailable)
        self._cleanup_history(deployment, old)
        self._update_status(deployment, digest, created)

    def _create_replicaset(self, deployment: Obj, digest: str, revision: int) -> Obj:
        template = copy.deepcopy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[TEMPLATE_HASH] = digest
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[TEMPLATE_HASH] = digest
        name = f"{deployment['metadata']['name']}-{digest}"
        replicaset = {
            "metadata": {
                "name": name,
                "labels": template["metadata"]["labels"],
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": 0,
                "selector": selector,
                "template": template,
                "minReadySeconds": deployment["spec"].get("minReadySeconds", 0),
            },
        }
        return self.store.create(
            self.replicasets, deployment["metadata"]["namespace"], replicaset, MANAGER
        )

    def _scale(self, replicaset: Obj, replicas: int) -> Obj:
        before = replicaset["spec"].get("replicas", 0)
        if before == replicas:
            return replicaset
        replicaset["spec"]["replicas"] = replicas
        scaled = self.store.replace(
            self.replicasets,
            replicaset["metadata"]["namespace"],
            replicaset["metadata"]["name"],
            replicaset,
        )
        if self.record_event and self._deployment is not None:
            # the Deployment controller's Event for every ReplicaSet scale
            # (kubernetes/pkg/controller/deployment/sync.go `scaleReplicaSet`)
            direction = "up" if replicas > before else "down"
            self.record_event(
                self._deployment,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {replicaset['metadata']['name']} from {before} "
                f"to {replicas}",
                "deployment-controller",
            )
        return scaled

    def _recreate(self, new: Obj, old: list[Obj], desired: int) -> None:
        for replicaset in old:
            self._scale(replicaset, 0)
        if all(rs.get("status", {}).get("replicas", 0) == 0 for rs in old):
            self._scale(new, desired)

    def _rolling(
        self, new: Obj, old: list[Obj], desired: int, surge: int, unavailable: int
    ) -> None:
        def spec_replicas(rs: Obj) -> int:
            return int(rs["spec"].get("replicas", 0))

        def available(rs: Obj) -> int:
            return int(rs.get("status", {}).get("availableReplicas", 0))

        # scale the new ReplicaSet up within maxSurge
        total = spec_replicas(new) + sum(spec_replicas(rs) for rs in old)
        if spec_replicas(new) > desired:
            new = self._scale(new, desired)
        elif spec_replicas(new) < desired:
            room = desired + surge - total
            if room > 0:
                new = self._scale(new, spec_replicas(new) + min(room, desired - spec_replicas(new)))
        # scale old ReplicaSets down without going below desired - maxUnavailable available
        old = [rs for rs in old if spec_replicas(rs) > 0]
        if not old:
            return
        min_available = desired - unavailable
        all_pods = spec_replicas(new) + sum(spec_replicas(rs) for rs in old)
        new_unavailable = spec_replicas(new) - available(new)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return
        oldest_first = sorted(old, key=lambda rs: rs["metadata"]["creationTimestamp"])
        for replicaset in oldest_first:  # unhealthy old replicas go first: they serve nobody
            unhealthy = spec_replicas(replicaset) - available(replicaset)
            cut = min(budget, max(unhealthy, 0))
            if cut > 0:
                self._scale(replicaset, spec_replicas(replicaset) - cut)
                budget -= cut
        total_available = available(new) + sum(available(rs) for rs in old)
        budget = min(budget, total_available - min_available)
        for replicaset in oldest_first:
            if budget <= 0:
                break
            cut = min(budget, spec_replicas(replicaset))
            self._scale(replicaset, spec_replicas(replicaset) - cut)
            budget -= cut

    def _cleanup_history(self, deployment: Obj, old: list[Obj]) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT)
        idle = [
            rs
            for rs in old
            if rs["spec"].get("replicas", 0) == 0 and rs.get("status", {}).get("replicas", 0) == 0
        ]
        idle.sort(key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, 0)))
        for replicaset in idle[: max(0, len(idle) - limit)]:
            self.store.delete(
                self.replicasets,
                replicaset["metadata"]["namespace"],
                replicaset["metadata"]["name"],
            )

    def _update_status(self, deployment: Obj, digest: str, created: bool) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        live = self.store.get(self.deployments, namespace, name)
        if live["metadata"].get("generation") != deployment["metadata"].get("generation"):
            # A client changed the spec during this pass: a status written now would claim the
            # new generation with the old template's counts (a rollout "complete" before it
            # began). Kubernetes' controller gets a conflict here; the next pass starts over.
            return
        replicasets, _ = self.store.list(self.replicasets, namespace)
        owned = [rs for rs in replicasets if is_owned_by(rs, live)]
        new = next((rs for rs in owned if labels(rs).get(TEMPLATE_HASH) == digest), None)
        desired = int(live["spec"].get("replicas", 1))

        def total(field: str) -> int:
            return sum(int(rs.get("status", {}).get(field, 0)) for rs in owned)

        status: Obj = {
            "observedGeneration": live["metadata"].get("generation", 1),
            "replicas": total("replicas"),
            "updatedReplicas": int((new or {}).get("status", {}).get("replicas", 0)),
            "readyReplicas": total("readyReplicas"),
            "availableReplicas": total("availableReplicas"),
            "unavailableReplicas": max(desired - total("availableReplicas"), 0),
        }
        rolling = (live["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = scaled_value(rolling.get("maxUnavailable"), desired, False, "25%")
        moment = iso(now())
        previous = {c["type"]: c for c in live.get("status", {}).get("conditions") or []}
        available_ok = status["availableReplicas"] >= desired - unavailable
        conditions = [
            _condition(
                previous.get("Available"),
                "Available",
                available_ok,
                "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available_ok
                else "Deployment does not have minimum availability.",
                moment,
            ),
        ]
        rs_name = (new or {}).get("metadata", {}).get("name", name)
        complete = (
            status["updatedReplicas"] == desired
            and status["availableReplicas"] >= desired
            and status["replicas"] == desired
        )
        progress_key = (
            live["metadata"].get("generation"),
            status["replicas"],
            status["updatedReplicas"],
            status["readyReplicas"],
            status["availableReplicas"],
        )
        uid = live["metadata"]["uid"]
        progressed = created or self._progress.get(uid) != progress_key
        self._progress[uid] = progress_key
        old_progress = previous.get("Progressing")
        deadline = int(live["spec"].get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE))
        if complete:
            progressing = _condition(
                old_progress,
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                moment,
                touch=progressed,
            )
        elif progressed or old_progress is None:
            reason = "NewReplicaSetCreated" if created else "ReplicaSetUpdated"
            progressing = _condition(
                old_progress,
                "Progressing",
                True,
                reason,
                f'ReplicaSet "{rs_name}" is progressing.',
                moment,
                touch=True,
            )
        elif old_progress.get("reason") != "ProgressDeadlineExceeded" and now() - parse_time(
            old_progress["lastUpdateTime"]
        ) > timedelta(seconds=deadline):
            progressing = _condition(
                old_progress,
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                moment,
                touch=True,
            )
        else:
            progressing = old_progress
        conditions.append(progressing)
        status["conditions"] = conditions
        revision = (new or {}).get("metadata", {}).get("annotations", {}).get(REVISION)
        if revision and live["metadata"].get("annotations", {}).get(REVISION) != revision:
            live["metadata"].setdefault("annotations", {})[REVISION] = revision
            live = self.store.replace(self.deployments, namespace, name, live)
        if live.get("status") != status:
            live["status"] = status
            self.store.replace(self.deployments, namespace, name, live, subresource="status")

    # -- ReplicaSet ---------------------------------------------------------------------

    def _reconcile_replicaset(self, replicaset: Obj, all_pods: list[Obj]) -> None:
        namespace = replicaset["metadata"]["namespace"]
        pods = [p for p in all_pods if is_owned_by(p, replicaset)]
        alive = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
        wanted = int(replicaset["spec"].get("replicas", 0))
        if len(alive) < wanted:
            for _ in range(wanted - len(alive)):
                self._create_pod(replicaset)
            alive = self._alive_pods(replicaset)
        elif len(alive) > wanted:
            # delete the least useful first: unscheduled, then not ready, then the newest
            ranked = sorted(
                alive,
                key=lambda p: (
                    bool(p["spec"].get("nodeName")),
                    pod_is_ready(p),
                    _negated(p["metadata"]["creationTimestamp"]),
                ),
            )
            for pod in ranked[: len(alive) - wanted]:
                self.store.delete(self.pods, namespace, pod["metadata"]["name"])
            alive = self._alive_pods(replicaset)
        ready = sum(1 for p in alive if pod_is_ready(p))
        status = {
            "replicas": len(alive),
            "fullyLabeledReplicas": len(alive),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": replicaset["metadata"].get("generation", 1),
        }
        live = self.store.get(self.replicasets, namespace, replicaset["metadata"]["name"])
        if live.get("status") != status:
            live["status"] = status
            self.store.replace(
                self.replicasets, namespace, live["metadata"]["name"], live, subresource="status"
            )

    def _alive_pods(self, replicaset: Obj) -> list[Obj]:
        pods, _ = self.store.list(self.pods, replicaset["metadata"]["namespace"])
        return [
            p
            for p in pods
            if is_owned_by(p, replicaset) and "deletionTimestamp" not in p["metadata"]
        ]

    def _create_pod(self, replicaset: Obj) -> None:
        template = copy.deepcopy(replicaset["spec"]["template"])
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        pod = {
            "metadata": {
                "name": f"{replicaset['metadata']['name']}-{suffix}",
                "labels": template.get("metadata", {}).get("labels", {}),
                "annotations": template.get("metadata", {}).get("annotations", {}),
                "ownerReferences": [owner_reference(replicaset)],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.store.create(self.pods, replicaset["metadata"]["namespace"], pod, MANAGER)


def _condition(
    previous: Obj | None,
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    moment: str,
    touch: bool = False,
) -> Obj:
    status = "True" if ok else "False"
    transitioned = previous is None or previous.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": moment
        if (touch or transitioned or previous is None or previous.get("reason") != reason)
        else previous["lastUpdateTime"],
        "lastTransitionTime": moment if transitioned else previous["lastTransitionTime"],
    }


def _negated(timestamp: str) -> str:
    """Sort key making newer timestamps come first."""
    return "".join(chr(255 - ord(c)) for c in timestamp)
