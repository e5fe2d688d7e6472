"""What the model's router is told in each phase of a release (specs with `routing:`): the
releases that serve and their shares, whether the model is degraded, the shadow. Pure, like
the machine; `rollout.controller.route_traffic` writes the result into the router's config.

    Starting (canary)         the stable release only: a canary earns traffic once ready
    Gating                    the canary at `rollout.canary_weight` % (or its current step of
                              `rollout.canary_steps`), stable the rest
    Holding                   the same shares, `degraded`: routes with a fallback leave
    Promoting, Baking,        what serves: each release's available pods (the lifecycle's
    Starting (rolling)        shift writes the same at every step)
    RollingBack               what serves, `degraded`
    Done, RolledBack, Idle    the stable release only
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.spec import ReleaseSpec


@dataclass(frozen=True)
class Traffic:
    """The router's part of the controller's decision."""

    weights: dict[str, float] = field(default_factory=dict)  # release id → percent
    degraded: str | None = None
    shadow: str | None = None  # the release copies go to (the spec's shadow_share of them)


def traffic_for(
    spec: ReleaseSpec, record: RolloutRecord, stable: str | None, serving: dict[str, float]
) -> Traffic:
    """The traffic for `record`'s phase; `stable` is the history's stable release, `serving`
    the shares of the releases' available pods (k8s.router_traffic.serving_weights)."""
    phase, release = record.phase, record.release_id
    alone = {stable: 100.0} if stable else ({release: 100.0} if release else {})
    if phase in (Phase.GATING, Phase.HOLDING) and stable and release and release != stable:
        canary = float(canary_weight(spec, record))
        weights = {stable: 100.0 - canary, release: canary}
        held = f"holding {release}: {record.reason}" if phase is Phase.HOLDING else None
        return Traffic(weights, held, release)
    following = phase in (Phase.PROMOTING, Phase.BAKING, Phase.ROLLING_BACK) or (
        phase is Phase.STARTING and record.strategy != "canary"
    )
    if following:
        degraded = (
            f"rolling back {release}: {record.reason}" if phase is Phase.ROLLING_BACK else None
        )
        return Traffic(serving or alone, degraded)
    return Traffic(alone)


def canary_weight(spec: ReleaseSpec, record: RolloutRecord) -> int:
    """The canary's share now: its step of `rollout.canary_steps`, else `canary_weight`."""
    steps = spec.rollout.canary_steps
    return steps[min(record.step, len(steps) - 1)] if steps else spec.rollout.canary_weight
