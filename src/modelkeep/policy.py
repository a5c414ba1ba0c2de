"""Promotion policy: `modelkeep.toml` at the project root, committed with the code.

```toml
[policy.default.production]
require_stage = "staging"                          # production only from staging
gates = ["auc >= 0.90", "auc >= production.auc"]   # metrics of the run that made the version
approvals = 1                                      # from users other than the requester
movers = ["alice", "bob"]                          # only they may move this stage

[policy."fraud-detector".staging]
gates = ["latency_ms <= 50"]

[reasons]
require = ["promote", "archive", "alias"]          # or true: every registry change
```

A model's own table wins over `default`, key by key. The file is read and checked whole
before any registry change, so a mistake in it stops a promotion instead of waving it on.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelkeep.config import read_toml
from modelkeep.errors import PolicyError
from modelkeep.refs import STAGES

FILE = "modelkeep.toml"
TARGETS = ("staging", "production", "archived")
_KEYS = {"require_stage", "gates", "approvals", "movers"}
# Registry changes `[reasons] require` can name (rollback and delete always need a reason).
REASON_ACTIONS = ("register", "promote", "archive", "rollback", "approve", "alias", "delete")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_GATE = re.compile(
    r"\s*(?P<metric>[A-Za-z_][\w.\-/]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?:(?P<stage>staging|production)\.(?P<other>[A-Za-z_][\w.\-/]*)|(?P<number>[-+]?[0-9.eE+-]+))\s*"
)


@dataclass(frozen=True, slots=True)
class Gate:
    text: str
    metric: str
    op: str
    number: float | None  # compare with this number, or …
    stage: str | None  # … with the same kind of metric of the version holding this stage
    other: str | None
    line: int | None


@dataclass(frozen=True, slots=True)
class StagePolicy:
    require_stage: str | None = None
    gates: tuple[Gate, ...] = ()
    approvals: int = 0
    movers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    path: Path | None = None
    tables: Mapping[str, Mapping[str, StagePolicy]] = field(default_factory=dict)
    raw: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    reasons: frozenset[str] = frozenset({"rollback", "delete"})  # changes that need --reason

    def for_stage(self, model: str, stage: str) -> StagePolicy:
        """The rules for moving a version of model to stage: its own keys over default's."""
        default = self.tables.get("default", {}).get(stage, StagePolicy())
        own = self.tables.get(model, {}).get(stage)
        if own is None or model == "default":
            return own or default
        keys = self.raw[model][stage].keys()
        return replace(default, **{key: getattr(own, key) for key in keys})


Lines = list[tuple[int, str]]  # (line number, text)
_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?")


def _line_of(text: str | Lines, needle: str | re.Pattern[str]) -> int | None:
    lines = list(enumerate(text.splitlines(), 1)) if isinstance(text, str) else text
    for number, line in lines:
        if needle.search(line) if isinstance(needle, re.Pattern) else needle in line:
            return number
    return None


def _table_lines(text: str, model: str, stage: str) -> tuple[int | None, Lines]:
    """The header line of the `[policy.MODEL.STAGE]` table and the table's lines, so a
    mistake is reported on its own table's line and not on the same key in a table above
    it. No header, and the whole file, when the table is written another way (dotted keys,
    an inline table)."""
    numbered = list(enumerate(text.splitlines(), 1))
    want = f"policy.{model}.{stage}"
    for i, (number, line) in enumerate(numbered):
        m = _HEADER.fullmatch(line)
        if m and re.sub(r"[\s\"']", "", m[1]) == want:
            rest = numbered[i + 1 :]
            end = next((j for j, (_, ln) in enumerate(rest) if _HEADER.fullmatch(ln)), len(rest))
            return number, numbered[i : i + 1 + end]
    return None, numbered


def _key(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")


def _quoted(value: str) -> re.Pattern[str]:
    return re.compile(rf"([\"']){re.escape(value)}\1")


def load(root: Path) -> Policy:
    """The policy in root/modelkeep.toml; an empty policy when there is no file."""
    path = root / FILE
    read = read_toml(path, PolicyError)
    if read is None:
        return Policy()
    text, doc = read
    policy = doc.get("policy", {})
    if not isinstance(policy, dict):
        raise PolicyError(str(path), _line_of(text, "policy"), "[policy] must be a table")
    tables: dict[str, dict[str, StagePolicy]] = {}
    raw: dict[str, dict[str, dict[str, Any]]] = {}
    for model, stages in policy.items():
        if not isinstance(stages, dict):
            raise PolicyError(str(path), _line_of(text, model), f"policy.{model} must be a table")
        for stage, table in stages.items():
            where = f"[policy.{model}.{stage}]"
            header, lines = _table_lines(text, model, stage)
            if stage not in TARGETS or not isinstance(table, dict):
                line = header or _line_of(text, f".{stage}]")
                raise PolicyError(
                    str(path), line, f"{where}: a stage table is one of {', '.join(TARGETS)}"
                )
            unknown = set(table) - _KEYS
            if unknown:
                key = sorted(unknown)[0]
                raise PolicyError(
                    str(path),
                    _line_of(lines, _key(key)),
                    f"{where}: unknown key {key!r}; use {', '.join(sorted(_KEYS))}",
                )
            tables.setdefault(model, {})[stage] = _stage_policy(str(path), lines, where, table)
            raw.setdefault(model, {})[stage] = table
    return Policy(path, tables, raw, _reasons(str(path), text, doc.get("reasons", {})))


def _reasons(path: str, text: str, table: Any) -> frozenset[str]:
    """`[reasons] require = true` or a list of REASON_ACTIONS: the changes that need one."""
    always = Policy().reasons
    line = _line_of(text, _key("require"))
    if not isinstance(table, dict) or set(table) - {"require"}:
        raise PolicyError(path, _line_of(text, "reasons"), "[reasons] holds one key, require")
    wanted = table.get("require", False)
    if isinstance(wanted, bool):
        return frozenset(REASON_ACTIONS) if wanted else always
    if not isinstance(wanted, list) or not all(a in REASON_ACTIONS for a in wanted):
        raise PolicyError(
            path,
            line,
            f"[reasons] require is true or a list of {', '.join(REASON_ACTIONS)}",
        )
    return always | frozenset(wanted)


def _stage_policy(path: str, lines: Lines, where: str, table: Mapping[str, Any]) -> StagePolicy:
    require = table.get("require_stage")
    if require is not None and require not in STAGES:
        raise PolicyError(
            path,
            _line_of(lines, _key("require_stage")),
            f"{where}: require_stage {require!r} is not a stage ({', '.join(STAGES)})",
        )
    approvals = table.get("approvals", 0)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 0:
        raise PolicyError(
            path,
            _line_of(lines, _key("approvals")),
            f"{where}: approvals must be a whole number >= 0",
        )
    movers = table.get("movers", [])
    if not isinstance(movers, list) or not all(isinstance(m, str) for m in movers):
        raise PolicyError(
            path, _line_of(lines, _key("movers")), f"{where}: movers must be a list of users"
        )
    gates_raw = table.get("gates", [])
    if not isinstance(gates_raw, list) or not all(isinstance(g, str) for g in gates_raw):
        raise PolicyError(
            path, _line_of(lines, _key("gates")), f"{where}: gates must be a list of strings"
        )
    gates = []
    for g in gates_raw:
        m = _GATE.fullmatch(g)
        number = None
        if m is not None and m["number"] is not None:
            try:
                number = float(m["number"])
            except ValueError:
                m = None
        if m is None:
            raise PolicyError(
                path,
                _line_of(lines, _quoted(g)),
                f"{where}: cannot read gate {g!r}; write METRIC OP NUMBER or METRIC OP "
                'STAGE.METRIC, e.g. "auc >= 0.9" or "auc >= production.auc"',
            )
        gates.append(
            Gate(
                g, m["metric"], m["op"], number, m["stage"], m["other"], _line_of(lines, _quoted(g))
            )
        )
    return StagePolicy(require, tuple(gates), approvals, tuple(movers))


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of checking a promotion: what is unmet, and what passed with a remark."""

    refused: tuple[str, ...] = ()  # not overridable: stage order, approvals
    gates: tuple[str, ...] = ()  # unmet gates: `--force --reason` may override these
    notes: tuple[str, ...] = ()

    @property
    def unmet(self) -> tuple[str, ...]:
        return self.refused + self.gates


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def check_gates(
    path: Path | None,
    gates: tuple[Gate, ...],
    ref: str,
    metrics: Mapping[str, float] | None,
    holders: Mapping[str, tuple[str, Mapping[str, float] | None] | None],
) -> tuple[list[str], list[str]]:
    """(unmet, notes) for the gates; metrics is None when no run produced the version."""
    unmet: list[str] = []
    notes: list[str] = []
    where = str(path) if path else FILE
    for gate in gates:
        if metrics is None:
            unmet.append(
                f"gate {gate.text!r}: {ref} was not produced by a run, so it has no metrics"
            )
            continue
        if gate.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise PolicyError(
                where,
                gate.line,
                f"gate {gate.text!r} names metric {gate.metric!r}, which the run that made "
                f"{ref} did not log (it logged: {known})",
            )
        value = metrics[gate.metric]
        if gate.stage is not None:
            held = holders.get(gate.stage)
            if held is None:
                notes.append(f"gate {gate.text!r} passes: no version is in {gate.stage} yet")
                continue
            held_ref, held_metrics = held
            assert gate.other is not None
            if held_metrics is None or gate.other not in held_metrics:
                raise PolicyError(
                    where,
                    gate.line,
                    f"gate {gate.text!r} names metric {gate.other!r}, which {held_ref} "
                    f"({gate.stage}) has no run value for",
                )
            bound = held_metrics[gate.other]
            ok = _OPS[gate.op](value, bound)
            measured = (
                f"{gate.metric} is {_fmt(value)}, {held_ref} in {gate.stage} has {_fmt(bound)}"
            )
        else:
            assert gate.number is not None
            ok = _OPS[gate.op](value, gate.number)
            measured = f"{gate.metric} is {_fmt(value)}"
        if not ok:
            unmet.append(f"gate {gate.text!r} unmet: {measured}")
    return unmet, notes
