"""What every command shares: the global options, opening the repository, KEY=VALUE pairs.

The grammar (docs/cli.md): the global options `--repo`, `--json` and `--quiet` are
accepted before or after the command's name; each short flag means one thing everywhere
(`-m` message, `-o` output, `-f` force, `-n` name); the short flags earlier releases gave
other meanings still work for one release, with a warning naming the long form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from modelkeep.repo import Repo

F = TypeVar("F", bound=Callable[..., Any])
TYPES = ("model", "dataset", "code", "other")

_REASON_COMMANDS = (
    "register", "promote", "archive", "rollback", "approve", "alias set", "alias remove",
    "delete",
)  # fmt: skip
# short flag -> {command path: the long option it stood for}; deprecated, removed in 0.3.
RENAMED_SHORT: dict[str, dict[str, str]] = {
    "-r": {
        **dict.fromkeys(_REASON_COMMANDS, "--reason"),
        "push": "--remote",
        "pull": "--remote",
    },
    "-f": {"lineage": "--format"},
    "-o": {"remote add": "--option"},
    "-n": {"gc": "--dry-run", "cache prune": "--dry-run"},
}
# command names that earlier releases spelled otherwise, still accepted
ALIASES = {"rm": "remove"}


@dataclass
class Globals:
    """The global options, wherever on the command line they were given (the root
    context's obj, which every command's context shares)."""

    repo: str | None = None
    json: bool = False
    quiet: bool = False


def globals_of(ctx: click.Context) -> Globals:
    return ctx.find_root().ensure_object(Globals)


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value:
        setattr(globals_of(ctx), str(param.name), value)


def global_options(f: F) -> F:
    """The root's --repo, --json and --quiet; commands take them too (Group)."""
    f = click.option(
        "--quiet", "-q", is_flag=True, expose_value=False, callback=_set_global,
        help="No progress bars or notes; results and errors still print.",
    )(f)  # fmt: skip
    f = click.option(
        "--json", "json", is_flag=True, expose_value=False, callback=_set_global,
        help="Print one JSON document (errors too, on stderr).",
    )(f)  # fmt: skip
    return click.option(
        "--repo", type=click.Path(file_okay=False), expose_value=False, callback=_set_global,
        help="Repository folder (default: found from the working directory upward).",
    )(f)  # fmt: skip


def _value_options(cmd: click.Command) -> set[str]:
    return {
        opt
        for p in cmd.params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for opt in p.opts
    }


def _command_args(ctx: click.Context, cmd: click.Command, path: str, args: list[str]) -> list[str]:
    """args with the global options taken out (into Globals) and renamed short flags
    replaced by their long form. Stops at `--`, and at the first argument of a group or
    of a command that passes what follows on (`run`)."""
    g = globals_of(ctx)
    takes_value = _value_options(cmd)
    interspersed = cmd.allow_interspersed_args and not isinstance(cmd, click.Group)
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--" or (not token.startswith("-") and not interspersed):
            break
        long = RENAMED_SHORT.get(token, {}).get(path)
        if long is not None:
            click.echo(
                f"modelkeep: warning: `{path} {token}` is deprecated; write {long}", err=True
            )
            token = long
        if token in ("--json", "--quiet", "-q"):
            setattr(g, "json" if token == "--json" else "quiet", True)
        elif token == "--repo" and i + 1 < len(args):
            g.repo = args[i + 1]
            i += 1
        elif token.startswith("--repo="):
            g.repo = token.partition("=")[2]
        else:
            out.append(token)
            if token in takes_value:
                out.extend(args[i + 1 : i + 2])
                i += 1
        i += 1
    out.extend(args[i:])
    if g.json and any(p.name == "as_json" for p in cmd.params):
        out.insert(0, "--json")
    return out


class Group(click.Group):
    """A command group whose commands take the global options after their name too, and
    the short flags of earlier releases, with a warning."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            path = " ".join([*ctx.command_path.split()[1:], str(cmd.name)])
            rest = _command_args(ctx, cmd, path, rest)
        return name, cmd, rest


def json_option(f: F) -> F:
    """--json for a command: also set by the global --json, before or after the command."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def open_repo(ctx: click.Context) -> Repo:
    """The repository --repo names (a folder, or a server's URL); else the server that
    MODELKEEP_SERVER or the project's modelkeep.toml names; else the one found from here."""
    from pathlib import Path

    from modelkeep import client

    given = globals_of(ctx).repo
    server = given if client.is_url(given) else None
    if given is None:
        server = client.configured_server(Path.cwd())
    repo = client.open_server(server) if server else client.open(given or ".")
    ctx.call_on_close(repo.close)
    return repo


def store_db(ctx: click.Context, what: str) -> Any:
    """The metadata database of a local store, for commands that change it directly
    (webhooks): refused with one line when the repository is a server's."""
    repo = open_repo(ctx)
    conn = getattr(repo, "conn", None)
    if conn is not None:
        from modelkeep.errors import InvalidArgument

        raise InvalidArgument(f"{what} on the server's machine, not through {conn.url}")
    return repo.db


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
