"""The deploy lock of a model, kept in the cluster: one ConfigMap naming the run that is
changing the model's Deployments. It survives restarts of whatever launched the run, so two
processes (or a restarted orchestrator) can never drive the same model at once.

Taking it is a compare-and-swap on the ConfigMap's resourceVersion. A lock whose holder has
ended (the caller decides, e.g. from Dagster's run status) is taken over, with a log line.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.spec import ReleaseSpec

log = logging.getLogger(__name__)


class LockHeld(ClusterError):
    """Another live holder is changing this model."""

    def __init__(self, spec: ReleaseSpec, holder: LockHolder) -> None:
        self.holder = holder
        super().__init__(
            f"{spec.name} is being changed by {holder.holder} ({holder.purpose}, since "
            f"{holder.since}); wait for it to finish. If it is gone for good, delete ConfigMap "
            f"{lock_name(spec)} in {spec.namespace}."
        )


@dataclass(frozen=True)
class LockHolder:
    holder: str
    purpose: str
    since: str


def lock_name(spec: ReleaseSpec) -> str:
    return f"{spec.name}-deploy-lock"


class DeployLock:
    """Acquire/release the model's deploy lock."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    def holder(self) -> LockHolder | None:
        found = self.cluster.find("ConfigMap", lock_name(self.spec), self.spec.namespace)
        return _holder(found)

    def acquire(self, holder: str, purpose: str, is_gone: Callable[[str], bool]) -> None:
        """Take the lock for `holder`; raise LockHeld while another live holder has it.
        Re-acquiring one's own lock is a no-op."""
        # the lock lives in the model's namespace, which may not exist before its first release
        self.cluster.apply(manifests.namespace(self.spec))

        def take(current: dict[str, Any] | None) -> dict[str, Any]:
            held = _holder(current)
            if held and held.holder != holder:
                if not is_gone(held.holder):
                    raise LockHeld(self.spec, held)
                log.warning(
                    "taking over %s's lock on %s: it has ended", held.holder, self.spec.name
                )
            body: dict[str, Any] = current or manifests.model_config_map(
                self.spec, lock_name(self.spec)
            )
            body["data"] = {
                "holder": holder,
                "purpose": purpose,
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            return body

        self.cluster.update_with_retry("ConfigMap", lock_name(self.spec), self.spec.namespace, take)

    def release(self, holder: str) -> None:
        """Give the lock up if `holder` has it (never someone else's)."""

        def give(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise _NotHeld
            held = _holder(current)
            if held is None or held.holder != holder:
                raise _NotHeld
            current["data"] = {}
            return current

        with contextlib.suppress(_NotHeld):
            self.cluster.update_with_retry(
                "ConfigMap", lock_name(self.spec), self.spec.namespace, give
            )

    @contextlib.contextmanager
    def held(self, holder: str, purpose: str, is_gone: Callable[[str], bool]) -> Iterator[None]:
        """The lock for the duration of a block."""
        self.acquire(holder, purpose, is_gone)
        try:
            yield
        finally:
            self.release(holder)


class _NotHeld(Exception):
    """Internal: nothing to release."""


def _holder(config_map: dict[str, Any] | None) -> LockHolder | None:
    data = (config_map or {}).get("data") or {}
    if not data.get("holder"):
        return None
    return LockHolder(data["holder"], data.get("purpose", ""), data.get("since", ""))
