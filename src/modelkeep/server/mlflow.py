"""MLflow's tracking REST API (`/api/2.0/mlflow/...`) on `modelkeep serve`.

The unmodified `mlflow` client, with `MLFLOW_TRACKING_URI` at a modelkeep server, logs
experiments and runs into the store: an MLflow run is a modelkeep run (meta/tracking.py).
Each request is authenticated as every other (`MLFLOW_TRACKING_TOKEN` arrives as a bearer
token, `MLFLOW_TRACKING_USERNAME`/`PASSWORD` as basic credentials), the run's user is the
account, never the `user_id` the client sends, and errors come back in MLflow's form,
`{"error_code": ..., "message": ...}`, which the client raises as an `MlflowException`.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelkeep import errors
from modelkeep.errors import Forbidden, InvalidArgument, ModelkeepError
from modelkeep.meta import experiments, housekeeping, tracking, tracking_search
from modelkeep.meta.accounts import Account
from modelkeep.meta.run_reads import FAILED, FINISHED, KILLED, RUNNING

log = logging.getLogger("modelkeep.server")
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
MAX_RESULTS = 50_000  # runs or experiments in one page, as MLflow's
DEFAULT_RESULTS = 1000
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_BATCH = 1000, 100, 100, 1000  # one log-batch, as MLflow's
MAX_HISTORY_PAGE = 1_000_000
_STATUS_IN = {
    "RUNNING": RUNNING, "SCHEDULED": RUNNING, "FINISHED": FINISHED, "FAILED": FAILED,
    "KILLED": KILLED, 1: RUNNING, 2: RUNNING, 3: FINISHED, 4: FAILED, 5: KILLED,
}  # fmt: skip
_VIEW = {"ACTIVE_ONLY": False, "DELETED_ONLY": True, "ALL": None, 1: False, 2: True, 3: None}


class Server(Protocol):
    """What this module uses of app.Server (which imports this module to mount it)."""

    repo: Any
    options: Any
    writing: Any  # one store writer per process

    def require(
        self, who: Account, role: str, what: str, model: str | None = None, anywhere: bool = False
    ) -> None: ...

    def endpoint(
        self,
        handler: Callable[[Request, Account], Any],
        *,
        public: bool = False,
        render: Callable[[ModelkeepError], Response] | None = None,
    ) -> Callable[[Request], Any]: ...

    async def json_body(self, request: Request) -> dict[str, Any]: ...


Doc = dict[str, Any]
Handler = Callable[[Server, Account, Doc], Doc]


# -- errors -----------------------------------------------------------------------------------


def error_code(exc: BaseException) -> tuple[int, str]:
    """MLflow's error code and HTTP status for a modelkeep error."""
    if isinstance(exc, errors.Unauthenticated):
        return 401, "UNAUTHENTICATED"
    if isinstance(exc, (Forbidden, errors.RemoteAccessDenied)):
        return 403, "PERMISSION_DENIED"
    if isinstance(exc, LookupError):
        return 404, "RESOURCE_DOES_NOT_EXIST"
    if isinstance(exc, FileExistsError):
        return 400, "RESOURCE_ALREADY_EXISTS"
    if isinstance(exc, errors.DatabaseError):
        return 503, "TEMPORARILY_UNAVAILABLE"
    if isinstance(exc, (ValueError, errors.RequestTooLarge, errors.TooLarge)):
        return 400, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, (errors.RegistryRefused, errors.PromotionRefused)):
        return 400, "INVALID_PARAMETER_VALUE"  # the registry's rules or the policy said no
    return 400, "INVALID_STATE"  # a run that ended, one still running, one not deleted


def renderer(server: Server) -> Callable[[ModelkeepError], Response]:
    root = str(server.options.root)

    def render(exc: ModelkeepError) -> Response:
        status, code = error_code(exc)
        message = str(exc).replace(root, "<store>")
        if status == 503:
            log.error("database error: %s", message)
            message = "the metadata database failed; see the server log"
        return JSONResponse({"error_code": code, "message": message}, status_code=status)

    return render


# -- reading requests ---------------------------------------------------------------------------


def _invalid(key: str, value: object, expected: str) -> InvalidArgument:
    """MLflow's wording ("Invalid value 31 for parameter 'run_id' supplied"), which scripts and
    MLflow's own tests match on, then what was expected."""
    shown = json.dumps(value, separators=(",", ":"), default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return InvalidArgument(f"Invalid value {shown} for parameter {key!r} supplied: {expected}")


def _missing(key: str) -> InvalidArgument:
    return InvalidArgument(f"Missing value for required parameter {key!r}")


def _text(doc: Doc, key: str, *, limit: int = 1000, default: str | None = None) -> str:
    value = doc.get(key, default)
    if value is None:
        raise _missing(key)
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(key, value, f"text of at most {limit} characters")
    return value


def _opt_text(doc: Doc, key: str, limit: int = 1000) -> str | None:
    return _text(doc, key, limit=limit) if doc.get(key) is not None else None


def _int(doc: Doc, key: str, default: int | None = None) -> int:
    value = doc.get(key, default)
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
        raise _invalid(key, value, "a whole number")
    return value


def _float(doc: Doc, key: str) -> float:
    value = doc.get(key)
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"):
        return float(value.replace("Infinity", "inf"))
    if value is None:
        raise _missing(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _invalid(key, value, "a number")
    return float(value)


def _run_id(doc: Doc) -> str:
    value = doc.get("run_id") or doc.get("run_uuid")
    return _text({"run_id": value}, "run_id", limit=64)


def _experiment_id(doc: Doc, key: str = "experiment_id", default: str | None = None) -> int:
    text = _text(doc, key, limit=20, default=default)
    if not text.isdigit() or int(text) >= 2**31:  # ids are 32-bit integers in the database
        raise experiments_not_found(text)
    return int(text)


def experiments_not_found(text: str) -> errors.ExperimentNotFound:
    return errors.ExperimentNotFound(f"with id {text[:40]!r}")


def _pairs(doc: Doc, key: str, limit: int) -> dict[str, str]:
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise _invalid(key, items, "a list of {key, value}")
    if len(items) > limit:
        raise InvalidArgument(f"a request holds at most {limit} {key}, this one {len(items)}")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidArgument(f"each of {key!r} is {{key, value}}")
        out[_text(item, "key", limit=250)] = _text(item, "value", limit=8000, default="")
    return out


def _metric(doc: Doc) -> tracking.LoggedMetric:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return tracking.LoggedMetric(
        key=_text(doc, "key", limit=250),
        value=_float(doc, "value"),
        timestamp=_int(doc, "timestamp", now),
        step=_int(doc, "step", 0),
    )


def _max_results(doc: Doc, default: int = DEFAULT_RESULTS, limit: int = MAX_RESULTS) -> int:
    value = _int(doc, "max_results", default)
    if not 1 <= value <= limit:
        raise _invalid("max_results", value, f"1 to {limit}")
    return value


def _offset(doc: Doc, kind: str) -> int:
    token = doc.get("page_token")
    if not token:
        return 0
    try:
        if not isinstance(token, str) or len(token) > 200:
            raise ValueError
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = decoded.get("offset")
        if decoded.get("for") != kind or not isinstance(offset, int) or offset < 0:
            raise ValueError
        return int(decoded["offset"])
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"invalid page_token {str(token)[:40]!r}") from None


def _page(items: list[Any], offset: int, size: int, kind: str) -> tuple[list[Any], str | None]:
    page = items[offset : offset + size]
    if offset + size >= len(items):
        return page, None
    token = json.dumps({"for": kind, "offset": offset + size}).encode()
    return page, base64.urlsafe_b64encode(token).decode()


def _view(doc: Doc, key: str) -> bool | None:
    value = doc.get(key, "ACTIVE_ONLY")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, str | int) or value not in _VIEW:
        raise InvalidArgument(f"{key} is ACTIVE_ONLY, DELETED_ONLY or ALL")
    return _VIEW[value]


def _order_by(doc: Doc) -> list[str]:
    items = doc.get("order_by") or []
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or len(items) > 20:
        raise InvalidArgument("order_by is a list of at most 20 keys")
    return items


# -- rendering --------------------------------------------------------------------------------


def _number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _metric_json(m: tracking.LoggedMetric) -> Doc:
    return {"key": m.key, "value": _number(m.value), "timestamp": m.timestamp, "step": m.step}


def run_info(run: tracking.TrackedRun) -> Doc:
    info: Doc = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": str(run.experiment_id),
        "user_id": run.user,
        "status": run.status.upper(),
        "start_time": tracking.ms(run.started_at),
        "artifact_uri": run.artifact_uri,
        "lifecycle_stage": "deleted" if run.deleted else "active",
    }
    if run.ended_at is not None:
        info["end_time"] = tracking.ms(run.ended_at)
    return info


def run_json(run: tracking.TrackedRun) -> Doc:
    return {
        "info": run_info(run),
        "data": {
            "metrics": [_metric_json(m) for m in run.metrics.values()],
            "params": [{"key": k, "value": v} for k, v in run.params.items()],
            "tags": [{"key": k, "value": v} for k, v in run.tags.items()],
        },
    }


# -- who may ---------------------------------------------------------------------------------


def _may(server: Server, who: Account, role: str, what: str) -> None:
    server.require(who, role, what)


def _own(server: Server, who: Account, run_id: str, what: str) -> None:
    """Writes to a run are its account's (or an admin's), as the rest of the server's."""
    _may(server, who, "editor", what)
    if not who.admin and tracking.owner(server.repo.db, run_id) != who.name:
        raise Forbidden(who.name, "admin", f"{what} of another account's run", None)


# -- experiments ----------------------------------------------------------------------------------


def create_experiment(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "editor", "create experiments")
    made = experiments.create(
        server.repo.db,
        _text(doc, "name", limit=experiments.MAX_NAME),
        artifact_location=_opt_text(doc, "artifact_location", experiments.MAX_LOCATION) or "",
        tags=_pairs(doc, "tags", MAX_TAGS),
    )
    return {"experiment_id": str(made)}


def get_experiment(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "read experiments")
    found = experiments.get(server.repo.db, _experiment_id(doc))
    return {"experiment": experiments.to_json(found)}


def get_experiment_by_name(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "read experiments")
    name = _text(doc, "experiment_name", limit=experiments.MAX_NAME)
    return {"experiment": experiments.to_json(experiments.by_name(server.repo.db, name))}


def search_experiments(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "search experiments")
    size = _max_results(doc)
    offset = _offset(doc, "experiments")
    match = tracking_search.parse_experiment_filter(_opt_text(doc, "filter", 4000) or "")
    order = tracking_search.parse_experiment_order(_order_by(doc))
    deleted = _view(doc, "view_type")
    found = [
        e
        for e in experiments.all_experiments(server.repo.db)
        if (deleted is None or (e.lifecycle_stage == experiments.DELETED) == deleted) and match(e)
    ]
    page, token = _page(tracking_search.sort(found, order), offset, size, "experiments")
    out: Doc = {"experiments": [experiments.to_json(e) for e in page]}
    if token:
        out["next_page_token"] = token
    return out


def _stage(stage: str) -> Handler:
    def change(server: Server, who: Account, doc: Doc) -> Doc:
        _may(
            server,
            who,
            "maintainer",
            f"{'delete' if stage == 'deleted' else 'restore'} experiments",
        )
        experiments.set_stage(server.repo.db, _experiment_id(doc), stage)
        return {}

    return change


def update_experiment(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "maintainer", "rename experiments")
    name = _text(doc, "new_name", limit=experiments.MAX_NAME)
    experiments.rename(server.repo.db, _experiment_id(doc), name)
    return {}


def set_experiment_tag(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "editor", "tag experiments")
    key = _text(doc, "key", limit=experiments.MAX_TAG_KEY)
    value = _text(doc, "value", limit=experiments.MAX_TAG_VALUE, default="")
    experiments.set_tag(server.repo.db, _experiment_id(doc), key, value)
    return {}


def delete_experiment_tag(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "editor", "tag experiments")
    key = _text(doc, "key", limit=experiments.MAX_TAG_KEY)
    experiments.delete_tag(server.repo.db, _experiment_id(doc), key)
    return {}


# -- runs ---------------------------------------------------------------------------------------


def create_run(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "editor", "create runs")
    tags = _pairs(doc, "tags", MAX_TAGS)
    run_id = uuid.uuid4().hex
    name = _opt_text(doc, "run_name", 255) or tags.get(tracking.NAME_TAG) or f"mlflow-{run_id[:8]}"
    tags[tracking.NAME_TAG] = name
    now = int(datetime.now(UTC).timestamp() * 1000)
    started = _int(doc, "start_time", now)  # from_ms below refuses it out of range
    db = server.repo.db
    tracking.create_run(
        db,
        run_id=run_id,
        experiment_id=_experiment_id(doc, default="0"),
        name=name,
        user=who.name,  # the account, never the user_id the client sends
        started_at=tracking.from_ms(started),
        tags=tags,
    )
    return {"run": run_json(tracking.get(db, run_id))}


def update_run(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "update run")
    status = doc.get("status")
    if status is not None and (not isinstance(status, str) or status not in _STATUS_IN):
        raise InvalidArgument(f"unknown run status {str(status)[:20]!r}")
    end = _int(doc, "end_time") if doc.get("end_time") is not None else None
    db = server.repo.db
    tracking.update_run(
        db,
        run_id,
        status=_STATUS_IN[status] if status is not None else None,
        ended_at=tracking.from_ms(end) if end is not None else None,
        name=_opt_text(doc, "run_name", 255),
    )
    return {"run_info": run_info(tracking.get(db, run_id))}


def delete_run(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "delete run")
    housekeeping.delete_run(server.repo.db, run_id, who.name, "deleted with MLflow")
    return {}


def restore_run(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "restore run")
    housekeeping.restore_run(server.repo.db, run_id)
    return {}


def get_run(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "read runs")
    return {"run": run_json(tracking.get(server.repo.db, _run_id(doc)))}


def search_runs(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "search runs")
    ids = doc.get("experiment_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list) or len(ids) > 1000:
        raise InvalidArgument("experiment_ids is a list of at most 1000 ids")
    wanted = [_experiment_id({"id": i}, "id") for i in ids]
    size = _max_results(doc)
    offset = _offset(doc, "runs")
    search = tracking_search.parse_search(_opt_text(doc, "filter", 4000) or "", _order_by(doc))
    db = server.repo.db
    found = tracking.load(
        db, experiment_ids=wanted, deleted=_view(doc, "run_view_type"), keys=search.keys
    )
    page, token = _page(
        tracking_search.sort([r for r in found if search.match(r)], search.order),
        offset,
        size,
        "runs",
    )
    ids = [r.id for r in page]
    whole = {  # the page's runs in full, 500 ids to a query (a page may hold 50,000)
        r.id: r for at in range(0, len(ids), 500) for r in tracking.load(db, ids=ids[at : at + 500])
    }
    out: Doc = {"runs": [run_json(whole.get(r.id, r)) for r in page]}
    if token:
        out["next_page_token"] = token
    return out


def log_metric(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "log metrics")
    tracking.log_batch(server.repo.db, run_id, metrics=[_metric(doc)])
    return {}


def log_param(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "log params")
    key = _text(doc, "key", limit=250)
    value = _text(doc, "value", limit=tracking.MAX_PARAM_VALUE, default="")
    tracking.log_batch(server.repo.db, run_id, params={key: value})
    return {}


def log_batch(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    metrics = doc.get("metrics") or []
    if not isinstance(metrics, list):
        raise _invalid("metrics", metrics, "a list of {key, value, timestamp, step}")
    if len(metrics) > MAX_METRICS:
        raise InvalidArgument(f"a batch holds at most {MAX_METRICS} metrics")
    params = _pairs(doc, "params", MAX_PARAMS)
    tags = _pairs(doc, "tags", MAX_TAGS)
    if len(metrics) + len(params) + len(tags) > MAX_BATCH:
        raise InvalidArgument(f"a batch holds at most {MAX_BATCH} metrics, params and tags")
    if not all(isinstance(m, dict) and m.get("timestamp") is not None for m in metrics):
        # as MLflow's server: a batch's metrics carry their time (the client always sends it)
        raise _invalid("metrics", metrics, "each metric has a key, a value and a timestamp")
    parsed = [_metric(m) for m in metrics]
    _own(server, who, run_id, "log a batch")
    tracking.log_batch(server.repo.db, run_id, metrics=parsed, params=params, tags=tags)
    return {}


def set_tag(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "tag run")
    key = _text(doc, "key", limit=250)
    tracking.log_batch(
        server.repo.db, run_id, tags={key: _text(doc, "value", limit=8000, default="")}
    )
    return {}


def delete_tag(server: Server, who: Account, doc: Doc) -> Doc:
    run_id = _run_id(doc)
    _own(server, who, run_id, "tag run")
    tracking.delete_tag(server.repo.db, run_id, _text(doc, "key", limit=250))
    return {}


def metric_history(server: Server, who: Account, doc: Doc) -> Doc:
    _may(server, who, "viewer", "read runs")
    run_id = _run_id(doc)
    key = _text(doc, "metric_key", limit=250)
    found = tracking.history(server.repo.db, run_id, key)
    if doc.get("max_results") is None and not doc.get("page_token"):
        return {"metrics": [_metric_json(m) for m in found]}
    size = _max_results(doc, limit=MAX_HISTORY_PAGE)
    page, token = _page(found, _offset(doc, "history"), size, "history")
    out: Doc = {"metrics": [_metric_json(m) for m in page]}
    if token:
        out["next_page_token"] = token
    return out


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/search", search_experiments),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/delete", _stage(experiments.DELETED)),
    ("POST", "/experiments/restore", _stage(experiments.ACTIVE)),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    ("POST", "/experiments/delete-experiment-tag", delete_experiment_tag),
    ("POST", "/runs/create", create_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/restore", restore_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/search", search_runs),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("GET", "/metrics/get-history", metric_history),
)


def _query(request: Request) -> Doc:
    """GET parameters; a repeated one (experiment_ids, order_by) as a list."""
    doc: Doc = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        doc[key] = values if len(values) > 1 or key in ("experiment_ids", "order_by") else values[0]
    return doc


def _handle(server: Server, fn: Handler) -> Callable[[Request, Account], Any]:
    async def handle(request: Request, who: Account) -> Response:
        doc = _query(request) if request.method == "GET" else await server.json_body(request)
        doc.update(request.path_params)  # /logged-models/{model_id}
        return JSONResponse(await run_in_threadpool(fn, server, who, doc))

    return handle


def routes(server: Server, table: Iterable[tuple[str, str, Handler]] = ROUTES) -> Iterable[Route]:
    """Routes for a table of (method, path under /api/2.0/mlflow, handler)."""
    render = renderer(server)
    table = list(table)
    for prefix in PREFIXES:
        for method, path, fn in table:
            yield Route(
                prefix + path,
                server.endpoint(_handle(server, fn), render=render),
                methods=[method],
            )
