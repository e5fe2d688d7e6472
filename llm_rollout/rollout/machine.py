"""The release controller as a state machine: one pure module owns every transition of a
model's release, as Flagger's scheduler owns a Canary's (`pkg/controller/scheduler.go`).

    Starting → Gating ⇄ Holding → Promoting → Baking → Done
        └──────────┴───────┴──────────┴──────────┴──→ RollingBack → RolledBack

The record (`RolloutRecord`) is stored in the cluster, one per model, and re-read on every
tick; `tick` takes it with what the sensor observed (`Facts`), a judged window when one was
due (`Verdict`) and `now`, and returns the next record and what to carry out (`Launch`).
`report` takes what a job or a person did (`Event`). Neither does I/O, so every transition
is tested with tables of plain values (tests/rollout/test_machine.py) and a restarted
daemon, with or without its cursor, continues exactly where the record says.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from llm_rollout.monitoring.gate import Outcome, Verdict
from llm_rollout.spec import ReleaseSpec


class Phase(StrEnum):
    """Where a model's newest release stands. The value is what users read (status, UI,
    the `llm-rollout.io/phase` label alerts select on)."""

    IDLE = "Idle"  # nothing recorded yet
    STARTING = "Starting"  # canary (or rolling update) applied, pods not all ready
    GATING = "Gating"  # canary ready: warm-up, then a judged window every interval
    HOLDING = "Holding"  # metrics unavailable: no verdict either way; alerting
    PROMOTING = "Promoting"  # the gate (or a person) said promote: a promote run carries it
    BAKING = "Baking"  # stable runs the release; judged against the previous stable
    DONE = "Done"  # baked: the release is stable for good
    ROLLING_BACK = "RollingBack"  # a rollback run restores the previous stable
    ROLLED_BACK = "RolledBack"  # the previous stable serves again

    @property
    def final(self) -> bool:
        return self in (Phase.IDLE, Phase.DONE, Phase.ROLLED_BACK)

    @property
    def judged(self) -> bool:
        """Phases in which windows are measured."""
        return self in (Phase.GATING, Phase.HOLDING, Phase.BAKING)


class RunState(StrEnum):
    """The run carrying out the current phase (promote or rollback), as Dagster reports it."""

    NONE = "none"  # not launched (or not yet visible)
    ACTIVE = "active"  # queued, starting or running
    FAILED = "failed"  # failed or canceled: it may have done part of its work
    SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class RolloutRecord:
    """One model's release in flight (or the last one), as stored in the cluster."""

    release_id: str = ""
    phase: Phase = Phase.IDLE
    since: float = 0.0  # epoch seconds the phase was entered
    reason: str = ""
    previous: str = ""  # the stable release before this one: what a rollback restores
    strategy: str = "canary"
    passes: int = 0  # consecutive window outcomes
    failures: int = 0
    errors: int = 0
    ready_at: float = 0.0  # when every canary pod was first seen available
    evaluated_at: float = 0.0  # `now` of the tick that judged the last window
    waiting_since: float = 0.0  # when the canary was first seen Pending for capacity
    baseline: dict[str, float] = field(default_factory=dict)  # previous stable's numbers
    attempt: int = 0  # runs launched for the current phase (run keys)
    override: str = ""  # "<who>: <reason>" when a person decided instead of the gate
    decided_by: str = ""  # "gate", "deadline", "run", or the person
    # the quality gate's measurements of this canary, once measured (measured once per
    # canary unless the spec asks for every window): [name, canary, stable, limit,
    # outcome, reason] rows, carried into every later window's verdict
    quality: list[list[Any]] = field(default_factory=list)
    step: int = 0  # index into rollout.canary_steps: the canary's current weight

    def run_key(self) -> str:
        """The Dagster run key of the run carrying out this phase (one per attempt)."""
        action = "promote" if self.phase is Phase.PROMOTING else "rollback"
        return f"{self.release_id}:{action}:{self.attempt}"


@dataclass(frozen=True)
class Rollout:
    """What a Deployment's rollout looks like (from `k8s.cluster.RolloutStatus`)."""

    phase: str  # progressing | complete | stalled
    reason: str = ""
    unschedulable: bool = False  # stalled only because no node has room (yet)


@dataclass(frozen=True)
class Facts:
    """What the sensor observed this tick."""

    stable: str | None = None  # the release history's stable and canary
    canary: str | None = None
    canary_rollout: Rollout | None = None
    run: RunState = RunState.NONE  # the run of `record.run_key()`
    run_error: str = ""


@dataclass(frozen=True)
class Launch:
    """A run to launch: promote or roll back `release_id`, keyed so asking twice launches once."""

    job: str  # "promote" | "rollback"
    release_id: str
    run_key: str
    reason: str


@dataclass(frozen=True)
class Transition:
    """The next record, and what to carry out."""

    record: RolloutRecord
    launches: list[Launch] = field(default_factory=list)

    def with_launch(self) -> Transition:
        """This transition, launching the run that carries out the record's phase."""
        r = self.record
        if r.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):
            return self
        job = "promote" if r.phase is Phase.PROMOTING else "rollback"
        return Transition(r, [*self.launches, Launch(job, r.release_id, r.run_key(), r.reason)])


# Events: what a job or a person reports.
@dataclass(frozen=True)
class Started:
    """The release asset applied `release_id` (a canary, or a rolling update of stable)."""

    release_id: str
    previous: str
    strategy: str


@dataclass(frozen=True)
class Installed:
    """A model's first release was installed as stable: nothing to compare it with."""

    release_id: str


@dataclass(frozen=True)
class RolledOut:
    """A rolling update to the release completed: stable runs it; the bake starts."""

    release_id: str


@dataclass(frozen=True)
class Promoted:
    """The promote run rolled stable to the release and scaled the canary down."""

    release_id: str


@dataclass(frozen=True)
class ActionFailed:
    """Starting, promoting or rolling back the release failed (`action`: "start",
    "promote" or "rollback"); the sensor also sees a failed run in its status. Only the
    action of the record's current phase counts: a late report of another is stale."""

    release_id: str
    error: str
    action: str


ACTION_OF = {
    "start": "Starting",
    "promote": "Promoting",
    "rollback": "RollingBack",
}


@dataclass(frozen=True)
class RolledBack:
    """The previous stable serves again; the canary is gone."""

    release_id: str


@dataclass(frozen=True)
class Override:
    """A person decided instead of the gate: promote or roll back, with a reason."""

    release_id: str
    action: str  # "promote" | "rollback"
    by: str
    reason: str


Event = Started | Installed | RolledOut | Promoted | ActionFailed | RolledBack | Override


def enter(
    record: RolloutRecord, phase: Phase, now: float, reason: str, **changes: object
) -> RolloutRecord:
    """`record` in `phase` since `now`, with its streaks reset and `changes` applied."""
    attempt = 1 if phase in (Phase.PROMOTING, Phase.ROLLING_BACK) else 0
    fresh: dict[str, object] = {"passes": 0, "failures": 0, "errors": 0, "attempt": attempt}
    return replace(
        record,
        phase=phase,
        since=now,
        reason=reason,
        **{**fresh, **changes},  # type: ignore[arg-type]
    )


def report(spec: ReleaseSpec, record: RolloutRecord, event: Event, now: float) -> RolloutRecord:
    """The record after what a job or a person did. An event about another release than the
    record's (a stale run) changes nothing, except a new release starting."""
    if isinstance(event, Installed):
        return enter(
            RolloutRecord(release_id=event.release_id),
            Phase.DONE,
            now,
            "installed as the first release: there is nothing to compare it with",
        )
    if isinstance(event, Started):
        fresh = RolloutRecord(
            release_id=event.release_id, previous=event.previous, strategy=event.strategy
        )
        what = "canary" if event.strategy == "canary" else "rolling update"
        return enter(fresh, Phase.STARTING, now, f"{what} applied; waiting for its pods")
    if event.release_id != record.release_id:
        return record
    if isinstance(event, RolledOut):
        return enter(
            record,
            Phase.BAKING,
            now,
            f"rolled out as stable; baking for {spec.gate.bake_seconds}s against the limits",
        )
    if isinstance(event, Promoted):
        return enter(
            record,
            Phase.BAKING,
            now,
            f"promoted; baking for {spec.gate.bake_seconds}s against the limits and "
            f"{record.previous or 'the previous stable'}'s numbers",
        )
    if isinstance(event, RolledBack):
        return enter(record, Phase.ROLLED_BACK, now, f"rolled back: {record.reason}")
    if isinstance(event, ActionFailed):
        if ACTION_OF.get(event.action) != record.phase.value:
            return record
        return _action_failed(record, event.error, now)
    # Override
    who = f"{event.by}: {event.reason}"
    if event.action == "rollback":
        return enter(
            record,
            Phase.ROLLING_BACK,
            now,
            f"rolled back by hand ({who})",
            override=who,
            decided_by=event.by,
        )
    return enter(
        record,
        Phase.PROMOTING,
        now,
        f"promoted by hand, overriding the gate ({who})",
        override=who,
        decided_by=event.by,
    )


def may_promote(record: RolloutRecord, canary: str | None) -> str | None:
    """None when promoting `canary` carries out the stored decision; else why not."""
    if canary is None:
        return "no canary is running"
    if record.release_id != canary:
        known = record.release_id or "nothing"
        return f"the controller has no record of {canary} (its record is of {known})"
    if record.phase is not Phase.PROMOTING:
        return f"{canary} is {record.phase.value}: {record.reason}"
    return None


def judgment_due(spec: ReleaseSpec, record: RolloutRecord, now: float) -> bool:
    """Whether this tick should measure a window (the caller then passes the verdict).

    A window is due once per `interval_seconds`, stamped with the tick's own `now`; half an
    interval of slack keeps a sensor tick that fires a little early from skipping a whole
    interval (the sensor itself already runs every `interval_seconds`)."""
    gate = spec.gate
    if not record.phase.judged:
        return False
    first_window_at = record.ready_at + gate.warmup_seconds + gate.window_seconds
    if record.phase in (Phase.GATING, Phase.HOLDING) and now < first_window_at:
        return False
    if record.phase is Phase.BAKING and now < record.since + gate.window_seconds:
        return False  # the first window must hold only the new stable's samples
    return now - record.evaluated_at >= gate.interval_seconds / 2


def tick(
    spec: ReleaseSpec,
    record: RolloutRecord,
    facts: Facts,
    verdict: Verdict | None,
    now: float,
) -> Transition:
    """One step of the controller: the next record and the runs to launch."""
    if facts.canary and facts.canary != record.release_id:
        # a canary this record does not know: started by an older llm-rollout, or by a
        # release run that died before reporting it; take it up from the start
        adopted = RolloutRecord(
            release_id=facts.canary, previous=facts.stable or "", strategy="canary"
        )
        record = enter(adopted, Phase.STARTING, now, "canary found in the cluster; taking it up")
    phase = record.phase
    if phase is Phase.STARTING:
        return Transition(_starting(spec, record, facts, now)).with_launch()
    if phase in (Phase.GATING, Phase.HOLDING):
        if facts.canary != record.release_id:
            return Transition(
                enter(
                    record, Phase.ROLLING_BACK, now, "the canary is gone from the release history"
                )
            ).with_launch()
        if facts.canary_rollout and facts.canary_rollout.phase == "stalled":
            reason = f"the canary stopped serving: {facts.canary_rollout.reason}"
            return _rollback(record, now, reason, "gate")
        return _gating(spec, record, verdict, now)
    if phase is Phase.BAKING:
        return _baking(spec, record, verdict, now)
    if phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        return _carrying_out(spec, record, facts, now)
    return Transition(record)


def _starting(spec: ReleaseSpec, record: RolloutRecord, facts: Facts, now: float) -> RolloutRecord:
    rollout = facts.canary_rollout
    if record.strategy != "canary" or rollout is None:
        return record  # a rolling update is carried out (and reported) by its run
    if rollout.phase == "complete":
        return enter(
            record,
            Phase.GATING,
            now,
            f"canary ready; warming up {spec.gate.warmup_seconds}s, then one "
            f"{spec.gate.window} window before the first verdict",
            ready_at=now,
        )
    if rollout.phase == "stalled" and rollout.unschedulable:
        waiting_since = record.waiting_since or now
        waited = now - waiting_since
        limit = spec.rollout.capacity_wait
        if waited < limit:
            return replace(
                record,
                waiting_since=waiting_since,
                reason=(
                    f"waiting for capacity {waited:.0f}s of {limit}s (a node may be "
                    f"joining): {rollout.reason}"
                ),
            )
        return _rollback(
            record, now, f"no capacity for the canary after {limit}s: {rollout.reason}", "deadline"
        ).record
    if rollout.phase == "stalled":
        return _rollback(
            record, now, f"the canary's rollout stalled: {rollout.reason}", "gate"
        ).record
    return replace(record, waiting_since=0.0, reason=f"waiting for the canary: {rollout.reason}")


def _count(record: RolloutRecord, verdict: Verdict) -> RolloutRecord:
    """The streaks after one judged window."""
    if verdict.window is Outcome.PASS:
        return replace(record, passes=record.passes + 1, failures=0, errors=0)
    if verdict.window is Outcome.FAIL:
        return replace(record, passes=0, failures=record.failures + 1, errors=0)
    if verdict.window is Outcome.ERROR:
        return replace(record, passes=0, errors=record.errors + 1)
    return replace(record, passes=0, errors=0)  # Inconclusive


def _gating(
    spec: ReleaseSpec, record: RolloutRecord, verdict: Verdict | None, now: float
) -> Transition:
    gate = spec.gate
    if verdict is not None:
        record = replace(_count(record, verdict), evaluated_at=now)
        if record.failures >= gate.failure_limit:
            return _rollback(
                record, now, f"{record.failures} failing windows in a row: {verdict.reason}", "gate"
            )
        steps = spec.rollout.canary_steps
        if (
            record.phase is Phase.GATING
            and verdict.window is Outcome.PASS
            and record.step < len(steps) - 1
        ):
            # a step weight held: the next one, judged afresh (Flagger's stepWeights)
            return Transition(
                replace(
                    record,
                    step=record.step + 1,
                    passes=0,
                    reason=f"passed at {steps[record.step]}%: canary raised to "
                    f"{steps[record.step + 1]}% (step {record.step + 2} of {len(steps)})",
                )
            )
        if record.passes >= gate.required_passes:
            promoting = enter(
                record,
                Phase.PROMOTING,
                now,
                f"{record.passes} passing windows in a row",
                baseline=verdict.values("stable"),
                decided_by="gate",
            )
            return Transition(promoting).with_launch()
        if record.phase is Phase.GATING and record.errors >= gate.consecutive_error_limit:
            record = enter(
                record,
                Phase.HOLDING,
                now,
                f"{record.errors} windows in a row could not be measured: {verdict.reason}; "
                "holding (not a verdict on the release)",
                errors=record.errors,
                evaluated_at=now,
            )
        elif record.phase is Phase.HOLDING and verdict.window is not Outcome.ERROR:
            record = replace(
                record,
                phase=Phase.GATING,
                since=now,
                reason=f"metrics are back: {_progress(spec, record, verdict)}",
            )
        elif record.phase is Phase.GATING:
            record = replace(record, reason=_progress(spec, record, verdict))
    # the bounds: a canary is never judged (or held) forever
    if record.phase is Phase.HOLDING and now - record.since >= gate.max_hold_seconds:
        return _timed_out(
            spec,
            record,
            now,
            f"held {now - record.since:.0f}s (limit {gate.max_hold_seconds}s): {record.reason}",
        )
    gating_for = now - (record.ready_at or record.since)
    if gating_for >= gate.max_gating_seconds:
        last = verdict.reason if verdict else record.reason
        return _timed_out(
            spec,
            record,
            now,
            f"no decision after {gating_for:.0f}s of gating "
            f"(limit {gate.max_gating_seconds}s): {last}",
        )
    return Transition(record)


def _progress(spec: ReleaseSpec, record: RolloutRecord, verdict: Verdict) -> str:
    gate = spec.gate
    if verdict.window is Outcome.PASS:
        return f"passing window {record.passes} of {gate.required_passes}"
    if verdict.window is Outcome.FAIL:
        return f"failing window {record.failures} of {gate.failure_limit}: {verdict.reason}"
    if verdict.window is Outcome.ERROR:
        return (
            f"measurement error {record.errors} of {gate.consecutive_error_limit}: {verdict.reason}"
        )
    return f"inconclusive window: {verdict.reason}"


def _timed_out(spec: ReleaseSpec, record: RolloutRecord, now: float, reason: str) -> Transition:
    if spec.gate.on_timeout == "hold":
        if record.phase is Phase.HOLDING:
            return Transition(
                replace(record, reason=f"{reason}; waiting for a person (on_timeout: hold)")
            )
        held = enter(
            record,
            Phase.HOLDING,
            now,
            f"{reason}; waiting for a person (on_timeout: hold)",
            evaluated_at=record.evaluated_at,
        )
        return Transition(held)
    return _rollback(record, now, reason, "deadline")


def _baking(
    spec: ReleaseSpec, record: RolloutRecord, verdict: Verdict | None, now: float
) -> Transition:
    gate = spec.gate
    if verdict is not None:
        record = replace(_count(record, verdict), evaluated_at=now)
        if record.failures >= gate.failure_limit:
            return _rollback(
                record,
                now,
                f"the bake caught {record.release_id}: {record.failures} failing windows in a "
                f"row after promotion ({verdict.reason})",
                "gate",
            )
        if record.errors >= gate.consecutive_error_limit:
            reason = f"the bake cannot measure {record.release_id}: {verdict.reason}"
            if now - record.since >= gate.bake_seconds + gate.max_hold_seconds:
                if gate.on_timeout == "rollback":
                    return _rollback(record, now, f"{reason}, past the hold limit", "deadline")
                reason += "; waiting for a person (on_timeout: hold)"
            record = replace(record, reason=reason)
        else:
            record = replace(
                record,
                reason=(
                    f"baking {now - record.since:.0f}s of {gate.bake_seconds}s: "
                    f"{_progress(spec, record, verdict)}"
                ),
            )
    baked = now - record.since >= gate.bake_seconds
    if baked and record.failures == 0 and record.errors == 0 and record.evaluated_at > record.since:
        return Transition(
            enter(
                record,
                Phase.DONE,
                now,
                f"baked {gate.bake_seconds}s without a breach",
                evaluated_at=record.evaluated_at,
            )
        )
    if baked and gate.bake_seconds == 0:
        return Transition(enter(record, Phase.DONE, now, "promoted (bake_seconds: 0)"))
    return Transition(record)


def _carrying_out(spec: ReleaseSpec, record: RolloutRecord, facts: Facts, now: float) -> Transition:
    if facts.run is RunState.FAILED:
        failed = _action_failed(record, facts.run_error or "the run failed", now)
        return Transition(failed).with_launch()
    if facts.run is RunState.SUCCEEDED:
        # the run reports its own result; a success it did not report (killed right after
        # its work) is read from the cluster
        if record.phase is Phase.PROMOTING and facts.stable == record.release_id:
            return Transition(report(spec, record, Promoted(record.release_id), now))
        if record.phase is Phase.ROLLING_BACK and facts.canary is None:
            return Transition(report(spec, record, RolledBack(record.release_id), now))
        return Transition(
            _action_failed(record, "the run ended without doing its work", now)
        ).with_launch()
    if facts.run is RunState.ACTIVE:
        return Transition(record)
    return Transition(record).with_launch()


def _action_failed(record: RolloutRecord, error: str, now: float) -> RolloutRecord:
    if record.phase is Phase.STARTING:
        return enter(
            record,
            Phase.ROLLING_BACK,
            now,
            f"the release did not start ({error}); restoring {record.previous}",
            decided_by="run",
        )
    if record.phase is Phase.PROMOTING:
        return enter(
            record,
            Phase.ROLLING_BACK,
            now,
            f"the promotion failed ({error}); restoring {record.previous or 'the previous stable'}",
            decided_by="run",
        )
    if record.phase is Phase.ROLLING_BACK:
        return replace(
            record,
            attempt=record.attempt + 1,
            reason=f"rollback attempt {record.attempt} failed ({error}); retrying",
        )
    return record


def _rollback(record: RolloutRecord, now: float, reason: str, by: str) -> Transition:
    return Transition(enter(record, Phase.ROLLING_BACK, now, reason, decided_by=by)).with_launch()
