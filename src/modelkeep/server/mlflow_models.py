"""MLflow 3's logged-model endpoints (`/api/2.0/mlflow/logged-models…`) and the run inputs
and outputs `log_model` and `log_input` send, for the unmodified client.

`mlflow.<flavor>.log_model(...)` creates a logged model, uploads its files to the model's
artifact folder through the proxy (server/mlflow_artifacts.py), links it to the run as an
output and finalizes it; registering it then makes a modelkeep version of those files.
"""

from __future__ import annotations

import json

from modelkeep.errors import Forbidden, InvalidArgument
from modelkeep.meta import experiments, logged_models, tracking
from modelkeep.meta.accounts import Account
from modelkeep.server.mlflow import (
    MAX_TAGS,
    Doc,
    Handler,
    Server,
    _experiment_id,
    _max_results,
    _offset,
    _own,
    _page,
    _pairs,
    _run_id,
    _text,
)

_STATUS = {
    "LOGGED_MODEL_READY": logged_models.READY,
    "LOGGED_MODEL_UPLOAD_FAILED": logged_models.FAILED,
    "LOGGED_MODEL_PENDING": logged_models.PENDING,
}
_STATUS_OUT = {v: k for k, v in _STATUS.items()}
_FILTERABLE = {"name": "name", "status": "status", "model_type": "model_type"}
MAX_DATASETS = 100


def model_json(m: logged_models.LoggedModel) -> Doc:
    return {
        "info": {
            "model_id": m.id,
            "experiment_id": str(m.experiment_id),
            "name": m.name,
            "creation_timestamp_ms": tracking.ms(m.created_at),
            "last_updated_timestamp_ms": tracking.ms(m.updated_at),
            "artifact_uri": m.artifact_uri,
            "status": _STATUS_OUT[m.status],
            "status_message": m.status_message,
            "model_type": m.model_type,
            **({"source_run_id": m.source_run_id} if m.source_run_id else {}),
            "tags": [{"key": k, "value": v} for k, v in m.tags.items()],
        },
        "data": {"params": [{"key": k, "value": v} for k, v in m.params.items()], "metrics": []},
    }


def _model_id(doc: Doc) -> str:
    return _text(doc, "model_id", limit=64)


def _mine(server: Server, who: Account, model_id: str, what: str) -> None:
    server.require(who, "editor", what)
    found = logged_models.get(server.repo.db, model_id)
    if not who.admin and found.user != who.name:
        raise Forbidden(who.name, "admin", f"{what} of another account's logged model", None)


def create(server: Server, who: Account, doc: Doc) -> Doc:
    server.require(who, "editor", "log models")
    run_id = doc.get("source_run_id") or None
    if run_id is not None:
        _own(server, who, _run_id({"run_id": run_id}), "log models")
    made = logged_models.create(
        server.repo.db,
        _experiment_id(doc),
        _text(doc, "name", limit=255, default=""),
        who.name,
        source_run_id=run_id,
        model_type=_text(doc, "model_type", limit=255, default=""),
        params=_pairs(doc, "params", logged_models.MAX_PARAMS),
        tags=_pairs(doc, "tags", MAX_TAGS),
    )
    return {"model": model_json(made)}


def get(server: Server, who: Account, doc: Doc) -> Doc:
    server.require(who, "viewer", "read logged models")
    deleted = str(doc.get("allow_deleted", "")).lower() == "true"
    return {"model": model_json(logged_models.get(server.repo.db, _model_id(doc), deleted=deleted))}


def finalize(server: Server, who: Account, doc: Doc) -> Doc:
    model_id = _model_id(doc)
    _mine(server, who, model_id, "finalize logged models")
    status = _STATUS.get(doc.get("status"))  # type: ignore[arg-type]
    if status is None:
        raise InvalidArgument(f"status must be one of {', '.join(_STATUS)}")
    return {"model": model_json(logged_models.finalize(server.repo.db, model_id, status))}


def delete(server: Server, who: Account, doc: Doc) -> Doc:
    model_id = _model_id(doc)
    _mine(server, who, model_id, "delete logged models")
    logged_models.delete(server.repo.db, model_id)
    return {}


def set_tags(server: Server, who: Account, doc: Doc) -> Doc:
    model_id = _model_id(doc)
    _mine(server, who, model_id, "tag logged models")
    tags = _pairs(doc, "tags", MAX_TAGS)
    return {"model": model_json(logged_models.set_tags(server.repo.db, model_id, tags))}


def delete_tag(server: Server, who: Account, doc: Doc) -> Doc:
    model_id = _model_id(doc)
    _mine(server, who, model_id, "untag logged models")
    logged_models.delete_tag(server.repo.db, model_id, _text(doc, "tag_key", limit=250))
    return {}


def log_params(server: Server, who: Account, doc: Doc) -> Doc:
    model_id = _model_id(doc)
    _mine(server, who, model_id, "log params of logged models")
    params = _pairs(doc, "params", logged_models.MAX_PARAMS)
    logged_models.log_params(server.repo.db, model_id, params)
    return {}


def _where(text: str) -> dict[str, str]:
    """MLflow's filter for logged models, the part kept: `attribute = 'value'` joined by AND."""
    where: dict[str, str] = {}
    for clause in filter(None, (c.strip() for c in text.replace(" and ", " AND ").split(" AND "))):
        key, sep, value = clause.partition("=")
        key = key.strip().removeprefix("attributes.")
        value = value.strip()
        if (
            not sep
            or key not in _FILTERABLE
            or len(value) < 2
            or value[0] != value[-1]
            or value[0] not in "'\""
        ):
            raise InvalidArgument(
                f"logged models filter {clause!r}: only `name|status|model_type = 'value'` "
                "clauses joined by AND are supported"
            )
        where[_FILTERABLE[key]] = _STATUS.get(value[1:-1], value[1:-1])
    return where


def search(server: Server, who: Account, doc: Doc) -> Doc:
    server.require(who, "viewer", "read logged models")
    ids = doc.get("experiment_ids") or [str(experiments.DEFAULT_ID)]
    if not isinstance(ids, list):
        ids = [ids]
    experiment_ids = [_experiment_id({"experiment_id": i}) for i in ids]
    where = _where(_text(doc, "filter", limit=4000, default=""))
    found = logged_models.search(server.repo.db, experiment_ids, where)
    size = _max_results(doc, default=100, limit=1000)
    page, token = _page(found, _offset(doc, "logged models"), size, "logged models")
    out: Doc = {"models": [model_json(m) for m in page]}
    if token:
        out["next_page_token"] = token
    return out


def log_inputs(server: Server, who: Account, doc: Doc) -> Doc:
    """Datasets a run used, kept as run tags `mlflow.dataset.<name>` (name, digest, source);
    a logged model given as an input must exist."""
    run_id = _run_id(doc)
    _own(server, who, run_id, "log inputs")
    datasets = doc.get("datasets") or []
    models = doc.get("models") or []
    if not isinstance(datasets, list) or not isinstance(models, list):
        raise InvalidArgument("'datasets' and 'models' are lists")
    if len(datasets) > MAX_DATASETS:
        raise InvalidArgument(f"at most {MAX_DATASETS} datasets in one request")
    tags: dict[str, str] = {}
    for given in datasets:
        dataset = given.get("dataset") if isinstance(given, dict) else None
        if not isinstance(dataset, dict):
            raise InvalidArgument("each dataset input is {dataset: {name, digest, …}, tags}")
        name = _text(dataset, "name", limit=200)
        kept = {k: dataset.get(k) for k in ("name", "digest", "source_type", "source")}
        kept["context"] = next(
            (
                t.get("value")
                for t in given.get("tags") or []
                if isinstance(t, dict) and t.get("key") == "mlflow.data.context"
            ),
            None,
        )
        tags[f"mlflow.dataset.{name}"] = json.dumps(kept)[: tracking.MAX_PARAM_VALUE]
    for m in models:
        logged_models.get(server.repo.db, _model_id(m if isinstance(m, dict) else {}))
    if tags:
        tracking.log_batch(server.repo.db, run_id, tags=tags)
    return {}


def log_outputs(server: Server, who: Account, doc: Doc) -> Doc:
    """A logged model a run made: it must exist (the model records its run already)."""
    run_id = _run_id(doc)
    _own(server, who, run_id, "log outputs")
    models = doc.get("models") or []
    if not isinstance(models, list):
        raise InvalidArgument("'models' is a list of {model_id, step}")
    for m in models:
        logged_models.get(server.repo.db, _model_id(m if isinstance(m, dict) else {}))
    return {}


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/logged-models", create),
    ("POST", "/logged-models/search", search),
    ("GET", "/logged-models/{model_id}", get),
    ("PATCH", "/logged-models/{model_id}", finalize),
    ("DELETE", "/logged-models/{model_id}", delete),
    ("PATCH", "/logged-models/{model_id}/tags", set_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_tag),
    ("POST", "/logged-models/{model_id}/params", log_params),
    ("POST", "/runs/log-inputs", log_inputs),
    ("POST", "/runs/outputs", log_outputs),
)
