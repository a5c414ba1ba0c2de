"""A command's output, passed through live and kept (its tail, up to a limit).

`modelkeep run` reads the command's standard output and error through pipes, writes every
byte on to its own streams as it arrives (the user still watches the command work), and
keeps the last `limit` bytes of each, to attach to the run. Only the tail is kept: a
training log's end says how it ended.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import IO

READ = 64 * 1024
_WRITING = threading.Lock()


class Tail:
    """The last `limit` bytes written, and how many bytes were written in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._buf)

    def value(self) -> bytes:
        return bytes(self._buf)


class Tee:
    """Copies a pipe to out as it arrives, keeping its tail; join() when the pipe closes."""

    def __init__(self, pipe: IO[bytes], out: Callable[[bytes], None], limit: int) -> None:
        self.tail = Tail(limit)
        self._pipe = pipe
        self._out = out
        self._thread = threading.Thread(target=self._pump, daemon=True, name="mk-tee")
        self._thread.start()

    def _pump(self) -> None:
        fd = self._pipe.fileno()
        while True:
            try:
                data = os.read(fd, READ)
            except OSError:
                break
            if not data:
                break
            self.tail.write(data)
            # parallel commands share our streams: whole reads, not bytes; and if our own
            # stream is closed, keep capturing
            with _WRITING, contextlib.suppress(OSError, ValueError):
                self._out(data)
        self._pipe.close()

    def join(self) -> Tail:
        self._thread.join()
        return self.tail
