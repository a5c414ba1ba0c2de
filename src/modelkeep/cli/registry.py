"""Commands for the model registry: register, promote, archive, rollback, approve, alias,
models, a model's own description, tags and name (`model`), history, audit, delete, and the
model card."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, json_option, open_repo, parse_time, write_atomically

if TYPE_CHECKING:
    from modelkeep.meta import Event

STAGE = click.Choice(["staging", "production", "archived"])
_reason = click.option("--reason", default="", help="Why; recorded in the audit log.")


@click.command()
@click.argument("source")
@click.option("--as", "name", required=True, help="The registered model's name.")
@_reason
@json_option
@click.pass_context
def register(ctx: click.Context, source: str, name: str, reason: str, as_json: bool) -> None:
    """Register the version SOURCE points at as the next version of model NAME (no copy)."""
    v = open_repo(ctx).register(source, name, reason=reason)
    if as_json:
        render.emit_json(v.to_json())
    else:
        click.echo(f"registered {v.ref} ({v.short_digest}, stage {v.stage})")


@click.command()
@click.argument("ref")
@click.argument("stage", type=STAGE)
@_reason
@click.option("--force", is_flag=True, help="Override unmet gates (needs --reason).")
@json_option
@click.pass_context
def promote(
    ctx: click.Context, ref: str, stage: str, reason: str, force: bool, as_json: bool
) -> None:
    """Move a registered version to STAGE, if the policy in modelkeep.toml allows it."""
    p = open_repo(ctx).promote(ref, stage, reason=reason, force=force)
    if as_json:
        render.emit_json(p.to_json())
        return
    for note in p.notes:
        click.echo(f"note: {note}")
    for gate in p.overridden:
        click.echo(f"overridden: {gate}")
    click.echo(f"{p.version.ref} is now in {stage}")
    if p.displaced is not None:
        click.echo(f"{p.displaced.ref} moved from production to archived")


@click.command()
@click.argument("ref")
@_reason
@json_option
@click.pass_context
def archive(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Move a registered version to archived (kept for rollback)."""
    v = open_repo(ctx).archive(ref, reason=reason)
    if as_json:
        render.emit_json(v.to_json())
    else:
        click.echo(f"{v.ref} is now archived")


@click.command()
@click.argument("name")
@click.option("--to", "to", default=None, metavar="vN", help="Roll back to this version.")
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
@json_option
@click.pass_context
def rollback(ctx: click.Context, name: str, to: str | None, reason: str, as_json: bool) -> None:
    """Put back the version that was in production before the current one (or --to vN)."""
    p = open_repo(ctx).rollback(name, to=to, reason=reason)
    assert p.displaced is not None
    if as_json:
        render.emit_json(p.to_json())
    else:
        click.echo(f"{p.version.ref} is back in production; {p.displaced.ref} is archived")


@click.command()
@click.argument("ref")
@click.argument("stage", type=STAGE)
@_reason
@json_option
@click.pass_context
def approve(ctx: click.Context, ref: str, stage: str, reason: str, as_json: bool) -> None:
    """Approve moving a version to STAGE (the policy may ask for approvals)."""
    a = open_repo(ctx).approve(ref, stage, reason=reason)
    if as_json:
        render.emit_json({"version": ref, "stage": stage, "approvers": sorted(a.approvers)})
    else:
        click.echo(f"approved; {ref} -> {stage} has {len(a.approvers)} approval(s)")


@click.group(cls=Group)
def alias() -> None:
    """Free aliases: `alias set NAME@ALIAS REF`, `alias remove NAME@ALIAS`."""


@alias.command("set")
@click.argument("alias_ref", metavar="NAME@ALIAS")
@click.argument("ref")
@_reason
@json_option
@click.pass_context
def alias_set(ctx: click.Context, alias_ref: str, ref: str, reason: str, as_json: bool) -> None:
    """Point NAME@ALIAS at a version of NAME."""
    v = open_repo(ctx).set_alias(alias_ref, ref, reason=reason)
    if as_json:
        render.emit_json({"alias": alias_ref, "version": v.to_json()})
    else:
        click.echo(f"{alias_ref} -> {v.ref}")


@alias.command("remove")
@click.argument("alias_ref", metavar="NAME@ALIAS")
@_reason
@json_option
@click.pass_context
def alias_remove(ctx: click.Context, alias_ref: str, reason: str, as_json: bool) -> None:
    """Remove an alias (`alias rm` also works)."""
    open_repo(ctx).remove_alias(alias_ref, reason=reason)
    if as_json:
        render.emit_json({"removed": alias_ref})
    else:
        click.echo(f"removed {alias_ref}")


@click.command()
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """Registered models with the version in each stage, and their aliases."""
    found = open_repo(ctx).models()
    if as_json:
        render.emit_json({"models": [m.to_json() for m in found]})
        return
    if not found:
        click.echo("no registered models; `modelkeep register REF --as NAME` registers one")
        return

    def vs(numbers: list[int]) -> str:
        return ",".join(f"v{n}" for n in numbers) or "-"

    render.table(
        ["model", "production", "staging", "archived", "aliases", "versions"],
        [
            [
                m.name,
                vs(m.stages.get("production", [])),
                vs(m.stages.get("staging", [])),
                vs(m.stages.get("archived", [])),
                " ".join(f"{a}=v{n}" for a, n in m.aliases.items()) or "-",
                f"{m.registered}/{m.latest}",
            ]
            for m in found
        ],
    )


def _events(found: list[Event], as_json: bool) -> None:
    if as_json:
        render.emit_json({"events": [e.to_json() for e in found]})
        return
    for e in found:
        change = _change(e)
        why = f"  ({e.reason})" if e.reason else ""
        who = f"{e.id:>5}  {render.when(e.at)}  {e.actor:<14}"
        click.echo(f"{who} {e.action:<12} {e.target}  {change}{why}")


def _change(e: Event) -> str:
    if "stage" in e.after:
        return f"{e.before.get('stage', '-')} -> {e.after['stage']}"
    if e.action.startswith("alias"):
        old, new = e.before.get("version"), e.after.get("version")
        return f"{'v' + str(old) if old else '-'} -> {'v' + str(new) if new else '-'}"
    if e.action == "override":
        return f"to {e.after.get('to')} past {len(e.after.get('unmet', []))} unmet gate(s)"
    if "for" in e.after:
        return f"for {e.after['for']}"
    if e.action == "evaluate":
        values = ", ".join(
            f"{m.get('key')}={m.get('value')}" for m in e.after.get("evaluations", [])
        )
        on = f" on {e.after['dataset']}" if e.after.get("dataset") else ""
        run = f" (run {str(e.after['run'])[:8]})" if e.after.get("run") else ""
        return f"{values}{on}{run}"
    return json.dumps(e.after) if e.after else ""


@click.command()
@click.argument("name")
@click.option("--at", "at", default=None, metavar="TIME", help="Only events up to TIME.")
@json_option
@click.pass_context
def history(ctx: click.Context, name: str, at: str | None, as_json: bool) -> None:
    """Every stage and alias change of model NAME: who, when, why."""
    _events(open_repo(ctx).history(name, at=parse_time(at)), as_json)


@click.command()
@click.argument("name", required=False)
@click.option("--since", default=None, metavar="TIME", help="Only events from TIME on.")
@click.option(
    "--verify",
    is_flag=True,
    help="Recompute the hash chain, replay it against stages and aliases; exit 1 if they differ.",
)
@json_option
@click.pass_context
def audit(
    ctx: click.Context, name: str | None, since: str | None, verify: bool, as_json: bool
) -> None:
    """The audit log of registry changes (all models, or NAME)."""
    repo = open_repo(ctx)
    if not verify:
        _events(repo.audit(name, since=parse_time(since)), as_json)
        return
    report = repo.verify_audit()
    if as_json:
        render.emit_json(report.to_json())
    elif report.ok:
        click.echo(
            f"ok: {report.events} events, chain intact, registry state matches; head {report.head}"
        )
    else:
        for problem in report.problems:
            click.echo(f"broken: {problem}", err=True)
        click.echo(f"{len(report.problems)} problem(s) in {report.events} events", err=True)
    if not report.ok:
        ctx.exit(1)


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why; kept on the tombstone.")
@json_option
@click.pass_context
def delete(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Delete a version (never one in staging or production), leaving a tombstone.

    Its bytes are freed by `modelkeep gc` once nothing else references them.
    """
    v = open_repo(ctx).delete(ref, reason=reason)
    if as_json:
        render.emit_json(v.to_json())
    else:
        click.echo(f"deleted {v.ref}; `modelkeep gc` frees its bytes if nothing else uses them")


@click.command()
@click.argument("ref")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the card to this file instead of printing it.",
)
@json_option
@click.pass_context
def card(ctx: click.Context, ref: str, output: str | None, as_json: bool) -> None:
    """Print the Markdown model card of REF (NAME:vN, NAME@production, …)."""
    repo = open_repo(ctx)
    version = repo.show(ref)
    text = repo.card(version)
    if output is not None:
        write_atomically(output, text)
    if as_json:
        render.emit_json(
            {"version": version.ref, "model": repo.model_spec(version).to_json(), "card": text}
        )
    elif output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote the card of {ref} to {output}")


@click.group("model", cls=Group)
def model_group() -> None:
    """A registered model's own page: `model show`, `describe`, `tag`, `untag`, `rename`."""


@model_group.command("show")
@click.argument("name")
@json_option
@click.pass_context
def model_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """A registered model's description, tags, aliases and versions."""
    doc = open_repo(ctx).registered_model(name)
    if as_json:
        render.emit_json(
            {
                "name": doc.name,
                "description": doc.description,
                "tags": doc.tags,
                "aliases": doc.aliases,
                "created_at": doc.created_at.isoformat(),
                "updated_at": doc.updated_at.isoformat(),
                "versions": [
                    {"number": v.number, "stage": v.stage, "description": v.description}
                    for v in doc.versions
                ],
            }
        )
        return
    click.echo(f"{doc.name}  ({len(doc.versions)} registered version(s))")
    click.echo(f"description: {doc.description or '-'}")
    for key, value in sorted(doc.tags.items()):
        click.echo(f"tag {key} = {value}")
    for alias_name, number in sorted(doc.aliases.items()):
        click.echo(f"alias {alias_name} -> v{number}")


@model_group.command("describe")
@click.argument("name")
@click.argument("text")
@_reason
@json_option
@click.pass_context
def model_describe(ctx: click.Context, name: str, text: str, reason: str, as_json: bool) -> None:
    """Set the description of registered model NAME ("" clears it)."""
    open_repo(ctx).describe_model(name, text, reason=reason)
    if as_json:
        render.emit_json({"model": name, "description": text})
    else:
        click.echo(f"described {name}")


@model_group.command("tag")
@click.argument("name")
@click.argument("key")
@click.argument("value")
@_reason
@json_option
@click.pass_context
def model_tag(
    ctx: click.Context, name: str, key: str, value: str, reason: str, as_json: bool
) -> None:
    """Set tag KEY of registered model NAME to VALUE."""
    open_repo(ctx).tag_model(name, key, value, reason=reason)
    if as_json:
        render.emit_json({"model": name, "tag": {key: value}})
    else:
        click.echo(f"{name}: {key} = {value}")


@model_group.command("untag")
@click.argument("name")
@click.argument("key")
@json_option
@click.pass_context
def model_untag(ctx: click.Context, name: str, key: str, as_json: bool) -> None:
    """Remove tag KEY of registered model NAME."""
    open_repo(ctx).untag_model(name, key)
    if as_json:
        render.emit_json({"model": name, "removed": key})
    else:
        click.echo(f"{name}: removed tag {key}")


@model_group.command("rename")
@click.argument("name")
@click.argument("new_name")
@json_option
@click.pass_context
def model_rename(ctx: click.Context, name: str, new_name: str, as_json: bool) -> None:
    """Rename registered model NAME to NEW_NAME: versions, stages, aliases, tags and its
    history follow."""
    open_repo(ctx).rename_model(name, new_name)
    if as_json:
        render.emit_json({"model": new_name, "was": name})
    else:
        click.echo(f"renamed {name} -> {new_name}")


COMMANDS = [
    register,
    promote,
    archive,
    rollback,
    approve,
    alias,
    models,
    model_group,
    history,
    audit,
    delete,
    card,
]
