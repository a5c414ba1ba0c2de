"""`modelkeep remote add/list/remove`, `push`, `pull` and `cache prune`."""

from __future__ import annotations

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, json_option, open_repo, parse_metadata, parse_size
from modelkeep.cli.progress import progress_for


@click.group(cls=Group)
def remote() -> None:
    """Remotes: folders, S3, GCS or Azure locations holding this repository's objects."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--default", "-d", "default", is_flag=True, help="Push to and fetch from it.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Backend option: endpoint_url, region, profile (s3); project (gs); account_name (az).",
)
@click.option(
    "--project",
    is_flag=True,
    help="Write it to the committed modelkeep.toml, for every clone (default: this repository).",
)
@json_option
@click.pass_context
def remote_add(
    ctx: click.Context,
    name: str,
    url: str,
    default: bool,
    options: tuple[str, ...],
    project: bool,
    as_json: bool,
) -> None:
    """Add remote NAME at URL: a folder, file:///PATH, s3://BUCKET/PREFIX, gs://…, az://…

    Credentials never go in the URL or options: they come from the environment or the
    provider's own configuration (AWS profiles, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*)."""
    pairs = {k: str(v) for k, v in parse_metadata(options, "--option").items()}
    made = open_repo(ctx).add_remote(name, url, default=default, options=pairs, project=project)
    if as_json:
        render.emit_json(made.to_json())
    else:
        shown = made.shown()
        where = " in modelkeep.toml" if project else ""
        mark = " (default)" if shown.default else ""
        click.echo(f"added remote {shown.name} {shown.url}{mark}{where}")


@remote.command("list")
@json_option
@click.pass_context
def remote_list(ctx: click.Context, as_json: bool) -> None:
    """List remotes: the project's (modelkeep.toml) and this repository's; the default is marked."""
    # Masked: an old or hand-edited remotes.toml may hold a credential; never print it.
    remotes = [r.shown() for r in open_repo(ctx).remotes()]
    if as_json:
        render.emit_json({"remotes": [r.to_json() for r in remotes]})
        return
    if not remotes:
        click.echo("no remotes; add one with `modelkeep remote add NAME URL --default`")
        return
    render.table(
        ["name", "url", "default", "scope", "options"],
        [
            [
                r.name,
                r.url,
                "*" if r.default else "",
                r.scope,
                " ".join(f"{k}={v}" for k, v in r.options),
            ]
            for r in remotes
        ],
    )


@remote.command("remove")
@click.argument("name")
@click.option("--project", is_flag=True, help="Remove it from the committed modelkeep.toml.")
@json_option
@click.pass_context
def remote_remove(ctx: click.Context, name: str, project: bool, as_json: bool) -> None:
    """Forget remote NAME (nothing on it is deleted; `remote rm` also works).

    This repository's own remote of that name goes first; a project one with --project,
    or when there is no own one."""
    gone = open_repo(ctx).remove_remote(name, project=project)
    if as_json:
        render.emit_json({"removed": gone.to_json()})
    else:
        click.echo(f"removed remote {gone.name} ({gone.url}); its objects stay where they are")


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--remote", "remote_name", default=None, help="Remote (default: the default).")
@json_option
@click.pass_context
def push(ctx: click.Context, refs: tuple[str, ...], remote_name: str | None, as_json: bool) -> None:
    """Upload what the remote lacks for REFS (default: every version not yet pushed)."""
    result = open_repo(ctx).push(refs, remote=remote_name, progress=progress_for(as_json))
    if as_json:
        render.emit_json(result.to_json())
        return
    if not result.versions:
        click.echo(f"nothing to push: every version here is on {result.remote}")
        return
    click.echo(
        f"pushed {len(result.versions)} version(s) to {result.remote}: "
        f"{result.objects} new objects, {render.size(result.bytes)} in {result.packs} pack(s)"
    )


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--remote", "remote_name", default=None, help="Remote (default: the default).")
@click.option(
    "--all", "everything", is_flag=True, help="Every version the remote holds records of."
)
@json_option
@click.pass_context
def pull(
    ctx: click.Context,
    refs: tuple[str, ...],
    remote_name: str | None,
    everything: bool,
    as_json: bool,
) -> None:
    """Bring REFS from the remote with their records (run, registry history), even when
    this store has never seen them; every object is verified first."""
    if not refs and not everything:
        raise click.UsageError("name the versions to pull (NAME, NAME:vN, NAME@STAGE) or --all")
    result = open_repo(ctx).pull(
        refs, remote=remote_name, all=everything, progress=progress_for(as_json)
    )
    if as_json:
        render.emit_json(result.to_json())
        return
    for was, now in result.renumbered:
        click.echo(f"renumbered: this store's unpushed {was} is now {now}")
    if result.imported:
        click.echo(f"records of {len(result.imported)} version(s) brought from the remote")
    click.echo(
        f"pulled {', '.join(result.versions) or 'nothing'} from {result.remote}: "
        f"{result.objects} objects, {render.size(result.bytes)}"
    )


@click.group(cls=Group)
def cache() -> None:
    """The local object cache."""


@cache.command("prune")
@click.option("--max-size", required=True, metavar="SIZE", help="Target size, e.g. 20G, 500M.")
@click.option("--dry-run", is_flag=True, help="Only report what would be dropped.")
@json_option
@click.pass_context
def cache_prune(ctx: click.Context, max_size: str, dry_run: bool, as_json: bool) -> None:
    """Drop local chunks a remote holds, least recently used first; never the only copy."""
    r = open_repo(ctx).prune_cache(parse_size(max_size), dry_run=dry_run)
    if as_json:
        render.emit_json(
            {
                "dry_run": r.dry_run,
                "size_before": r.size_before,
                "size_after": r.size_after,
                "packs_dropped": r.packs_dropped,
                "chunks_dropped": r.chunks_dropped,
                "kept_only_copy": r.kept_only_copy,
            }
        )
        return
    verb = "would shrink" if dry_run else "shrank"
    line = f"{verb} the cache from {render.size(r.size_before)} to {render.size(r.size_after)}"
    if r.size_after > parse_size(max_size):
        line += "; the rest is on no remote (push it first: `modelkeep push`)"
    click.echo(line)


COMMANDS = [remote, push, pull, cache]
