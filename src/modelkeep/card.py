"""The model card: a Markdown page assembled from what was recorded, never typed by hand.

Purpose from the version's message (or a "description" metadata field); stage and its
history from the event log; metrics, parameters, code and environment from the run that
produced it; evaluations recorded on it later (`modelkeep eval`); training data from
that run's inputs; the runs that used the model and the other datasets they read
(evaluation data); signature, example and requirements from the
model spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from modelkeep import meta, model
from modelkeep.errors import ModelkeepError
from modelkeep.formats import ModelSpec, signature
from modelkeep.meta import RunRecord, Version, evaluation_reads, evaluations
from modelkeep.meta.run_reads import json_number, runs
from modelkeep.parts import Parts

_EXAMPLE_ROWS = 5
_EXAMPLE_COLUMNS = 8


def card(parts: Parts, version: Version) -> str:
    """The Markdown card of a model version."""
    spec = model.spec_of(version)
    run = _run(parts, version.run_id) if version.run_id else None
    lines = [f"# {version.name} v{version.number}", ""]
    purpose = version.message or str(version.metadata.get("description", ""))
    lines += [purpose or "_No purpose recorded: log the model with a message._", ""]
    lines += _facts(version, spec, run)
    lines += _stage_history(parts, version)
    if run is not None:
        lines += _section("Metrics", _table(("metric", "value"), _metrics(run)))
    lines += _section("Evaluations", _evaluations(parts, version))
    if run is not None:
        params = [(k, _cell(v)) for k, v in sorted(run.params.items())]
        lines += _section("Parameters", _table(("parameter", "value"), params))
    lines += _section("Data", _data(parts, version, run))
    if run is not None:
        lines += _section("Code", _code(run))
        lines += _section("Environment", _environment(parts, run))
    rows = signature.summary(spec.signature)
    lines += _section("Signature", _table(("input", "type"), rows))
    lines += _section("Input example", _example(parts, version, spec))
    lines += _section("Requirements", [f"- `{r}`" for r in spec.requirements])
    return "\n".join(lines).rstrip() + "\n"


def _facts(version: Version, spec: ModelSpec, run: RunRecord | None) -> list[str]:
    made_by = f"run `{run.short_id}` ({run.name}, {run.status})" if run else "no run recorded"
    rows = [
        ("version", f"`{version.ref}` (`{version.short_digest}`)"),
        ("stage", version.stage + (" (registered)" if version.registered else "")),
        ("created", f"{version.created_at:%Y-%m-%d %H:%M:%S %Z} by {version.user}"),
        ("produced by", made_by),
        ("format", f"{spec.format} ({spec.object})"),
        ("saved with", ", ".join(f"{k} {v}" for k, v in spec.libraries.items()) or "—"),
        ("python", spec.python),
    ]
    return [*_table(("property", "value"), rows), ""]


def _run(parts: Parts, run_id: str) -> RunRecord:
    return runs(parts.db, ids=[run_id])[0]


def _stage_history(parts: Parts, version: Version) -> list[str]:
    events = [
        e
        for e in meta.events(parts.db, version.name)
        if e.target == version.ref and e.action != evaluations.ACTION  # those have their own
    ]
    rows = [
        (
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.action,
            f"{e.before.get('stage', '')} → {e.after.get('stage', '')}".strip(" →"),
            e.actor,
            e.reason,
        )
        for e in events
    ]
    return _section("Stage history", _table(("when", "event", "stage", "who", "why"), rows))


def _evaluations(parts: Parts, version: Version) -> list[str]:
    """Metrics measured on the version after it was made (`modelkeep eval`), oldest first."""
    found = evaluation_reads.of_versions(parts.db, [(version.name, version.number)])[version.ref]
    rows = [
        (
            e.key,
            _cell(json_number(e.value)),
            f"`{e.dataset}`" if e.dataset else "—",
            f"`{e.run_id[:8]}`" if e.run_id else "—",
            e.user,
            f"{e.created_at:%Y-%m-%d %H:%M:%S}",
        )
        for e in found
    ]
    return _table(("metric", "value", "dataset", "run", "by", "when"), rows)


def _metrics(run: RunRecord) -> list[tuple[str, str]]:
    return [(k, _cell(json_number(v))) for k, v in sorted(run.metrics.items())]


def _data(parts: Parts, version: Version, run: RunRecord | None) -> list[str]:
    training = _datasets(parts, run.inputs if run else ())
    lines = [f"- training: `{d}`" for d in training]
    lineage = meta.lineage(parts.db, version.name, version.number, upstream=False)
    for user in lineage.downstream_of(lineage.root):
        if user.startswith("run:"):
            used = _run(parts, user.removeprefix("run:"))
            lines.append(f"- used by run `{used.short_id}` ({used.name}, {used.status})")
            lines += [
                f"- evaluation: `{d}` (run `{used.short_id}` {used.name})"
                for d in _datasets(parts, used.inputs)
                if d not in training
            ]
    return lines


def _datasets(parts: Parts, refs: Iterable[str]) -> list[str]:
    return [r for r in refs if meta.resolve(parts.db, r).type == "dataset"]


def _code(run: RunRecord) -> list[str]:
    git = run.code.get("git")
    if not git:
        where = run.code.get("snapshot")
        return [f"- not in Git; source snapshot `{where}`" if where else "- not in Git"]
    out = [f"- commit `{git.get('commit') or 'none'}` on branch `{git.get('branch') or '—'}`"]
    if git.get("remote"):
        out.append(f"- remote {git['remote']}")
    if git.get("dirty"):
        out.append(f"- uncommitted changes stored as `{run.code.get('patch')}`")
    command = run.command.get("argv") or []
    if command:
        out.append(f"- command `{' '.join(command)}`")
    return out


def _environment(parts: Parts, run: RunRecord) -> list[str]:
    if run.env_id is None:
        return []
    env = meta.run_environment(parts.db, run.env_id)
    python = env.get("python", {})
    system = env.get("os", {})
    out = [
        f"- Python {python.get('version', '?')} ({python.get('implementation', '?')}) on "
        f"{system.get('system', '?')} {system.get('release', '')} {system.get('machine', '')}",
        f"- {env.get('cpu', {}).get('count', '?')} CPUs; "
        f"GPU: {', '.join(g.get('name', '?') for g in env.get('gpu') or []) or 'none'}",
        f"- {len(env.get('packages', {}))} packages; `modelkeep env show {run.short_id}` "
        "lists them",
    ]
    return out


def _example(parts: Parts, version: Version, spec: ModelSpec) -> list[str]:
    """The stored example, or a note saying why it cannot be shown: a card still renders
    when the example file is missing or not the shape log_model writes."""
    if spec.example is None or not spec.signature:
        return []
    try:
        doc = model.example_doc(parts, version)
        data = doc["data"] if doc is not None else None
        if spec.signature["type"] == "table":
            return _example_table(data, spec.example)
    except ModelkeepError as exc:
        return [f"_The input example cannot be read: {exc}_"]
    except (KeyError, TypeError, IndexError, AttributeError):
        return [f"_`{spec.example}` is not a table as its signature says._"]
    text = repr(data)
    return [f"`{text[:300]}{'…' if len(text) > 300 else ''}`"]


def _example_table(data: Any, file: str) -> list[str]:
    columns = [str(c) for c in data["columns"][:_EXAMPLE_COLUMNS]]
    rows = [[_cell(v) for v in row[:_EXAMPLE_COLUMNS]] for row in data["data"][:_EXAMPLE_ROWS]]
    more = len(data["columns"]) - len(columns)
    note = [f"_{more} more columns in `{file}`._"] if more > 0 else []
    return [*_table(columns, rows), *(["", *note] if note else [])]


def _section(title: str, body: Sequence[str]) -> list[str]:
    return [f"## {title}", "", *(body or ["_None recorded._"]), ""]


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    escape = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return [
        f"| {' | '.join(head)} |",
        f"|{'|'.join('---' for _ in head)}|",
        *(f"| {' | '.join(r)} |" for r in escape),
    ]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
