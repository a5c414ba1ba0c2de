"""`modelkeep import mlflow SOURCE`: bring an existing MLflow store into this one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, json_option, open_repo

if TYPE_CHECKING:
    from modelkeep.mlflow_import import ImportReport


@click.group("import", cls=Group)
def import_() -> None:
    """Bring another tool's history into this store."""


@import_.command("mlflow")
@click.argument("source")
@click.option(
    "--registry-uri",
    default=None,
    metavar="URI",
    help="The model registry's URI, where it is not SOURCE (a second sqlite:/// file).",
)
@click.option("--dry-run", is_flag=True, help="Read MLflow and list what would be brought.")
@json_option
@click.pass_context
def import_mlflow(
    ctx: click.Context, source: str, registry_uri: str | None, dry_run: bool, as_json: bool
) -> None:
    """Bring an MLflow store's experiments, runs, artifacts and registered models here.

    SOURCE is a tracking URI: an MLflow server (http(s)://…), a database (sqlite:///PATH)
    or an mlruns folder. It is read with MLflow's own client (pip install
    'modelkeep[mlflow]'). Runs keep their ids, params, tags, every metric value with its
    step and timestamp, and their artifacts, which `modelkeep serve` then serves to the
    MLflow client; registered models become modelkeep models, each MLflow version a
    version linked to its run, with its stage, aliases, description and tags. Stages and
    aliases are recorded as events whose reason says they were imported and when they
    happened in MLflow; the policy's gates do not apply to history.

    Running it again brings only what is missing (an import that stopped half-way is
    completed). Exit 1 when something could not be brought: each is listed with why.
    """
    from modelkeep.errors import ImportIncomplete, InvalidArgument
    from modelkeep.mlflow_import import import_mlflow as bring

    repo = open_repo(ctx)
    conn = getattr(repo, "conn", None)
    if conn is not None:
        raise InvalidArgument(f"import MLflow on the server's machine, not through {conn.url}")
    report = bring(repo, source, registry_uri=registry_uri, dry_run=dry_run)
    if as_json:
        render.emit_json(report.to_json())
    else:
        _show(report)
    if not report.ok:
        raise ImportIncomplete(len(report.skipped))


def _show(report: ImportReport) -> None:
    verb = "would bring" if report.dry_run else "brought"
    click.echo(f"{verb} from MLflow {report.source}:")
    rows = [
        ["experiments", str(report.experiments), str(report.already["experiments"])],
        ["runs", str(report.runs), str(report.already["runs"])],
        ["params", str(report.params), ""],
        ["metric values", str(report.metrics), ""],
        ["run tags", str(report.tags), ""],
        [
            "artifacts",
            f"{report.artifacts} ({render.size(report.artifact_bytes)})",
            str(report.already["artifacts"]),
        ],
        ["registered models", str(report.models), ""],
        ["model versions", str(report.versions), str(report.already["versions"])],
        ["stages", str(report.stages), ""],
        ["aliases", str(report.aliases), ""],
        ["descriptions", str(report.descriptions), ""],
    ]
    render.table(["what", verb, "already here"], rows)
    for note in report.notes:
        click.echo(f"note: {note}")
    for s in report.skipped:
        click.echo(f"skipped {s.what}: {s.why}")
