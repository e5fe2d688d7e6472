"""A per-repo lock so two fetches (or a fetch and a prune) never write the same repo at once.

It is an flock on a file on the weights volume: the kernel releases it when its holder dies,
so a killed fetch never leaves it behind. A holder that hangs keeps it: then waiting is
bounded and the error names the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from llm_rollout.weights.errors import WeightsLocked

POLL_SECONDS = 0.2


class RepoLock:
    """Exclusive lock on `path`, waiting at most `timeout` seconds for it."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._handle: IO[str] | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _describe_holder(self.path)
                    handle.close()
                    raise WeightsLocked(
                        f"{self.path} is held by {holder} and was not released within "
                        f"{self.timeout:.0f}s; if that process is hung, stop it (the lock is "
                        "released when it exits), then run again"
                    ) from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        handle.write(json.dumps(me))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not holder:
        return "another process"
    age = time.time() - float(holder.get("since", time.time()))
    return f"pid {holder.get('pid')} on {holder.get('host')} (for {age:.0f}s)"
