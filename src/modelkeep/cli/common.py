"""What every command shares: the --json flag, opening the repository, KEY=VALUE pairs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from modelkeep.repo import Repo

F = TypeVar("F", bound=Callable[..., Any])
TYPES = ("model", "dataset", "code", "other")


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def open_repo(ctx: click.Context) -> Repo:
    import modelkeep

    repo = modelkeep.open(ctx.obj or ".")
    ctx.call_on_close(repo.close)
    return repo


def parse_metadata(pairs: tuple[str, ...], option: str = "--meta") -> dict[str, Any]:
    """KEY=VALUE pairs; a value that parses as JSON (0.01, true, [1,2]) keeps its type."""
    from modelkeep.errors import InvalidArgument

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"{pair!r} is not KEY=VALUE; write e.g. {option} lr=0.01")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601 (`2026-11-03`, `2026-11-03 14:00`, `…T14:00:00Z`); no zone means local time."""
    if text is None:
        return None
    from modelkeep.errors import InvalidArgument

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(
            f"cannot read time {text!r}; write e.g. 2026-11-03, '2026-11-03 14:00' or "
            "2026-11-03T14:00:00Z"
        ) from exc
    return moment if moment.tzinfo else moment.astimezone()


def write_atomically(path: str, text: str) -> None:
    """Write text to path through a temporary sibling, so a failure leaves no half file."""
    import os
    import tempfile

    from modelkeep.errors import InvalidArgument

    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".modelkeep-")
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path!r}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """A byte count: 123, 500M, 20G, 1.5GiB, 2TB (binary units)."""
    import re

    from modelkeep.errors import InvalidArgument

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if match is None:
        raise InvalidArgument(f"cannot read size {text!r}; write e.g. 20G, 500M or 1048576")
    return int(float(match.group(1)) * _UNITS[match.group(2)])
