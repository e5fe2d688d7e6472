"""Progress of byte-heavy work (download, hashing), reported to whoever shows it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress; `advance` may be called from several threads at once."""

    def start(self, label: str, total_bytes: int) -> None: ...

    def advance(self, done_bytes: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """Shows nothing."""

    def start(self, label: str, total_bytes: int) -> None:
        pass

    def advance(self, done_bytes: int) -> None:
        pass

    def finish(self) -> None:
        pass
