"""Progress reporting as a callback object, with a do-nothing default.

Library code always calls a progress object; whether anything is drawn is decided by
whoever passed it (the CLI draws a bar on a terminal; Python callers get silence).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int | None, label: str) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    def start(self, total: int | None, label: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


NULL_PROGRESS: Progress = NullProgress()
