"""`with thing:` for the sandbox's servers and processes: start on enter, stop on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Running:
    """Mixin for classes with `start() -> Self` and `stop()`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
