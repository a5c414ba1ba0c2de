"""MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/…`) and server-info on `modelkeep serve`.

The client's `mlflow-artifacts:/<path>` URIs land here: an upload is streamed to disk and
stored as chunks (artifact_proxy.py), a download streams the stored file back, verified as
it is read. Viewers read; a run's or a logged model's owner (or an admin) writes its folder.

Multipart uploads are advertised in `/api/3.0/mlflow/server-info`, so the client sends a
large file in parts. The client puts each part to the URL it was given, without its
credentials (those URLs are meant to be presigned); here the URL carries the upload's id,
a random secret that only the account that started the upload was told, and that account
completes it.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelkeep import artifact_proxy
from modelkeep.errors import Forbidden, InvalidArgument, RequestTooLarge
from modelkeep.meta.accounts import Account
from modelkeep.server.files import file_response
from modelkeep.server.mlflow import Server, renderer

PREFIX = "/api/2.0/mlflow-artifacts"
_SPOOL = 8 << 20  # bytes gathered before one write to disk
MAX_PART = 5 << 30  # one part of a multipart upload, as S3's


def _path(request: Request) -> str:
    return str(request.path_params.get("path", ""))


def _may_read(server: Server, who: Account, path: str) -> None:
    """Runs' files are read with a viewer's grant on every model, as runs are; a registered
    version's files with a viewer's grant on that model."""
    model = artifact_proxy.version_model(server.repo.parts, path)
    server.require(who, "viewer", "read MLflow artifacts", model)


def _may_write(server: Server, who: Account, path: str) -> None:
    server.require(who, "editor", "upload MLflow artifacts")
    owner = artifact_proxy.owner(server.repo.acting_as(who.name).parts, path)
    if not who.admin and owner.user != who.name:
        raise Forbidden(who.name, "admin", f"writing files of another account's {owner.kind}", None)


async def _spool(request: Request, dest: Path, limit: int) -> int:
    """Stream the request body into dest: its size. Refused past limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge("an artifact", int(declared), limit)
    size = 0
    buffer: list[bytes] = []
    held = 0
    with dest.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge("an artifact", size, limit)
            buffer.append(chunk)
            held += len(chunk)
            if held >= _SPOOL:
                await run_in_threadpool(out.write, b"".join(buffer))
                buffer, held = [], 0
        await run_in_threadpool(out.write, b"".join(buffer))
    return size


# -- handlers ---------------------------------------------------------------------------------


def _upload(server: Server) -> Callable[[Request, Account], Any]:
    async def upload(request: Request, who: Account) -> Response:
        path = _path(request)
        await run_in_threadpool(_may_write, server, who, path)
        parts = server.repo.acting_as(who.name).parts
        with artifact_proxy.spooled(parts) as spool:
            await _spool(request, spool, server.options.max_artifact)
            await run_in_threadpool(artifact_proxy.keep, parts, path, spool)
        return JSONResponse({})

    return upload


def _download(server: Server) -> Callable[[Request, Account], Any]:
    async def download(request: Request, who: Account) -> Response:
        path = _path(request)
        await run_in_threadpool(_may_read, server, who, path)
        reader, size = await run_in_threadpool(artifact_proxy.open_file, server.repo.parts, path)
        return await file_response(reader, size, posixpath.basename(path))

    return download


def _list(server: Server) -> Callable[[Request, Account], Any]:
    async def listing(request: Request, who: Account) -> Response:
        path = request.query_params.get("path", "").strip("/")
        await run_in_threadpool(_may_read, server, who, path)
        entries = await run_in_threadpool(artifact_proxy.listing, server.repo.parts, path)
        files = [
            {"path": e.name, "is_dir": e.is_dir} | ({} if e.size is None else {"file_size": e.size})
            for e in entries
        ]
        return JSONResponse({"files": files} if files else {})

    return listing


def _delete(server: Server) -> Callable[[Request, Account], Any]:
    async def remove(request: Request, who: Account) -> Response:
        path = _path(request)
        await run_in_threadpool(_may_write, server, who, path)
        await run_in_threadpool(artifact_proxy.remove, server.repo.acting_as(who.name).parts, path)
        return JSONResponse({})

    return remove


def _file_path(path: str, doc: dict[str, Any]) -> str:
    """The multipart upload's file: the folder in the URL joined with the body's file name."""
    name = doc.get("path")
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidArgument("a multipart upload needs the file's name as 'path'")
    return posixpath.join(path, name) if path else name


def _mpu_create(server: Server) -> Callable[[Request, Account], Any]:
    async def create(request: Request, who: Account) -> Response:
        doc = await server.json_body(request)
        path = _file_path(_path(request), doc)
        await run_in_threadpool(_may_write, server, who, path)
        num_parts = doc.get("num_parts", 1)
        if isinstance(num_parts, str) and num_parts.isdigit():
            num_parts = int(num_parts)
        upload_id = await run_in_threadpool(
            artifact_proxy.start_upload, server.repo.acting_as(who.name).parts, path, num_parts
        )
        base = str(request.base_url).rstrip("/")
        credentials = [
            {"url": f"{base}{PREFIX}/mpu/part/{upload_id}/{n}", "part_number": n, "headers": {}}
            for n in range(1, num_parts + 1)
        ]
        return JSONResponse({"upload_id": upload_id, "credentials": credentials})

    return create


def _mpu_part(server: Server) -> Callable[[Request, Account], Any]:
    """A part, put to the URL create gave: the upload's secret id is the credential."""

    async def part(request: Request, _anonymous: Account) -> Response:
        parts = server.repo.parts
        number, upload_id = request.path_params["number"], request.path_params["upload_id"]
        dest = await run_in_threadpool(artifact_proxy.part_file, parts, upload_id, number)
        room = server.options.max_artifact - await run_in_threadpool(
            artifact_proxy.received, parts, upload_id
        )
        partial = dest.with_name(f"{dest.name}.{secrets.token_hex(8)}.partial")
        try:
            await _spool(request, partial, max(0, min(MAX_PART, room)))
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return Response(headers={"ETag": f'"{number}"'})

    return part


def _mpu_finish(server: Server, complete: bool) -> Callable[[Request, Account], Any]:
    async def finish(request: Request, who: Account) -> Response:
        doc = await server.json_body(request)
        path = _file_path(_path(request), doc)
        await run_in_threadpool(_may_write, server, who, path)
        upload_id = doc.get("upload_id")
        parts = server.repo.acting_as(who.name).parts
        if not isinstance(upload_id, str):
            raise InvalidArgument("'upload_id' is required")
        if complete:
            given = doc.get("parts")
            if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
                raise InvalidArgument("'parts' is a list of {part_number, etag}")
            numbers = [p.get("part_number") for p in given]
            if not all(isinstance(n, int) or (isinstance(n, str) and n.isdigit()) for n in numbers):
                raise InvalidArgument("each part's part_number is a whole number")
            numbers = [int(n) for n in numbers]
            await run_in_threadpool(artifact_proxy.complete_upload, parts, upload_id, path, numbers)
        else:
            await run_in_threadpool(artifact_proxy.abort_upload, parts, upload_id)
        return JSONResponse({})

    return finish


def server_info(server: Server) -> Callable[[Request, Account], Any]:
    """What the client asks before it logs files: it may send large ones in parts."""

    async def info(request: Request, _anonymous: Account) -> Response:
        return JSONResponse(
            {
                "store_type": "SqlStore",
                "artifact_serving_enabled": True,
                "multipart_uploads_enabled": True,
                "multipart_downloads_enabled": False,
                "workspaces_enabled": False,
                "artifacts_presigned_only": False,
            }
        )

    return info


def routes(server: Server) -> Iterable[Route]:
    render = renderer(server)

    def ep(handler: Callable[[Request, Account], Any], public: bool = False) -> Any:
        return server.endpoint(handler, render=render, public=public)

    files = PREFIX + "/artifacts/{path:path}"
    yield Route(PREFIX + "/artifacts", ep(_list(server)), methods=["GET"])
    yield Route(files, ep(_download(server)), methods=["GET"])
    yield Route(files, ep(_upload(server)), methods=["PUT"])
    yield Route(files, ep(_delete(server)), methods=["DELETE"])
    yield Route(PREFIX + "/mpu/create/{path:path}", ep(_mpu_create(server)), methods=["POST"])
    yield Route(
        PREFIX + "/mpu/complete/{path:path}", ep(_mpu_finish(server, True)), methods=["POST"]
    )
    yield Route(PREFIX + "/mpu/abort/{path:path}", ep(_mpu_finish(server, False)), methods=["POST"])
    yield Route(
        PREFIX + "/mpu/part/{upload_id}/{number:int}",
        ep(_mpu_part(server), public=True),
        methods=["PUT"],
    )
    for prefix in ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"):
        yield Route(prefix + "/server-info", ep(server_info(server), public=True), methods=["GET"])
