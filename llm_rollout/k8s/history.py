"""Release history in the cluster: one ConfigMap per model holding every applied release's
full manifests and which release is stable. Any recorded release can be re-applied exactly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.spec import ReleaseSpec

# Releases kept; the stable one is never dropped. A ConfigMap holds at most 1 MiB and a
# release's manifests take a few KiB.
KEEP_RELEASES = 20
DATA_KEY = "releases.json"


class UnknownRelease(ClusterError):
    """A release id that is not in the model's history."""


@dataclass(frozen=True)
class ReleaseRecord:
    """One applied release: what it was made of and the exact objects applied."""

    release_id: str
    weights_commit: str
    image: str
    recorded_at: str
    manifests: list[dict[str, Any]]
    recorded_by: str = ""  # who applied it (a Dagster run id): "did this run touch the cluster?"
    vllm_version: str = ""  # what its pods run: the gate queries each track by its names
    # why the controller rolled it back, if it did: not launched again automatically
    rejected: str = ""
    # people's decisions about it: "<when> <action> by <who>: <reason>"
    decisions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class History:
    """A model's recorded releases (oldest first) and the stable and canary ones."""

    releases: list[ReleaseRecord]
    stable: str | None
    canary: str | None

    def find(self, release_id: str) -> ReleaseRecord | None:
        return next((r for r in self.releases if r.release_id == release_id), None)

    def previous_stable(self) -> ReleaseRecord | None:
        return self.find(self.stable) if self.stable else None

    def recorded_by(self, actor: str) -> list[ReleaseRecord]:
        """The releases `actor` recorded (before applying anything of them)."""
        return [r for r in self.releases if actor and r.recorded_by == actor]


def config_map_name(spec: ReleaseSpec) -> str:
    return f"{spec.name}-releases"


class ReleaseHistory:
    """Reads and writes a model's history ConfigMap (optimistic concurrency, retried)."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    def read(self) -> History:
        found = self.cluster.find("ConfigMap", config_map_name(self.spec), self.spec.namespace)
        return _parse(found)

    def record(self, record: ReleaseRecord) -> History:
        """Add (or refresh) a release, keeping the newest `KEEP_RELEASES` and the stable."""

        def change(history: History) -> History:
            earlier = history.find(record.release_id)
            releases = [r for r in history.releases if r.release_id != record.release_id]
            # launched again (by hand): the rejection no longer holds, people's words do
            releases.append(replace(record, decisions=earlier.decisions) if earlier else record)
            removable = [r for r in releases if r.release_id != history.stable]
            overflow = max(0, len(releases) - KEEP_RELEASES)
            dropped = {r.release_id for r in removable[:overflow]}  # oldest first
            trimmed = [r for r in releases if r.release_id not in dropped]
            return History(trimmed, history.stable, history.canary)

        return self._update(change)

    def mark(
        self, stable: str | None = None, canary: str | None = None, clear_canary: bool = False
    ) -> History:
        """Set which release is stable and/or canary."""

        def change(history: History) -> History:
            for release_id in (stable, canary):
                if release_id and history.find(release_id) is None:
                    raise UnknownRelease(f"release {release_id} is not in the history")
            return History(
                history.releases,
                stable or history.stable,
                None if clear_canary else (canary or history.canary),
            )

        return self._update(change)

    def annotate(
        self, release_id: str, rejected: str | None = None, decision: str | None = None
    ) -> History:
        """Record on a release why it was rolled back, or a person's decision about it."""

        def change(history: History) -> History:
            releases = []
            for r in history.releases:
                if r.release_id == release_id:
                    stamp = datetime.now(UTC).isoformat(timespec="seconds")
                    r = replace(
                        r,
                        rejected=r.rejected if rejected is None else rejected,
                        decisions=[*r.decisions, f"{stamp} {decision}"]
                        if decision
                        else r.decisions,
                    )
                releases.append(r)
            return History(releases, history.stable, history.canary)

        return self._update(change)

    def _update(self, change: Any) -> History:
        result: list[History] = []

        def write(current: dict[str, Any] | None) -> dict[str, Any]:
            updated = change(_parse(current))
            result[:] = [updated]
            body: dict[str, Any] = current or manifests.model_config_map(
                self.spec, config_map_name(self.spec)
            )
            body["data"] = {
                DATA_KEY: json.dumps([asdict(r) for r in updated.releases], sort_keys=True),
                "stable": updated.stable or "",
                "canary": updated.canary or "",
            }
            return body

        self.cluster.update_with_retry(
            "ConfigMap", config_map_name(self.spec), self.spec.namespace, write
        )
        return result[0]


def new_record(
    release_id: str,
    weights_commit: str,
    image: str,
    manifests: list[dict[str, Any]],
    recorded_by: str = "",
    vllm_version: str = "",
) -> ReleaseRecord:
    return ReleaseRecord(
        release_id,
        weights_commit,
        image,
        datetime.now(UTC).isoformat(timespec="seconds"),
        manifests,
        recorded_by,
        vllm_version,
    )


def _parse(config_map: dict[str, Any] | None) -> History:
    if config_map is None:
        return History([], None, None)
    data = config_map.get("data") or {}
    releases = [ReleaseRecord(**r) for r in json.loads(data.get(DATA_KEY) or "[]")]
    return History(releases, data.get("stable") or None, data.get("canary") or None)
