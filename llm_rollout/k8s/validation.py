"""Validating rendered objects against the Kubernetes JSON schemas of the versions we support."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kubernetes_validate

from llm_rollout.k8s import leaderworkerset

# Oldest and newest Kubernetes releases llm-rollout supports.
SUPPORTED_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0")


@dataclass(frozen=True)
class SchemaProblem:
    """One object that does not validate for one Kubernetes version."""

    kind: str
    name: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} (Kubernetes {self.version}): {self.message}"


class InvalidManifests(Exception):
    """Rendered objects failed schema validation."""

    def __init__(self, problems: list[SchemaProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def schema_problems(
    objects: Iterable[dict[str, Any]], versions: Iterable[str] = SUPPORTED_VERSIONS
) -> list[SchemaProblem]:
    """Every (object, version) pair that fails strict schema validation; a LeaderWorkerSet
    against its vendored CRD schema (one for every Kubernetes version)."""
    problems: list[SchemaProblem] = []
    for obj in objects:
        if obj.get("kind") == leaderworkerset.KIND:
            problems += [
                SchemaProblem(
                    leaderworkerset.KIND,
                    obj.get("metadata", {}).get("name", "?"),
                    f"{SUPPORTED_VERSIONS[0]}-{SUPPORTED_VERSIONS[-1]}",
                    f"the CRD's schema (LWS {leaderworkerset.CRD_RELEASE}): "
                    + problem.split(": ", 1)[1],
                )
                for problem in leaderworkerset.lws_schema_problems([obj])
            ]
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                problems.append(
                    SchemaProblem(
                        obj.get("kind", "?"),
                        obj.get("metadata", {}).get("name", "?"),
                        version,
                        f"{path}: {error.message}",
                    )
                )
    return problems


def validate_objects(objects: Iterable[dict[str, Any]]) -> None:
    """Raise `InvalidManifests` unless every object validates for every supported version."""
    problems = schema_problems(objects)
    if problems:
        raise InvalidManifests(problems)
