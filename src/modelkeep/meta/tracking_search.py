"""MLflow's run search language: `metrics.auc > 0.9 and params.model = 'rf'`, ordered by
`metrics.auc DESC`, read into predicates and sort keys over `TrackedRun`s.

The grammar is MLflow's (mlflow/utils/search_utils.py): clauses joined by AND, each an
entity-qualified key (`metrics.`, `params.`, `tags.`, `attributes.`; a key with blanks in
backticks or double quotes), a comparison, and a value (a number for metrics and times,
quoted text otherwise, a list for IN). A run without the key matches no clause on it, and
sorts after the runs that have it whichever the direction, as MLflow's SQL store does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from modelkeep.errors import InvalidArgument
from modelkeep.meta.experiments import Experiment
from modelkeep.meta.tracking import TrackedRun, ms

T = TypeVar("T")
MAX_FILTER = 4000  # characters
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<quoted>`[^`]*`)
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
    | (?P<op>!=|<=|>=|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w.\-/:]*)
    )""",
    re.VERBOSE,
)
_ENTITIES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes",
    "run": "attributes",
}  # fmt: skip
_TEXT_ATTRS = {"run_id", "run_name", "status", "user_id", "lifecycle_stage", "experiment_id"}
_TIME_ATTRS = {"start_time", "end_time", "created"}
_ATTR_ALIASES = {"run_uuid": "run_id", "created": "start_time", "Created": "start_time"}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad(text, f"cannot read {text[pos : pos + 20].strip()!r}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


def _bad(text: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid filter {text[:200]!r}: {reason}; write e.g. "
        "\"metrics.auc > 0.9 and params.model = 'rf' and tags.team = 'fraud'\""
    )


def _unquote(token: str) -> str:
    if token[:1] in "'\"`":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _identifier(text: str, toks: list[_Tok], i: int) -> tuple[str, str, int]:
    """(entity, key, next index) from `metrics.auc`, metrics.`a b`, `status` (an attribute)."""
    tok = toks[i]
    if tok.kind != "word" and tok.kind != "quoted":
        raise _bad(text, f"expected a key such as metrics.auc, found {tok.text!r}")
    if tok.kind == "quoted":
        return "attributes", _unquote(tok.text), i + 1
    head, dot, rest = tok.text.partition(".")
    entity = _ENTITIES.get(head.lower()) if dot else None
    if entity is None:
        if dot:
            raise _bad(text, f"{head!r} is not metrics, params, tags or attributes")
        return "attributes", tok.text, i + 1
    if not rest:  # metrics.`a key` or metrics."a key"
        if i + 1 >= len(toks) or toks[i + 1].kind not in ("quoted", "string"):
            raise _bad(text, f"{tok.text!r} names no key")
        return entity, _unquote(toks[i + 1].text), i + 2
    return entity, rest, i + 1


def _attribute(text: str, key: str) -> str:
    key = _ATTR_ALIASES.get(key, key)
    if key not in _TEXT_ATTRS | _TIME_ATTRS:
        known = ", ".join(sorted(_TEXT_ATTRS | _TIME_ATTRS))
        raise _bad(text, f"unknown attribute {key!r} (one of {known})")
    return key


def attribute_value(run: TrackedRun, key: str) -> Any:
    return {
        "run_id": run.id,
        "run_name": run.name,
        "status": run.status.upper(),
        "user_id": run.user,
        "lifecycle_stage": "deleted" if run.deleted else "active",
        "experiment_id": str(run.experiment_id),
        "start_time": ms(run.started_at),
        "end_time": ms(run.ended_at) if run.ended_at else None,
    }[key]


_SEEN: ContextVar[set[tuple[str, str]] | None] = ContextVar("search_keys", default=None)


def _value_of(entity: str, key: str) -> Callable[[TrackedRun], Any]:
    seen = _SEEN.get()
    if seen is not None and entity != "attributes":
        seen.add((entity, key))
    if entity == "metrics":
        return lambda r: r.metrics[key].value if key in r.metrics else None
    if entity == "params":
        return lambda r: r.params.get(key)
    if entity == "tags":
        return lambda r: r.tags.get(key)
    return lambda r: attribute_value(r, key)


def _like(pattern: str, insensitive: bool) -> Callable[[str], bool]:
    """SQL LIKE without backtracking: a `%` pattern turned into one regex (`.*a.*a.*b`)
    takes exponential time on a long value, so each piece between `%`s (`_` is any one
    character) is found leftmost in turn, the first anchored at the start and the last
    at the end. Linear in the pieces, each a fixed-length search."""
    flags = re.DOTALL | (re.IGNORECASE if insensitive else 0)
    raw = pattern.split("%")
    pieces = [re.compile("".join("." if c == "_" else re.escape(c) for c in p), flags) for p in raw]
    if len(pieces) == 1:
        return lambda text: pieces[0].fullmatch(text) is not None
    first, *middle, last = pieces
    tail = len(raw[-1])

    def match(text: str) -> bool:
        found = first.match(text)
        if found is None:
            return False
        at = found.end()
        for piece in middle:
            found = piece.search(text, at)
            if found is None:
                return False
            at = found.end()
        start = len(text) - tail
        return start >= at and last.fullmatch(text, start) is not None

    return match


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


@dataclass(frozen=True, slots=True)
class Search:
    """A run search read: its predicate, its order, and the params, tags and metrics they
    read (so only those are loaded for every run, and the page's runs in full)."""

    match: Callable[[TrackedRun], bool]
    order: list[SortKey]
    keys: frozenset[tuple[str, str]]


def parse_search(text: str, order_by: Sequence[str]) -> Search:
    seen: set[tuple[str, str]] = set()
    token = _SEEN.set(seen)
    try:
        return Search(parse_filter(text), parse_order(order_by), frozenset(seen))
    finally:
        _SEEN.reset(token)


def parse_filter(text: str) -> Callable[[TrackedRun], bool]:
    """The filter as one predicate; an empty filter matches every run."""
    return _parse(text, _clause)


Clause = Callable[[str, list[_Tok], int], tuple[Callable[[Any], bool], int]]


def _parse(text: str, clause: Clause) -> Callable[[Any], bool]:
    if len(text) > MAX_FILTER:
        raise InvalidArgument(f"a filter is at most {MAX_FILTER} characters")
    toks = _tokens(text)
    tests: list[Callable[[Any], bool]] = []
    i = 0
    while i < len(toks):
        test, i = clause(text, toks, i)
        tests.append(test)
        if i < len(toks):
            if toks[i].kind != "word" or toks[i].text.lower() != "and":
                raise _bad(
                    text,
                    f"expected AND between clauses, found {toks[i].text!r} (OR is not supported)",
                )
            i += 1
            if i == len(toks):
                raise _bad(text, "it ends with AND")
    return lambda item: all(t(item) for t in tests)


def _clause(text: str, toks: list[_Tok], i: int) -> tuple[Callable[[TrackedRun], bool], int]:
    entity, key, i = _identifier(text, toks, i)
    if entity == "attributes":
        key = _attribute(text, key)
    if i >= len(toks):
        raise _bad(text, f"{key!r} has no comparison")
    op_tok = toks[i]
    op = op_tok.text.upper() if op_tok.kind == "word" else op_tok.text
    i += 1
    if op == "NOT" and i < len(toks) and toks[i].text.upper() == "IN":
        op, i = "NOT IN", i + 1
    if op == "IS":
        negate = i < len(toks) and toks[i].text.upper() == "NOT"
        i += 1 if negate else 0
        if i >= len(toks) or toks[i].text.upper() != "NULL" or entity not in ("params", "tags"):
            raise _bad(text, "IS [NOT] NULL is for params and tags")
        value = _value_of(entity, key)
        return (lambda r: (value(r) is None) != negate), i + 1
    if op in ("IN", "NOT IN"):
        return _membership(text, toks, i, entity, key, op)
    if op not in _COMPARE and op not in ("LIKE", "ILIKE"):
        raise _bad(text, f"unknown comparison {op_tok.text!r}")
    if i >= len(toks):
        raise _bad(text, f"{key!r} {op} has no value")
    numeric = entity == "metrics" or (entity == "attributes" and key in _TIME_ATTRS)
    value = _value_of(entity, key)
    return _compare(text, f"{entity}.{key}", value, numeric, op, toks[i]), i + 1


def _compare(
    text: str, label: str, value: Callable[[Any], Any], numeric: bool, op: str, tok: _Tok
) -> Callable[[Any], bool]:
    upper = label == "attributes.status"
    if numeric:
        if tok.kind != "number" or op in ("LIKE", "ILIKE"):
            raise _bad(text, f"{label} compares with a number (= != < <= > >=)")
        wanted: Any = float(tok.text)
        test = _COMPARE[op]

        def number(run: Any) -> bool:
            have = value(run)
            return have is not None and not math.isnan(have) and test(have, wanted)

        return number
    if tok.kind != "string":
        raise _bad(text, f"{label} compares with quoted text, e.g. '{tok.text}'")
    wanted = _unquote(tok.text)
    if op in ("LIKE", "ILIKE"):
        like = _like(wanted, op == "ILIKE")
        return lambda r: (v := value(r)) is not None and like(v)
    if op not in ("=", "==", "!="):
        raise _bad(text, f"{label} is text: compare it with = != LIKE or ILIKE")
    if upper:
        wanted = wanted.upper()
    test = _COMPARE[op]
    return lambda r: (v := value(r)) is not None and test(v, wanted)


def _membership(
    text: str, toks: list[_Tok], i: int, entity: str, key: str, op: str
) -> tuple[Callable[[TrackedRun], bool], int]:
    if i >= len(toks) or toks[i].text != "(":
        raise _bad(text, f"{op} takes a list: ('a', 'b')")
    items: list[str] = []
    i += 1
    while True:
        if i >= len(toks) or toks[i].kind != "string":
            raise _bad(text, f"{op} takes a list of quoted values")
        items.append(_unquote(toks[i].text))
        i += 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        if i < len(toks) and toks[i].text == ")":
            break
        raise _bad(text, f"{op} list is not closed")
    if entity == "metrics":
        raise _bad(text, f"{op} is for text keys")
    value, members, negate = _value_of(entity, key), frozenset(items), op == "NOT IN"
    return (lambda r: (v := value(r)) is not None and (v in members) != negate), i + 1


@dataclass(frozen=True, slots=True)
class SortKey:
    value: Callable[[Any], Any]
    descending: bool


def parse_order(items: Sequence[str]) -> list[SortKey]:
    """`metrics.auc DESC`, `start_time`, `params.lr ASC`, then start time (newest first)
    and run id, as MLflow orders."""
    keys: list[SortKey] = []
    for item in items:
        toks = _tokens(item) if isinstance(item, str) and len(item) <= 500 else None
        if not toks:
            raise InvalidArgument(f"cannot order by {str(item)[:100]!r}")
        entity, key, i = _identifier(item, toks, 0)
        descending = False
        if i < len(toks) and toks[i].kind == "word" and toks[i].text.upper() in ("ASC", "DESC"):
            descending = toks[i].text.upper() == "DESC"
            i += 1
        if i != len(toks):
            raise InvalidArgument(
                f"cannot order by {item!r}; write e.g. 'metrics.auc DESC' or 'start_time ASC'"
            )
        if entity == "attributes":
            key = _attribute(item, key)
        keys.append(SortKey(_value_of(entity, key), descending))
    keys.append(SortKey(lambda r: ms(r.started_at), True))
    keys.append(SortKey(lambda r: r.id, False))
    return keys


def sort(items: Sequence[T], keys: Sequence[SortKey]) -> list[T]:
    """Stable sorts from the last key to the first; items without a value go last."""
    out = list(items)
    for k in reversed(keys):
        have = [(v, r) for r in out if (v := k.value(r)) is not None and v == v]  # v == v: not NaN
        missing = [r for r in out if (v := k.value(r)) is None or v != v]
        have.sort(key=lambda pair: pair[0], reverse=k.descending)
        out = [r for _, r in have] + missing
    return out


# -- experiments ------------------------------------------------------------------------------

_EXPERIMENT_ATTRS = {"name": False, "creation_time": True, "last_update_time": True}


def _experiment_value(entity: str, key: str) -> Callable[[Experiment], Any]:
    if entity == "tags":
        return lambda e: e.tags.get(key)
    return lambda e: {
        "name": e.name,
        "creation_time": ms(e.created_at),
        "last_update_time": ms(e.updated_at),
        "experiment_id": e.id,
    }[key]


def _experiment_key(text: str, entity: str, key: str) -> None:
    if entity not in ("attributes", "tags"):
        raise _bad(text, f"experiments are searched by name, time or tags, not {entity}")
    if entity == "attributes" and key not in _EXPERIMENT_ATTRS:
        raise _bad(
            text, f"unknown experiment attribute {key!r} (name, creation_time, last_update_time)"
        )


def _experiment_clause(text: str, toks: list[_Tok], i: int) -> tuple[Callable[[Any], bool], int]:
    entity, key, i = _identifier(text, toks, i)
    _experiment_key(text, entity, key)
    if i + 1 >= len(toks):
        raise _bad(text, f"{key!r} has no comparison and value")
    op_tok = toks[i]
    op = op_tok.text.upper() if op_tok.kind == "word" else op_tok.text
    if op not in _COMPARE and op not in ("LIKE", "ILIKE"):
        raise _bad(text, f"unknown comparison {op_tok.text!r}")
    numeric = entity == "attributes" and _EXPERIMENT_ATTRS[key]
    label = f"{entity}.{key}"
    return _compare(text, label, _experiment_value(entity, key), numeric, op, toks[i + 1]), i + 2


def parse_experiment_filter(text: str) -> Callable[[Experiment], bool]:
    """`name = 'fraud'`, `name LIKE 'fraud%'`, `tags.team = 'risk'`, joined by AND."""
    return _parse(text, _experiment_clause)


def parse_experiment_order(items: Sequence[str]) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in items:
        toks = _tokens(item) if isinstance(item, str) and len(item) <= 500 else None
        if not toks:
            raise InvalidArgument(f"cannot order by {str(item)[:100]!r}")
        entity, key, i = _identifier(item, toks, 0)
        if key == "experiment_id" and entity == "attributes":
            pass
        else:
            _experiment_key(item, entity, key)
        descending = False
        if i < len(toks) and toks[i].text.upper() in ("ASC", "DESC"):
            descending = toks[i].text.upper() == "DESC"
            i += 1
        if i != len(toks):
            raise InvalidArgument(f"cannot order by {item!r}; write e.g. 'name ASC'")
        keys.append(SortKey(_experiment_value(entity, key), descending))
    keys.append(SortKey(lambda e: ms(e.created_at), True))
    keys.append(SortKey(lambda e: e.id, False))
    return keys
