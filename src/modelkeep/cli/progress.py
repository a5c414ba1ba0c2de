"""A progress bar on a terminal for work that takes more than about a second."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelkeep.cli.common import globals_of
from modelkeep.progress import NULL_PROGRESS, Progress

DELAY = 1.0  # seconds of work before a bar appears


class BarProgress:
    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int | None, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            delay=DELAY,  # nothing is drawn for work that finishes within a second
            leave=False,
            file=sys.stderr,
        )

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_for(as_json: bool) -> Progress:
    """A bar on a terminal; none under --json or --quiet, or when stderr is not a terminal."""
    ctx = click.get_current_context(silent=True)
    quiet = ctx is not None and globals_of(ctx).quiet
    if as_json or quiet or not sys.stderr.isatty():
        return NULL_PROGRESS
    return BarProgress()
