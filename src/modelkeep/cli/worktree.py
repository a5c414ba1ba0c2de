"""Commands for the Git work tree: status, checkout, install-hooks."""

from __future__ import annotations

import click

from modelkeep.cli import render
from modelkeep.cli.common import json_option, open_repo
from modelkeep.cli.progress import progress_for

_HINT = {
    "modified": "changed since it was added",
    "missing": "not in the work tree; `modelkeep checkout` restores it",
    "not-in-store": "its version is not in this repository's store",
}


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Tracked paths that differ from modelkeep.lock (modified, missing, not in the store)."""
    found = open_repo(ctx).status()
    if as_json:
        render.emit_json({"paths": [s.to_json() for s in found]})
        return
    changed = [s for s in found if s.state != "ok"]
    if not found:
        click.echo(
            "no tracked paths; `modelkeep add PATH --name NAME` in a Git work tree tracks one"
        )
    elif not changed:
        click.echo(f"{len(found)} tracked path(s) match modelkeep.lock")
    for s in changed:
        if s.holds is not None and s.state == "modified":
            hint = f"holds {s.holds}, the lock says {s.ref}: run `modelkeep checkout`"
            click.echo(f"{'other version:':<14} {s.path}  ({hint})")
        else:
            click.echo(f"{s.state + ':':<14} {s.path}  ({s.ref}; {_HINT[s.state]})")


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--force", "-f", is_flag=True, help="Discard changes that no version holds.")
@json_option
@click.pass_context
def checkout(ctx: click.Context, paths: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Make tracked paths (all, or PATHS) match modelkeep.lock."""
    restored = open_repo(ctx).checkout(paths, force=force, progress=progress_for(as_json))
    if as_json:
        render.emit_json({"restored": [s.to_json() for s in restored]})
        return
    for s in restored:
        click.echo(f"restored {s.path} ({s.ref})")
    if not restored:
        click.echo("tracked paths already match modelkeep.lock")


@click.command("install-hooks")
@click.option("--force", "-f", is_flag=True, help="Replace a post-checkout hook not ours.")
@json_option
@click.pass_context
def install_hooks(ctx: click.Context, force: bool, as_json: bool) -> None:
    """Install a Git post-checkout hook: `git checkout` then brings back data and models."""
    hook = open_repo(ctx).install_hooks(force=force)
    if as_json:
        render.emit_json({"hook": str(hook)})
    else:
        click.echo(f"installed {hook}; `git checkout <commit>` now runs `modelkeep checkout`")
