"""Commands for runs and lineage: run, runs, env, lineage."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, json_option, open_repo, parse_metadata, parse_size

if TYPE_CHECKING:
    from modelkeep.meta import RunRecord


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _key_metrics(run: RunRecord, keys: int = 3) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in list(run.metrics.items())[:keys])


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", "-n", default=None, help="Run name (default: the script's name).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option(
    "--sweep",
    "sweeps",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Run COMMAND once per point of the grid, each in a child run; repeatable.",
)
@click.option(
    "--jobs", "-j", default="1", metavar="N", help="Sweep points run at once.  [default: 1]"
)
@click.option(
    "--capture-limit",
    default="10M",
    metavar="SIZE",
    help="Attach the last SIZE of stdout and of stderr to the run; 0: do not.  [default: 10M]",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    name: str | None,
    params: tuple[str, ...],
    sweeps: tuple[str, ...],
    jobs: str,
    capture_limit: str,
    command: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run COMMAND as a recorded run: code, environment, command, exit status, output.

    Write it after `--`: `modelkeep run --name train -p lr=0.01 -- python train.py`. The
    command sees MODELKEEP_RUN_ID, so mk.current_run() in it joins this run (and
    mk.start_run(name=...) starts a run nested in it). Its stdout and stderr pass through
    and are attached to the run (`runs get RUN stdout.txt`). modelkeep exits with the
    command's status.

    With `--sweep lr=0.01,0.1 --sweep depth=4,8` the command runs once per combination,
    each in a child run of one parent run, with the values as params, as environment
    variables (MODELKEEP_PARAM_LR, MODELKEEP_PARAM_DEPTH) and in place of {lr} and {depth}
    in COMMAND; then a table of the results is printed. A failing point exits 1.
    """
    from modelkeep.errors import InvalidArgument
    from modelkeep.run import run_command

    values = parse_metadata(params, "--param")
    limit = parse_size(capture_limit)
    if not sweeps and jobs != "1":
        raise InvalidArgument("--jobs runs the points of a sweep; give --sweep KEY=V1,V2 too")
    if sweeps:
        _sweep(ctx, name, values, sweeps, jobs, limit, command, as_json)
        return
    repo = open_repo(ctx)
    record, code = run_command(repo, list(command), name=name, params=values, capture_limit=limit)
    if as_json:  # the command's own output went before, on the same streams
        render.emit_json({"run": record.to_json(), "exit_code": code})
    else:
        _said_done(record)
    ctx.exit(code if code >= 0 else 128 - code)


def _said_done(record: RunRecord) -> None:
    duration = f"{record.duration:.1f} s" if record.duration is not None else "-"
    detail = f": {record.error}" if record.error else ""
    click.echo(
        f"modelkeep: run {record.short_id} ({record.name}) {record.status} in {duration}{detail}",
        err=True,
    )


def _sweep(
    ctx: click.Context,
    name: str | None,
    values: dict[str, Any],
    sweeps: tuple[str, ...],
    jobs: str,
    limit: int,
    command: tuple[str, ...],
    as_json: bool,
) -> None:
    from modelkeep.errors import InvalidArgument
    from modelkeep.sweep import parse_axis, run_sweep

    axes = [parse_axis(text) for text in sweeps]
    if not jobs.strip().isdigit() or int(jobs) < 1:
        raise InvalidArgument(f"--jobs must be a whole number of at least 1, not {jobs!r}")
    result = run_sweep(
        open_repo(ctx),
        list(command),
        axes,
        name=name,
        params=values,
        jobs=int(jobs),
        capture_limit=limit,
    )
    if as_json:
        render.emit_json(result.to_json())
        ctx.exit(result.exit_code)
    keys = sorted({k for c in result.children for k in c.metrics})
    render.table(
        ["run", "status", *result.keys, *keys],
        [
            [
                c.short_id,
                c.status if c.exit_code in (0, None) else f"{c.status} ({c.exit_code})",
                *(json.dumps(c.params.get(k)) for k in result.keys),
                *(_number(c.metrics[k]) if k in c.metrics else "-" for k in keys),
            ]
            for c in result.children
        ],
    )
    _said_done(result.parent)
    ctx.exit(result.exit_code)


@click.group(cls=Group, invoke_without_command=True)
@click.option("--name", "-n", default=None, help="Only runs with this name.")
@click.option("--status", "-s", default=None, help="running, finished, failed or killed.")
@click.option(
    "--where",
    "-w",
    "conditions",
    multiple=True,
    metavar="EXPR",
    help='A condition like "metrics.auc > 0.9" or "params.depth = 6"; repeatable (all must hold).',
)
@click.option("--limit", "-l", default=50, show_default=True, help="At most this many runs.")
@click.option(
    "--sort",
    default=None,
    metavar="KEY",
    help="Order by metrics.K, params.K, tags.K, started, name, status or duration "
    "(ascending; runs without K last).",
)
@click.option("--desc", "descending", is_flag=True, help="With --sort: largest first.")
@click.option("--tree", is_flag=True, help="Show nested runs under the runs they ran in.")
@click.option("--deleted", "only_deleted", is_flag=True, help="Only deleted runs.")
@click.option("--all", "with_deleted", is_flag=True, help="Deleted runs too.")
@json_option
@click.pass_context
def runs(
    ctx: click.Context,
    name: str | None,
    status: str | None,
    conditions: tuple[str, ...],
    limit: int,
    sort: str | None,
    descending: bool,
    tree: bool,
    only_deleted: bool,
    with_deleted: bool,
    as_json: bool,
) -> None:
    """List runs, newest first; `runs show RUN`, `runs compare RUN RUN …`,
    `runs attach RUN PATH`, `runs get RUN NAME`, `runs tag|note|rename|delete|restore RUN`.

    --where takes "metrics.auc > 0.9", "params.depth = 6" or "tags.team = fraud"."""
    if ctx.invoked_subcommand is not None:
        return
    if descending and sort is None:
        raise click.UsageError("--desc orders what --sort names; give --sort KEY too")
    found = open_repo(ctx).runs(
        name=name,
        status=status,
        where=conditions,
        limit=limit,
        sort=sort,
        descending=descending,
        deleted="only" if only_deleted else "all" if with_deleted else "hide",
    )
    if as_json:
        render.emit_json({"runs": [r.to_json() for r in found]})
        return
    if not found:
        click.echo("no runs match; start one with `modelkeep run -- CMD` or mk.start_run()")
        return
    placed = _as_tree(found) if tree else [(0, r) for r in found]
    render.table(
        ["run", "name", "status", "started", "duration", "user", "metrics"],
        [
            [
                r.short_id,
                ("  " * (depth - 1) + "└ " if depth else "") + r.name,
                f"{r.status} (deleted)" if r.deleted else r.status,
                render.when(r.started_at),
                render.duration(r.duration),
                r.user,
                _key_metrics(r),
            ]
            for depth, r in placed
        ],
    )


def _as_tree(found: list[RunRecord]) -> list[tuple[int, RunRecord]]:
    """(depth, run) in display order: each run's children (oldest first) under it; a run
    whose parent is not listed stands at the top, newest first."""
    by_id = {r.id: r for r in found}
    out: list[tuple[int, RunRecord]] = []

    def place(r: RunRecord, depth: int) -> None:
        out.append((depth, r))
        for child in r.children:
            if child in by_id:
                place(by_id[child], depth + 1)

    for r in found:
        if r.parent_id not in by_id:
            place(r, 0)
    return out


@runs.command("show")
@click.argument("run_ref", metavar="RUN")
@click.option("--env", "full_env", is_flag=True, help="The whole environment: every package.")
@json_option
@click.pass_context
def runs_show(ctx: click.Context, run_ref: str, full_env: bool, as_json: bool) -> None:
    """Everything recorded about one run (an id or a unique prefix of one), with a summary
    of its environment (Python, OS, ML libraries, GPUs); --env prints all of it."""
    from modelkeep.capture.environment import summarize

    repo = open_repo(ctx)
    r = repo.run(run_ref)
    history = repo.metric_history(r.id)
    attached = repo.attachments(r.id)
    logged = repo.run_files(r.id)
    env_doc = repo.environment(r.id) if r.env_id else None
    if as_json:
        render.emit_json(
            {
                **r.to_json(),
                "metric_history": [m.to_json() for m in history],
                "attachments": [a.to_json() for a in attached],
                "mlflow_artifacts": [
                    {"path": f.path, "content_id": f"b3:{f.digest}", "size": f.size} for f in logged
                ],
                "environment_summary": summarize(env_doc) if env_doc is not None else None,
                **({"environment": env_doc} if full_env else {}),
            }
        )
        return
    click.echo(f"run {r.id}  {r.name}  ({r.status})")
    if r.deleted_at is not None:
        by = f" by {r.deleted_by}" if r.deleted_by else ""
        why = f": {r.delete_reason}" if r.delete_reason else ""
        click.echo(
            f"  DELETED {render.when(r.deleted_at)}{by}{why} "
            f"(`modelkeep runs restore {r.short_id}` brings it back)"
        )
    fields: list[tuple[str, str]] = [
        *([("parent", r.parent_id)] if r.parent_id else []),
        ("user", f"{r.user} on {r.host}"),
        ("started", render.when(r.started_at)),
        ("ended", render.when(r.ended_at) if r.ended_at else "-"),
        ("duration", render.duration(r.duration)),
    ]
    if r.exit_code is not None:
        fields.append(("exit code", str(r.exit_code)))
    if r.error:
        fields.append(("error", r.error))
    if r.command:
        fields.append(("command", " ".join(r.command.get("argv", []))))
        fields.append(("cwd", str(r.command.get("cwd", ""))))
    fields.append(("code", _code_summary(r.code)))
    fields.append(("env", r.env_id[:12] if r.env_id else "-"))
    for key, value in fields:
        click.echo(f"  {key:<10} {value}")
    if env_doc is not None:
        _show_env(env_doc)
    if r.tags:
        click.echo("  tags:")
        for key, text in r.tags.items():
            click.echo(f"    {key} = {text}")
    if r.note:
        click.echo("  note:")
        for line in r.note.splitlines():
            click.echo(f"    {line}")
    if r.params:
        click.echo("  params:")
        for key, value in r.params.items():
            click.echo(f"    {key} = {json.dumps(value)}")
    if r.metrics:
        click.echo("  metrics (last value):")
        for key, number in r.metrics.items():
            steps = sum(m.key == key for m in history)
            more = f"  ({steps} values)" if steps > 1 else ""
            click.echo(f"    {key} = {_number(number)}{more}")
    for title, refs in (("inputs", r.inputs), ("outputs", r.outputs)):
        if refs:
            click.echo(f"  {title}: {', '.join(refs)}")
    if r.children:
        click.echo("  children:")
        for child in r.children:
            c = repo.run(child)
            click.echo(f"    {c.short_id}  {c.name}  ({c.status})  {_key_metrics(c)}".rstrip())
    if attached:
        click.echo("  attachments:")
        for a in attached:
            click.echo(f"    {a.name}  {render.size(a.size)}  {a.content_id[:15]}")
    if logged:
        click.echo("  MLflow artifacts:")
        for f in logged:
            click.echo(f"    {f.path}  {render.size(f.size)}  b3:{f.digest[:12]}")
    if env_doc is not None and full_env:
        click.echo("  environment:")
        for line in json.dumps(
            {k: v for k, v in env_doc.items() if k != "packages"}, indent=2, sort_keys=True
        ).splitlines()[1:-1]:
            click.echo(f"  {line}")
        packages = env_doc.get("packages") or {}
        click.echo(f"  packages ({len(packages)}):")
        for name, version in packages.items():
            click.echo(f"    {name}=={version}")


def _show_env(doc: dict[str, Any]) -> None:
    from modelkeep.capture.environment import summarize

    e = summarize(doc)
    click.echo(f"  {'python':<10} {e['python'] or '-'}")
    click.echo(f"  {'os':<10} {e['os'] or '-'}")
    for g in e["gpus"]:
        detail = ", ".join(x for x in (f"driver {g['driver']}" if g["driver"] else "",
                                       g["memory"]) if x)  # fmt: skip
        click.echo(f"  {'gpu':<10} {g['name']}" + (f" ({detail})" if detail else ""))
    if e["cuda"]:
        click.echo(f"  {'cuda':<10} {e['cuda']}")
    shown = " ".join(f"{n}=={v}" for n, v in e["packages"].items()) or "none of the ML libraries"
    click.echo(f"  {'libraries':<10} {shown}  (of {e['package_count']} packages)")


def _tag_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from modelkeep.errors import InvalidArgument

    tags: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"cannot read tag {pair!r}; write KEY=VALUE, e.g. team=fraud")
        tags[key] = value
    return tags


@runs.command("tag")
@click.argument("run_ref", metavar="RUN")
@click.argument("pairs", metavar="KEY=VALUE…", nargs=-1)
@click.option("--remove", "removed", multiple=True, metavar="KEY", help="Repeatable.")
@json_option
@click.pass_context
def runs_tag(
    ctx: click.Context, run_ref: str, pairs: tuple[str, ...], removed: tuple[str, ...],
    as_json: bool,
) -> None:  # fmt: skip
    """Set tags on RUN (a value replaces the key's old one) or remove them; find tagged
    runs with `runs --where "tags.KEY = VALUE"`, sort with `runs --sort tags.KEY`."""
    if not pairs and not removed:
        raise click.UsageError("give KEY=VALUE pairs to set, or --remove KEY")
    r = open_repo(ctx).tag_run(run_ref, _tag_pairs(pairs), remove=list(removed))
    if as_json:
        render.emit_json(r.to_json())
        return
    shown = ", ".join(f"{k}={v}" for k, v in r.tags.items()) or "none"
    click.echo(f"run {r.short_id} ({r.name}) tags: {shown}")


@runs.command("note")
@click.argument("run_ref", metavar="RUN")
@click.argument("text", required=False)
@click.option(
    "--file",
    "source",
    type=click.File("r"),
    default=None,
    help="Read it from a file; - is stdin.",
)
@json_option
@click.pass_context
def runs_note(
    ctx: click.Context, run_ref: str, text: str | None, source: Any, as_json: bool
) -> None:
    """Replace RUN's note with TEXT (- reads stdin; "" removes the note)."""
    if (text is None) == (source is None):
        raise click.UsageError('give the note as TEXT or --file F (not both); "-" is stdin')
    if source is not None:
        text = source.read()
    elif text == "-":
        text = sys.stdin.read()
    assert text is not None
    r = open_repo(ctx).set_run_note(run_ref, text)
    if as_json:
        render.emit_json(r.to_json())
        return
    said = f"{len(r.note)} characters" if r.note else "removed"
    click.echo(f"run {r.short_id} ({r.name}) note: {said}")


@runs.command("rename")
@click.argument("run_ref", metavar="RUN")
@click.argument("new_name")
@json_option
@click.pass_context
def runs_rename(ctx: click.Context, run_ref: str, new_name: str, as_json: bool) -> None:
    """Give RUN a new name."""
    r = open_repo(ctx).rename_run(run_ref, new_name)
    if as_json:
        render.emit_json(r.to_json())
        return
    click.echo(f"run {r.short_id} is now named {r.name}")


@runs.command("delete")
@click.argument("run_ref", metavar="RUN")
@click.option("--reason", default="", help="Why; shown by `runs show`.")
@json_option
@click.pass_context
def runs_delete(ctx: click.Context, run_ref: str, reason: str, as_json: bool) -> None:
    """Hide an ended RUN from `runs` and `runs compare` (a soft delete).

    Its records and attachments stay (gc keeps them), `runs show RUN` and `lineage` still
    show it, and `runs restore RUN` undoes the delete. A running run cannot be deleted.
    """
    d = open_repo(ctx).delete_run(run_ref, reason=reason)
    if as_json:
        render.emit_json(d.to_json())
        return
    r = d.run
    click.echo(
        f"deleted run {r.short_id} ({r.name}); `modelkeep runs restore {r.short_id}` undoes it"
    )
    if d.kept_for:
        click.echo(f"kept for the lineage of {', '.join(d.kept_for)}")


@runs.command("restore")
@click.argument("run_ref", metavar="RUN")
@json_option
@click.pass_context
def runs_restore(ctx: click.Context, run_ref: str, as_json: bool) -> None:
    """Undo `runs delete RUN`: list and compare it again."""
    r = open_repo(ctx).restore_run(run_ref)
    if as_json:
        render.emit_json(r.to_json())
        return
    click.echo(f"restored run {r.short_id} ({r.name})")


@runs.command("attach")
@click.argument("run_ref", metavar="RUN")
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@click.option("--name", "-n", default=None, help="Name in the run (default: the file's name).")
@json_option
@click.pass_context
def runs_attach(
    ctx: click.Context, run_ref: str, path: str, name: str | None, as_json: bool
) -> None:
    """Keep the file PATH with RUN (a plot, a report): no version, lock entry or ignore line."""
    a = open_repo(ctx).attach(run_ref, path, name)
    if as_json:
        render.emit_json(a.to_json())
        return
    click.echo(f"attached {a.name} ({render.size(a.size)}) to run {a.run_id[:8]}")


@runs.command("get")
@click.argument("run_ref", metavar="RUN")
@click.argument("name")
@click.option("--output", "-o", "dest", default=None, help="Where to write it (file or folder).")
@click.option("--force", "-f", is_flag=True, help="Overwrite an existing file.")
@json_option
@click.pass_context
def runs_get(
    ctx: click.Context, run_ref: str, name: str, dest: str | None, force: bool, as_json: bool
) -> None:
    """Restore the attachment NAME of RUN, verified against its content id."""
    path = open_repo(ctx).get_attachment(run_ref, name, dest, force=force)
    if as_json:
        render.emit_json({"run": run_ref, "name": name, "path": str(path)})
        return
    click.echo(f"restored {name} to {path}")


def _code_summary(code: dict[str, Any]) -> str:
    g = code.get("git")
    if g:
        text = f"git {str(g.get('commit') or 'no commit')[:12]} on {g.get('branch') or 'detached'}"
        text += " (dirty)" if g.get("dirty") else ""
        if code.get("patch"):
            text += f"; uncommitted changes in {code['patch']}"
        return text
    if code.get("snapshot"):
        return f"snapshot {code['snapshot']}"
    return "not recorded"


@runs.command("compare")
@click.argument("refs", metavar="RUN|REF…", nargs=-1, required=True)
@click.option("--deleted", is_flag=True, help="Allow deleted runs.")
@json_option
@click.pass_context
def runs_compare(ctx: click.Context, refs: tuple[str, ...], deleted: bool, as_json: bool) -> None:
    """Params and latest metrics of several runs side by side; '*' marks differences.

    Each argument is a run id (or a unique prefix) or a version ref, which stands for the
    run that made that version. A deleted run is refused unless --deleted.
    """
    c = open_repo(ctx).compare_runs(refs, deleted=deleted)
    if as_json:
        render.emit_json(c.to_json())
        return
    table = []
    for key, values in c.rows:
        cells = [
            "-" if v is None else _number(v) if key.startswith("metrics.") else json.dumps(v)
            for v in values
        ]
        table.append(["*" if c.differs(values) else " ", key, *cells])
    render.table(["", "key", *[f"{r.short_id} {r.name}" for r in c.runs]], table)


@click.group(cls=Group)
def env() -> None:
    """Recorded environments: `env show REF`, `env diff A B` (runs or versions)."""


@env.command("show")
@click.argument("ref")
@json_option
@click.pass_context
def env_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """The environment of a run, or of the run that produced a version."""
    doc = open_repo(ctx).environment(ref)
    if as_json:
        render.emit_json(doc)
        return
    py = doc.get("python", {})
    system = doc.get("os", {})
    click.echo(f"python    {py.get('implementation', '')} {py.get('version', '')}")
    os_line = " ".join(str(system.get(k, "")) for k in ("system", "release", "machine"))
    click.echo(f"os        {os_line}")
    cpu = doc.get("cpu", {})
    click.echo(f"cpu       {cpu.get('model') or '-'} ({cpu.get('count')} cores)")
    gpus = doc.get("gpu") or []
    click.echo(f"gpu       {', '.join(g.get('name', '') for g in gpus) or '-'}")
    if doc.get("cuda"):
        click.echo(f"cuda      {doc['cuda']}")
    packages = doc.get("packages", {})
    click.echo(f"packages  {len(packages)}")
    for name, version in packages.items():
        click.echo(f"  {name}=={version}")


@env.command("diff")
@click.argument("a")
@click.argument("b")
@json_option
@click.pass_context
def env_diff(ctx: click.Context, a: str, b: str, as_json: bool) -> None:
    """What differs between the environments of A and B (runs or versions)."""
    d = open_repo(ctx).env_diff(a, b)
    if as_json:
        render.emit_json({"a": a, "b": b, **d.to_json()})
        return
    if d.same:
        click.echo(f"{a} and {b} ran in the same environment")
        return
    for name, version in d.packages_added:
        click.echo(f"+ {name}=={version}")
    for name, version in d.packages_removed:
        click.echo(f"- {name}=={version}")
    for name, old, new in d.packages_changed:
        click.echo(f"~ {name} {old} -> {new}")
    for key, old, new in d.other:
        click.echo(f"~ {key}: {json.dumps(old)} -> {json.dumps(new)}")


@click.command()
@click.argument("ref")
@click.option("--upstream", is_flag=True, help="What made REF (alone: only that).")
@click.option("--downstream", is_flag=True, help="What used REF (alone: only that).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "mermaid", "dot"]),
    default="text",
    show_default=True,
)
@json_option
@click.pass_context
def lineage(
    ctx: click.Context, ref: str, upstream: bool, downstream: bool, fmt: str, as_json: bool
) -> None:
    """The runs and versions upstream of REF (what made it) and downstream (what used it)."""
    graph = open_repo(ctx).lineage(
        ref, upstream=upstream or not downstream, downstream=downstream or not upstream
    )
    if as_json or fmt == "json":
        render.emit_json(graph.to_json())
    elif fmt == "mermaid":
        click.echo(graph.to_mermaid())
    elif fmt == "dot":
        click.echo(graph.to_dot())
    else:
        click.echo(graph.to_text())
