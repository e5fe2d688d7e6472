"""Ways the sandbox Hub can be told to misbehave, each matching some requests."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sandbox.faultbook import FaultBook as SandboxFaultBook

FaultKind = Literal["corrupt", "cut", "cut_every", "ignore_range", "truncate", "slow", "status"]
Route = Literal["any", "api", "resolve"]
# Faults that change the bytes of a file answer; they apply where the bytes are sent (the
# resolve route for small files, the CDN for LFS files), never to a HEAD or a redirect.
CONTENT_FAULTS = frozenset({"corrupt", "cut", "cut_every", "ignore_range", "truncate"})


@dataclass
class Fault:
    """One misbehaviour.

    - `corrupt`: flip the byte at `offset` of a downloaded file (the headers stay honest).
    - `cut`: promise the whole file, send up to file offset `offset`, then drop the connection.
    - `cut_every`: drop every file response after `offset` bytes of body (a link that drops
      every N bytes: each request makes N bytes of progress, none finishes a bigger file).
    - `ignore_range`: answer a Range request with 200 and the whole file, as proxies that
      strip or ignore Range do.
    - `truncate`: send only `offset` bytes, as a complete response (the file is shorter than
      the tree listing says, as with a broken mirror).
    - `slow`: wait `delay_seconds` before answering.
    - `status`: answer `status` (401, 404, 429, 5xx…) instead of the real response.

    `repo` and `path` (a glob) narrow which requests it hits; `skip` lets that many matching
    requests through first (to script "the second request is cut, the third…"); `times`
    limits how many it hits (None = until cleared).
    """

    kind: FaultKind
    repo: str | None = None
    path: str | None = None
    route: Route = "any"
    status: int = 500
    delay_seconds: float = 0.0
    offset: int = 0
    times: int | None = None
    skip: int = 0

    def matches(self, route: Route, repo: str | None, path: str | None) -> bool:
        """Whether this fault applies to a request on `route` for `repo` and `path`."""
        if self.route != "any" and self.route != route:
            return False
        if self.repo is not None and self.repo != repo:
            return False
        if self.path is not None and (path is None or not fnmatch.fnmatch(path, self.path)):
            return False
        return self.kind in ("status", "slow") or route == "resolve"


class FaultBook(SandboxFaultBook[Fault]):
    """The Hub's active faults; a fault with `skip` lets that many matching requests pass."""

    def __init__(self) -> None:
        super().__init__()
        self._skip_lock = threading.Lock()

    def take(self, matches: Callable[[Fault], bool]) -> list[Fault]:
        def due(fault: Fault) -> bool:
            if not matches(fault):
                return False
            with self._skip_lock:
                if fault.skip > 0:
                    fault.skip -= 1
                    return False
            return True

        return super().take(due)
