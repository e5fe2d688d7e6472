"""Ways the sandbox Hub can be told to misbehave, each matching some requests."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["corrupt", "cut", "truncate", "slow", "status"]
Route = Literal["any", "api", "resolve"]


@dataclass
class Fault:
    """One misbehaviour.

    - `corrupt`: flip the byte at `offset` of a downloaded file (the headers stay honest).
    - `cut`: promise the whole file, send `offset` bytes, then drop the connection.
    - `truncate`: send only `offset` bytes, as a complete response (the file is shorter than
      the tree listing says, as with a broken mirror).
    - `slow`: wait `delay_seconds` before answering.
    - `status`: answer `status` (401, 404, 429, 5xx…) instead of the real response.

    `repo` and `path` (a glob) narrow which requests it hits; `times` limits how many
    (None = until cleared).
    """

    kind: FaultKind
    repo: str | None = None
    path: str | None = None
    route: Route = "any"
    status: int = 500
    delay_seconds: float = 0.0
    offset: int = 0
    times: int | None = None

    def matches(self, route: Route, repo: str | None, path: str | None) -> bool:
        """Whether this fault applies to a request on `route` for `repo` and `path`."""
        if self.route != "any" and self.route != route:
            return False
        if self.repo is not None and self.repo != repo:
            return False
        if self.path is not None and (path is None or not fnmatch.fnmatch(path, self.path)):
            return False
        return self.kind in ("status", "slow") or route == "resolve"


class FaultBook:
    """The active faults; each request takes the ones that match it, counting down `times`."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, route: Route, repo: str | None, path: str | None) -> list[Fault]:
        """The faults for one request, used up by it where `times` is set."""
        taken: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(route, repo, path):
                    continue
                taken.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        return taken
