"""The release controller's record of a model, kept in the cluster (ConfigMap
`<model>-rollout`) so a sensor that lost its cursor, a restarted daemon or another process
reads back exactly where the release stands. The phase is also a label on the ConfigMap,
which kube-state-metrics exports (`kube_configmap_labels`) for the alert rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.spec import ReleaseSpec

DATA_KEY = "rollout.json"
PHASE_LABEL = "llm-rollout.io/phase"


class RecordChanged(Exception):
    """The record changed between a read and the write meant to follow it."""


def store_name(spec: ReleaseSpec) -> str:
    return f"{spec.name}-rollout"


def parse(config_map: dict[str, Any] | None) -> RolloutRecord:
    """The record a ConfigMap holds; an empty record (Idle) when there is none."""
    raw = ((config_map or {}).get("data") or {}).get(DATA_KEY)
    if not raw:
        return RolloutRecord()
    stored = json.loads(raw)
    known = {f.name for f in fields(RolloutRecord)}
    values = {k: v for k, v in stored.items() if k in known}  # written by a newer version
    values["phase"] = Phase(values.get("phase", Phase.IDLE.value))
    return RolloutRecord(**values)


class RolloutStore:
    """Reads and writes a model's controller record with optimistic concurrency."""

    def __init__(self, cluster: ClusterClient, spec: ReleaseSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    def read(self) -> RolloutRecord:
        return parse(self.cluster.find("ConfigMap", store_name(self.spec), self.spec.namespace))

    def update(self, change: Callable[[RolloutRecord], RolloutRecord]) -> RolloutRecord:
        """Apply `change` to the stored record (re-read and re-applied on a write conflict)."""
        result: list[RolloutRecord] = []

        def write(current: dict[str, Any] | None) -> dict[str, Any]:
            updated = change(parse(current))
            result[:] = [updated]
            body: dict[str, Any] = current or manifests.model_config_map(
                self.spec, store_name(self.spec)
            )
            body["metadata"].setdefault("labels", {})[PHASE_LABEL] = updated.phase.value
            body["data"] = {DATA_KEY: json.dumps(asdict(updated), sort_keys=True)}
            return body

        self.cluster.update_with_retry(
            "ConfigMap", store_name(self.spec), self.spec.namespace, write
        )
        return result[0]

    def replace(self, expected: RolloutRecord, record: RolloutRecord) -> RolloutRecord:
        """Write `record` only if the stored record is still `expected` (else RecordChanged:
        someone reported an event meanwhile, and the next tick decides from it)."""

        def change(current: RolloutRecord) -> RolloutRecord:
            if current != expected:
                raise RecordChanged(f"{store_name(self.spec)} changed during the tick")
            return record

        return self.update(change)
