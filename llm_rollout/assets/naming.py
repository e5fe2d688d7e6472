"""How a spec's name becomes Dagster asset keys and group names (letters, digits, '_')."""

from __future__ import annotations

import dagster as dg

from llm_rollout.spec import ReleaseSpec


def group_name(spec: ReleaseSpec) -> str:
    """'deepseek-v4' → 'deepseek_v4': the asset group holding one model's pipeline."""
    return spec.name.replace("-", "_")


def asset_key(spec: ReleaseSpec, stage: str) -> dg.AssetKey:
    """The key of one stage of a model's pipeline, e.g. ['deepseek_v4', 'weights']."""
    return dg.AssetKey([group_name(spec), stage])
