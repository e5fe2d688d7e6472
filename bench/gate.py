"""Gate benchmark: healthy-but-noisy canaries and bad canaries of varied severity, emulated
and scraped by a real Prometheus; our gate vs a Flagger-style rule, measured in one run.

    .venv/bin/python bench/gate.py                       # 10 healthy + 10 bad
    .venv/bin/python bench/gate.py --healthy 50 --bad 50 # the full run (CPU heavy)

Prints false rollbacks (healthy canaries rolled back), missed bad releases (not rolled
back by the end) and the time from a breach becoming scrapeable to the rollback verdict.
The Flagger-style rule: every interval, each metric is checked against its absolute
threshold; a check that fails *or returns no data* counts, and `failure_limit` failed
checks in total roll back (no relative comparison, no inconclusive state).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llm_rollout.monitoring.gate import judge  # noqa: E402
from llm_rollout.monitoring.prometheus import PrometheusFailed, measure  # noqa: E402
from llm_rollout.monitoring.queries import TrackSource, gate_queries  # noqa: E402
from llm_rollout.rollout import machine  # noqa: E402
from sandbox.prometheus import SCRAPE_INTERVAL_SECONDS, start_prometheus  # noqa: E402

CANARY = TrackSource("canary", "rel-canary")
STABLE = TrackSource("stable", "rel-stable")
from llm_rollout.spec import ReleaseSpec, load_spec  # noqa: E402
from sandbox.vllm_metrics import MetricsEmulator  # noqa: E402

BAD = [
    ("slow_first_token", 1.0),
    ("slow_decoding", 1.0),
    ("errors", 1.0),
    ("kv_pressure", 1.0),
    ("healthy", 1.3),
    ("healthy", 1.6),
    ("healthy", 2.0),
]
INTERVAL_SECONDS = 5
WINDOW_SECONDS = 15


# what the controller observes of every pair: a ready canary beside stable
GATING = machine.Facts("stable", "canary", machine.Rollout("complete"))


@dataclass
class Pair:
    namespace: str
    bad: str | None  # what goes wrong, None for a healthy canary
    stable: MetricsEmulator
    canary: MetricsEmulator
    spec: ReleaseSpec
    record: machine.RolloutRecord = field(
        default_factory=lambda: machine.RolloutRecord(
            "canary", machine.Phase.GATING, since=time.time(), ready_at=time.time()
        )
    )
    flagger_failures: int = 0
    ours_rolled_back_at: float | None = None
    flagger_rolled_back_at: float | None = None
    breach_at: float | None = None


def flagger_style(spec: ReleaseSpec, values: dict[tuple[str, str], list[float]]) -> int:
    """Failed checks this interval: absolute thresholds, no data counts as a failure."""
    gate = spec.gate
    checks = [
        ("ttft_p99", gate.max_ttft_p99_seconds, True),
        ("itl_p99", gate.max_itl_p99_seconds, True),
        ("success_rate", gate.min_success_rate, False),
    ]
    failed = 0
    for name, limit, higher_is_worse in checks:
        found = values.get((name, "canary"), [])
        value = found[0] if found else math.nan
        if math.isnan(value) or (value > limit if higher_is_worse else value < limit):
            failed += 1
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--healthy", type=int, default=10)
    parser.add_argument("--bad", type=int, default=10)
    parser.add_argument("--duration", type=int, default=75, help="seconds of gating")
    options = parser.parse_args()
    base = load_spec(REPO_ROOT / "sandbox" / "specs" / "demo-tiny.yaml")
    gate = base.gate.model_copy(
        update={
            "interval_seconds": INTERVAL_SECONDS,
            "window": f"{WINDOW_SECONDS}s",
            "min_requests": 20,
            "required_passes": 100,
            "failure_limit": 3,
            "consecutive_error_limit": 4,
            "max_relative_regression": 0.2,
        }
    )
    rng = random.Random(7)
    prometheus = start_prometheus(Path(tempfile.mkdtemp(prefix="bench-gate-")))
    pairs: list[Pair] = []
    try:
        for index in range(options.healthy + options.bad):
            bad = BAD[index % len(BAD)] if index >= options.healthy else None
            namespace = f"bench-{index}"
            spec = base.model_copy(update={"namespace": namespace, "gate": gate})
            noise = rng.uniform(0.9, 1.1)  # healthy canaries are a little faster or slower
            stable = MetricsEmulator("healthy", seed=2 * index).start()
            canary = MetricsEmulator("healthy", latency_scale=noise, seed=2 * index + 1).start()
            prometheus.add_pod(namespace, f"s-{index}", STABLE.release, stable.url)
            prometheus.add_pod(namespace, f"c-{index}", CANARY.release, canary.url)
            pairs.append(
                Pair(namespace, f"{bad[0]}×{bad[1]}" if bad else None, stable, canary, spec)
            )
        prometheus.wait_for_samples(WINDOW_SECONDS + 1, timeout=120)
        started = time.monotonic()
        # bad canaries turn bad a little into the run, at a known time
        for pair, bad in zip(
            pairs,
            [BAD[i % len(BAD)] if i >= options.healthy else None for i in range(len(pairs))],
            strict=True,
        ):
            if bad:
                pair.canary.set_behaviour(bad[0], latency_scale=bad[1])
                pair.breach_at = time.monotonic()
        while time.monotonic() - started < options.duration:
            tick = time.monotonic()
            for pair in pairs:
                queries = gate_queries(pair.spec, CANARY, STABLE)
                try:
                    values = measure(prometheus.url, queries).values
                except PrometheusFailed:
                    continue
                verdict = judge(pair.spec, values, SCRAPE_INTERVAL_SECONDS, queries=queries)
                if pair.record.phase is machine.Phase.GATING:  # the controller's transition
                    pair.record = machine.tick(
                        pair.spec, pair.record, GATING, verdict, time.time()
                    ).record
                rolled_back = pair.record.phase is machine.Phase.ROLLING_BACK
                if rolled_back and pair.ours_rolled_back_at is None:
                    pair.ours_rolled_back_at = time.monotonic()
                pair.flagger_failures += flagger_style(pair.spec, values)
                if (
                    pair.flagger_failures >= gate.failure_limit
                    and pair.flagger_rolled_back_at is None
                ):
                    pair.flagger_rolled_back_at = time.monotonic()
            time.sleep(max(0.0, INTERVAL_SECONDS - (time.monotonic() - tick)))
    finally:
        for pair in pairs:
            pair.stable.stop()
            pair.canary.stop()
        prometheus.stop()
    report(pairs)


def report(pairs: list[Pair]) -> None:
    healthy = [p for p in pairs if p.bad is None]
    bad = [p for p in pairs if p.bad is not None]
    print(
        f"{len(healthy)} healthy-but-noisy canaries, {len(bad)} bad canaries; "
        f"window {WINDOW_SECONDS}s, every {INTERVAL_SECONDS}s, scrape {SCRAPE_INTERVAL_SECONDS}s"
    )
    print(f"{'':28}{'false rollbacks':>17}{'missed bad':>12}{'breach→rollback mean':>22}{'max':>8}")
    for name, attribute in (
        ("llm-rollout gate", "ours_rolled_back_at"),
        ("Flagger-style rule", "flagger_rolled_back_at"),
    ):
        false = sum(1 for p in healthy if getattr(p, attribute) is not None)
        missed = sum(1 for p in bad if getattr(p, attribute) is None)
        delays = [
            getattr(p, attribute) - p.breach_at
            for p in bad
            if getattr(p, attribute) is not None and p.breach_at is not None
        ]
        mean = f"{statistics.mean(delays):.1f}s" if delays else "-"
        worst = f"{max(delays):.1f}s" if delays else "-"
        print(f"{name:28}{false:>17}{missed:>12}{mean:>22}{worst:>8}")
    print("missed by llm-rollout:", [p.bad for p in bad if p.ours_rolled_back_at is None] or "none")


if __name__ == "__main__":
    main()
