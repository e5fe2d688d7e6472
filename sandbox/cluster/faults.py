"""Ways the sandbox API server can be told to misbehave, for the cluster client's tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

ApiFaultKind = Literal["status", "slow", "lose_response"]


@dataclass
class ApiFault:
    """One misbehaviour of the API server.

    - `status`: answer `status` (429, 500, 503…) without doing anything.
    - `slow`: wait `delay_seconds` before handling the request (client timeouts).
    - `lose_response`: do the request, then drop the connection before answering, as when
      a response is lost on the way back.

    `method` and `path_contains` narrow which requests it hits; `times` limits how many.
    """

    kind: ApiFaultKind
    method: str | None = None
    path_contains: str | None = None
    status: int = 503
    delay_seconds: float = 0.0
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


class ApiFaultBook:
    """Active API faults; each request takes the ones matching it."""

    def __init__(self) -> None:
        self._faults: list[ApiFault] = []
        self._lock = threading.Lock()

    def add(self, fault: ApiFault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> list[ApiFault]:
        taken: list[ApiFault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.matches(method, path):
                    taken.append(fault)
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
        return taken
