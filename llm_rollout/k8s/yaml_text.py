"""Manifests and configs as YAML text for people and tools: plain, without anchors.

PyYAML writes an object reached twice (labels shared by a Deployment and its pod template,
one probe used by three probes) as `&id001` … `*id001`. Valid YAML, but unreadable in a
review, and `kubectl apply`, Helm and many linters handle aliases poorly or refuse them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes every repeated value out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(document: Any) -> str:
    """One YAML document, keys in their given order, no anchors or aliases."""
    return yaml.dump(document, Dumper=_PlainDumper, sort_keys=False)


def to_yaml_all(documents: Iterable[Any]) -> str:
    """Several documents separated by `---`, no anchors or aliases."""
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False)
