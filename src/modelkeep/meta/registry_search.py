"""MLflow's registry search language over registered models and their versions:
`name LIKE 'fraud%' and tags.team = 'risk'`, `run_id IN ('a', 'b')`, ordered by
`name ASC` or `last_updated_timestamp DESC`.

The grammar and comparisons are the run search's (tracking_search.py, MLflow's
search_utils); only the keys differ. `tags.KEY != 'x'` also matches an item without the
tag, as MLflow's stores do: the client excludes prompts with exactly that filter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelkeep.errors import InvalidArgument
from modelkeep.meta import tracking_search
from modelkeep.meta.model_tags import ModelDoc, VersionDoc
from modelkeep.meta.tracking import ms

_Value = Callable[[Any], Any]
# attribute -> (value, numeric); `tags.KEY` is every entity's
_MODEL_FIELDS: dict[str, tuple[_Value, bool]] = {
    "name": (lambda m: m.name, False),
    "creation_timestamp": (lambda m: ms(m.created_at), True),
    "last_updated_timestamp": (lambda m: ms(m.updated_at), True),
    "timestamp": (lambda m: ms(m.updated_at), True),
}
_VERSION_FIELDS: dict[str, tuple[_Value, bool]] = {
    "name": (lambda v: v.name, False),
    "version": (lambda v: v.number, True),
    "version_number": (lambda v: v.number, True),
    "run_id": (lambda v: v.run_id, False),
    "source_path": (lambda v: _source_of(v), False),
    "current_stage": (lambda v: v.stage.capitalize(), False),
    "user_id": (lambda v: v.user, False),
    "creation_timestamp": (lambda v: ms(v.created_at), True),
    "last_updated_timestamp": (lambda v: ms(v.updated_at), True),
    "timestamp": (lambda v: ms(v.updated_at), True),
}


def _field(
    text: str, entity: str, key: str, fields: dict[str, tuple[_Value, bool]]
) -> tuple[_Value, bool]:
    if entity == "tags":
        return (lambda item: item.tags.get(key)), False
    if entity == "attributes" and key in fields:
        return fields[key]
    raise InvalidArgument(
        f"invalid filter {text[:200]!r}: cannot search by {key!r}; use "
        f"{', '.join(sorted(fields))} or tags.KEY, e.g. \"name LIKE 'fraud%'\""
    )


def _parse_filter(text: str, fields: dict[str, tuple[_Value, bool]]) -> Callable[[Any], bool]:
    ts = tracking_search

    def clause(text: str, toks: list[Any], i: int) -> tuple[Callable[[Any], bool], int]:
        entity, key, i = ts._identifier(text, toks, i)
        value, numeric = _field(text, entity, key, fields)
        if i >= len(toks):
            raise ts._bad(text, f"{key!r} has no comparison")
        op = toks[i].text.upper() if toks[i].kind == "word" else toks[i].text
        i += 1
        if op == "NOT" and i < len(toks) and toks[i].text.upper() == "IN":
            op, i = "NOT IN", i + 1
        if op in ("IN", "NOT IN"):
            return _membership(text, toks, i, value, op)
        if op not in ts._COMPARE and op not in ("LIKE", "ILIKE"):
            raise ts._bad(text, f"unknown comparison {toks[i - 1].text!r}")
        if i >= len(toks):
            raise ts._bad(text, f"{key!r} {op} has no value")
        tok = toks[i]
        if numeric and tok.kind == "string" and ts._unquote(tok.text).isdigit():
            tok = ts._Tok("number", ts._unquote(tok.text))  # version = '3'
        test = ts._compare(text, f"{entity}.{key}", value, numeric, op, tok)
        if entity == "tags" and op == "!=":  # no tag differs too: the client's own
            return (lambda item: value(item) is None or test(item)), i + 1  # prompt filter
        return test, i + 1

    return ts._parse(text, clause)


def _membership(
    text: str, toks: list[Any], i: int, value: _Value, op: str
) -> tuple[Callable[[Any], bool], int]:
    ts = tracking_search
    if i >= len(toks) or toks[i].text != "(":
        raise ts._bad(text, f"{op} takes a list: ('a', 'b')")
    items: list[str] = []
    i += 1
    while True:
        if i >= len(toks) or toks[i].kind != "string":
            raise ts._bad(text, f"{op} takes a list of quoted values")
        items.append(ts._unquote(toks[i].text))
        i += 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        if i < len(toks) and toks[i].text == ")":
            break
        raise ts._bad(text, f"{op} list is not closed")
    members, negate = frozenset(items), op == "NOT IN"
    return (lambda item: (v := value(item)) is not None and (str(v) in members) != negate), i + 1


def _parse_order(
    items: list[str], fields: dict[str, tuple[_Value, bool]], default: str
) -> list[tracking_search.SortKey]:
    ts = tracking_search
    keys: list[ts.SortKey] = []
    for item in items:
        toks = ts._tokens(item) if isinstance(item, str) and len(item) <= 500 else None
        if not toks:
            raise InvalidArgument(f"cannot order by {str(item)[:100]!r}")
        entity, key, i = ts._identifier(item, toks, 0)
        if entity != "attributes" or key not in fields:
            raise InvalidArgument(
                f"cannot order by {item[:100]!r}; use {', '.join(sorted(fields))} with ASC or DESC"
            )
        descending = False
        if i < len(toks) and toks[i].text.upper() in ("ASC", "DESC"):
            descending = toks[i].text.upper() == "DESC"
            i += 1
        if i != len(toks):
            raise InvalidArgument(f"cannot order by {item[:100]!r}; write e.g. 'name ASC'")
        keys.append(ts.SortKey(fields[key][0], descending))
    keys.append(ts.SortKey(lambda item: item.name, False))
    if default == "version":  # MLflow: newest version first within a model
        keys.append(ts.SortKey(lambda item: item.number, True))
    return keys


def _source_of(v: VersionDoc) -> str | None:
    origin = v.metadata.get("mlflow")
    source = origin.get("source") if isinstance(origin, dict) else None
    return source if isinstance(source, str) else None


def parse_model_filter(text: str) -> Callable[[ModelDoc], bool]:
    return _parse_filter(text, _MODEL_FIELDS)


def parse_version_filter(text: str) -> Callable[[VersionDoc], bool]:
    return _parse_filter(text, _VERSION_FIELDS)


def parse_model_order(items: list[str]) -> list[tracking_search.SortKey]:
    """The keys asked for, then name (as MLflow's default)."""
    return _parse_order(items, _MODEL_FIELDS, default="name")


def parse_version_order(items: list[str]) -> list[tracking_search.SortKey]:
    """The keys asked for, then name, then the newest version first."""
    return _parse_order(items, _VERSION_FIELDS, default="version")
