"""The HTTP API's operations, shared by `modelkeep serve` and its client.

Each metadata operation is one `Repo` method: the server calls it as the authenticated
account, the client (`modelkeep.client.ServerRepo`) has a method of the same name that
sends the request. Arguments and results go over the wire as JSON made by pydantic from the
method's own type hints, so both sides read one signature and decode into the same
dataclasses: a command prints the same text against a server as on a local store.

Moving bytes is not a `Repo` method on the wire: chunking and hashing stay on the client,
which asks which objects the server lacks, uploads those in packs, then commits the version
(`/objects/*`, `POST /versions`).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelkeep.errors import InvalidArgument

PREFIX = "/api/v1"
MAX_KEYS = 100_000  # object ids in one request


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: the Repo method, its HTTP route, the role it needs, and which
    argument names the model the role is checked on (for per-model grants)."""

    name: str
    method: str
    path: str  # under PREFIX; `{x}` is a path parameter, `{x:path}` one that holds '/'
    role: str
    model: str | None = None
    also: str | None = None  # another argument naming a model the role is needed on too

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(
            part.strip("{}").split(":")[0] for part in self.path.split("/") if part.startswith("{")
        )

    @property
    def in_body(self) -> bool:
        return self.method in ("POST", "PUT")


OPS: tuple[Op, ...] = (
    Op("artifacts", "GET", "/artifacts", "viewer"),
    Op("versions", "GET", "/artifacts/{name:path}/versions", "viewer", "name"),
    Op("version_metrics", "GET", "/artifacts/{name:path}/metrics", "viewer", "name"),
    Op("files", "GET", "/versions/{ref:path}/files", "viewer", "ref"),
    Op("card", "GET", "/versions/{ref:path}/card", "viewer", "ref"),
    Op("model_spec", "GET", "/versions/{ref:path}/model-spec", "viewer", "ref"),
    Op("input_example_doc", "GET", "/versions/{ref:path}/input-example", "viewer", "ref"),
    Op("lineage", "GET", "/versions/{ref:path}/lineage", "viewer", "ref"),
    Op("evaluations", "GET", "/versions/{ref:path}/evaluations", "viewer", "ref"),
    # editor, as for logging a run's metrics or adding a version: it records a measurement,
    # it moves nothing; the gates that read it are checked when a maintainer promotes.
    Op("evaluate", "POST", "/versions/{ref:path}/evaluations", "editor", "ref"),
    Op("readiness", "GET", "/versions/{ref:path}/readiness", "viewer", "ref"),
    Op("promote", "POST", "/versions/{ref:path}/stage", "maintainer", "ref"),
    Op("archive", "POST", "/versions/{ref:path}/archive", "maintainer", "ref"),
    Op("approve", "POST", "/versions/{ref:path}/approvals", "maintainer", "ref"),
    Op("pushed_to", "GET", "/versions/{ref:path}/pushes", "viewer", "ref"),
    Op("show", "GET", "/versions/{ref:path}", "viewer", "ref"),
    Op("delete", "DELETE", "/versions/{ref:path}", "admin", "ref"),
    Op("diff", "GET", "/diff", "viewer", "new_ref"),
    Op("environment", "GET", "/environments/{ref:path}", "viewer"),
    Op("env_diff", "GET", "/environment-diff", "viewer"),
    Op("runs", "GET", "/runs", "viewer"),
    Op("compare_runs", "GET", "/run-comparison", "viewer"),
    Op("metric_history", "GET", "/runs/{ref}/metrics", "viewer"),
    Op("run", "GET", "/runs/{ref}", "viewer"),
    Op("create_run", "POST", "/runs", "editor"),
    Op("log_params", "POST", "/runs/{run_id}/params", "editor"),
    Op("log_metrics", "POST", "/runs/{run_id}/metrics", "editor"),
    Op("add_input", "POST", "/runs/{run_id}/inputs", "editor"),
    Op("heartbeat", "POST", "/runs/{run_id}/heartbeat", "editor"),
    Op("end_run", "POST", "/runs/{run_id}/end", "editor"),
    Op("set_run_error", "POST", "/runs/{run_id}/error", "editor"),
    Op("attachments", "GET", "/runs/{ref}/attachments", "viewer"),
    Op("run_files", "GET", "/runs/{ref}/files", "viewer"),
    Op("add_attachment", "POST", "/runs/{run_id}/attachments", "editor"),
    Op("tag_run", "POST", "/runs/{run_id}/tags", "editor"),
    Op("set_run_note", "PUT", "/runs/{run_id}/note", "editor"),
    Op("rename_run", "PUT", "/runs/{run_id}/name", "editor"),
    Op("delete_run", "DELETE", "/runs/{run_id}", "editor"),
    Op("restore_run", "POST", "/runs/{run_id}/restore", "editor"),
    Op("models", "GET", "/models", "viewer"),
    Op("history", "GET", "/models/{name:path}/history", "viewer", "name"),
    Op("register", "POST", "/models/{name:path}/versions", "editor", "name"),
    Op("rollback", "POST", "/models/{name:path}/rollback", "maintainer", "name"),
    Op("registered_model", "GET", "/registered-models/{name:path}", "viewer", "name"),
    Op("describe_model", "PUT", "/registered-models/{name:path}/description", "editor", "name"),
    Op("tag_model", "PUT", "/registered-models/{name:path}/tags", "editor", "name"),
    Op("untag_model", "DELETE", "/registered-models/{name:path}/tags", "editor", "name"),
    Op("rename_model", "PUT", "/registered-models/{name:path}/name", "admin", "name", "new_name"),
    Op("set_alias", "PUT", "/aliases/{alias:path}", "maintainer", "alias"),
    Op("remove_alias", "DELETE", "/aliases/{alias:path}", "maintainer", "alias"),
    Op("audit", "GET", "/audit", "viewer", "name"),
    Op("verify_audit", "GET", "/audit/verify", "viewer"),
    # pages of the web UI: one bounded slice of a long answer, with its total
    Op("version_page", "GET", "/pages/versions/{name:path}", "viewer", "name"),
    Op("model_page", "GET", "/pages/models", "viewer"),
    Op("model_summary", "GET", "/pages/model/{name:path}", "viewer", "name"),
    Op("audit_page", "GET", "/pages/audit", "viewer", "name"),
    Op("stages_at", "GET", "/pages/stages-at", "viewer"),
    Op("file_page", "GET", "/pages/files/{ref:path}", "viewer", "ref"),
    Op("diff_page", "GET", "/pages/diff", "viewer", "new_ref"),
    Op("lineage_neighbours", "GET", "/pages/lineage/{ref:path}", "viewer", "ref"),
    Op("metric_series", "GET", "/pages/metrics/{ref}", "viewer"),
    Op("dedup", "GET", "/pages/dedup/{ref:path}", "viewer", "ref"),
)
BY_NAME = {op.name: op for op in OPS}
# Operations on a run that only its own account (or an admin) may do.
RUN_WRITES = frozenset(
    {
        "log_params",
        "log_metrics",
        "add_input",
        "heartbeat",
        "end_run",
        "set_run_error",
        "add_attachment",
        "tag_run",
        "set_run_note",
        "rename_run",
        "delete_run",
        "restore_run",
        "evaluate",  # when it names a run (run_id)
    }
)
# Repo methods a server's client does not offer, and why (the message it raises).
_ON_SERVER = "works on the store's own files: run it on the server's machine"
LOCAL_ONLY = {
    **dict.fromkeys(
        ("fsck", "gc", "du", "migrate", "prune_cache", "push", "pull", "add_remote",
         "remove_remote", "remotes"),
        _ON_SERVER,
    ),
    "install_hooks": (
        "writes Git hooks that name a local repository; with a server, run `modelkeep "
        "checkout` after `git checkout`"
    ),
}  # fmt: skip


@functools.cache
def signature(name: str) -> tuple[inspect.Signature, Mapping[str, Any]]:
    """The Repo method's signature and its resolved type hints, with `Target` (a ref or a
    Version) narrowed to str: on the wire a version is its ref."""
    from modelkeep import repo

    method = getattr(repo.Repo, name)
    hints = typing.get_type_hints(method, vars(repo) | _late_names())
    narrowed = {k: _narrow(v) for k, v in hints.items()}
    return inspect.signature(method), narrowed


def _late_names() -> dict[str, Any]:
    """Names repo.py imports only for type checking, which its hints use."""
    from modelkeep import card, meta, registry, results, store, sync, worktree
    from modelkeep.capture.environment import EnvDiff
    from modelkeep.formats import ModelSpec
    from modelkeep.meta import pages

    return {
        "pages": pages,
        "cards": card,
        "meta": meta,
        "registry": registry,
        "sync": sync,
        "worktree": worktree,
        "EnvDiff": EnvDiff,
        "ModelSpec": ModelSpec,
        **{
            n: getattr(results, n)
            for n in (
                "AddResult",
                "Change",
                "Dedup",
                "Diff",
                "DiffPage",
                "FileInfo",
                "FilePage",
                "Usage",
            )
        },
        **{
            n: getattr(meta, n)
            for n in ("Artifact", "Attachment", "Lineage", "Metric", "RunRecord")
        },
        **{n: getattr(store, n) for n in ("ObjectStore", "Root")},
    }


def _narrow(hint: Any) -> Any:
    from modelkeep.meta import Version

    if hint == (Version | str):
        return str
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Sequence, list, tuple) and args and args[0] == (Version | str):
        return list[str]
    return hint


def params(op: Op) -> dict[str, tuple[Any, Any]]:
    """The wire parameters of op: name -> (type, default or inspect.Parameter.empty);
    `progress` is the caller's, never sent."""
    sig, hints = signature(op.name)
    return {
        p.name: (hints[p.name], p.default)
        for p in list(sig.parameters.values())[1:]
        if p.name != "progress"
    }


@functools.cache
def adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def result_type(op: Op) -> Any:
    return signature(op.name)[1]["return"]


def encode_result(op: Op, value: Any) -> Any:
    return json_safe(adapter(result_type(op)).dump_python(value, mode="json"))


def json_safe(value: Any) -> Any:
    """value with NaN and infinities as the strings "nan", "inf", "-inf": JSON has no such
    numbers (both sides refuse to write them), and pydantic reads the strings back into a
    float where the type hint wants one."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def decode_result(op: Op, doc: Any) -> Any:
    return adapter(result_type(op)).validate_python(doc)


def decode_args(op: Op, given: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments from a request (path, query or body), typed by the method's hints; an
    unknown, missing or mistyped argument is InvalidArgument naming it."""
    from pydantic import ValidationError

    wanted = params(op)
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        raise InvalidArgument(f"{op.name} takes no argument {unknown[0]!r}")
    out: dict[str, Any] = {}
    for name, (hint, default) in wanted.items():
        if name not in given:
            if default is inspect.Parameter.empty:
                raise InvalidArgument(f"{op.name} needs the argument {name!r}")
            continue
        try:
            out[name] = adapter(hint).validate_python(given[name])
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidArgument(
                f"argument {name!r} of {op.name}: {first['msg'].lower()}"
            ) from None
    return out


def encode_args(op: Op, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A client call's arguments as JSON values by name (defaults left out)."""
    from modelkeep.meta import Version

    sig, _ = signature(op.name)
    bound = sig.bind(None, *args, **kwargs)
    out: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:
        if name == "progress":
            continue
        if isinstance(value, Version):
            value = value.ref
        elif isinstance(value, (list, tuple)):
            value = [v.ref if isinstance(v, Version) else v for v in value]
        hint = params(op)[name][0]
        out[name] = json_safe(adapter(hint).dump_python(value, mode="json"))
    return out


def model_of(op: Op, args: Mapping[str, Any], show: Callable[[str], str]) -> str | None:
    """The model name an operation acts on, for per-model roles: from a name, an alias
    `NAME@ALIAS` or a ref (a content id is looked up with show, which returns its name)."""
    from modelkeep.refs import AliasRef, DigestRef, VersionRef, parse_ref

    if op.model is None or args.get(op.model) is None:
        return None
    text = str(args[op.model])
    if op.model == "name":
        return text
    ref = parse_ref(text)
    if isinstance(ref, (VersionRef, AliasRef)):
        return ref.name
    assert isinstance(ref, DigestRef)
    return show(text)
