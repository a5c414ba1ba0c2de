"""The `modelkeep` command: parse, make one library call, render.

Exit codes: 0 success, 1 a refused or failed operation (one line on stderr naming the
problem and the next step), 2 a usage error. The library is imported inside commands so
that `modelkeep --help` starts fast.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from modelkeep.cli import database as database_cli
from modelkeep.cli import evaluations as evaluations_cli
from modelkeep.cli import imports as imports_cli
from modelkeep.cli import reference, render
from modelkeep.cli import registry as registry_cli
from modelkeep.cli import remotes as remotes_cli
from modelkeep.cli import reproduce as reproduce_cli
from modelkeep.cli import runs as runs_cli
from modelkeep.cli import server as server_cli
from modelkeep.cli import ui as ui_cli
from modelkeep.cli import webhooks as webhooks_cli
from modelkeep.cli import worktree as worktree_cli
from modelkeep.cli.common import (
    TYPES,
    Globals,
    Group,
    global_options,
    globals_of,
    json_option,
    open_repo,
    parse_metadata,
    parse_time,
)
from modelkeep.cli.progress import progress_for
from modelkeep.errors import DigestNotFound
from modelkeep.refs import is_full_id

if TYPE_CHECKING:
    from modelkeep.meta import Version


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="modelkeep")
def cli() -> None:
    """modelkeep: immutable, verified, deduplicated versions of models and data.

    The global options --repo, --json and --quiet go before or after the command.
    """


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@json_option
@click.pass_context
def init(ctx: click.Context, path: str, as_json: bool) -> None:
    """Create a repository in PATH (default: here)."""
    import modelkeep

    given = globals_of(ctx).repo
    target = given if given and path == "." else path
    repo = modelkeep.init(target)
    repo.close()
    if as_json:
        render.emit_json({"root": str(repo.root), "control_dir": str(repo.root / ".modelkeep")})
    else:
        click.echo(f"initialised an empty modelkeep repository in {repo.root / '.modelkeep'}")


@cli.command()
@click.argument("path", type=click.Path(readable=False))  # the library names what is unreadable
@click.option(
    "--name", "-n", required=True, help="Artifact name, e.g. fraud-detector or team/fraud."
)
@click.option(
    "--type",
    "-t",
    "type_",
    type=click.Choice(TYPES),
    default=None,
    help="Artifact type (new artifacts default to other).",
)
@click.option("--message", "-m", default="", help="What this version is.")
@click.option("--meta", "metas", multiple=True, metavar="KEY=VALUE", help="Metadata; repeatable.")
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    path: str,
    name: str,
    type_: str | None,
    message: str,
    metas: tuple[str, ...],
    as_json: bool,
) -> None:
    """Store a file or folder as the next version of NAME.

    Inside a Git work tree the path is recorded in modelkeep.lock and .gitignore. Under
    `modelkeep run`, the version is an output of that run.
    """
    metadata = parse_metadata(metas)
    repo = open_repo(ctx)
    result = repo.add(
        path,
        name,
        type=type_,
        message=message,
        metadata=metadata,
        progress=progress_for(as_json),
    )
    if as_json:
        render.emit_json(result.to_json())
        return
    v = result.version
    if result.same_as is not None:
        click.echo(
            f"{v.ref}  {v.short_digest}  same content as {v.ref}, an older version: no new number"
        )
        return
    if not result.created:
        click.echo(f"{v.ref}  {v.short_digest}  unchanged: the content is already {v.ref}")
        return
    click.echo(
        f"{v.ref}  {v.short_digest}  {render.size(v.size)}  "
        f"({render.size(result.new_bytes)} new, {render.size(result.reused_bytes)} reused)"
    )


@cli.command("ls")
@json_option
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List artifacts: name, type, latest version, size."""
    artifacts = open_repo(ctx).artifacts()
    if as_json:
        render.emit_json({"artifacts": [a.to_json() for a in artifacts]})
        return
    if not artifacts:
        click.echo("no artifacts yet; add one with `modelkeep add PATH --name NAME`")
        return
    render.table(
        ["name", "type", "latest", "size", "updated"],
        [
            [
                a.name,
                a.type,
                f"v{a.latest.number}" if a.latest else "-",
                render.size(a.latest.size if a.latest else None),
                render.when(a.latest.created_at) if a.latest else "-",
            ]
            for a in artifacts
        ],
    )


@cli.command()
@click.argument("name")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="METRIC",
    help="Add a column: a run metric or evaluation (auc), or eval[DATASET].KEY; repeatable.",
)
@json_option
@click.pass_context
def versions(ctx: click.Context, name: str, metrics: tuple[str, ...], as_json: bool) -> None:
    """List the versions of NAME, oldest first.

    Each --metric adds a column read as a promotion gate reads it: `auc` is the producing
    run's last auc, else the latest evaluation of auc; `eval[holdout].auc` the latest
    evaluation of auc on a version of holdout. Blank where a version has none.
    """
    from modelkeep.meta.run_reads import json_number

    repo = open_repo(ctx)
    rows = repo.versions(name)
    columns = list(dict.fromkeys(metrics))
    values = repo.version_metrics(name, columns) if columns else [{} for _ in rows]
    if as_json:
        docs = [v.to_json() for v in rows]
        if columns:
            for doc, got in zip(docs, values, strict=True):
                doc["metrics"] = {
                    c: json_number(x) if (x := got.get(c)) is not None else None for c in columns
                }
        render.emit_json({"name": name, "versions": docs})
        return

    def stage(v: Version) -> str:
        if v.deleted_at is not None:
            return f"deleted {render.when(v.deleted_at)}"
        return v.stage if v.registered else "-"

    render.table(
        ["version", "created", "user", "size", "digest", "stage", *columns, "message"],
        [
            [
                f"v{v.number}",
                render.when(v.created_at),
                v.user,
                render.size(v.size),
                v.short_digest,
                stage(v),
                *(
                    evaluations_cli.number(x) if (x := got.get(c)) is not None else ""
                    for c in columns
                ),
                v.message,
            ]
            for v, got in zip(rows, values, strict=True)
        ],
    )


@cli.command()
@click.argument("ref")
@click.option("--at", "at", default=None, metavar="TIME", help="Resolve REF as it was then.")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, at: str | None, as_json: bool) -> None:
    """Everything known about one version, with the file list of a folder."""
    repo = open_repo(ctx)
    v = repo.show(ref, at=parse_time(at))
    files = repo.files(v)
    pushed_to = repo.pushed_to(v)
    evaluated = repo.evaluations(v)
    if as_json:
        render.emit_json(
            {
                **v.to_json(),
                "pushed_to": list(pushed_to),
                "files": [f.to_json() for f in files],
                "evaluations": [e.to_json() for e in evaluated],
            }
        )
        return
    click.echo(f"{v.ref}  ({v.type}, {v.kind})")
    fields = [
        ("digest", v.digest),
        ("size", f"{render.size(v.size)} ({v.size} bytes) in {v.file_count} file(s)"),
        ("source", v.source_name),
        ("created", render.when(v.created_at)),
        ("user", v.user),
        ("host", v.host or "-"),
        ("pushed", ", ".join(pushed_to) or "not pushed"),
        ("message", v.message or "-"),
    ]
    if v.run_id:
        fields.append(("run", v.run_id))
    if v.registered:
        fields.append(("stage", v.stage))
    for key, value in sorted(v.metadata.items()):
        fields.append((f"meta.{key}", json.dumps(value)))
    for key, value in fields:
        click.echo(f"  {key:<9} {value}")
    if evaluated:
        click.echo("  evaluations:")
        for line in evaluations_cli.lines(evaluated):
            click.echo(f"    {line}")
    if v.kind == "dir":
        click.echo("  files:")
        for f in files:
            if f.kind != "dir":
                mark = {"file": "x" if f.mode & 0o111 else " ", "link": "@"}[f.kind]
                click.echo(f"    {mark} {render.size(f.size):>10}  {f.path}")


@cli.command()
@click.argument("ref")
@click.option("--output", "-o", default=None, help="Where to write (default: its name, here).")
@click.option("--path", "inner", default=None, help="One file or folder inside the version.")
@click.option("--force", "-f", is_flag=True, help="Replace the destination if it exists.")
@click.option("--at", "at", default=None, metavar="TIME", help="Resolve REF as it was then.")
@json_option
@click.pass_context
def get(
    ctx: click.Context,
    ref: str,
    output: str | None,
    inner: str | None,
    force: bool,
    at: str | None,
    as_json: bool,
) -> None:
    """Restore a version (or one path in it): exact bytes and executable bits.

    Under `modelkeep run`, the version is recorded as an input of that run.
    """
    repo = open_repo(ctx)
    when = parse_time(at)
    target: Version | str = ref
    try:
        target = repo.show(ref, at=when)
    except DigestNotFound:
        if when is not None or inner or not is_full_id(ref):
            raise  # else a lock file's id no version here records: fetched by id
    dest = repo.get(target, output, path=inner, force=force, progress=progress_for(as_json))
    shown = ref if isinstance(target, str) else target.ref
    if as_json:
        render.emit_json({"ref": shown, "path": str(dest)})
    else:
        click.echo(f"restored {shown}{' ' + inner if inner else ''} to {dest}")


@cli.command()
@click.argument("old")
@click.argument("new")
@json_option
@click.pass_context
def diff(ctx: click.Context, old: str, new: str, as_json: bool) -> None:
    """Files added, removed and modified from OLD to NEW."""
    d = open_repo(ctx).diff(old, new)
    doc = d.to_json()
    if as_json:
        render.emit_json(doc)
        return
    for c in d.changes:
        if c.status == "added":
            click.echo(f"+ {c.path}  ({render.size(c.new_size)})")
        elif c.status == "removed":
            click.echo(f"- {c.path}  ({render.size(c.old_size)})")
        else:
            click.echo(f"M {c.path}  ({render.size(c.old_size)} -> {render.size(c.new_size)})")
    n = doc["counts"]
    click.echo(
        f"{d.old.ref} -> {d.new.ref}: {n['added']} added, {n['removed']} removed, "
        f"{n['modified']} modified; +{render.size(doc['bytes_added'])} "
        f"-{render.size(doc['bytes_removed'])}"
    )


@cli.command()
@json_option
@click.pass_context
def du(ctx: click.Context, as_json: bool) -> None:
    """Logical and stored bytes, with deduplication and compression ratios."""
    u = open_repo(ctx).du()
    if as_json:
        render.emit_json(u.to_json())
        return
    click.echo(f"artifacts          {u.artifacts} ({u.versions} versions)")
    click.echo(f"logical bytes      {render.size(u.logical_bytes)}  (every version in full)")
    click.echo(f"unique bytes       {render.size(u.unique_bytes)}  ({u.chunks} chunks)")
    click.echo(f"stored bytes       {render.size(u.stored_bytes)}  ({u.packs} packs)")
    click.echo(f"dedup ratio        {u.dedup_ratio:.2f}x")
    click.echo(f"compression ratio  {u.compression_ratio:.2f}x")
    saved = 1 - u.stored_bytes / u.logical_bytes if u.logical_bytes else 0.0
    click.echo(f"saved              {saved:.1%} of plain copies")


@cli.command()
@json_option
@click.pass_context
def fsck(ctx: click.Context, as_json: bool) -> None:
    """Verify every object and every version; exit 1 naming what is damaged."""
    report = open_repo(ctx).fsck(progress=progress_for(as_json))
    if as_json:
        render.emit_json(report.to_json())
    elif report.ok:
        click.echo(f"ok: {report.objects} objects, {render.size(report.bytes)} verified")
    else:
        for p in report.problems:
            held = f" (in {', '.join(p.roots)})" if p.roots else ""
            click.echo(f"damaged: {p.object}: {p.reason}{held}", err=True)
        click.echo(
            f"{len(report.problems)} problem(s) in {report.objects} objects; restore the "
            "affected versions from a copy, or re-add their files",
            err=True,
        )
    if not report.ok:
        ctx.exit(1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be freed.")
@json_option
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Remove stored data that no version references."""
    r = open_repo(ctx).gc(dry_run=dry_run)
    if as_json:
        render.emit_json(r.to_json())
        return
    verb = "would free" if dry_run else "freed"
    click.echo(f"{verb} {render.size(r.bytes_freed)} ({r.objects_removed} unreferenced objects)")


for command in registry_cli.COMMANDS:
    cli.add_command(command)
for command in remotes_cli.COMMANDS:
    cli.add_command(command)
cli.add_command(runs_cli.run)
cli.add_command(runs_cli.runs)
cli.add_command(runs_cli.env)
cli.add_command(runs_cli.lineage)
cli.add_command(worktree_cli.status)
cli.add_command(worktree_cli.checkout)
cli.add_command(worktree_cli.install_hooks)
cli.add_command(database_cli.migrate)
cli.add_command(reproduce_cli.reproduce)
cli.add_command(evaluations_cli.evaluate)
for command in server_cli.COMMANDS:
    cli.add_command(command)
cli.add_command(webhooks_cli.webhook)
cli.add_command(imports_cli.import_)
cli.add_command(ui_cli.ui)
reference.attach_examples(cli)


def _fields(exc: BaseException) -> dict[str, object]:
    """The fields an error carries (VersionNotFound's name and version…), JSON-ready."""
    out: dict[str, object] = {}
    for key, value in vars(exc).items():
        if key.startswith("_") or key in ("error", "message", "show_color"):
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
    return out


def _fail(g: Globals, exc: BaseException, message: str, code: int) -> int:
    """One line on stderr, or under --json one JSON object with the error's fields."""
    if g.json:
        doc = {"error": type(exc).__name__, "message": message, **_fields(exc)}
        click.echo(json.dumps(doc, ensure_ascii=True), err=True)
    elif isinstance(exc, click.ClickException):
        exc.show()
    elif isinstance(exc, click.exceptions.Abort):
        click.echo(message, err=True)
    else:
        click.echo(f"modelkeep: error: {message}", err=True)
    return code


def _one_line_warnings() -> None:
    """modelkeep's own warnings (a skipped remote pack, a kept local one) are one line on
    stderr, like its errors, not Python's two-line source excerpt."""
    import warnings

    from modelkeep.errors import ModelkeepWarning

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
        if issubclass(category, ModelkeepWarning):
            click.echo(f"modelkeep: warning: {message}", err=True)
        else:
            shown(message, category, *args, **kw)  # type: ignore[arg-type]

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes (and, under --json, JSON) at this one seam."""
    from modelkeep.errors import ModelkeepError

    g = Globals()
    _one_line_warnings()
    try:
        code = cli.main(args=argv, prog_name="modelkeep", standalone_mode=False, obj=g)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        code = _fail(g, exc, exc.format_message(), exc.exit_code)
    except click.exceptions.Abort as exc:
        code = _fail(g, exc, "aborted", 1)
    except ModelkeepError as exc:
        code = _fail(g, exc, str(exc), 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except OSError as exc:
        import errno

        target = f"{exc.filename}: " if exc.filename else ""
        hint = "free some space" if exc.errno == errno.ENOSPC else "check the path"
        code = _fail(g, exc, f"{target}{exc.strerror or exc}; {hint}", 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
