"""Promotion policy: `modelkeep.toml` at the project root, committed with the code.

```toml
[policy.default.production]
require_stage = "staging"                          # production only from staging
gates = ["auc >= 0.90", "auc >= production.auc"]   # metrics of the run that made the version
# or evaluations recorded later: "eval[holdout].auc >= production.eval[holdout].auc"
approvals = 1                                      # from users other than the requester
movers = ["alice", "bob"]                          # only they may move this stage

[policy."fraud-detector".staging]
gates = ["latency_ms <= 50"]

[reasons]
require = ["promote", "archive", "alias"]          # or true: every registry change
```

A gate compares a value of the version being moved with a number or with the same kind of
value of the version holding a stage. A value is named one of two ways:

- `auc`: the producing run's last `auc`; if that run logged none (or no run made the
  version), the latest evaluation of `auc` recorded on the version (`modelkeep eval`), on
  whatever dataset;
- `eval[holdout].auc`: the latest evaluation of `auc` on a version of the artifact
  `holdout` (`eval[holdout:v2].auc`: on that version only); run metrics never count.

Both work on the right side too: `"auc >= production.auc"`,
`"eval[holdout].auc >= production.eval[holdout].auc"`. A bare name found nowhere is a
mistake in the policy (PolicyError, naming what was logged and evaluated); a missing
`eval[…]` is an unmet gate: the version (or the champion) is not evaluated on it yet.

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
from modelkeep.errors import InvalidArgument, PolicyError
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
_KEY = r"[A-Za-z_][\w.\-/]*"
# eval[DATASET].KEY: DATASET is an artifact name, or NAME:vN for one version of it.
_DATASET = r"[a-z0-9][a-z0-9._/\-]*(?::v[0-9]+)?"


def _operand(p: str) -> str:
    return rf"(?:eval\[(?P<{p}dataset>{_DATASET})\]\.)?(?P<{p}key>{_KEY})"


_GATE = re.compile(
    rf"\s*{_operand('left')}\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    rf"(?:(?P<stage>staging|production)\.{_operand('right')}|(?P<number>[-+]?[0-9.eE+-]+))\s*"
)
_COLUMN = re.compile(_operand(""))


@dataclass(frozen=True, slots=True)
class Operand:
    """A value a gate (or a `versions --metric` column) reads from a version: key is a run
    metric, else an evaluation (bare); with dataset, only an evaluation on that dataset."""

    key: str
    dataset: str | None = None

    @property
    def text(self) -> str:
        return f"eval[{self.dataset}].{self.key}" if self.dataset else self.key

    def on(self, dataset: str | None) -> bool:
        """Whether an evaluation on dataset (NAME:vN, or None) counts for this operand."""
        if self.dataset is None:
            return True
        if dataset is None:
            return False
        return dataset == self.dataset or dataset.rpartition(":v")[0] == self.dataset


def parse_operand(text: str) -> Operand:
    """`auc` or `eval[holdout].auc`; InvalidArgument when it is neither."""
    m = _COLUMN.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument(
            f"cannot read metric {text!r}; write a run metric or evaluation name (auc) or "
            "eval[DATASET].NAME (eval[holdout].auc)"
        )
    return Operand(m["key"], m["dataset"])


@dataclass(frozen=True, slots=True)
class Measured:
    """What gates can read of one version: the producing run's last metric values (None:
    no run made it) and its evaluations as (key, dataset ref or None, value), oldest first."""

    ref: str
    metrics: Mapping[str, float] | None
    evaluations: tuple[tuple[str, str | None, float], ...] = ()

    def value(self, operand: Operand) -> float | None:
        """The value operand names here; None when there is none."""
        if operand.dataset is None and self.metrics is not None and operand.key in self.metrics:
            return self.metrics[operand.key]
        for key, dataset, value in reversed(self.evaluations):
            if key == operand.key and operand.on(dataset):
                return value
        return None

    def known(self) -> str:
        """What there is to name, for a message: the run's metrics and the evaluations."""
        logged = ", ".join(sorted(self.metrics)) if self.metrics else "none"
        seen = dict.fromkeys(
            f"eval[{d.rpartition(':v')[0]}].{k}" if d else k for k, d, _ in self.evaluations
        )
        run = f"run metrics: {logged}" if self.metrics is not None else "no run"
        return f"{run}; evaluations: {', '.join(seen) or 'none'}"


@dataclass(frozen=True, slots=True)
class Gate:
    text: str
    metric: str
    op: str
    number: float | None  # compare with this number, or …
    stage: str | None  # … with the same kind of value of the version holding this stage
    other: str | None
    line: int | None
    dataset: str | None = None  # eval[DATASET].metric
    other_dataset: str | None = None  # STAGE.eval[DATASET].other

    @property
    def left(self) -> Operand:
        return Operand(self.metric, self.dataset)

    @property
    def right(self) -> Operand | None:
        return Operand(self.other, self.other_dataset) if self.other is not None else None


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
                'STAGE.METRIC, e.g. "auc >= 0.9" or "auc >= production.auc"; an evaluation '
                'is eval[DATASET].METRIC, e.g. "eval[holdout].auc >= 0.9"',
            )
        gates.append(
            Gate(
                g,
                m["leftkey"],
                m["op"],
                number,
                m["stage"],
                m["rightkey"],
                _line_of(lines, _quoted(g)),
                m["leftdataset"],
                m["rightdataset"],
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
    version: Measured,
    holders: Mapping[str, Measured | None],
) -> tuple[list[str], list[str]]:
    """(unmet, notes) for the gates on version, given the holders of the stages (None: the
    stage is empty, or held by the version itself)."""
    unmet: list[str] = []
    notes: list[str] = []
    where = str(path) if path else FILE
    for gate in gates:
        value = version.value(gate.left)
        if value is None:
            missing = _missing(where, gate, gate.left, version)
            unmet.append(f"gate {gate.text!r} unmet: {missing}")
            continue
        right = gate.right
        if gate.stage is not None and right is not None:
            held = holders.get(gate.stage)
            if held is None:
                notes.append(f"gate {gate.text!r} passes: no version is in {gate.stage} yet")
                continue
            bound = held.value(right)
            if bound is None:
                missing = _missing(where, gate, right, held, stage=gate.stage)
                unmet.append(f"gate {gate.text!r} unmet: {missing}")
                continue
            ok = _OPS[gate.op](value, bound)
            measured = (
                f"{gate.left.text} is {_fmt(value)}, {held.ref} in {gate.stage} has "
                f"{right.text} {_fmt(bound)}"
                if right != gate.left
                else f"{right.text} is {_fmt(value)}, {held.ref} in {gate.stage} has {_fmt(bound)}"
            )
        else:
            assert gate.number is not None
            ok = _OPS[gate.op](value, gate.number)
            measured = f"{gate.left.text} is {_fmt(value)}"
        if not ok:
            unmet.append(f"gate {gate.text!r} unmet: {measured}")
    return unmet, notes


def _missing(
    where: str, gate: Gate, operand: Operand, held: Measured, *, stage: str | None = None
) -> str:
    """Why operand has no value on held, as the rest of an unmet gate's line; PolicyError
    for a bare name that a version made by a run neither logged nor was evaluated on: most
    likely a misspelt metric, which no override should wave through."""
    whose = f"{held.ref} ({stage})" if stage else held.ref
    if operand.dataset is not None:
        return (
            f"{whose} has no evaluation of {operand.key!r} on {operand.dataset} ({held.known()}); "
            f"record one with `modelkeep eval {held.ref} --metric {operand.key}=VALUE --dataset "
            f"{operand.dataset}`"
        )
    if held.metrics is None:
        return (
            f"{whose} was not produced by a run, so it has no metrics, and no evaluation of "
            f"{operand.key!r} is recorded ({held.known()}); record one with `modelkeep eval "
            f"{held.ref} --metric {operand.key}=VALUE`"
        )
    if stage is None:
        said = (
            f"gate {gate.text!r} names metric {operand.key!r}, which the run that made "
            f"{held.ref} did not log (it logged: {', '.join(sorted(held.metrics)) or 'none'}) "
            f"and no evaluation records ({held.known()})"
        )
    else:
        said = (
            f"gate {gate.text!r} names metric {operand.key!r}, which {whose} has no run value "
            f"or evaluation for ({held.known()})"
        )
    raise PolicyError(where, gate.line, said)
