"""The records a remote carries beside its packs: versions, runs and registry events.

Each is one small JSON file, written once and never changed, in one canonical spelling
(sorted keys, no spaces, ASCII), so the same record always has the same bytes and a
re-push of it is recognised as the same. Whatever is read back from a remote is hostile
input: `parse_*` checks every field's type, size and shape (names through
`refs.validate_name`, digests as 64 hex digits) and raises `BadRecord` with the reason;
the caller names the file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from modelkeep.errors import ModelkeepError
from modelkeep.meta.records import ARTIFACT_TYPES, FILE_MODES, KINDS
from modelkeep.refs import STAGES, validate_alias, validate_name

VERSION_FORMAT = "modelkeep.version/1"
RUN_FORMAT = "modelkeep.run/1"
EVENT_FORMAT = "modelkeep.event/1"
ACTIONS = (
    "register",
    "promote",
    "archive",
    "rollback",
    "alias-set",
    "alias-remove",
    "delete",
    "override",
    "approve",
    "request",
    "evaluate",
)
RUN_STATUSES = ("running", "finished", "failed", "killed")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STORE = re.compile(r"[0-9a-f]{32}")
_MAX_TEXT = 1024 * 1024  # a message, an error, a reason
_MAX_SHORT = 255  # a user, a host, a run name, a metric or param key
_MAX_DOC = 4 * 1024 * 1024  # metadata, a command, a code record, an environment
_MAX_INT = 2**63 - 1


class BadRecord(ModelkeepError, ValueError):
    """A remote record that is not what its format says; the caller names the file."""


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class VersionRecord:
    store: str  # the database id of the store that made it
    name: str
    number: int
    type: str
    kind: str
    digest: str  # 64 hex
    size: int
    file_count: int
    mode: int
    source_name: str  # os.fsdecode of the bytes (surrogate escapes kept by JSON's \\u)
    created_at: datetime
    user: str
    host: str | None
    message: str
    metadata: dict[str, Any]
    run_id: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": VERSION_FORMAT,
            "store": self.store,
            "name": self.name,
            "number": self.number,
            "type": self.type,
            "kind": self.kind,
            "digest": self.digest,
            "size": self.size,
            "file_count": self.file_count,
            "mode": self.mode,
            "source_name": self.source_name,
            "created_at": _iso(self.created_at),
            "user": self.user,
            "host": self.host,
            "message": self.message,
            "metadata": self.metadata,
            "run_id": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class RunInputRecord:
    name: str
    number: int
    digest: str


@dataclass(frozen=True, slots=True)
class MetricRecord:
    key: str
    value: float | None  # None is NaN, as in the database
    step: int
    logged_at: datetime


@dataclass(frozen=True, slots=True)
class RunDoc:
    id: str
    name: str
    status: str
    user: str
    host: str
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    error: str
    command: dict[str, Any]
    code: dict[str, Any]
    env_id: str | None
    environment: dict[str, Any] | None
    params: dict[str, str]  # key -> canonical JSON of the value, as stored
    metrics: tuple[MetricRecord, ...]
    inputs: tuple[RunInputRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "user": self.user,
            "host": self.host,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at) if self.ended_at else None,
            "exit_code": self.exit_code,
            "error": self.error,
            "command": self.command,
            "code": self.code,
            "env_id": self.env_id,
            "environment": self.environment,
            "params": self.params,
            "metrics": [[m.key, m.value, m.step, _iso(m.logged_at)] for m in self.metrics],
            "inputs": [
                {"name": i.name, "number": i.number, "digest": i.digest} for i in self.inputs
            ],
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    store: str  # the database id of the store whose chain it was appended to
    id: int  # its id in that chain
    hash: str  # its hash in that chain (a record of where it came from, not re-checked)
    at: datetime
    actor: str
    action: str
    model: str
    target: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": EVENT_FORMAT,
            "store": self.store,
            "id": self.id,
            "hash": self.hash,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "model": self.model,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


# -- parsing hostile input ------------------------------------------------------------


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRecord(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict):
        raise BadRecord("not a JSON object")
    return doc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _get(doc: dict[str, Any], key: str) -> Any:
    if key not in doc:
        raise BadRecord(f"no {key!r}")
    return doc[key]


def _str(doc: dict[str, Any], key: str, limit: int = _MAX_SHORT, *, empty: bool = True) -> str:
    value = _get(doc, key)
    if not isinstance(value, str) or len(value) > limit or (not empty and not value):
        raise BadRecord(f"{key!r} is not a string of at most {limit} characters")
    if "\0" in value:
        raise BadRecord(f"{key!r} holds a NUL character")
    return value


def _opt_str(doc: dict[str, Any], key: str, limit: int = _MAX_SHORT) -> str | None:
    return None if doc.get(key) is None else _str(doc, key, limit)


def _int(doc: dict[str, Any], key: str, low: int = 0, high: int = _MAX_INT) -> int:
    value = _get(doc, key)
    if type(value) is not int or not low <= value <= high:
        raise BadRecord(f"{key!r} is not an integer from {low} to {high}")
    return value


def _time(doc: dict[str, Any], key: str) -> datetime:
    value = _str(doc, key, 40)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRecord(f"{key!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BadRecord(f"{key!r} has no time zone")
    return when.astimezone(UTC)


def _obj(doc: dict[str, Any], key: str, limit: int = _MAX_DOC) -> dict[str, Any]:
    value = _get(doc, key)
    if not isinstance(value, dict) or len(canonical(value)) > limit:
        raise BadRecord(f"{key!r} is not a JSON object of at most {limit} bytes")
    return value


def _choice(doc: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _get(doc, key)
    if value not in allowed:
        raise BadRecord(f"{key!r} is not one of {', '.join(allowed)}")
    return str(value)


def _name(doc: dict[str, Any], key: str) -> str:
    value = _str(doc, key, 128, empty=False)
    try:
        return validate_name(value)
    except ModelkeepError as exc:
        raise BadRecord(f"{key!r} {value!r} is not a valid name") from exc


def _hex(doc: dict[str, Any], key: str, pattern: re.Pattern[str] = _HEX64) -> str:
    value = _get(doc, key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        digits = 64 if pattern is _HEX64 else 32
        raise BadRecord(f"{key!r} is not {digits} lowercase hex digits")
    return value


def _format(doc: dict[str, Any], expected: str) -> None:
    if doc.get("format") != expected:
        raise BadRecord(f"'format' is not {expected!r}")


class _Record(Protocol):
    def to_json(self) -> dict[str, Any]: ...


_R = TypeVar("_R", bound=_Record)


def _exact(doc: dict[str, Any], record: _R) -> _R:
    """record, once doc is known to hold exactly its fields: an unknown or misspelt key is
    refused, never ignored (a flipped byte in a key must not read as a missing field)."""
    want = set(record.to_json())
    if set(doc) != want:
        odd = sorted(set(doc) ^ want)
        raise BadRecord(f"unknown or missing fields: {', '.join(repr(k[:40]) for k in odd[:5])}")
    return record


def parse_version(data: bytes) -> VersionRecord:
    doc = load(data)
    _format(doc, VERSION_FORMAT)
    kind = _choice(doc, "kind", KINDS)
    mode = _int(doc, "mode", 0, 0o7777)
    if mode not in (FILE_MODES if kind == "file" else (0,)):
        raise BadRecord(f"'mode' {oct(mode)} is not one a {kind} is stored with")
    source_name = _str(doc, "source_name", 255, empty=False)
    if source_name in (".", "..") or "/" in source_name:
        raise BadRecord("'source_name' is not a single file name")
    run_id = None if doc.get("run_id") is None else _hex(doc, "run_id", _STORE)
    return _exact(
        doc,
        VersionRecord(
            store=_hex(doc, "store", _STORE),
            name=_name(doc, "name"),
            number=_int(doc, "number", 1, 2**31 - 1),
            type=_choice(doc, "type", ARTIFACT_TYPES),
            kind=kind,
            digest=_hex(doc, "digest"),
            size=_int(doc, "size"),
            file_count=_int(doc, "file_count", 0, 2**31 - 1),
            mode=mode,
            source_name=source_name,
            created_at=_time(doc, "created_at"),
            user=_str(doc, "user"),
            host=_opt_str(doc, "host"),
            message=_str(doc, "message", _MAX_TEXT),
            metadata=_obj(doc, "metadata", _MAX_TEXT),
            run_id=run_id,
        ),
    )


def _list(doc: dict[str, Any], key: str, limit: int) -> list[Any]:
    value = _get(doc, key)
    if not isinstance(value, list) or len(value) > limit:
        raise BadRecord(f"{key!r} is not a list of at most {limit} items")
    return value


def _metric(item: Any) -> MetricRecord:
    if not isinstance(item, list) or len(item) != 4:
        raise BadRecord("a metric is not [key, value, step, logged_at]")
    doc = dict(zip(("key", "value", "step", "logged_at"), item, strict=True))
    value = doc["value"]
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
    ):
        raise BadRecord("a metric's value is not a number or null")
    return MetricRecord(
        _str(doc, "key"),
        None if value is None else float(value),
        _int(doc, "step", -_MAX_INT, _MAX_INT),
        _time(doc, "logged_at"),
    )


def _input(item: Any) -> RunInputRecord:
    if not isinstance(item, dict):
        raise BadRecord("an input is not an object")
    return RunInputRecord(
        _name(item, "name"), _int(item, "number", 1, 2**31 - 1), _hex(item, "digest")
    )


def parse_run(data: bytes) -> RunDoc:
    doc = load(data)
    _format(doc, RUN_FORMAT)
    params_doc = _obj(doc, "params")
    params: dict[str, str] = {}
    for key, value in params_doc.items():
        if len(key) > _MAX_SHORT or not isinstance(value, str) or len(value) > _MAX_TEXT:
            raise BadRecord(f"param {key[:40]!r} is not a key and its JSON text")
        try:
            json.loads(value)
        except ValueError:
            raise BadRecord(f"param {key[:40]!r} is not JSON text") from None
        params[key] = value
    env = doc.get("environment")
    if env is not None:
        env = _obj(doc, "environment")
    env_id = None if doc.get("env_id") is None else _hex(doc, "env_id")
    if (env is None) != (env_id is None):
        raise BadRecord("'env_id' and 'environment' are not both given or both null")
    exit_code = None if doc.get("exit_code") is None else _int(doc, "exit_code", -(2**31), 2**31)
    return _exact(
        doc,
        RunDoc(
            id=_hex(doc, "id", _STORE),
            name=_str(doc, "name"),
            status=_choice(doc, "status", RUN_STATUSES),
            user=_str(doc, "user"),
            host=_str(doc, "host"),
            started_at=_time(doc, "started_at"),
            ended_at=None if doc.get("ended_at") is None else _time(doc, "ended_at"),
            exit_code=exit_code,
            error=_str(doc, "error", _MAX_TEXT),
            command=_obj(doc, "command"),
            code=_obj(doc, "code"),
            env_id=env_id,
            environment=env,
            params=params,
            metrics=tuple(_metric(m) for m in _list(doc, "metrics", 1_000_000)),
            inputs=tuple(_input(i) for i in _list(doc, "inputs", 100_000)),
        ),
    )


_EVALUATE_KEYS = {"evaluations", "dataset", "run"}
_MAX_EVALUATIONS = 10_000


def _evaluated(after: dict[str, Any]) -> None:
    """An `evaluate` event's after: {"evaluations": [{"id", "key", "value"}, …], "dataset":
    NAME:vN or null, "run": a run id or null}; a value is a number or "nan"."""
    if set(after) != _EVALUATE_KEYS:
        raise BadRecord(f"an evaluate event's after holds {', '.join(sorted(_EVALUATE_KEYS))}")
    items = _list(after, "evaluations", _MAX_EVALUATIONS)
    if not items:
        raise BadRecord("an evaluate event records no evaluations")
    for item in items:
        if not isinstance(item, dict) or set(item) != {"id", "key", "value"}:
            raise BadRecord("an evaluation is not {id, key, value}")
        _int(item, "id", 1)
        _str(item, "key", empty=False)
        value = item["value"]
        if value != "nan" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadRecord('an evaluation\'s value is not a number or "nan"')
    if after["dataset"] is not None:
        dataset = _str(after, "dataset", 160, empty=False)
        name, colon, number = dataset.rpartition(":v")
        try:
            validate_name(name)
        except ModelkeepError as exc:
            raise BadRecord(f"'dataset' {dataset!r} is not NAME:vN") from exc
        if not colon or not number.isdigit() or not 0 < int(number) < 2**31:
            raise BadRecord(f"'dataset' {dataset!r} is not NAME:vN")
    if after["run"] is not None:
        _hex(after, "run", _STORE)


def parse_event(data: bytes) -> EventRecord:
    doc = load(data)
    _format(doc, EVENT_FORMAT)
    model = _name(doc, "model")
    action = _choice(doc, "action", ACTIONS)
    target = _str(doc, "target", 160, empty=False)
    name, colon, number = target.rpartition(":v")
    alias_name, at, alias = target.partition("@")
    if action.startswith("alias-"):
        colon = ""
    else:
        at = ""
    if colon and name == model and number.isdigit() and 0 < int(number) < 2**31:
        pass
    elif at and alias_name == model:
        try:
            validate_alias(alias)
        except ModelkeepError as exc:
            raise BadRecord(f"'target' {target!r} names no valid alias") from exc
    else:
        raise BadRecord(f"'target' {target!r} is not {model}:vN or {model}@ALIAS")
    after = _obj(doc, "after", 64 * 1024)
    if "origin" in after:
        raise BadRecord("'after' holds an 'origin': an imported event is never pushed again")
    stage_action = action in ("register", "promote", "archive", "rollback")
    if stage_action and after.get("stage") not in STAGES:
        raise BadRecord(f"a {action} event's stage is not one of {', '.join(STAGES)}")
    if action == "alias-set" and (
        type(after.get("version")) is not int or not 0 < after["version"] < 2**31
    ):
        raise BadRecord("an alias-set event's version is not a number")
    if action == "evaluate":
        _evaluated(after)
    return _exact(
        doc,
        EventRecord(
            store=_hex(doc, "store", _STORE),
            id=_int(doc, "id", 1),
            hash=_hex(doc, "hash"),
            at=_time(doc, "at"),
            actor=_str(doc, "actor"),
            action=action,
            model=model,
            target=target,
            before=_obj(doc, "before", 64 * 1024),
            after=after,
            reason=_str(doc, "reason", _MAX_TEXT),
        ),
    )
