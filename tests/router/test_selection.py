"""Choosing a release by weight: exact shares without a session, sticky shares with one."""

from __future__ import annotations

import math
from collections import Counter

from llm_rollout.router.config import Release
from llm_rollout.router.selection import ReleasePicker, ShareSampler


def releases(stable: float, canary: float) -> list[Release]:
    return [
        Release(id="stable", url="http://stable:8000", weight=stable),
        Release(id="canary", url="http://canary:8000", weight=canary),
    ]


def binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    """n·p ± 4.5 σ: a correct picker lands outside about once in 150,000 runs."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_without_a_session_the_share_is_exact_over_any_run() -> None:
    picker = ReleasePicker(releases(90, 10))
    picks = [picker.pick(None).id for _ in range(1000)]  # type: ignore[union-attr]
    assert Counter(picks)["canary"] == 100
    # evenly spread, not bunched: every run of ten has exactly one canary request
    assert all(picks[i : i + 10].count("canary") == 1 for i in range(0, 1000, 10))


def test_uneven_weights_and_three_releases_get_their_exact_shares() -> None:
    picker = ReleasePicker([*releases(70, 25), Release(id="old", url="http://old:8000", weight=5)])
    counts = Counter(picker.pick(None).id for _ in range(2000))  # type: ignore[union-attr]
    assert counts == {"stable": 1400, "canary": 500, "old": 100}


def test_sessions_get_the_weights_share_within_binomial_bounds() -> None:
    picker = ReleasePicker(releases(90, 10))
    n = 10_000
    canary = sum(picker.pick(f"user-{i}").id == "canary" for i in range(n))  # type: ignore[union-attr]
    low, high = binomial_bounds(n, 0.10)
    assert low <= canary <= high, f"{canary} of {n} sessions on the canary"


def test_a_session_always_lands_on_the_same_release() -> None:
    picker = ReleasePicker(releases(50, 50))
    for i in range(200):
        first = picker.pick(f"conversation-{i}")
        assert all(picker.pick(f"conversation-{i}") == first for _ in range(5))


def test_raising_the_canary_weight_moves_sessions_only_onto_the_canary() -> None:
    before = ReleasePicker(releases(95, 5))
    after = ReleasePicker(releases(75, 25))
    keys = [f"s{i}" for i in range(5000)]
    was = {key: before.pick(key).id for key in keys}  # type: ignore[union-attr]
    now = {key: after.pick(key).id for key in keys}  # type: ignore[union-attr]
    assert all(now[key] == "canary" for key in keys if was[key] == "canary")
    moved = sum(was[key] != now[key] for key in keys)
    low, high = binomial_bounds(len(keys), 0.20)  # 25 % − 5 % of the sessions move
    assert low <= moved <= high


def test_zero_weight_releases_get_nothing_and_no_weight_at_all_gives_none() -> None:
    picker = ReleasePicker(releases(100, 0))
    assert {picker.pick(None).id for _ in range(50)} == {"stable"}  # type: ignore[union-attr]
    assert {picker.pick(f"s{i}").id for i in range(50)} == {"stable"}  # type: ignore[union-attr]
    assert ReleasePicker([]).pick("s") is None


def test_a_share_sampler_takes_exactly_its_share_evenly() -> None:
    sampler = ShareSampler(0.2)
    taken = [sampler.take() for _ in range(100)]
    assert sum(taken) == 20
    assert all(sum(taken[i : i + 5]) == 1 for i in range(0, 100, 5))
