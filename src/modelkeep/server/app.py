"""`modelkeep serve`: one store behind JSON over HTTP, for accounts with roles.

Starlette on uvicorn. Every metadata operation is a `Repo` method from the table in
`modelkeep.api`, run as the authenticated account (never a name the client sends); bytes
arrive as packs the server verifies object by object before keeping any, and leave by
ranged reads of the server's packs. The process keeps no state of its own beyond the
store it serves (a cache, when a default remote holds the objects) and per-process rate
counters, so several processes on several machines can serve one PostgreSQL database and
one bucket.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelkeep import api, content, errors
from modelkeep.errors import (
    Forbidden,
    InvalidArgument,
    ModelkeepError,
    RequestTooLarge,
    TooLarge,
    Unauthenticated,
)
from modelkeep.meta import accounts
from modelkeep.meta.accounts import Account
from modelkeep.results import AddResult
from modelkeep.server import mlflow_artifacts, mlflow_models, mlflow_registry, ui
from modelkeep.server.mlflow import routes as mlflow_routes
from modelkeep.server.ui import sessions
from modelkeep.store.packs import PACK_TARGET, PackEntry, decode_index

log = logging.getLogger("modelkeep.server")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PACK = re.compile(r"[A-Za-z0-9_-]{1,100}")
MAX_RANGE = 64 * 1024 * 1024
UPLOADS_AT_ONCE = 4  # per process: each holds up to --max-upload bytes in memory


@dataclass(frozen=True)
class Options:
    """What `modelkeep serve` was started with."""

    root: Path
    trust_proxy_header: str | None = None
    proxy_addresses: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    max_body: int = 1024 * 1024  # a JSON request
    max_upload: int = PACK_TARGET + 16 * 1024 * 1024  # one pack and its index
    max_artifact: int = 1 << 40  # one file through MLflow's artifact proxy
    rate_limit: int = 1200  # requests per minute per account; 0: none
    sign_in_limit: int = 60  # failed sign-ins per minute per client address
    deliver_webhooks: bool = True
    ui_user: str | None = None  # `modelkeep ui`: the local user its one-time link signs in
    ui_link: str | None = None  # `modelkeep ui`: sha256 of that link's secret


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Limiter:
    """A token bucket per account: `per_minute` requests, refilled continuously."""

    per_minute: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, who: str, *, spend: bool = True) -> float:
        """0 if who may go on (spending one request unless told not to), else the seconds
        to wait."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self.lock:
            b = self.buckets.get(who) or _Bucket(float(self.per_minute), now)
            b.tokens = min(float(self.per_minute), b.tokens + (now - b.at) * rate)
            b.at = now
            self.buckets[who] = b
            if b.tokens >= 1:
                b.tokens -= 1 if spend else 0
                return 0.0
            return (1 - b.tokens) / rate


# -- errors ---------------------------------------------------------------------------------


def status_of(exc: BaseException) -> int:
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, (Forbidden, errors.RemoteAccessDenied, errors.CsrfRefused)):
        return 403
    if isinstance(exc, (RequestTooLarge, TooLarge)):
        return 413
    if isinstance(exc, (LookupError, FileNotFoundError)):
        return 404
    if isinstance(exc, (FileExistsError, errors.MissingObjects, errors.RegistryRefused)):
        return 409
    if isinstance(exc, ValueError):
        return 422
    return 409


def code_of(exc: BaseException) -> str:
    """A stable snake_case code from the error's class: `ArtifactNotFound` ->
    `artifact_not_found`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(
    exc: ModelkeepError, status: int | None = None, root: Path | None = None
) -> JSONResponse:
    """The error as JSON; the server's own paths and database URL never leave it (the log
    has the whole error)."""
    message = str(exc)
    if isinstance(exc, errors.DatabaseError):
        log.error("database error: %s", message)
        message = "the metadata database failed; see the server log"
        status = status or 503
    elif root is not None:
        message = message.replace(str(root), "<store>")
    doc: dict[str, Any] = {"error": code_of(exc), "type": type(exc).__name__, "message": message}
    if isinstance(exc, errors.MissingObjects):
        doc["missing"] = list(exc.missing)
    if isinstance(exc, Forbidden):
        doc["role"] = exc.role
    if isinstance(exc, errors.PromotionRefused):  # every unmet condition, for the web UI
        doc["unmet"] = list(exc.unmet)
    return JSONResponse(doc, status_code=status or status_of(exc))


# -- the app --------------------------------------------------------------------------------


class Server:
    """The served repository and what every request shares."""

    def __init__(self, options: Options) -> None:
        import modelkeep

        self.options = options
        self.repo = modelkeep.open(options.root)
        self.limiter = Limiter(options.rate_limit)
        # failed sign-ins per client address: guessing tokens or passwords (each password
        # costs an argon2 hash) stops at this rate
        self.failures = Limiter(options.sign_in_limit)
        self.writing = threading.Lock()  # one store writer per process; others queue
        self.uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self.local = (  # `modelkeep ui`'s browser sessions (one process, the local store)
            sessions.LocalSessions(options.ui_user, options.ui_link)
            if options.ui_user is not None
            else None
        )

    # -- who is asking ----------------------------------------------------------------------

    def account(self, request: Request) -> Account:
        header = self.options.trust_proxy_header
        peer = request.client.host if request.client else ""
        if header and peer in self.options.proxy_addresses and request.headers.get(header):
            return accounts.active_account(self.repo.db, request.headers[header])
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value:
            return accounts.authenticate(self.repo.db, value.strip())
        if scheme.lower() == "basic" and value:
            return self._basic(value.strip())
        cookie = request.cookies.get(sessions.cookie_name(request))
        if cookie:  # a browser: its session, and a CSRF token on every change
            return self.session_account(cookie, request)
        raise Unauthenticated("no token was sent (Authorization: Bearer TOKEN)")

    def session_account(self, cookie: str, request: Request) -> Account:
        if self.local is not None and cookie.startswith(sessions.LOCAL_PREFIX):
            who = self.local.account(cookie)
        else:
            who = accounts.authenticate(self.repo.db, cookie)
        sessions.check_csrf(cookie, request.method, request.headers.get(sessions.CSRF_HEADER))
        return who

    def _basic(self, value: str) -> Account:
        """user:token, or user:password for an account that has one."""
        try:
            user, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthenticated("malformed basic credentials") from None
        if secret.startswith("mkt_"):
            found = accounts.authenticate(self.repo.db, secret)
            if found.name != user:
                raise Unauthenticated("the token belongs to another account")
            return found
        from modelkeep.server.passwords import verify_password

        stored = accounts.password_hash(self.repo.db, user)
        if stored is None or not verify_password(stored, secret):
            raise Unauthenticated("wrong user name or password")
        return accounts.active_account(self.repo.db, user)

    def require(
        self, who: Account, role: str, what: str, model: str | None = None, anywhere: bool = False
    ) -> None:
        if who.may(role, model):
            return
        if anywhere and any(
            accounts.ROLES.index(g.role) >= accounts.ROLES.index(role) for g in who.grants
        ):
            return
        raise Forbidden(who.name, role, what, model)

    # -- request plumbing -------------------------------------------------------------------

    def endpoint(
        self,
        handler: Callable[[Request, Account], Awaitable[Response]],
        *,
        public: bool = False,
        render: Callable[[ModelkeepError], Response] | None = None,  # another API's errors
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            who = "-"
            try:
                if public:
                    response = await handler(request, _ANONYMOUS)
                else:
                    peer = request.client.host if request.client else "-"
                    wait = self.failures.take(peer, spend=False)
                    if wait:
                        return _limited(wait)
                    try:
                        account = await run_in_threadpool(self.account, request)
                    except Unauthenticated:
                        self.failures.take(peer)
                        raise
                    who = account.name
                    wait = self.limiter.take(account.name)
                    response = _limited(wait) if wait else await handler(request, account)
            except ModelkeepError as exc:
                response = (render or self._errors)(exc)
            except ClientDisconnect:  # it hung up mid-request (killed): no one to answer
                response = Response(status_code=499)
            except Exception:  # never a stack trace or a path in a response
                log.exception("internal error on %s %s", request.method, request.url.path)
                response = JSONResponse(
                    {"error": "internal", "message": "internal server error; see the server log"},
                    status_code=500,
                )
            log.info(
                "%s %s %s %s %.1fms",
                request.method,
                request.url.path,
                response.status_code,
                who,
                (time.perf_counter() - started) * 1000,
            )
            return response

        return run

    def _errors(self, exc: ModelkeepError) -> Response:
        return error_response(exc, root=self.options.root)

    async def body(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise RequestTooLarge(
                "a request body", int(declared) if declared.isdigit() else -1, limit
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge("a request body", size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(self, request: Request) -> dict[str, Any]:
        data = await self.body(request, self.options.max_body)
        if not data:
            return {}
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"the request body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return doc

    # -- the operations of the table --------------------------------------------------------

    def op_route(self, op: api.Op) -> Route:
        async def handle(request: Request, who: Account) -> Response:
            given: dict[str, Any] = dict(request.path_params)
            if op.in_body:
                given.update(await self.json_body(request))
            else:
                hints = api.params(op)
                for key in request.query_params:
                    values = request.query_params.getlist(key)
                    hint = hints.get(key, (str, None))[0]
                    # a Sequence[str] too: `runs --where` sends one condition as one value
                    many = getattr(hint, "__origin__", None) in (list, tuple, Sequence)
                    given[key] = values if many else values[-1]
            # an account without the role on any model is refused before its input is read
            self.require(who, op.role, _what(op), anywhere=True)
            args = api.decode_args(op, given)
            return await run_in_threadpool(self.call, op, args, who)

        return Route(api.PREFIX + op.path, self.endpoint(handle), methods=[op.method])

    def call(self, op: api.Op, args: dict[str, Any], who: Account) -> Response:
        repo = self.repo.acting_as(who.name)
        model = api.model_of(op, args, lambda ref: repo.show(ref).name)
        role = "admin" if args.get("force") else op.role
        listing = op.model is None or model is None
        self.require(who, role, _what(op), model, anywhere=listing)
        if op.also is not None:  # a second model the operation names (a rename's new name)
            self.require(who, role, _what(op), args[op.also])
        if (
            op.name in api.RUN_WRITES
            and not who.admin
            and args.get("run_id") is not None
            and repo.run(args["run_id"]).user != who.name
        ):
            raise Forbidden(who.name, "admin", f"{_what(op)} of another account's run", None)
        result = getattr(repo, op.name)(**args)
        if listing and not who.may("viewer"):  # a per-model grant sees its models only
            if op.name == "stages_at":  # model name -> its stages
                result = {k: v for k, v in result.items() if who.may("viewer", k)}
            else:
                result = _visible(who, result)
        return JSONResponse(api.encode_result(op, result))


def _limited(wait: float) -> JSONResponse:
    return JSONResponse(
        {"error": "rate_limited", "message": f"too many requests; retry in {wait:.1f} s"},
        status_code=429,
        headers={"Retry-After": str(max(1, round(wait)))},
    )


_ANONYMOUS = Account("-", False, False, datetime.fromtimestamp(0, UTC))


def _what(op: api.Op) -> str:
    return op.name.replace("_", " ")


def _visible(who: Account, result: Any) -> Any:
    """What a listing shows an account whose grants name some models only (a page of the
    web UI: its items, and a total that counts only what it may see of them)."""
    items = getattr(result, "items", None)
    if isinstance(items, list) and dataclasses.is_dataclass(result):
        kept = _visible(who, items)
        total = getattr(result, "total", 0) - (len(items) - len(kept))
        return dataclasses.replace(result, items=kept, total=total)  # type: ignore[type-var]
    if not isinstance(result, list):
        return result
    out = []
    for item in result:
        name = getattr(item, "name", None) or getattr(item, "model", None)
        name = getattr(name, "name", name)  # a page's model summary holds its Model
        if name is None or who.may("viewer", name):
            out.append(item)
    return out


def create_app(options: Options) -> Starlette:
    server = Server(options)
    ep = server.endpoint
    routes = [
        Route("/healthz", ep(_healthz, public=True)),
        Route("/readyz", ep(_ready(server), public=True)),
        Route("/api/openapi.json", ep(_openapi, public=True)),
        # -- bytes -----------------------------------------------------------------------
        Route(api.PREFIX + "/objects/missing", ep(_missing(server)), methods=["POST"]),
        Route(api.PREFIX + "/objects/locate", ep(_locate(server)), methods=["POST"]),
        Route(api.PREFIX + "/objects", ep(_upload(server)), methods=["POST"]),
        Route(api.PREFIX + "/packs/{pack}", ep(_pack(server)), methods=["GET"]),
        Route(api.PREFIX + "/versions", ep(_commit(server)), methods=["POST"]),
        # -- accounts --------------------------------------------------------------------
        Route(api.PREFIX + "/account", ep(_me), methods=["GET"]),
        Route(api.PREFIX + "/tokens", ep(_tokens(server)), methods=["GET", "POST"]),
        Route(api.PREFIX + "/tokens/{token_id}", ep(_revoke(server)), methods=["DELETE"]),
        Route(api.PREFIX + "/users", ep(_users(server)), methods=["GET", "POST"]),
        Route(api.PREFIX + "/users/{name}", ep(_user(server)), methods=["PATCH"]),
        Route(api.PREFIX + "/users/{name}/grants", ep(_grants(server)), methods=["PUT", "DELETE"]),
        Route(api.PREFIX + "/policy", ep(_policy(server)), methods=["GET"]),
        # -- the table ---------------------------------------------------------------------
        *(server.op_route(op) for op in api.OPS),
        *mlflow_routes(server),  # MLflow's tracking API, for the unmodified mlflow client
        *mlflow_routes(server, mlflow_models.ROUTES),
        *mlflow_artifacts.routes(server),
        *mlflow_routes(server, mlflow_registry.ROUTES),  # and its model registry
        *ui.routes(server),  # the web UI: pages at / and /ui/, data from the API above
    ]
    app = Starlette(routes=routes, lifespan=_lifespan(server), middleware=ui.MIDDLEWARE)
    app.state.server = server
    return app


def _lifespan(server: Server) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Webhook deliveries go out from a thread of each server process (the outbox's leases
    keep two processes or replicas from sending one delivery at once)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not server.options.deliver_webhooks:
            yield
            return
        from modelkeep.webhooks import Dispatcher

        stop = threading.Event()
        dispatcher = Dispatcher(server.repo.db)
        thread = threading.Thread(
            target=dispatcher.run_forever, args=(stop,), name="modelkeep-webhooks", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            await run_in_threadpool(thread.join, 30)
            dispatcher.close()

    return lifespan


# -- endpoints outside the table ----------------------------------------------------------


async def _healthz(request: Request, who: Account) -> Response:
    return JSONResponse({"status": "ok"})


def _ready(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def ready(request: Request, who: Account) -> Response:
        def check() -> None:
            server.repo.db.current_revision()
            if not os.access(server.repo.store.root, os.W_OK):
                raise errors.ServerError("-", "the store is not writable")

        try:
            await run_in_threadpool(check)
        except ModelkeepError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    return ready


async def _openapi(request: Request, who: Account) -> Response:
    from modelkeep.server.openapi import document

    return JSONResponse(await run_in_threadpool(document))


def _keys(doc: dict[str, Any]) -> list[bytes]:
    keys = doc.get("keys")
    if set(doc) != {"keys"} or not isinstance(keys, list):
        raise InvalidArgument('the body must be {"keys": [HEX, ...]}')
    if len(keys) > api.MAX_KEYS:
        raise RequestTooLarge("a key list", len(keys), api.MAX_KEYS)
    if not all(isinstance(k, str) and _HEX64.fullmatch(k) for k in keys):
        raise InvalidArgument("every key is 64 lowercase hex digits")
    return [bytes.fromhex(k) for k in keys]


def _missing(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def missing(request: Request, who: Account) -> Response:
        server.require(who, "editor", "upload objects", anywhere=True)
        keys = _keys(await server.json_body(request))
        absent = await run_in_threadpool(_absent, server, keys)
        return JSONResponse({"missing": [k.hex() for k in absent]})

    return missing


def _absent(server: Server, keys: list[bytes]) -> list[bytes]:
    """Keys neither this store nor, for a replica, the default remote holds: what another
    replica received is in the bucket, and is not uploaded again. (A commit fetches and
    verifies what it needs from there.)"""
    absent = [k for k in keys if not server.repo.store.has(k)]
    settings = server.repo.settings
    if absent and settings.default_remote is not None:
        from modelkeep import sync

        there = sync.known_on_remotes(settings, absent, refresh=True)
        absent = [k for k in absent if k not in there]
    return absent


def _locate(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def locate(request: Request, who: Account) -> Response:
        # Objects are shared between models (deduplicated), so reading them by id needs
        # the viewer role on every model; per-model grants read metadata and the registry.
        server.require(who, "viewer", "download objects (a viewer role on '*')")
        keys = _keys(await server.json_body(request))

        def find() -> dict[str, Any]:
            store = server.repo.store
            absent = [k for k in keys if not store.has(k)]
            if absent and store.fetcher.active:  # a replica's cache: from the default remote
                store.ensure(absent)
            found = store.index.locate_many(keys)
            return {
                "objects": [
                    {
                        "key": k.hex(),
                        "pack": loc.pack,
                        "offset": loc.entry.offset,
                        "length": loc.entry.length,
                        "kind": loc.entry.kind,
                        "codec": loc.entry.codec,
                        "raw_length": loc.entry.raw_length,
                    }
                    for k, loc in found.items()
                ],
                "missing": [k.hex() for k in keys if k not in found],
            }

        return JSONResponse(await run_in_threadpool(find))

    return locate


_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _pack(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def pack(request: Request, who: Account) -> Response:
        # Objects are shared between models (deduplicated), so reading them by id needs
        # the viewer role on every model; per-model grants read metadata and the registry.
        server.require(who, "viewer", "download objects (a viewer role on '*')")
        name = request.path_params["pack"]
        match = _RANGE.fullmatch(request.headers.get("range", ""))
        if not _PACK.fullmatch(name):
            raise InvalidArgument(f"{name!r} is not a pack name")
        if match is None:
            raise InvalidArgument("a pack is read by ranges: send Range: bytes=START-END")
        start, end = int(match.group(1)), int(match.group(2)) + 1
        if end <= start or end - start > MAX_RANGE:
            raise InvalidArgument(f"a range is 1 to {MAX_RANGE} bytes")
        path = server.repo.store.packs_dir / f"{name}.pack"

        def read() -> bytes:
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    return f.read(end - start)
            except FileNotFoundError:
                raise errors.RemoteMissing("server", f"pack {name}") from None

        data = await run_in_threadpool(read)
        if len(data) != end - start:
            raise InvalidArgument(f"range {start}-{end - 1} lies past the end of pack {name}")
        return Response(
            data,
            status_code=206,
            media_type="application/octet-stream",
            headers={"Content-Range": f"bytes {start}-{end - 1}/*"},
        )

    return pack


def _upload(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    """A pack the client built: 8 bytes of index length, the index, then the pack. Every
    object is checked against its id before any is kept; one bad object refuses the lot."""

    async def upload(request: Request, who: Account) -> Response:
        server.require(who, "editor", "upload objects", anywhere=True)
        async with server.uploads:  # memory is bounded: a few uploads at once, others wait
            data = await server.body(request, server.options.max_upload)
            return JSONResponse(await run_in_threadpool(server_ingest, server, data))

    return upload


def server_ingest(server: Server, data: bytes) -> dict[str, int]:
    from modelkeep.errors import CorruptObject
    from modelkeep.store.packs import CorruptIndex

    if len(data) < 8:
        raise InvalidArgument("an upload is 8 bytes of index length, the index, then the pack")
    length = int.from_bytes(data[:8], "big")
    if length > len(data) - 8:
        raise InvalidArgument("the upload's index length runs past its end")
    try:
        entries = decode_index(data[8 : 8 + length])
    except CorruptIndex as exc:
        raise InvalidArgument(f"the upload's index is malformed: {exc}") from None
    pack = memoryview(data)[8 + length :]
    store = server.repo.store
    items: list[tuple[PackEntry, bytes]] = []
    for e in entries:
        where = f"upload offset {e.offset}"
        if e.offset + e.length > len(pack):
            raise InvalidArgument(f"object {e.key.hex()} lies past the end of the upload")
        if store.has(e.key):
            continue
        piece = bytes(pack[e.offset : e.offset + e.length])
        try:
            store.check_lengths(e)
            store.verify(e, piece, where)
        except CorruptObject as exc:
            raise InvalidArgument(f"object {e.key.hex()} does not match its id: {exc}") from None
        items.append((e, piece))
    if items:
        with server.writing, store.writing():
            store.add_stored(items)
        _publish(server, items)
    return {"objects": len(items), "bytes": sum(len(p) for _, p in items)}


def _publish(server: Server, items: list[tuple[PackEntry, bytes]]) -> None:
    """A replica's objects go to the default remote before the upload is acknowledged:
    another replica (another machine) must find them there."""
    default = server.repo.settings.default_remote
    if default is None:
        return
    from modelkeep import sync

    sync.publish_objects(server.repo.parts, default, [e.key for e, _ in items])


def _commit(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    fields = {
        "name", "digest", "kind", "source_name", "type", "message", "metadata", "run_id",
        "model_spec",
    }  # fmt: skip

    async def commit(request: Request, who: Account) -> Response:
        doc = await server.json_body(request)
        unknown = sorted(set(doc) - fields)
        if unknown:
            raise InvalidArgument(f"commit takes no field {unknown[0]!r}")
        for key in ("name", "digest", "kind"):
            if not isinstance(doc.get(key), str):
                raise InvalidArgument(f"commit needs {key!r} as text")
        server.require(who, "editor", "add versions", doc["name"])

        def run() -> Response:
            repo = server.repo.acting_as(who.name)
            run_id = _opt_str(doc, "run_id")
            if run_id is not None and not who.admin and repo.run(run_id).user != who.name:
                raise Forbidden(who.name, "admin", "link a version to another account's run", None)
            with server.writing:
                result = content.commit(
                    repo.parts,
                    doc["name"],
                    doc["digest"],
                    doc["kind"],
                    source_name=str(doc.get("source_name") or "root"),
                    type=_opt_str(doc, "type"),
                    message=str(doc.get("message") or ""),
                    metadata=_opt_dict(doc, "metadata"),
                    run_id=run_id,
                    model_spec=_opt_dict(doc, "model_spec"),
                )
            return JSONResponse(api.adapter(AddResult).dump_python(result, mode="json"))

        return await run_in_threadpool(run)

    return commit


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{key!r} must be text")
    return value


def _opt_dict(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise InvalidArgument(f"{key!r} must be a JSON object")
    return value


# -- accounts ---------------------------------------------------------------------------------


async def _me(request: Request, who: Account) -> Response:
    return JSONResponse(who.to_json())


def _tokens(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def tokens(request: Request, who: Account) -> Response:
        db = server.repo.db
        if request.method == "GET":
            user = request.query_params.get("user") or who.name
            if user != who.name:
                server.require(who, "admin", "list another user's tokens")
            found = await run_in_threadpool(accounts.tokens, db, user)
            return JSONResponse([t.to_json() for t in found])
        doc = await server.json_body(request)
        unknown = sorted(set(doc) - {"user", "label", "expires_days"})
        if unknown:
            raise InvalidArgument(f"token creation takes no field {unknown[0]!r}")
        user = doc.get("user") or who.name
        if user != who.name:
            server.require(who, "admin", "create a token for another user")
        days = doc.get("expires_days")
        if days is not None and (not isinstance(days, int) or not 0 < days <= 3650):
            raise InvalidArgument("expires_days is a whole number of days, 1-3650")
        expires = datetime.now(UTC) + timedelta(days=days) if days else None
        token, record = await run_in_threadpool(
            lambda: accounts.create_token(
                db, str(user), label=str(doc.get("label") or ""), expires_at=expires
            )
        )
        return JSONResponse({"token": token, **record.to_json()}, status_code=201)

    return tokens


def _revoke(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def revoke(request: Request, who: Account) -> Response:
        db = server.repo.db
        token_id = request.path_params["token_id"]
        record = await run_in_threadpool(accounts.token, db, token_id)
        if record.user != who.name:
            server.require(who, "admin", "revoke another user's token")
        revoked = await run_in_threadpool(accounts.revoke_token, db, token_id)
        return JSONResponse(revoked.to_json())

    return revoke


def _users(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def users(request: Request, who: Account) -> Response:
        server.require(who, "admin", "manage users")
        db = server.repo.db
        if request.method == "GET":
            return JSONResponse([u.to_json() for u in await run_in_threadpool(accounts.users, db)])
        doc = await server.json_body(request)
        unknown = sorted(set(doc) - {"name", "admin"})
        if unknown or not isinstance(doc.get("name"), str):
            raise InvalidArgument('user creation takes {"name": TEXT, "admin": BOOL}')
        made = await run_in_threadpool(
            lambda: accounts.add_user(db, doc["name"], admin=bool(doc.get("admin")))
        )
        return JSONResponse(made.to_json(), status_code=201)

    return users


def _user(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def user(request: Request, who: Account) -> Response:
        name = request.path_params["name"]
        doc = await server.json_body(request)
        unknown = sorted(set(doc) - {"disabled", "admin", "password"})
        if unknown:
            raise InvalidArgument(f"a user change takes no field {unknown[0]!r}")
        if set(doc) - {"password"} or name != who.name:
            server.require(who, "admin", "change a user")
        db = server.repo.db
        if "password" in doc:
            from modelkeep.server.passwords import hash_password

            password = doc["password"]
            if not isinstance(password, str) or len(password) < 8 or len(password) > 1024:
                raise InvalidArgument("a password has 8 to 1024 characters")
            hashed = await run_in_threadpool(hash_password, password)
            await run_in_threadpool(accounts.set_password_hash, db, name, hashed)
        for key in ("disabled", "admin"):
            if key in doc and not isinstance(doc[key], bool):
                raise InvalidArgument(f"{key!r} is true or false")
        changed = await run_in_threadpool(
            lambda: accounts.set_user(
                db, name, disabled=doc.get("disabled"), admin=doc.get("admin")
            )
        )
        return JSONResponse(changed.to_json())

    return user


def _grants(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def grants(request: Request, who: Account) -> Response:
        server.require(who, "admin", "grant roles")
        name = request.path_params["name"]
        doc = await server.json_body(request)
        unknown = sorted(set(doc) - {"role", "model"})
        if unknown:
            raise InvalidArgument(f"a grant takes no field {unknown[0]!r}")
        model = str(doc.get("model") or accounts.EVERYWHERE)
        db = server.repo.db
        if request.method == "PUT":
            changed = await run_in_threadpool(
                accounts.grant, db, name, str(doc.get("role") or ""), model
            )
        else:
            changed = await run_in_threadpool(accounts.revoke_grant, db, name, model)
        return JSONResponse(changed.to_json())

    return grants


def _policy(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def policy(request: Request, who: Account) -> Response:
        server.require(who, "viewer", "read the policy", anywhere=True)
        from modelkeep import policy as policies

        found = await run_in_threadpool(policies.load, server.repo.root)
        return JSONResponse(
            {
                "path": str(found.path.name) if found.path else None,
                "policy": found.raw,
                "reasons": sorted(found.reasons),
            }
        )

    return policy


__all__ = ["Options", "Server", "create_app"]
