"""Active injected faults of a sandbox server; each request takes those that match it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Countable(Protocol):
    times: int | None  # how many requests it still hits (None: until cleared)


F = TypeVar("F", bound=Countable)


class FaultBook(Generic[F]):
    """Thread-safe list of faults, counting down `times` as requests take them."""

    def __init__(self) -> None:
        self._faults: list[F] = []
        self._lock = threading.Lock()

    def add(self, fault: F) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, matches: Callable[[F], bool]) -> list[F]:
        """The faults for one request, used up by it where `times` is set."""
        taken: list[F] = []
        with self._lock:
            for fault in list(self._faults):
                if not matches(fault):
                    continue
                taken.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        return taken
