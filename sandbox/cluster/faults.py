"""Ways the sandbox API server can be told to misbehave, for the cluster client's tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sandbox.faultbook import FaultBook

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


class ApiFaultBook(FaultBook[ApiFault]):
    """The API server's active faults."""
