"""`modelkeep migrate`: move the store's records to another metadata database."""

from __future__ import annotations

import click

from modelkeep.cli import render
from modelkeep.cli.common import json_option, open_repo
from modelkeep.cli.progress import progress_for


@click.command()
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The empty database to move to: postgresql://HOST/DB, sqlite (the default file "
    "in .modelkeep/) or sqlite:///PATH.",
)
@json_option
@click.pass_context
def migrate(ctx: click.Context, to: str, as_json: bool) -> None:
    """Move every record of this store to another, empty metadata database, and switch.

    Versions, runs, params, metrics, environments, lineage, aliases, registry events with
    their hash chain, and pushes are copied in one transaction and checked (rows per
    table, the audit chain); then the store is bound to the new database and database_url
    is written in .modelkeep/config.toml. A failure leaves the old database in use,
    untouched. The old default SQLite file is kept as .modelkeep/meta.sqlite.moved-TIME;
    the store refuses gc and add against the old database from then on.
    """
    moved = open_repo(ctx).migrate(to, progress=progress_for(as_json))
    if as_json:
        render.emit_json(moved.to_json())
        return
    if moved.finished:
        click.echo(f"finished switching to {moved.target}: its records were copied before")
    else:
        click.echo(f"copied {moved.records} records from {moved.source} to {moved.target}")
    click.echo(
        f"audit chain verified: {moved.events} events, head {moved.head[:16]}; this store "
        f"now uses {moved.target} (database {moved.database_id[:12]})"
    )
    if moved.kept:
        click.echo(f"the old database file is kept as {moved.kept}")
