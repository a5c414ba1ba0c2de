"""`modelkeep eval`: record metrics measured on a version after it was made."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click

from modelkeep.cli import render
from modelkeep.cli.common import json_option, open_repo

if TYPE_CHECKING:
    from modelkeep.meta import Evaluation


def parse_metrics(pairs: tuple[str, ...]) -> dict[str, float]:
    """KEY=NUMBER pairs (`nan` is a number here, as in a run's metrics); a key given twice
    is refused rather than one value silently dropped."""
    from modelkeep.errors import BadMetricOption

    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadMetricOption(pair, "not KEY=NUMBER")
        try:
            value = float(text.strip())
        except ValueError:
            raise BadMetricOption(pair, f"{text.strip()!r} is not a number") from None
        if key in out:
            raise BadMetricOption(pair, f"{key!r} is given twice")
        out[key] = value
    return out


def number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def rows(evaluations: list[Evaluation]) -> list[list[str]]:
    return [
        [
            e.key,
            number(e.value),
            e.dataset or "-",
            e.run_id[:8] if e.run_id else "-",
            e.user,
            render.when(e.created_at),
        ]
        for e in evaluations
    ]


HEADERS = ["metric", "value", "dataset", "run", "user", "recorded"]


def lines(evaluations: list[Evaluation]) -> list[str]:
    """The evaluations as an aligned table, one line each, headers first."""
    cells = [HEADERS, *rows(evaluations)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADERS))]
    head = "  ".join(h.upper().ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return [head.rstrip(), *(b.rstrip() for b in body)]


@click.command("eval")
@click.argument("ref")
@click.option(
    "--metric",
    "-M",
    "metrics",
    multiple=True,
    metavar="KEY=NUMBER",
    help="A metric measured on REF; repeatable.",
)
@click.option(
    "--dataset",
    default=None,
    metavar="REF",
    help="The dataset version it was measured on (an input of the run, if any).",
)
@json_option
@click.pass_context
def evaluate(
    ctx: click.Context, ref: str, metrics: tuple[str, ...], dataset: str | None, as_json: bool
) -> None:
    """Record metrics measured on the version REF after it was made: an evaluation.

    Promotion gates can name them: `holdout_auc >= 0.9` reads the producing run's metric,
    else the latest evaluation; `eval[holdout].auc >= production.eval[holdout].auc` the
    latest evaluation on a version of `holdout`. Under `modelkeep run` the evaluation
    belongs to that run, and the dataset is recorded as one of its inputs. The user is the
    one acting (on a server, the token's account); every evaluation is an `evaluate` event
    in the audit log, which `audit --verify` checks the rows against.
    """
    values = parse_metrics(metrics)
    made = open_repo(ctx).evaluate(ref, values, dataset=dataset)
    if as_json:
        render.emit_json({"evaluations": [e.to_json() for e in made]})
        return
    first = made[0] if made else None
    if first is not None:
        on = f" on {first.dataset}" if first.dataset else ""
        by = f" in run {first.run_id[:8]}" if first.run_id else ""
        click.echo(f"recorded {len(made)} evaluation(s) of {first.version}{on}{by}")
    render.table(HEADERS[:2], [r[:2] for r in rows(made)])
