"""Process liveness: whether the process that owns a run still runs."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

STALE = timedelta(minutes=10)  # a run on another host silent this long is taken as killed


def proc_start(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state) of a process, from /proc; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19]), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def alive(host: str, pid: int, started: int | None, beat: datetime) -> bool:
    """Whether the process that owns a run still runs: on this host, by its pid and start
    time (a reused pid is another process); on another host, by a recent heartbeat."""
    if host != socket.gethostname():
        return datetime.now(UTC) - beat < STALE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = proc_start(pid)
    if now is None:
        return True
    return now[1] != "Z" and (started is None or now[0] == started)
