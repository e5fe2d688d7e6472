"""The deploy lock in the cluster: one holder at a time, taken over only from a holder that
has ended, released only by its holder."""

from __future__ import annotations

import threading

import pytest

from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lock import DeployLock, LockHeld, lock_name
from llm_rollout.spec import ReleaseSpec


def never_gone(_: str) -> bool:
    return False


def test_a_second_holder_is_refused_with_who_holds_it(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    lock = DeployLock(cluster, spec)
    lock.acquire("run-a", "rollout of rel-1", never_gone)
    with pytest.raises(LockHeld) as refused:
        lock.acquire("run-b", "rollback", never_gone)
    message = str(refused.value)
    assert "run-a" in message and "rollout of rel-1" in message and lock_name(spec) in message
    lock.acquire("run-a", "rollout of rel-1", never_gone)  # re-entrant for its holder


def test_the_lock_of_an_ended_holder_is_taken_over(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    lock = DeployLock(cluster, spec)
    lock.acquire("run-a", "rollout", never_gone)
    lock.acquire("run-b", "rollback", lambda holder: holder == "run-a")
    holder = lock.holder()
    assert holder is not None and holder.holder == "run-b" and holder.purpose == "rollback"


def test_only_the_holder_releases_it(cluster: ClusterClient, spec: ReleaseSpec) -> None:
    lock = DeployLock(cluster, spec)
    with lock.held("run-a", "rollout", never_gone):
        lock.release("run-b")  # not theirs: ignored
        assert lock.holder() is not None
    assert lock.holder() is None
    lock.acquire("run-b", "rollout", never_gone)  # free again


def test_of_many_racing_holders_exactly_one_wins(cluster: ClusterClient, spec: ReleaseSpec) -> None:
    lock = DeployLock(cluster, spec)
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(holder: str) -> None:
        barrier.wait()
        try:
            lock.acquire(holder, "rollout", never_gone)
            winners.append(holder)
        except LockHeld:
            pass

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder = lock.holder()
    assert len(winners) == 1 and holder is not None and holder.holder == winners[0]
