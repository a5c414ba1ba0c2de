"""MLflow's artifact proxy (`mlflow-artifacts:`) on the store: files the MLflow client logs,
chunked and deduplicated like every version, verified on every read.

Below Repo: takes the parts. A path is relative to the server's artifact root. Files are
written only in a run's artifact folder (`<experiment>/<run id>/artifacts/…`) or a logged
model's (`<experiment>/models/<model id>/artifacts/…`), so every file has an owner whose
account may write it; anything else is refused. `_modelkeep/versions/<name>/<number>/…` is
a read-only view of a registered version's own files, which is where a model version's
download URI points: it can never change under a reader, as MLflow's copy could.

A large file arrives in parts (a multipart upload): each part is spooled to disk under
`.modelkeep/uploads/<upload>/`, and completing the upload streams the parts, in order,
into the store as one file. An upload id is a random secret, kept only as its hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelkeep import content
from modelkeep.errors import (
    ArtifactFileNotFound,
    ArtifactPathRefused,
    InvalidArgument,
    UploadNotFound,
)
from modelkeep.meta import Version, logged_models, mlflow_artifacts, tracking
from modelkeep.meta.mlflow_artifacts import Entry, check_path
from modelkeep.parts import Parts
from modelkeep.store.trees import Kind

VERSIONS = "_modelkeep/versions"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
MAX_PARTS = 10_000  # as S3's
UPLOAD_TTL = 7 * 24 * 3600.0  # an unfinished multipart upload is dropped after a week


@dataclass(frozen=True, slots=True)
class Owner:
    kind: str  # "run" or "logged model"
    id: str
    user: str


def owner(parts: Parts, path: str) -> Owner:
    """Whose folder a path is in, for an upload or a delete; refused outside any. A path
    is in a run's (or logged model's) folder when it starts with that folder as the run's
    experiment places it: a run or model id further down (a folder someone named so
    inside another's) never makes the path theirs."""
    check_path(path)
    if path == VERSIONS or path.startswith(VERSIONS + "/"):
        raise ArtifactPathRefused(path, "a registered version's files never change")
    segments = path.split("/")
    for i, segment in enumerate(segments):
        found = _folder_of(parts, segments, i, segment)
        if found is not None:
            kind, owner_id, user, folder = found
            if path == folder or path.startswith(folder + "/"):
                return Owner(kind, owner_id, user)
    raise ArtifactPathRefused(
        path, "files go in a run's or a logged model's artifact folder (…/<run id>/artifacts/…)"
    )


def _folder_of(
    parts: Parts, segments: list[str], i: int, segment: str
) -> tuple[str, str, str, str] | None:
    """(kind, id, account, folder) of the run or logged model segment i may name."""
    following = segments[i + 1 : i + 2]
    if _RUN_ID.fullmatch(segment) and following == ["artifacts"]:
        run = tracking.folder(parts.db, segment)
        return None if run is None else ("run", segment, run[0], run[1])
    if _MODEL_ID.fullmatch(segment) and segments[i - 1 : i] == ["models"]:
        try:
            model = logged_models.get(parts.db, segment)
        except LookupError:
            return None
        return "logged model", model.id, model.user, tracking.proxied_path(model.artifact_uri)
    return None


# -- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def spooled(parts: Parts) -> Iterator[Path]:
    """A temporary file under `.modelkeep/uploads/` (where gc never looks: a slow upload
    holds no lock), removed afterwards."""
    folder = _uploads(parts)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"put-{secrets.token_hex(8)}"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def keep(parts: Parts, path: str, source: Path) -> None:
    """Store a spooled file as the artifact at path (replacing what was there). The store
    is held for writing from the first object put until the row that keeps them is
    written, so gc never removes them in between."""
    with parts.store.writing():
        digest, size = content.put_received(parts, source)
        mlflow_artifacts.put(parts.db, path, digest, size, parts.store_id, parts.user)


def remove(parts: Parts, path: str) -> int:
    """Forget a file or a folder (the bytes stay until gc, as a deleted version's do)."""
    owner(parts, path)
    return mlflow_artifacts.remove(parts.db, path)


# -- reading ---------------------------------------------------------------------------------


def version_model(parts: Parts, path: str) -> str | None:
    """The model whose registered version a `_modelkeep/versions/<name>/…` path reads
    (None for any other path, or one naming no version: then a grant on every model is
    needed), so its grant is the one checked."""
    try:
        inside = _version_part(parts, path)
    except ArtifactFileNotFound:
        return None
    return None if inside is None else inside[0].name


def _version_part(parts: Parts, path: str) -> tuple[Version, str | None] | None:
    """The version and the path inside it that `_modelkeep/versions/<name>/<n>/<path>`
    names. A name may hold '/', so each all-digit segment is tried as the number, the
    segments before it as the name, until one names a version."""
    if not path.startswith(VERSIONS + "/"):
        return None
    from modelkeep import meta

    segments = path[len(VERSIONS) + 1 :].split("/")
    for i, segment in enumerate(segments[1:], start=1):
        if not segment.isdigit() or len(segment) > 12:
            continue
        try:
            version = meta.resolve(parts.db, f"{'/'.join(segments[:i])}:v{int(segment)}")
        except (LookupError, ValueError):
            continue
        return version, "/".join(segments[i + 1 :]) or None
    raise ArtifactFileNotFound(path)


def open_file(parts: Parts, path: str) -> tuple[BinaryIO, int]:
    """A reader over the file at path, verified as it is read, and its size."""
    check_path(path)
    inside = _version_part(parts, path)
    if inside is not None:
        version, rel = inside
        try:
            found = content.entry(parts, version, rel)
        except LookupError:
            raise ArtifactFileNotFound(path) from None
        if found.kind != Kind.FILE:
            raise ArtifactFileNotFound(path)
        return content.open_file(parts, version, rel), found.size
    row = mlflow_artifacts.get(parts.db, path)
    if row is None:
        raise ArtifactFileNotFound(path)
    reader = parts.store.open_blob(bytes.fromhex(row.digest), lambda exc: exc, row.size)
    return reader, row.size  # type: ignore[return-value]


def listing(parts: Parts, path: str) -> list[Entry]:
    """The names in a folder; [] for a file or nothing, as MLflow's server answers."""
    check_path(path, root=True)
    try:
        inside = _version_part(parts, path)
    except ArtifactFileNotFound:
        return []
    if inside is None:
        return mlflow_artifacts.listing(parts.db, path)
    version, rel = inside
    try:
        found = content.entry(parts, version, rel)
    except LookupError:
        return []
    if found.kind != Kind.DIR:
        return []
    return [
        Entry(os.fsdecode(e.name), e.kind == Kind.DIR, None if e.kind == Kind.DIR else e.size)
        for e in parts.store.tree(found.id).entries
    ]


# -- multipart uploads ----------------------------------------------------------------------


def _uploads(parts: Parts) -> Path:
    return parts.settings.control_dir / "uploads"


def _folder(parts: Parts, upload_id: str) -> Path:
    if not isinstance(upload_id, str) or not 16 <= len(upload_id) <= 128:
        raise UploadNotFound()
    return _uploads(parts) / hashlib.sha256(upload_id.encode()).hexdigest()[:32]


def _state(
    parts: Parts, upload_id: str, *, starter: bool = False
) -> tuple[Path, dict[str, object]]:
    """An upload's folder and record; with starter, only for the account that started it
    (to anyone else it does not exist)."""
    folder = _folder(parts, upload_id)
    try:
        state = json.loads((folder / "upload.json").read_text())
    except (OSError, ValueError):
        raise UploadNotFound() from None
    if starter and state.get("user") != parts.user:
        raise UploadNotFound()
    return folder, state


def start_upload(parts: Parts, path: str, num_parts: int) -> str:
    """Begin a multipart upload of path (its owner checked by the caller): its id."""
    check_path(path)
    if not isinstance(num_parts, int) or not 1 <= num_parts <= MAX_PARTS:
        raise InvalidArgument(f"num_parts must be 1-{MAX_PARTS}, not {num_parts!r}")
    _drop_stale(parts)
    upload_id = secrets.token_urlsafe(32)
    folder = _folder(parts, upload_id)
    folder.mkdir(parents=True)
    state = {"path": path, "parts": num_parts, "user": parts.user, "started": time.time()}
    (folder / "upload.json").write_text(json.dumps(state))
    return upload_id


def received(parts: Parts, upload_id: str) -> int:
    """The bytes of an upload's parts on disk so far (an upload is bounded as a file is)."""
    folder, _ = _state(parts, upload_id)
    total = 0
    for f in folder.glob("part-*"):
        with contextlib.suppress(FileNotFoundError):  # a part being renamed into place
            total += f.stat().st_size
    return total


def part_file(parts: Parts, upload_id: str, number: int) -> Path:
    """Where part `number` of an upload is spooled (written to a temp name, then renamed)."""
    folder, state = _state(parts, upload_id)
    if not isinstance(number, int) or not 1 <= number <= int(state["parts"]):  # type: ignore[call-overload]
        raise InvalidArgument(f"part_number must be 1-{state['parts']}, not {number!r}")
    return folder / f"part-{number:05d}"


def complete_upload(parts: Parts, upload_id: str, path: str, numbers: list[int]) -> None:
    """Join the parts, in order, into the artifact at path (the path the upload was for).
    Each part is removed once joined: a completion that fails needs the upload again."""
    folder, state = _state(parts, upload_id, starter=True)
    if state["path"] != path:
        raise InvalidArgument(f"upload {upload_id[:8]}… is for {state['path']!r}, not {path!r}")
    if sorted(numbers) != list(range(1, len(numbers) + 1)) or not numbers:
        raise InvalidArgument("parts must be numbered 1..N, each once")
    files = [part_file(parts, upload_id, n) for n in sorted(numbers)]
    absent = [f.name for f in files if not f.exists()]
    if absent:
        raise InvalidArgument(f"parts never uploaded: {', '.join(absent[:5])}")
    with spooled(parts) as joined:
        with joined.open("wb") as out:
            for f in files:
                with f.open("rb") as part:
                    shutil.copyfileobj(part, out, 8 << 20)
                f.unlink()
        keep(parts, path, joined)
    shutil.rmtree(folder, ignore_errors=True)


def abort_upload(parts: Parts, upload_id: str) -> None:
    folder, _ = _state(parts, upload_id, starter=True)
    shutil.rmtree(folder, ignore_errors=True)


def _drop_stale(parts: Parts) -> None:
    """Remove multipart uploads nobody finished within UPLOAD_TTL (and any spool file a
    stopped server left behind)."""
    root = _uploads(parts)
    if not root.is_dir():
        return
    cutoff = time.time() - UPLOAD_TTL
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
