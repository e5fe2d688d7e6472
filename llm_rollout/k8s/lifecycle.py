"""The release lifecycle on a cluster: one workload per release, and releases replacing
each other by scaling those workloads — never by rewriting a pod template. A release's
workload is its Deployment, or its LeaderWorkerSet when a replica is a group of pods on
several nodes (k8s.workloads); below, "Deployment" stands for either, and for a
LeaderWorkerSet a replica is a whole group.

  canary     the new release's Deployment at `canary_replicas`, beside stable
  promote    scale the canary's Deployment up to `replicas` and the old release's down, step
             by step: never fewer than `replicas` pods available in total, never more than
             `max_surge` pods above it, never more new pods than free GPUs; the canary's
             loaded pods become stable (Argo Rollouts does the same with its ReplicaSets)
  rolling    the same shift, from a new Deployment at zero (no canary phase)
  abort      scale the canary's Deployment to zero
  rollback   the shift back to a recorded release: its Deployment scaled up again if it is
             retained, created exactly from the history if not

Every step is a fact in the cluster (replicas of labelled Deployments), so any process can
pick up a shift where another stopped. Models installed by earlier versions (two fixed
Deployments, '<model>' and '<model>-canary') are shifted away from like any other release
and their Deployments removed once at zero.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import manifests, router_manifests, workloads
from llm_rollout.k8s.cluster import ClusterClient, FieldOwnershipConflict, NotFound, RolloutStatus
from llm_rollout.k8s.history import (
    History,
    ReleaseHistory,
    ReleaseRecord,
    UnknownRelease,
    new_record,
)
from llm_rollout.k8s.leaderworkerset import group_size
from llm_rollout.k8s.manifests import Manifest
from llm_rollout.k8s.preflight import gpu_capacity, placeable_replicas, require_gpus
from llm_rollout.k8s.release import Release
from llm_rollout.k8s.router_traffic import RouterTraffic
from llm_rollout.k8s.validation import validate_objects
from llm_rollout.spec import ReleaseSpec

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0

Poll = Callable[[RolloutStatus], None]


@dataclass
class Lifecycle:
    """Drives one model's releases on a cluster."""

    cluster: ClusterClient
    spec: ReleaseSpec
    actor: str = ""  # recorded with each release it applies (e.g. the Dagster run id)
    poll_seconds: float = POLL_SECONDS
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def history(self) -> ReleaseHistory:
        return ReleaseHistory(self.cluster, self.spec)

    @property
    def traffic(self) -> RouterTraffic:
        """The model's router config and release Services (no-ops without `routing:`)."""
        return RouterTraffic(self.cluster, self.spec)

    def workload_name(self, release_id: str) -> str:
        return names.workload_name(self.spec, release_id)

    def workloads(self) -> list[Manifest]:
        """Every Deployment (and LeaderWorkerSet) of the model: one per retained release (and,
        before the first release after an upgrade, the two fixed Deployments of earlier
        versions)."""
        selector = names.model_selector(self.spec)
        return [
            workload
            for kind in workloads.kinds_for(self.spec)
            for workload in self.cluster.list_objects(kind, self.spec.namespace, selector)
        ]

    def workload(self, release_id: str) -> Manifest | None:
        """The release's workload, of whichever kind it runs as, or None."""
        name = self.workload_name(release_id)
        for kind in workloads.kinds_for(self.spec):
            found = self.cluster.find(kind, name, self.spec.namespace)
            if found is not None:
                return found
        return None

    # -- starting a release -------------------------------------------------------------

    def start_canary(self, release: Release) -> ReleaseRecord:
        """Record the release and run its Deployment at `canary_replicas` beside stable."""
        replicas = self.spec.rollout.canary_replicas
        canary = manifests.workload(release, replicas)
        validate_objects([canary])
        running = self.cluster.find(canary["kind"], canary["metadata"]["name"], self.spec.namespace)
        if not running or workloads.replicas(running) < replicas:
            require_gpus(self.cluster, self.spec, replicas, "the canary")
        self._apply_platform()
        record = self._record(release)
        self._apply_release(canary)
        self._label_track(canary, "canary")
        history = self.history.mark(canary=release.release_id)
        self.traffic.ensure(history.stable)  # the canary's share is the controller's to give
        log.info("canary %s started for %s", release.release_id, self.spec.name)
        return record

    def first_release(self, release: Release) -> ReleaseRecord:
        """Install a model that has no stable release yet: its Deployment at full size
        (the caller waits for it)."""
        replicas = self._target_replicas()
        workload = manifests.workload(release, replicas)
        validate_objects([workload])
        require_gpus(self.cluster, self.spec, replicas, "the first release")
        self._apply_platform()
        record = self._record(release)
        self._apply_release(workload)
        self._label_track(workload, "stable")
        self._apply_autoscaler(release.release_id)
        self.history.mark(stable=release.release_id)
        self.traffic.follow(default=release.release_id)
        return record

    def roll(
        self, release: Release, on_poll: Poll | None = None, timeout: float | None = None
    ) -> RolloutStatus:
        """The rolling strategy: record the release and shift the model to it from zero
        (no canary phase); stable once every replica is available."""
        workload = manifests.workload(release, 0)
        validate_objects([workload])
        surge = _pods(self.spec.rollout.max_surge, self.spec.replicas, round_up=True)
        if surge and not _pods(self.spec.rollout.max_unavailable, self.spec.replicas, False):
            require_gpus(self.cluster, self.spec, surge, "the rolling update")
        self._apply_platform()
        self._record(release)
        self._apply_release(workload)
        self._label_track(workload, "canary")
        status = self.shift(release.release_id, on_poll, timeout)
        if status.phase == "complete":
            self._settle(release.release_id)
        return status

    # -- deciding -----------------------------------------------------------------------

    def promote(self, on_poll: Poll | None = None, timeout: float | None = None) -> RolloutStatus:
        """Scale the canary's Deployment up to full size and the old release's down; the
        canary's pods keep serving, now as stable."""
        history = self.history.read()
        if history.canary is None:
            raise UnknownRelease(f"{self.spec.name} has no canary to promote")
        self._require(history, history.canary)
        if self.workload(history.canary) is None:
            raise UnknownRelease(
                f"the canary {history.canary} of {self.spec.name} has no workload "
                f"({self.workload_name(history.canary)}) to promote"
            )
        status = self.shift(history.canary, on_poll, timeout)
        if status.phase == "complete":
            self._settle(history.canary)
        return status  # not complete: the caller rolls back; the old release still serves

    def abort(self) -> None:
        """Stop the canary: its Deployment to zero (kept, for an exact relaunch). Stable is
        untouched."""
        history = self.history.read()
        canary = self.workload(history.canary) if history.canary else None
        if canary is not None and history.canary != history.stable:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                self._scale(canary["kind"], canary["metadata"]["name"], 0)
        self.history.mark(clear_canary=True)
        self.traffic.follow(default=history.stable)

    def rollback(
        self,
        release_id: str | None = None,
        on_poll: Poll | None = None,
        timeout: float | None = None,
    ) -> RolloutStatus:
        """Shift the model back to a recorded release (default: the last stable), dropping
        any canary. A retained Deployment is scaled back up as it is; one no longer there is
        created from the history exactly (same pod template, so the same pods)."""
        history = self.history.read()
        target = release_id or history.stable
        if target is None:
            raise UnknownRelease(f"{self.spec.name} has no stable release to roll back to")
        record = self._require(history, target)
        if self.workload(target) is None:
            router = router_manifests.router_name(self.spec)
            recorded = next(
                m
                for m in record.manifests
                if m["kind"] in (workloads.DEPLOYMENT, workloads.LEADER_WORKER_SET)
                and m["metadata"]["name"] != router
            )
            restored = manifests.versioned(recorded, self.spec)
            restored["spec"]["replicas"] = 0
            self._apply_release(restored)
        status = self.shift(target, on_poll, timeout)
        if status.phase == "complete":
            self._settle(target)
        return status

    # -- the shift ------------------------------------------------------------------------

    def shift(
        self, release_id: str, on_poll: Poll | None = None, timeout: float | None = None
    ) -> RolloutStatus:
        """Move the model's serving pods to `release_id`'s Deployment, step by step.

        Each poll: the other releases keep as many replicas as the new one lacks available
        (less `max_unavailable`), and the new one grows to at most `max_surge` pods above
        the target in total and to no more pods than free GPUs take. Autoscaling is paused
        (the HPA removed) for the shift and moves to the new release when it completes
        (`_settle`): an HPA scaling the old release back up would fight every step.
        Returns the new Deployment's status: complete, stalled (it cannot become ready, or
        the shift outlived the progress deadline), or progressing at `timeout`."""
        name = self.workload_name(release_id)
        found = self.workload(release_id)
        if found is None:
            raise NotFound(f"{name} not found in {self.spec.namespace}: nothing to shift to")
        kind = found["kind"]
        target = self._target_replicas()
        surge = _pods(self.spec.rollout.max_surge, target, round_up=True)
        unavailable = _pods(self.spec.rollout.max_unavailable, target, round_up=False)
        if surge == 0 and unavailable == 0:
            surge = 1  # validated against elsewhere; never a shift that cannot move
        if self.spec.autoscaling:
            with contextlib.suppress(NotFound):
                self.cluster.delete("HorizontalPodAutoscaler", self.spec.name, self.spec.namespace)
        for status, expired in self._polls(name, on_poll, timeout, kind):
            if status.phase == "stalled" and not status.unschedulable:
                return status
            model = self.workloads()
            others = [
                w for w in model if w["metadata"]["name"] != name and workloads.replicas(w) > 0
            ]
            ready = min(status.available, status.updated)
            keep = max(0, target - unavailable - ready)
            others_total = self._scale_others_down(others, keep)
            # pods scaled down still hold their GPUs while they drain: count them against
            # the surge until they are gone
            holding = max(others_total, self._replicas_of_others(release_id, model))
            grown = self._grow(kind, name, status.desired, target, surge, holding)
            self.traffic.follow()  # the router's weights follow the serving pods
            if (
                grown == status.desired == target
                and others_total == 0
                and status.phase == "complete"
            ):
                return status
            if expired:
                waiting = (
                    self._no_room()
                    if grown < target and grown == status.desired and status.phase == "complete"
                    else status.reason
                )
                return RolloutStatus(
                    "stalled",
                    f"the shift to {release_id} did not finish in "
                    f"{self._limit(timeout):.0f}s: {waiting}",
                    status.desired,
                    status.updated,
                    status.available,
                    status.ready,
                )
        raise AssertionError("unreachable")

    def _replicas_of_others(self, release_id: str, model: list[Manifest]) -> int:
        """Replicas of the model's other releases that still hold their nodes' resources
        (running, starting or terminating): a pod each, or a group of pods each for a
        LeaderWorkerSet — counted while any pod of the group is left. Workers lack the
        model's labels (the Service must not select them): a pod is the model's by its
        release label."""
        releases = {release_of(w) for w in model} - {release_id}
        held = {
            _replica_key(pod)
            for pod in self.cluster.list_objects("Pod", self.spec.namespace, names.RELEASE)
            if _labels(pod).get(names.RELEASE) != release_id
            and (
                _labels(pod).get(names.RELEASE) in releases
                or _labels(pod).get("app.kubernetes.io/name") == self.spec.name
            )
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        }
        return len(held)

    def _scale_others_down(self, others: list[Manifest], keep: int) -> int:
        """Scale the other releases to `keep` replicas in total, newest kept longest; their
        replicas after."""
        total = sum(workloads.replicas(d) for d in others)
        excess = total - keep
        for workload in sorted(others, key=_created):  # oldest release first
            if excess <= 0:
                break
            current = workloads.replicas(workload)
            lower = max(0, current - excess)
            self._scale(workload["kind"], workload["metadata"]["name"], lower)
            excess -= current - lower
            total -= current - lower
        return total

    def _grow(
        self, kind: str, name: str, desired: int, target: int, surge: int, others: int
    ) -> int:
        """Scale the new release towards `target` within the surge and the free GPUs (a
        multi-node replica only once its whole group can be placed)."""
        want = min(target, max(0, target + surge - others))
        if want <= desired:
            if desired > target:  # more canary replicas than the model runs
                self._scale(kind, name, target)
                return target
            return desired
        if self.spec.resources.gpus:
            free = placeable_replicas(gpu_capacity(self.cluster, self.spec), self.spec)
            want = min(want, desired + free)
        if want > desired:
            self._scale(kind, name, want)
            log.info("%s: %d → %d replicas", name, desired, want)
        return max(want, desired)

    def _target_replicas(self) -> int:
        """Replicas the stable release runs: the spec's, or with autoscaling the level the
        HPA left the model at (the largest release Deployment), within its bounds."""
        scaling = self.spec.autoscaling
        if scaling is None:
            return self.spec.replicas
        current = max((workloads.replicas(d) for d in self.workloads()), default=scaling.min)
        return min(scaling.max, max(scaling.min, current))

    def _settle(self, release_id: str) -> None:
        """After a completed shift: `release_id` is stable, its autoscaler back, every other
        Deployment labelled idle, and what retention no longer keeps deleted."""
        history = self.history.mark(stable=release_id, clear_canary=True)
        self._apply_autoscaler(release_id)
        keep = {release_id} | {
            r.release_id for r in history.releases[-(self.spec.rollout.retained_releases + 1) :]
        }
        for workload in self.workloads():
            name = workload["metadata"]["name"]
            release = release_of(workload)
            if name == self.workload_name(release_id):
                self._label_track(workload, "stable")
                continue
            legacy = name in names.legacy_deployment_names(self.spec)
            if workloads.replicas(workload) == 0 and (legacy or release not in keep):
                log.info("removing %s (beyond the %d retained releases)", name, len(keep) - 1)
                with contextlib.suppress(NotFound):
                    self.cluster.delete(workload["kind"], name, self.spec.namespace)
                if not legacy:
                    self.traffic.remove_release(release)
            elif not legacy:
                self._label_track(workload, "idle")
        self.traffic.follow(default=release_id)

    # -- internals ----------------------------------------------------------------------

    def wait(
        self, name: str, on_poll: Poll | None = None, timeout: float | None = None
    ) -> RolloutStatus:
        """Poll a new release's rollout (its workload of the spec's kind) until it completes
        or stalls (or `timeout` passes)."""
        kind = workloads.kind_for(self.spec)
        for status, expired in self._polls(name, on_poll, timeout, kind):
            if status.done or expired:
                return status
        raise AssertionError("unreachable")

    def _polls(
        self, name: str, on_poll: Poll | None, timeout: float | None, kind: str
    ) -> Iterator[tuple[RolloutStatus, bool]]:
        """A workload's rollout status every `poll_seconds` (each shown to `on_poll`), and
        whether `timeout` (default: the progress deadline and a minute) has passed."""
        deadline = time.monotonic() + self._limit(timeout)
        while True:
            status = self.cluster.rollout_status(
                name, self.spec.namespace, kind, self.spec.rollout.progress_deadline_seconds
            )
            if on_poll:
                on_poll(status)
            yield status, time.monotonic() > deadline
            self.sleep(self.poll_seconds)

    def _limit(self, timeout: float | None) -> float:
        return timeout if timeout is not None else self.spec.rollout.progress_deadline_seconds + 60

    def _record(self, release: Release) -> ReleaseRecord:
        objects = [*manifests.platform_objects(self.spec), *manifests.release_objects(release)]
        validate_objects(objects)
        record = new_record(
            release.release_id,
            release.weights_commit,
            release.image,
            objects,
            self.actor,
            release.spec.serving.vllm_version,
        )
        self.history.record(record)
        return record

    def _apply_platform(self) -> None:
        for obj in manifests.platform_objects(self.spec):
            self.cluster.apply(obj)

    def _apply_autoscaler(self, release_id: str) -> None:
        hpa = manifests.autoscaler(self.spec, release_id)
        if hpa:
            self.cluster.apply(hpa)

    def _require(self, history: History, release_id: str) -> ReleaseRecord:
        record = history.find(release_id)
        if record is None:
            known = ", ".join(r.release_id for r in history.releases) or "none"
            raise UnknownRelease(
                f"release {release_id} of {self.spec.name} is not in the history "
                f"(ConfigMap {self.spec.name}-releases in {self.spec.namespace}); known: {known}"
            )
        return record

    def _apply_release(self, workload: Manifest) -> None:
        """Apply a release's workload, taking `spec.replicas` back from our own last scale.

        Shifts scale Deployments through /scale, which always succeeds (an update takes the
        fields it changes). The API server records that write as a manager of its own,
        (llm-rollout, Update, subresource scale), distinct from our apply
        (k8s.io/apimachinery managedfields/internal: BuildManagerIdentifier, scalehandler.go
        ToParent), so applying `replicas: N` over it is a conflict (structured-merge-diff
        merge/update.go). That conflict is our own doing: take the field back deliberately
        with force. Any other conflict is someone's hand edit and is raised, never
        overwritten."""
        try:
            self.cluster.apply(workload)
        except FieldOwnershipConflict as conflict:
            if not conflict.only_replicas_scaled_by(self.cluster.field_manager):
                raise
            log.info("taking %s's replicas back from our own /scale", workload["metadata"]["name"])
            self.cluster.apply(workload, force=True)
        self.traffic.add_release(release_of(workload))  # its Service, for the router

    def _scale(self, kind: str, name: str, replicas: int) -> None:
        self.cluster.scale(name, self.spec.namespace, replicas, kind)

    def _no_room(self) -> str:
        """Why the next replica waits: no node with its GPUs, or no nodes for its group."""
        size, gpus = group_size(self.spec), self.spec.resources.gpus
        if size == 1:
            return f"no free GPU for the next pod ({gpus} needed)"
        return f"no free GPUs for the next group ({size} nodes × {gpus // size} needed)"

    def _label_track(self, workload: Manifest, track: str) -> None:
        """The workload's track label (a merge patch of its metadata: no pod changes)."""
        with contextlib.suppress(NotFound):
            self.cluster.merge_patch(
                workload["kind"],
                workload["metadata"]["name"],
                self.spec.namespace,
                {"metadata": {"labels": {names.TRACK: track}}},
            )


def _labels(obj: Manifest) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _replica_key(pod: Manifest) -> str:
    """The replica a pod is part of: its LeaderWorkerSet group, or the pod itself."""
    return _labels(pod).get(workloads.LWS_GROUP_KEY_LABEL) or pod["metadata"]["name"]


def _created(deployment: Manifest) -> str:
    return str(deployment["metadata"].get("creationTimestamp", ""))


def _pods(value: int | str, replicas: int, round_up: bool) -> int:
    """maxSurge / maxUnavailable as pods: n, or n% of `replicas` (surge rounded up,
    unavailable down, as the Deployment controller does: deployment/util
    ResolveFenceposts)."""
    if isinstance(value, str):
        share = int(value.rstrip("%")) * replicas
        return -(-share // 100) if round_up else share // 100
    return value


def release_of(workload: dict[str, Any]) -> str:
    """The release a workload of the model runs (its label)."""
    return str((workload["metadata"].get("labels") or {}).get(names.RELEASE, ""))
