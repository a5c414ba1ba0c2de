"""`modelkeep reproduce`: run a past run again from its records and compare."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import click

from modelkeep.cli import render
from modelkeep.cli.common import json_option, open_repo, parse_size

if TYPE_CHECKING:
    from modelkeep.reproduce import Reproduction


@click.command()
@click.argument("ref")
@click.option(
    "--allow-env-drift",
    is_flag=True,
    help="Run even when Python or the installed packages differ from the recorded ones.",
)
@click.option(
    "--rtol",
    type=float,
    default=0.0,
    show_default=True,
    help="Relative tolerance for metrics (0: they must be exactly equal).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary work tree and say where it is.")
@click.option(
    "--capture-limit",
    default="10MiB",
    show_default=True,
    help="Bytes of stdout and stderr each attached to the new run (0: none).",
)
@json_option
@click.pass_context
def reproduce(
    ctx: click.Context,
    ref: str,
    allow_env_drift: bool,
    rtol: float,
    keep: bool,
    capture_limit: str,
    as_json: bool,
) -> None:
    """Run REF (a run id, or a version: the run that made it) again and compare.

    In a fresh temporary work tree: the recorded Git commit with the recorded uncommitted
    changes applied (or the source snapshot outside Git), the inputs restored, the
    recorded command run again with its params, as a new run. Then every output
    version's digest (bit-identical, or the files that differ) and every metric (exactly,
    or within --rtol) are compared. Stops before running if the environment differs
    (Python, packages, OS) unless --allow-env-drift. Exits 0 when reproduced, 1 when not.
    """
    from modelkeep.reproduce import reproduce as run_again

    repo = open_repo(ctx)
    # With --json the command's own output goes to stderr, so stdout is the JSON alone.
    redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with redirect:
        result = run_again(
            repo,
            ref,
            allow_env_drift=allow_env_drift,
            rtol=rtol,
            keep=keep,
            capture_limit=parse_size(capture_limit),
        )
    if as_json:
        render.emit_json(result.to_json())
    else:
        _print(result)
    ctx.exit(0 if result.reproduced else 1)


def _print(result: Reproduction) -> None:
    for change in result.drift:
        click.echo(f"environment: {change}")
    for note in result.notes:
        click.echo(f"note: {note}")
    for o in result.outputs:
        if o.identical:
            click.echo(f"same     {o.original} = {o.rerun}  ({o.run})")
        elif o.original is None:
            click.echo(f"new      {o.rerun}: the original run made no {o.artifact}  ({o.run})")
        elif o.rerun is None:
            click.echo(f"missing  {o.original}: the new run made no {o.artifact}  ({o.run})")
        else:
            click.echo(f"differs  {o.original} ≠ {o.rerun}  ({o.run})")
            for line in o.files[:20]:
                click.echo(f"           {line}")
            if len(o.files) > 20:
                click.echo(f"           … and {len(o.files) - 20} more")
    for m in result.metrics:
        mark = "same    " if m.ok else "differs "
        new = "-" if m.rerun is None else f"{m.rerun:.6g}"
        click.echo(f"{mark} {m.key}: {m.original:.6g} → {new}  ({m.run})")
    for label in result.missing:
        click.echo(f"missing  run {label}: the new run did not start it again")
    if result.workdir:
        click.echo(f"work tree kept at {result.workdir}")
    verdicts = {
        "reproduced": "reproduced",
        "differs": "not reproduced: the results differ",
        "failed": f"not reproduced: the command exited with status {result.exit_code}",
    }
    click.echo(
        f"{verdicts[result.verdict]} (run {result.run_id[:8]} again as {result.rerun_id[:8]})"
    )
