"""The LeaderWorkerSet controller (kubernetes-sigs/lws, API leaderworkerset.x-k8s.io/v1): a
replica is a group of `size` pods, a leader `<name>-<group>` and workers
`<name>-<group>-<index>`, created, replaced and counted ready together.

What it does as LWS v0.10 does (pkg/controllers, pkg/utils/pod/pod_utils.go):
- pod labels leaderworkerset.sigs.k8s.io/{name, group-index, worker-index, group-key,
  template-revision-hash}, the size annotation and, on workers, the leader-name annotation;
- env LWS_LEADER_ADDRESS (`<name>-<group>.<name>.<namespace>`), LWS_GROUP_SIZE and
  LWS_WORKER_INDEX in every container; `subdomain` set to the headless Service `<name>`;
- restartPolicy RecreateGroupOnPodRestart (the default): a pod of a group that restarts, fails
  or is deleted takes its whole group down, and the group is created again;
- a rolling update first adds `maxSurge` groups of the new template above `replicas`, then
  replaces old groups from the highest index down while at least `replicas - maxUnavailable`
  groups stay ready, and removes the surge groups once every group below is new and ready;
- a change of `replicas` alone (through /scale too) adds or removes groups at once, the
  highest indices first when scaling down, ready or not;
- status replicas, readyReplicas (groups whose every pod is Ready, surge groups included, as
  LWS' updateStatus counts them), updatedReplicas, hpaPodSelector, observedGeneration (in the
  status since LWS v0.9, kubernetes-sigs/lws #807, and on each condition) and the Available /
  Progressing / UpdateInProgress conditions.

What differs: the real controller manages leaders through a StatefulSet and each group's
workers through another; here the LWS owns its pods directly (names, labels and behaviour
are the same). Partition, subgroups, startupPolicy LeaderReady and the exclusive placement
annotation are not implemented.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.cluster.objects import (
    Obj,
    is_owned_by,
    iso,
    now,
    owner_reference,
    pod_is_ready,
    scaled_value,
    template_hash,
)
from sandbox.cluster.store import ApiError, ObjectStore

GROUP = "leaderworkerset.x-k8s.io"
PREFIX = "leaderworkerset.sigs.k8s.io"
NAME_LABEL = f"{PREFIX}/name"
GROUP_INDEX_LABEL = f"{PREFIX}/group-index"
WORKER_INDEX_LABEL = f"{PREFIX}/worker-index"
GROUP_KEY_LABEL = f"{PREFIX}/group-key"
REVISION_LABEL = f"{PREFIX}/template-revision-hash"
SIZE_ANNOTATION = f"{PREFIX}/size"
LEADER_NAME_ANNOTATION = f"{PREFIX}/leader-name"
RECREATE_GROUP = ("RecreateGroupOnPodRestart", "Default")
MANAGER = "sandbox-lws-controller"


class LeaderWorkerSetController:
    """Reconciles every LeaderWorkerSet in the store."""

    def __init__(self, store: ObjectStore, record_event: Any = None) -> None:
        self.store = store
        self.sets = store.resource(f"leaderworkersets.{GROUP}")
        self.pods = store.resource("pods")
        self.services = store.resource("services")
        self.record_event = record_event

    def reconcile(self) -> None:
        sets, _ = self.store.list(self.sets)
        pods, _ = self.store.list(self.pods)
        for lws in sets:
            try:
                self._reconcile(lws, [p for p in pods if is_owned_by(p, lws)])
            except ApiError as error:
                if error.code not in (404, 409):
                    raise

    def _reconcile(self, lws: Obj, pods: list[Obj]) -> None:
        spec = lws.get("spec") or {}
        template = spec.get("leaderWorkerTemplate") or {}
        size = int(template.get("size", 1))
        replicas = int(spec.get("replicas", 1))
        revision = template_hash(template)
        self._headless_service(lws)
        groups: dict[int, list[Obj]] = {}
        for pod in pods:
            groups.setdefault(int(pod["metadata"]["labels"][GROUP_INDEX_LABEL]), []).append(pod)
        recreate = template.get("restartPolicy", "RecreateGroupOnPodRestart") in RECREATE_GROUP
        rolling = (spec.get("rolloutStrategy") or {}).get("rollingUpdateConfiguration") or {}
        surge = scaled_value(rolling.get("maxSurge"), replicas, True, 0)
        max_unavailable = scaled_value(rolling.get("maxUnavailable"), replicas, False, 1)
        if surge == 0 and max_unavailable == 0:  # LWS' webhook refuses both 0
            max_unavailable = 1
        # a group with a terminating pod is going away: a StatefulSet creates a pod again
        # only once its namesake is gone, so the group is created again on a later pass
        going = {i for i, members in groups.items() if any(_terminating(p) for p in members)}
        outdated_before = any(
            _revision(members) != revision
            for i, members in groups.items()
            if i < replicas and i not in going
        )
        done = all(
            i in groups
            and i not in going
            and _revision(groups[i]) == revision
            and _group_ready(groups[i], size)
            for i in range(replicas)
        )
        # a rolling update adds maxSurge groups of the new template above `replicas` and
        # removes them once every group below is new and ready (LWS: "deleting surge replica").
        # Groups above `replicas` outside a rolling update are a scale down: they go at once,
        # ready or not (lws v0.10 leaderworkerset_controller.go rollingUpdateParameters: with
        # the rolling update completed the leader StatefulSet takes the LWS' replicas).
        updating = _condition_true(lws, "UpdateInProgress")
        surging = outdated_before or (updating and any(i >= replicas for i in groups) and not done)
        target = replicas + surge if surging else replicas
        for index in sorted(groups):
            members = groups[index]
            if index >= target:  # scaled down, or the surge is over: the highest groups go
                self._delete_group(lws, index, members, "scaled down")
                going.add(index)
            elif index in going:
                if recreate:
                    self._delete_group(lws, index, members, "a pod of the group is terminating")
            elif recreate and (why := _broken(members, size)):
                self._delete_group(lws, index, members, why)
                going.add(index)
        for index in range(target):
            if index not in groups:
                groups[index] = self._create_group(lws, index, size, revision)
        live = {i: m for i, m in groups.items() if i not in going}
        ready = [i for i, members in live.items() if _group_ready(members, size)]
        outdated = sorted(
            (i for i, members in live.items() if i < replicas and _revision(members) != revision),
            reverse=True,
        )
        if outdated:
            index = outdated[0]  # from the highest index down, as a StatefulSet rolls
            if len([i for i in ready if i != index]) >= replicas - max_unavailable:
                self._delete_group(lws, index, groups[index], "rolling update")
        self._update_status(lws, live, ready, revision, replicas, surging)

    def _create_group(self, lws: Obj, index: int, size: int, revision: str) -> list[Obj]:
        name, namespace = lws["metadata"]["name"], lws["metadata"]["namespace"]
        template = lws["spec"]["leaderWorkerTemplate"]
        leader_name = f"{name}-{index}"
        created = []
        for worker in range(size):
            source = template.get("leaderTemplate") if worker == 0 else None
            pod_template = copy.deepcopy(source or template["workerTemplate"])
            pod_name = leader_name if worker == 0 else f"{leader_name}-{worker}"
            metadata = pod_template.get("metadata") or {}
            annotations = {**(metadata.get("annotations") or {}), SIZE_ANNOTATION: str(size)}
            if worker:
                annotations[LEADER_NAME_ANNOTATION] = leader_name
            pod_spec = pod_template["spec"]
            pod_spec["subdomain"] = name
            pod_spec["hostname"] = pod_name
            variables = [
                {"name": "LWS_LEADER_ADDRESS", "value": f"{leader_name}.{name}.{namespace}"},
                {"name": "LWS_GROUP_SIZE", "value": str(size)},
                {"name": "LWS_WORKER_INDEX", "value": str(worker)},
            ]
            for container in pod_spec.get("containers") or []:
                have = {env["name"] for env in container.get("env") or []}
                container["env"] = [v for v in variables if v["name"] not in have] + (
                    container.get("env") or []
                )
            pod = {
                "metadata": {
                    "name": pod_name,
                    "labels": {
                        **(metadata.get("labels") or {}),
                        NAME_LABEL: name,
                        GROUP_INDEX_LABEL: str(index),
                        WORKER_INDEX_LABEL: str(worker),
                        GROUP_KEY_LABEL: f"{lws['metadata']['uid'][:8]}-{index}",
                        REVISION_LABEL: revision,
                    },
                    "annotations": annotations,
                    "ownerReferences": [owner_reference(lws)],
                },
                "spec": pod_spec,
                "status": {"phase": "Pending"},
            }
            created.append(self.store.create(self.pods, namespace, pod, MANAGER))
        self._event(lws, "Normal", "GroupsProgressing", f"Created group {leader_name}")
        return created

    def _delete_group(self, lws: Obj, index: int, members: list[Obj], why: str) -> None:
        deleted = 0
        for pod in members:
            if _terminating(pod):
                continue
            try:
                self.store.delete(self.pods, pod["metadata"]["namespace"], pod["metadata"]["name"])
                deleted += 1
            except ApiError as error:
                if error.code != 404:
                    raise
        if deleted:
            group = f"{lws['metadata']['name']}-{index}"
            self._event(lws, "Normal", "GroupsUpdating", f"Deleted group {group}: {why}")

    def _headless_service(self, lws: Obj) -> None:
        """The headless Service `<name>` that gives leaders their DNS names."""
        name, namespace = lws["metadata"]["name"], lws["metadata"]["namespace"]
        try:
            self.store.get(self.services, namespace, name)
            return
        except ApiError as error:
            if error.code != 404:
                raise
        service = {
            "metadata": {"name": name, "ownerReferences": [owner_reference(lws)]},
            "spec": {
                "clusterIP": "None",
                "selector": {NAME_LABEL: name},
                "publishNotReadyAddresses": True,
            },
        }
        self.store.create(self.services, namespace, service, MANAGER)

    def _update_status(
        self,
        lws: Obj,
        groups: dict[int, list[Obj]],
        ready: list[int],
        revision: str,
        replicas: int,
        updating: bool,
    ) -> None:
        """As LWS' updateStatus: ready and updated count every group, surge groups included;
        Available needs every group below `replicas` ready and updated."""
        name = lws["metadata"]["name"]
        updated = [i for i, members in groups.items() if _revision(members) == revision]
        previous = {c["type"]: c for c in (lws.get("status") or {}).get("conditions") or []}
        generation = lws["metadata"].get("generation", 1)
        available = not updating and all(i in ready and i in updated for i in range(replicas))
        conditions = [
            _condition(
                previous, "Available", available, "AllGroupsReady", "All replicas are ready"
            ),
            _condition(
                previous,
                "Progressing",
                not available,
                "GroupsProgressing",
                "Replicas are progressing",
            ),
            _condition(
                previous,
                "UpdateInProgress",
                updating,
                "GroupsUpdating",
                "Rolling Upgrade is in progress",
            ),
        ]
        for entry in conditions:
            entry["observedGeneration"] = generation
        status = {
            "replicas": len(groups),
            "readyReplicas": len(ready),
            "updatedReplicas": len(updated),
            "hpaPodSelector": f"{NAME_LABEL}={name},{WORKER_INDEX_LABEL}=0",
            "observedGeneration": generation,
            "conditions": conditions,
        }
        if lws.get("status") != status:
            live = self.store.get(self.sets, lws["metadata"]["namespace"], name)
            live["status"] = status
            self.store.replace(
                self.sets, lws["metadata"]["namespace"], name, live, subresource="status"
            )

    def _event(self, lws: Obj, kind: str, reason: str, message: str) -> None:
        if self.record_event is not None:
            self.record_event(lws, kind, reason, message, "lws-controller")


def _condition_true(lws: Obj, kind: str) -> bool:
    conditions = (lws.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _terminating(pod: Obj) -> bool:
    return "deletionTimestamp" in pod["metadata"]


def _broken(members: list[Obj], size: int) -> str | None:
    """Why a group must be recreated (a pod restarted, failed, went away), or None."""
    if len(members) < size:
        return "a pod of the group was deleted"
    for pod in members:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed":
            return f"pod {pod['metadata']['name']} failed"
        if any(c.get("restartCount", 0) > 0 for c in status.get("containerStatuses") or []):
            return f"pod {pod['metadata']['name']} restarted"
    return None


def _group_ready(members: list[Obj], size: int) -> bool:
    return len(members) == size and all(pod_is_ready(p) for p in members)


def _revision(members: list[Obj]) -> str | None:
    revisions = {p["metadata"]["labels"].get(REVISION_LABEL) for p in members}
    return revisions.pop() if len(revisions) == 1 else None


def _condition(previous: dict[str, Obj], kind: str, ok: bool, reason: str, message: str) -> Obj:
    status = "True" if ok else "False"
    before = previous.get(kind)
    moment = (
        before["lastTransitionTime"]
        if before is not None and before.get("status") == status
        else iso(now())
    )
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": moment,
    }
