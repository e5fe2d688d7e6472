"""Token counts a cloud backend reports in its answers (`usage`), for the cloud-tokens metric.

A whole answer carries `usage` in its JSON; a stream carries it in a last event when the
client asked for it (`stream_options.include_usage`). Events are read line by line from the
bytes as they pass, whatever the chunk boundaries.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

# An SSE line longer than this is not a usage event (those are ~100 bytes); don't buffer it.
MAX_LINE_BYTES = 64 * 1024


class UsageScanner:
    """Adds up `usage.prompt_tokens` and `usage.completion_tokens` seen in an answer."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._partial = b""

    def feed_whole(self, body: bytes) -> None:
        """A non-streamed answer's JSON body."""
        with contextlib.suppress(ValueError):
            self._add(json.loads(body))

    def feed(self, chunk: bytes) -> None:
        """The next bytes of an SSE stream."""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            self._partial = b""
        for line in lines:
            if line.startswith(b"data: {") and b'"usage"' in line:
                try:
                    self._add(json.loads(line[len(b"data: ") :]))
                except ValueError:
                    continue

    def _add(self, document: Any) -> None:
        usage = document.get("usage") if isinstance(document, dict) else None
        if isinstance(usage, dict):
            self.prompt_tokens += _count(usage.get("prompt_tokens"))
            self.completion_tokens += _count(usage.get("completion_tokens"))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
