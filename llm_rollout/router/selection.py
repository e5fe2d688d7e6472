"""Which local release serves a request: exact weights, sticky per conversation.

- A request with a session key (a user or session header) goes to the release with the
  highest weighted rendezvous score for that key (Schindelhauer & Schomaker's weighted HRW:
  score = -weight / ln(hash)). The same conversation keeps landing on the same release, so
  vLLM's prefix cache keeps its history; each release gets its weight's share of keys; when
  the controller moves weight to the canary, only conversations that move to the canary move.
- A request without one is placed by smooth weighted round-robin (nginx's algorithm):
  over any run of requests the counts match the weights to within one request.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from llm_rollout.router.config import Release


def _unit_hash(key: str, release_id: str) -> float:
    """A uniform number in (0, 1) for this (key, release) pair, the same in every process."""
    digest = hashlib.blake2b(f"{release_id}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


class ReleasePicker:
    """Picks releases by weight; keeps the round-robin state of one config version."""

    def __init__(self, releases: Sequence[Release]) -> None:
        self.releases = [release for release in releases if release.weight > 0]
        self._current = {release.id: 0.0 for release in self.releases}

    def pick(self, session_key: str | None) -> Release | None:
        """The release for this request; None when no release has weight."""
        if not self.releases:
            return None
        if session_key:
            return max(
                self.releases,
                key=lambda r: -r.weight / math.log(_unit_hash(session_key, r.id)),
            )
        total = sum(release.weight for release in self.releases)
        for release in self.releases:
            self._current[release.id] += release.weight
        chosen = max(self.releases, key=lambda r: self._current[r.id])
        self._current[chosen.id] -= total
        return chosen


class ShareSampler:
    """Says yes to exactly `share` of the calls, evenly spread (an error-diffusing counter)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._credit = 0.0

    def take(self) -> bool:
        """True for this call's copy."""
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False
