"""The release lifecycle on a cluster: start a canary, promote it, abort it, roll out a
rolling release, and roll back to any recorded release, with the previous stable release
serving throughout.

Phases (Flagger-style, all state in the cluster so any process can pick up):
  canary started → (gate) → promoting → promoted | aborted;  rolling → (gate) → done | rolled back
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from k8s import labels as names
from k8s import manifests
from k8s.cluster import ClusterClient, FieldOwnershipConflict, NotFound, RolloutStatus
from k8s.history import History, ReleaseHistory, ReleaseRecord, UnknownRelease, new_record
from k8s.manifests import Manifest
from k8s.preflight import require_gpus, surge_pods
from k8s.release import Release
from k8s.validation import validate_objects
from spec import ReleaseSpec

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


@dataclass
class Lifecycle:
    """Drives one model's releases on a cluster."""

    cluster: ClusterClient
    spec: ReleaseSpec
    actor: str = ""  # recorded with each release it applies (e.g. the Dagster run id)

    @property
    def history(self) -> ReleaseHistory:
        return ReleaseHistory(self.cluster, self.spec)

    def stable_name(self) -> str:
        return names.deployment_name(self.spec, "stable")

    def canary_name(self) -> str:
        return names.deployment_name(self.spec, "canary")

    # -- starting a release -------------------------------------------------------------

    def start_canary(self, release: Release) -> ReleaseRecord:
        """Record the release and run it as a canary beside stable (stable untouched)."""
        canary = manifests.deployment(release, "canary", self.spec.rollout.canary_replicas)
        validate_objects([canary])
        running = self.cluster.find("Deployment", self.canary_name(), self.spec.namespace)
        pods = (
            self.spec.rollout.canary_replicas
            if not running or not running["spec"].get("replicas")
            else surge_pods(self.spec)
        )
        require_gpus(self.cluster, self.spec, pods, "the canary")
        self._apply_platform()
        record = self._record(release)
        self._apply_canary(canary)
        self.history.mark(canary=release.release_id)
        log.info("canary %s started for %s", release.release_id, self.spec.name)
        return record

    def start_rolling(self, release: Release) -> ReleaseRecord:
        """Record the release and roll the stable Deployment to it (no canary)."""
        require_gpus(self.cluster, self.spec, surge_pods(self.spec), "the rolling update")
        self._apply_platform()
        record = self._record(release)
        self._apply_record(record)
        return record

    def first_release(self, release: Release) -> ReleaseRecord:
        """Install a model that has no stable release yet: apply it as stable directly."""
        record = self.start_rolling(release)
        self.history.mark(stable=release.release_id)
        return record

    # -- deciding -----------------------------------------------------------------------

    def promote(
        self, on_poll: Callable[[RolloutStatus], None] | None = None, timeout: float | None = None
    ) -> RolloutStatus:
        """Roll stable to the canary's release (zero unavailable), then scale the canary to 0."""
        history = self.history.read()
        if history.canary is None:
            raise UnknownRelease(f"{self.spec.name} has no canary to promote")
        record = self._require(history, history.canary)
        require_gpus(self.cluster, self.spec, surge_pods(self.spec), "the promotion")
        self._apply_record(record)
        status = self.wait(self.stable_name(), on_poll, timeout)
        if status.phase != "complete":
            return status  # stalled: the caller rolls back; stable's old pods still serve
        self.history.mark(stable=record.release_id, clear_canary=True)
        self._scale_canary_down()
        return status

    def abort(self) -> None:
        """Stop the canary: scale it to 0. Stable is untouched."""
        self._scale_canary_down()
        self.history.mark(clear_canary=True)

    def rollback(
        self,
        release_id: str | None = None,
        on_poll: Callable[[RolloutStatus], None] | None = None,
        timeout: float | None = None,
    ) -> RolloutStatus:
        """Re-apply a recorded release (default: the last stable) exactly, and drop any canary.

        The pod template is identical to the recorded one, so the Deployment controller
        scales the old ReplicaSet back up instead of creating a new one.
        """
        history = self.history.read()
        target = release_id or history.stable
        if target is None:
            raise UnknownRelease(f"{self.spec.name} has no stable release to roll back to")
        record = self._require(history, target)
        self._scale_canary_down()
        self._apply_record(record)
        status = self.wait(self.stable_name(), on_poll, timeout)
        if status.phase == "complete":
            self.history.mark(stable=record.release_id, clear_canary=True)
        return status

    def wait(
        self,
        name: str,
        on_poll: Callable[[RolloutStatus], None] | None = None,
        timeout: float | None = None,
    ) -> RolloutStatus:
        """Poll a Deployment's rollout until it completes or stalls (or `timeout` passes)."""
        limit = timeout if timeout is not None else self.spec.rollout.progress_deadline_seconds + 60
        deadline = time.monotonic() + limit
        while True:
            status = self.cluster.rollout_status(name, self.spec.namespace)
            if on_poll:
                on_poll(status)
            if status.done or time.monotonic() > deadline:
                return status
            time.sleep(POLL_SECONDS)

    # -- internals ----------------------------------------------------------------------

    def _record(self, release: Release) -> ReleaseRecord:
        objects = [
            *manifests.platform_objects(self.spec),
            *manifests.release_objects(release, "stable"),
        ]
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

    def _apply_record(self, record: ReleaseRecord) -> None:
        for obj in record.manifests:
            self.cluster.apply(obj)

    def _require(self, history: History, release_id: str) -> ReleaseRecord:
        record = history.find(release_id)
        if record is None:
            known = ", ".join(r.release_id for r in history.releases) or "none"
            raise UnknownRelease(
                f"release {release_id} of {self.spec.name} is not in the history "
                f"(ConfigMap {self.spec.name}-releases in {self.spec.namespace}); known: {known}"
            )
        return record

    def _apply_canary(self, canary: Manifest) -> None:
        """Apply the canary Deployment, taking `spec.replicas` back from our own last scale.

        Promotion, abort and rollback stop the canary through /scale, which always succeeds
        (an update takes the fields it changes). The API server records that write as a
        manager of its own, (llm-rollout, Update, subresource scale), distinct from our
        apply (k8s.io/apimachinery managedfields/internal: BuildManagerIdentifier,
        scalehandler.go ToParent), so applying `replicas: N` over the 0 is a conflict
        (structured-merge-diff merge/update.go). That conflict is our own doing: take the
        field back deliberately with force. Any other conflict is someone's hand edit and is
        raised, never overwritten."""
        try:
            self.cluster.apply(canary)
        except FieldOwnershipConflict as conflict:
            if not conflict.only_replicas_scaled_by(self.cluster.field_manager):
                raise
            log.info("taking %s's replicas back from our own /scale", self.canary_name())
            self.cluster.apply(canary, force=True)

    def _scale_canary_down(self) -> None:
        with contextlib.suppress(NotFound):  # no canary yet: nothing to stop
            self.cluster.scale(self.canary_name(), self.spec.namespace, 0)
