"""The gate's progress for the current canary, kept in the cluster (ConfigMap `<name>-gate`):
consecutive window results, when the last window was judged, and the final decision once one
is made. A sensor that loses its cursor, or a restarted orchestrator, reads it back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from k8s import manifests
from k8s.cluster import ClusterClient
from monitoring.gate import GateState
from spec import ReleaseSpec

DATA_KEY = "gate.json"


@dataclass(frozen=True)
class GateRecord:
    """The gate's progress for one canary release."""

    release_id: str
    passes: int = 0
    failures: int = 0
    errors: int = 0
    evaluated_at: float = 0.0  # epoch seconds of the last judged window; 0: none yet
    ready_at: float = 0.0  # when the controller first saw every canary pod available
    decision: str = ""  # "promote" or "rollback" once decided: final for this release
    reason: str = ""

    @property
    def state(self) -> GateState:
        return GateState(self.passes, self.failures, self.errors)


def store_name(spec: ReleaseSpec) -> str:
    return f"{spec.name}-gate"


class GateStore:
    """Reads and writes a model's gate record."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    def read(self, release_id: str) -> GateRecord:
        """The record of `release_id`; a fresh one when the stored record is another release's."""
        found = self.cluster.find("ConfigMap", store_name(self.spec), self.spec.namespace)
        raw = ((found or {}).get("data") or {}).get(DATA_KEY)
        if raw:
            stored = GateRecord(**json.loads(raw))
            if stored.release_id == release_id:
                return stored
        return GateRecord(release_id)

    def write(self, record: GateRecord) -> None:
        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            body: dict[str, Any] = current or manifests.model_config_map(
                self.spec, store_name(self.spec)
            )
            body["data"] = {DATA_KEY: json.dumps(asdict(record), sort_keys=True)}
            return body

        self.cluster.update_with_retry(
            "ConfigMap", store_name(self.spec), self.spec.namespace, change
        )
