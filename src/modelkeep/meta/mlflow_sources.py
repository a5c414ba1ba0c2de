"""Where the files of an MLflow model version are: the source URI the client sends
(`mlflow-artifacts:/PATH`, `runs:/RUN/PATH`, `models:/m-ID`) read as a path under the
artifact proxy's root, with the run and logged model it belongs to, and the files there.

A path is plain relative segments: no `..`, `.` or empty segment, no backslash or control
character, so no source names a file outside the proxy's root.
"""

from __future__ import annotations

from modelkeep.errors import BadModelSource, LoggedModelNotFound, RunNotFound
from modelkeep.meta import logged_models, mlflow_artifacts, tracking
from modelkeep.meta.db import Database


def resolve(
    db: Database, source: str, run_id: str | None, model_id: str | None
) -> tuple[str, str | None, str | None]:
    """The artifact path (under the proxy's root) a model version source names, and the
    run and logged model it came from. The run is the one the source's files belong to:
    a client's run_id that names another is refused, so no version claims a run that did
    not make its files."""
    if source.startswith("mlflow-artifacts:"):
        path = _clean(source, tracking.proxied_path(source))
        found_run, found_model = _logged_by(db, path)
    elif source.startswith("runs:/"):
        run_part, _, sub = source.removeprefix("runs:/").partition("/")
        run = tracking.get(db, run_part)
        path = f"{run.experiment_id}/{run.id}/artifacts/{sub}"
        found_run, found_model = run.id, None
    elif source.startswith("models:/"):
        wanted = model_id or source.removeprefix("models:/").strip("/")
        logged = logged_model(db, wanted)
        if logged is None:
            raise BadModelSource(source, f"no logged model {wanted[:64]!r}")
        experiment, found_model, found_run = logged
        path = f"{experiment}/models/{found_model}/artifacts"
    else:
        raise BadModelSource(source, "it is not an artifact URI of this server")
    owned = found_run is not None or found_model is not None
    if run_id is not None and owned and run_id != found_run:
        made = f"run {found_run}" if found_run else f"logged model {found_model} (no run)"
        raise BadModelSource(source, f"its files were made by {made}, not run {run_id}")
    if model_id is not None and found_model is not None and model_id != found_model:
        raise BadModelSource(source, f"its files are logged model {found_model}'s")
    return _clean(source, path), found_run if owned else run_id, found_model or model_id


def _logged_by(db: Database, path: str) -> tuple[str | None, str | None]:
    """The run (and logged model) a path of the proxy's layout belongs to:
    `EXP/RUN/artifacts/...` or `EXP/models/MODEL/artifacts/...`."""
    parts = path.split("/")
    if len(parts) < 3 or not parts[0].isdigit():
        return None, None
    if parts[1] == "models" and len(parts) >= 4 and parts[3] == "artifacts":
        logged = logged_model(db, parts[2])
        if logged is not None and str(logged[0]) == parts[0]:
            return logged[2], logged[1]
        return None, None
    if parts[2] == "artifacts":
        try:
            run = tracking.get(db, parts[1])
        except RunNotFound:
            return None, None
        if str(run.experiment_id) == parts[0]:
            return run.id, None
    return None, None


def _clean(source: str, path: str) -> str:
    path = path.strip("/")
    if not path:
        raise BadModelSource(source, "it names no path")
    if len(path) > 1024 or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BadModelSource(source, "its path has control characters, '\\' or is too long")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadModelSource(source, "its path has an empty, '.' or '..' segment")
    return path


def files_under(db: Database, prefix: str) -> list[tuple[str, str, int, str]]:
    """(path relative to prefix, hex content id, size, uploading account) of each MLflow
    artifact at or under prefix: a folder's files, or one file by its own name."""
    alone = mlflow_artifacts.get(db, prefix)
    if alone is not None:
        return [(prefix.rsplit("/", 1)[-1], alone.digest, alone.size, alone.user)]
    return [(f.path, f.digest, f.size, f.user) for f in mlflow_artifacts.files_under(db, prefix)]


def logged_model(db: Database, model_id: str) -> tuple[int, str, str | None] | None:
    """(experiment id, id, source run) of an MLflow 3 logged model, None if there is none."""
    try:
        found = logged_models.get(db, model_id)
    except LoggedModelNotFound:
        return None
    return found.experiment_id, found.id, found.source_run_id
