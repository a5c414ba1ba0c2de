"""MLflow's model registry REST API (`/api/2.0/mlflow/registered-models/...`,
`/model-versions/...`) on `modelkeep serve`, over modelkeep's own registry.

A registered model is a registered modelkeep model; MLflow version N is `NAME:vN`; the
stages None/Staging/Production/Archived are modelkeep's none/staging/production/archived;
aliases are modelkeep aliases. Every change is the library's (`Repo`, `registry`), acting
as the authenticated account, so the policy's gates, approvals and movers, the name rules
and the event log hold for the MLflow client exactly as for `modelkeep promote`; a refusal
comes back as MLflow's `{"error_code", "message"}` with every unmet condition in it. The
roles are the server's own for the same change (`api.OPS`): viewer reads, editor registers
and describes, maintainer moves stages and aliases, admin deletes and renames.

A new version's files are those the client uploaded through the artifact proxy
(`mlflow_artifacts` rows): they become a folder tree of blobs already in the store, no byte
copied. Its download URI is `mlflow-artifacts:/_modelkeep/versions/NAME/N`, which the
artifact endpoints serve from the version's own tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelkeep import registry
from modelkeep.errors import (
    BadModelSource,
    Forbidden,
    InvalidArgument,
    RegistryRefused,
    VersionNotRegistered,
)
from modelkeep.meta import (
    mlflow_sources,
    model_tags,
    registry_search,
    tracking,
    tracking_search,
)
from modelkeep.meta.accounts import Account
from modelkeep.meta.model_tags import ModelDoc, VersionDoc
from modelkeep.refs import validate_name
from modelkeep.server.mlflow import (
    Doc,
    Handler,
    Server,
    _max_results,
    _offset,
    _opt_text,
    _order_by,
    _page,
    _pairs,
    _text,
)

MAX_MODEL_RESULTS = 1000  # as MLflow's
MAX_VERSION_RESULTS = 200_000
MAX_MODEL_TAGS = 100
STAGES_IN = {
    "none": "none",
    "staging": "staging",
    "production": "production",
    "archived": "archived",
}
STAGES_OUT = {
    "none": "None",
    "staging": "Staging",
    "production": "Production",
    "archived": "Archived",
}
VERSIONS_PREFIX = "_modelkeep/versions"  # of the download URIs the artifact endpoints serve
DELETED_REASON = "deleted with MLflow"


# -- reading requests ---------------------------------------------------------------------------


def _name(doc: Doc, key: str = "name") -> str:
    """A model name; modelkeep's rules are stricter than MLflow's (InvalidName says them)."""
    return validate_name(_text(doc, key, limit=1000))


def _number(doc: Doc) -> int:
    text = doc.get("version")
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise InvalidArgument(
            f"a model version is a whole number from 1, like '3', not {str(text)[:40]!r}"
        )
    return int(text)


def _stage(doc: Doc) -> str:
    text = _text(doc, "stage", limit=20)
    stage = STAGES_IN.get(text.lower())
    if stage is None:
        raise InvalidArgument(f"unknown stage {text!r}; use None, Staging, Production or Archived")
    return stage


def _bool(doc: Doc, key: str) -> bool:
    value = doc.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidArgument(f"parameter {key!r} is true or false")
    return value


def _list(doc: Doc, key: str, limit: int = 10) -> list[str]:
    value = doc.get(key) or []
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > limit
        or not all(isinstance(v, str) for v in value)
    ):
        raise InvalidArgument(f"parameter {key!r} is a list of at most {limit} texts")
    return value


# -- rendering ------------------------------------------------------------------------------------


def download_uri(name: str, number: int) -> str:
    return f"mlflow-artifacts:/{VERSIONS_PREFIX}/{name}/{number}"


def version_json(v: VersionDoc) -> Doc:
    from_mlflow = v.metadata.get("mlflow")
    origin = from_mlflow if isinstance(from_mlflow, dict) else {}
    out: Doc = {
        "name": v.name,
        "version": str(v.number),
        "creation_timestamp": tracking.ms(v.created_at),
        "last_updated_timestamp": tracking.ms(v.updated_at),
        "user_id": v.user,
        "current_stage": STAGES_OUT.get(v.stage, "None"),
        "description": v.description,
        "source": str(origin.get("source") or download_uri(v.name, v.number)),
        "run_id": v.run_id or "",
        "status": "READY",
        "tags": [{"key": k, "value": val} for k, val in v.tags.items()],
        "aliases": list(v.aliases),
    }
    if isinstance(origin.get("model_id"), str):
        out["model_id"] = origin["model_id"]
    return out


def _latest_per_stage(m: ModelDoc, stages: Sequence[str] | None = None) -> list[VersionDoc]:
    """The newest version in each stage (of those asked for), as MLflow's."""
    newest: dict[str, VersionDoc] = {}
    for v in m.versions:
        newest[v.stage] = v  # versions are oldest first
    wanted = list(STAGES_IN.values()) if stages is None else list(stages)
    return sorted((newest[s] for s in wanted if s in newest), key=lambda v: v.number)


def model_json(m: ModelDoc) -> Doc:
    return {
        "name": m.name,
        "creation_timestamp": tracking.ms(m.created_at),
        "last_updated_timestamp": tracking.ms(m.updated_at),
        "user_id": "",
        "description": m.description,
        "latest_versions": [version_json(v) for v in _latest_per_stage(m)],
        "tags": [{"key": k, "value": v} for k, v in m.tags.items()],
        "aliases": [{"alias": a, "version": str(n)} for a, n in m.aliases.items()],
    }


def _version(server: Server, name: str, number: int) -> VersionDoc:
    """name:vN as MLflow shows it; VersionNotFound, VersionDeleted or VersionNotRegistered
    if it is no registered version."""
    for v in model_tags.one(server.repo.db, name, number).versions:
        if v.number == number:
            return v
    server.repo.show(f"{name}:v{number}")  # raises the precise error: missing or deleted
    raise VersionNotRegistered(f"{name}:v{number}")


# -- who may ----------------------------------------------------------------------------------


def _may(server: Server, who: Account, role: str, what: str, name: str) -> None:
    server.require(who, role, what, name)


def _acting(server: Server, who: Account) -> Any:
    return server.repo.acting_as(who.name)


# -- registered models ----------------------------------------------------------------------


def create_registered_model(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "editor", "register models", name)
    registry.create_model(
        _acting(server, who).parts,
        name,
        description=_opt_text(doc, "description", model_tags.MAX_DESCRIPTION) or "",
        tags=_pairs(doc, "tags", MAX_MODEL_TAGS),
    )
    return {"registered_model": model_json(model_tags.one(server.repo.db, name))}


def get_registered_model(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "viewer", "read models", name)
    return {"registered_model": model_json(model_tags.one(server.repo.db, name))}


def update_registered_model(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "editor", "describe models", name)
    text = _opt_text(doc, "description", model_tags.MAX_DESCRIPTION)
    if text is not None:
        model_tags.describe_model(server.repo.db, name, text, who.name)
    return {"registered_model": model_json(model_tags.one(server.repo.db, name))}


def rename_registered_model(server: Server, who: Account, doc: Doc) -> Doc:
    name, new_name = _name(doc), _name(doc, "new_name")
    # admin of both names: a policy names models, so a rename could move one out from
    # under its gates, or into names whose grants the account does not hold
    _may(server, who, "admin", "rename models", name)
    _may(server, who, "admin", "rename models", new_name)
    registry.rename_model(_acting(server, who).parts, name, new_name)
    return {"registered_model": model_json(model_tags.one(server.repo.db, new_name))}


def delete_registered_model(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "admin", "delete models", name)
    model_tags.one(server.repo.db, name)  # a registered model, or the error that says why
    registry.delete_model(_acting(server, who).parts, name, DELETED_REASON)
    return {}


def search_registered_models(server: Server, who: Account, doc: Doc) -> Doc:
    server.require(who, "viewer", "search models", anywhere=True)
    size = _max_results(doc, default=100, limit=MAX_MODEL_RESULTS)
    offset = _offset(doc, "registered-models")
    match = registry_search.parse_model_filter(_opt_text(doc, "filter", 4000) or "")
    order = registry_search.parse_model_order(_order_by(doc))
    found = [
        m for m in model_tags.registered(server.repo.db) if who.may("viewer", m.name) and match(m)
    ]
    page, token = _page(tracking_search.sort(found, order), offset, size, "registered-models")
    out: Doc = {"registered_models": [model_json(m) for m in page]}
    if token:
        out["next_page_token"] = token
    return out


def get_latest_versions(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "viewer", "read models", name)
    stages = [_stage({"stage": s}) for s in _list(doc, "stages")] or None
    found = _latest_per_stage(model_tags.one(server.repo.db, name), stages)
    return {"model_versions": [version_json(v) for v in found]}


def set_registered_model_tag(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "editor", "tag models", name)
    key = _text(doc, "key", limit=model_tags.MAX_TAG_KEY)
    value = _text(doc, "value", limit=model_tags.MAX_TAG_VALUE, default="")
    model_tags.set_model_tag(server.repo.db, name, key, value, who.name)
    return {}


def delete_registered_model_tag(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "editor", "tag models", name)
    key = _text(doc, "key", limit=model_tags.MAX_TAG_KEY)
    model_tags.delete_model_tag(server.repo.db, name, key, who.name)
    return {}


# -- model versions ---------------------------------------------------------------------------


def create_model_version(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "editor", "add model versions", name)
    source = _text(doc, "source", limit=2000)
    model_id = _opt_text(doc, "model_id", 64)
    run_id = _opt_text(doc, "run_id", 64)
    description = _opt_text(doc, "description", model_tags.MAX_DESCRIPTION) or ""
    tags = _pairs(doc, "tags", MAX_MODEL_TAGS)
    for key, value in tags.items():
        model_tags.check_tag(key, value)
    model_tags.one(server.repo.db, name)  # registered, before any file is looked at
    db = server.repo.db
    prefix, run_id, model_id = mlflow_sources.resolve(db, source, run_id, model_id)
    if run_id is not None and not who.admin and tracking.owner(db, run_id) != who.name:
        raise Forbidden(who.name, "admin", "register a model from another account's run", None)
    files = mlflow_sources.files_under(db, prefix)
    if not files:
        raise BadModelSource(source, "the artifact proxy holds no file under it")
    if not who.may("viewer") and any(user != who.name for _, _, _, user in files):
        # reading objects by id needs the viewer role on every model (as /objects/locate)
        raise Forbidden(who.name, "viewer", "register files another account uploaded", None)
    origin: Doc = {"source": source, "artifact_path": prefix}
    if model_id is not None:
        origin["model_id"] = model_id
    if run_id is not None:
        origin["run_id"] = run_id
    with server.writing:
        version, _ = registry.register_files(
            _acting(server, who).parts,
            name,
            [(path, digest, size) for path, digest, size, _ in files],
            origin=source,
            metadata={"mlflow": origin},
            run_id=run_id,
            description=description,
            tags=tags,
        )
    return {"model_version": version_json(_version(server, name, version.number))}


def get_model_version(server: Server, who: Account, doc: Doc) -> Doc:
    name = _name(doc)
    _may(server, who, "viewer", "read models", name)
    return {"model_version": version_json(_version(server, name, _number(doc)))}


def update_model_version(server: Server, who: Account, doc: Doc) -> Doc:
    name, number = _name(doc), _number(doc)
    _may(server, who, "editor", "describe model versions", name)
    text = _opt_text(doc, "description", model_tags.MAX_DESCRIPTION)
    _version(server, name, number)
    if text is not None:
        model_tags.describe_version(server.repo.db, name, number, text, who.name)
    return {"model_version": version_json(_version(server, name, number))}


def delete_model_version(server: Server, who: Account, doc: Doc) -> Doc:
    name, number = _name(doc), _number(doc)
    _may(server, who, "admin", "delete versions", name)
    _version(server, name, number)
    _acting(server, who).delete(f"{name}:v{number}", reason=DELETED_REASON)
    return {}


def search_model_versions(server: Server, who: Account, doc: Doc) -> Doc:
    server.require(who, "viewer", "search model versions", anywhere=True)
    size = _max_results(doc, default=10_000, limit=MAX_VERSION_RESULTS)
    offset = _offset(doc, "model-versions")
    match = registry_search.parse_version_filter(_opt_text(doc, "filter", 4000) or "")
    order = registry_search.parse_version_order(_order_by(doc))
    found = [
        v
        for m in model_tags.registered(server.repo.db)
        if who.may("viewer", m.name)
        for v in m.versions
        if match(v)
    ]
    page, token = _page(tracking_search.sort(found, order), offset, size, "model-versions")
    out: Doc = {"model_versions": [version_json(v) for v in page]}
    if token:
        out["next_page_token"] = token
    return out


def get_download_uri(server: Server, who: Account, doc: Doc) -> Doc:
    name, number = _name(doc), _number(doc)
    _may(server, who, "viewer", "read models", name)
    _version(server, name, number)
    return {"artifact_uri": download_uri(name, number)}


def set_model_version_tag(server: Server, who: Account, doc: Doc) -> Doc:
    name, number = _name(doc), _number(doc)
    _may(server, who, "editor", "tag model versions", name)
    key = _text(doc, "key", limit=model_tags.MAX_TAG_KEY)
    value = _text(doc, "value", limit=model_tags.MAX_TAG_VALUE, default="")
    _version(server, name, number)
    model_tags.set_version_tag(server.repo.db, name, number, key, value, who.name)
    return {}


def delete_model_version_tag(server: Server, who: Account, doc: Doc) -> Doc:
    name, number = _name(doc), _number(doc)
    _may(server, who, "editor", "tag model versions", name)
    key = _text(doc, "key", limit=model_tags.MAX_TAG_KEY)
    _version(server, name, number)
    model_tags.delete_version_tag(server.repo.db, name, number, key, who.name)
    return {}


def transition_stage(server: Server, who: Account, doc: Doc) -> Doc:
    """A stage move through the policy, as `modelkeep promote`; with
    archive_existing_versions, the other versions in that stage are archived after it,
    each through the policy too. Production is always held by one version: the one it
    replaces is archived whatever the flag says."""
    name, number = _name(doc), _number(doc)
    stage = _stage(doc)
    archive_others = _bool(doc, "archive_existing_versions")
    _may(server, who, "maintainer", "promote versions", name)
    if stage == "none":
        raise InvalidArgument(
            "modelkeep's stages only go forward: a registered version is in None until it is "
            "promoted; move it to Staging, Production or Archived"
        )
    if archive_others and stage not in ("staging", "production"):
        raise InvalidArgument("archive_existing_versions is for Staging and Production only")
    current = _version(server, name, number)
    repo = _acting(server, who)
    others = [
        v.number
        for v in model_tags.one(server.repo.db, name).versions
        if archive_others and v.stage == stage and v.number != number
    ]
    for other in others:  # each archive checked first, so a refusal moves nothing
        check = repo.readiness(f"{name}:v{other}", "archived")
        if not check.ready:
            raise RegistryRefused(
                f"{name}:v{other} cannot be archived: {'; '.join(check.refused + check.unmet)}"
            )
    repo.promote(f"{name}:v{current.number}", stage)
    for other in others:
        repo.archive(f"{name}:v{other}", reason=f"replaced in {stage} by v{number}")
    return {"model_version": version_json(_version(server, name, number))}


# -- aliases ----------------------------------------------------------------------------------


def _alias(doc: Doc) -> str:
    return _text(doc, "alias", limit=256)


def set_alias(server: Server, who: Account, doc: Doc) -> Doc:
    name, alias, number = _name(doc), _alias(doc), _number(doc)
    _may(server, who, "maintainer", "set aliases", name)
    _version(server, name, number)
    _acting(server, who).set_alias(f"{name}@{alias}", f"{name}:v{number}")
    return {}


def delete_alias(server: Server, who: Account, doc: Doc) -> Doc:
    name, alias = _name(doc), _alias(doc)
    _may(server, who, "maintainer", "remove aliases", name)
    _acting(server, who).remove_alias(f"{name}@{alias}")
    return {}


def get_by_alias(server: Server, who: Account, doc: Doc) -> Doc:
    name, alias = _name(doc), _alias(doc)
    _may(server, who, "viewer", "read models", name)
    found = server.repo.show(f"{name}@{alias}")
    return {"model_version": version_json(_version(server, name, found.number))}


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("PATCH", "/registered-models/update", update_registered_model),
    ("POST", "/registered-models/rename", rename_registered_model),
    ("DELETE", "/registered-models/delete", delete_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/registered-models/set-tag", set_registered_model_tag),
    ("DELETE", "/registered-models/delete-tag", delete_registered_model_tag),
    ("POST", "/registered-models/alias", set_alias),
    ("DELETE", "/registered-models/alias", delete_alias),
    ("GET", "/registered-models/alias", get_by_alias),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("PATCH", "/model-versions/update", update_model_version),
    ("DELETE", "/model-versions/delete", delete_model_version),
    ("GET", "/model-versions/search", search_model_versions),
    ("GET", "/model-versions/get-download-uri", get_download_uri),
    ("POST", "/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/model-versions/delete-tag", delete_model_version_tag),
    ("POST", "/model-versions/transition-stage", transition_stage),
)
