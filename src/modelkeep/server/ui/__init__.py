"""The web UI of `modelkeep serve` and `modelkeep ui`: pages at `/` and `/ui/...`.

Each page is a small server-rendered shell (templates/shell.html) that names the page and
its subject; a JavaScript module (static/app.js) fills it from the same JSON API the CLI's
server client uses (`/api/v1`, the operation table in `modelkeep.api`). The server holds
no rule of its own here: the shell checks only that the subject exists and may be read,
through the same operation the page will call, so an unknown ref is a 404 page. Every
asset is served from the package (static/, vendored libraries pinned in docs/ui.md); the
Content-Security-Policy lets a page load nothing from anywhere else.
"""

from __future__ import annotations

import html
import json
import string
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelkeep import api
from modelkeep.errors import InvalidArgument, ModelkeepError, Unauthenticated
from modelkeep.meta import accounts
from modelkeep.meta.accounts import Account
from modelkeep.server.files import file_response
from modelkeep.server.ui import sessions


class Server(Protocol):
    """What the UI uses of app.Server (which imports this module to mount it)."""

    repo: Any
    options: Any
    failures: Any
    local: sessions.LocalSessions | None

    def session_account(self, cookie: str, request: Request) -> Account: ...

    def require(
        self, who: Account, role: str, what: str, model: str | None = None, anywhere: bool = False
    ) -> None: ...

    def call(self, op: api.Op, args: dict[str, Any], who: Account) -> Response: ...

    def endpoint(
        self, handler: Callable[[Request, Account], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]: ...

    async def json_body(self, request: Request) -> dict[str, Any]: ...

    def _errors(self, exc: ModelkeepError) -> Response: ...


HERE = Path(__file__).parent
STATIC = HERE / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
# page name -> (the operation whose answer says the subject exists, its argument)
_SUBJECT = {
    "model": ("show", "ref"),
    "version": ("show", "ref"),
    "lineage": ("show", "ref"),
    "run": ("run", "ref"),
}
TITLES = {
    "models": "Models",
    "model": "Model",
    "version": "Version",
    "runs": "Runs",
    "run": "Run",
    "compare": "Compare runs",
    "diff": "Diff",
    "lineage": "Lineage",
    "audit": "Audit log",
    "account": "Account",
    "login": "Sign in",
}


class SecurityHeaders:
    """CSP and friends on every page and asset of the UI (`/` and `/ui/...`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


MIDDLEWARE = [Middleware(SecurityHeaders)]


@cache
def _template(name: str) -> string.Template:
    return string.Template((HERE / "templates" / name).read_text("utf-8"))


def render(name: str, status: int = 200, **values: str) -> HTMLResponse:
    """A template with every value escaped (the templates hold no data of their own)."""
    body = _template(name).substitute({k: html.escape(v, quote=True) for k, v in values.items()})
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def not_found(message: str) -> HTMLResponse:
    return render("message.html", 404, title="Not found", heading="Not found", message=message)


def _secure(server: Server, request: Request) -> bool:
    """Whether the browser reached us over https (directly, or through a trusted proxy)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return (
        peer in server.options.proxy_addresses
        and request.headers.get("x-forwarded-proto", "") == "https"
    )


def _set_session(
    response: Response,
    server: Server,
    request: Request,
    session: str,
    expires: datetime | None = None,
) -> None:
    """Set the session cookie, kept by the browser until the session expires."""
    seconds = sessions.SESSION_HOURS * 3600
    if expires is not None:
        seconds = max(1, int((expires - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        sessions.cookie_name(request),
        session,
        max_age=seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(server, request),
    )


# -- pages ------------------------------------------------------------------------------------


def _page(server: Server, page: str, arg_name: str | None = None) -> Callable[..., Awaitable[Any]]:
    async def show(request: Request) -> Response:
        cookie = request.cookies.get(sessions.cookie_name(request))
        back = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if not cookie:
            return RedirectResponse(f"/ui/login?next={back}", status_code=303)
        arg = str(request.path_params.get(arg_name, "")) if arg_name else ""
        try:
            who = await run_in_threadpool(server.session_account, cookie, request)
            if page in _SUBJECT:
                await run_in_threadpool(_exists, server, who, page, arg)
        except Unauthenticated:
            return RedirectResponse(f"/ui/login?next={back}", status_code=303)
        except ModelkeepError as exc:
            status = server._errors(exc).status_code  # as the API would answer
            if status in (404, 422):
                return not_found(f"There is no {page} {arg!r} here.")
            title = "Not allowed" if status == 403 else "Error"
            return render("message.html", status, title=title, heading=title, message=str(exc))
        return render(
            "shell.html",
            title=TITLES[page] + (f" {arg}" if arg else ""),
            page=page,
            arg=arg,
            user=who.name,
            csrf=sessions.csrf_token(cookie),
        )

    return show


def _exists(server: Server, who: Account, page: str, arg: str) -> None:
    from modelkeep.errors import ArtifactNotFound

    op_name, key = _SUBJECT[page]
    op = api.BY_NAME[op_name]
    found = server.call(op, api.decode_args(op, {key: arg}), who)
    if page == "model" and not json.loads(bytes(found.body)).get("registered"):
        raise ArtifactNotFound(arg)  # an artifact, but not a registered model


# -- signing in and out -------------------------------------------------------------------


def _login_page(request: Request) -> Response:
    return render("login.html", title="Sign in")


def _login(server: Server) -> Callable[[Request], Awaitable[Response]]:
    async def login(request: Request) -> Response:
        peer = request.client.host if request.client else "-"
        if "application/json" not in request.headers.get("content-type", ""):
            # a cross-site form cannot send JSON without asking (CORS): no login CSRF
            return JSONResponse({"error": "invalid_argument", "message": "send JSON"}, 415)
        try:
            wait = server.failures.take(peer, spend=False)
            if wait:
                return JSONResponse(
                    {
                        "error": "rate_limited",
                        "message": f"too many sign-ins; retry in {wait:.0f} s",
                    },
                    status_code=429,
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
            doc = await server.json_body(request)
            try:
                who, not_after = await run_in_threadpool(_who, server, doc)
            except Unauthenticated:
                server.failures.take(peer)
                raise
            session, expires = await run_in_threadpool(
                sessions.start, server.repo.db, who.name, not_after
            )
        except ModelkeepError as exc:
            return server._errors(exc)
        response = JSONResponse({"user": who.name})
        _set_session(response, server, request, session, expires)
        return response

    return login


def _who(server: Server, doc: dict[str, Any]) -> tuple[Account, datetime | None]:
    """Who signs in, and when a session of theirs must end at the latest (their token's
    expiry, for a token sign-in)."""
    token, user, password = doc.get("token"), doc.get("user"), doc.get("password")
    if isinstance(token, str) and token:
        return accounts.authenticate_until(server.repo.db, token.strip())
    if isinstance(user, str) and isinstance(password, str) and user and password:
        from modelkeep.server.passwords import verify_password

        stored = accounts.password_hash(server.repo.db, user)
        if stored is None or not verify_password(stored, password):
            raise Unauthenticated("wrong user name or password")
        return accounts.active_account(server.repo.db, user), None
    raise InvalidArgument('sign in with {"user": NAME, "password": TEXT} or {"token": TOKEN}')


def _logout(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    async def logout(request: Request, who: Account) -> Response:
        cookie = request.cookies.get(sessions.cookie_name(request))
        if not cookie:  # a bearer client has no session to end
            raise InvalidArgument("there is no browser session to sign out of")
        if server.local is not None and cookie.startswith(sessions.LOCAL_PREFIX):
            server.local.end(cookie)
        else:
            await run_in_threadpool(sessions.end, server.repo.db, cookie)
        response = JSONResponse({"signed_out": who.name})
        response.delete_cookie(sessions.cookie_name(request), path="/")
        return response

    return logout


def _link(server: Server) -> Callable[[Request], Awaitable[Response]]:
    async def link(request: Request) -> Response:
        if server.local is None:
            return not_found("This server has no one-time sign-in links.")
        try:
            session = server.local.redeem(str(request.path_params["secret"]))
        except ModelkeepError as exc:
            return render("message.html", 403, title="Link used", heading="Link used",
                          message=str(exc))  # fmt: skip
        response = RedirectResponse("/", status_code=303)
        _set_session(response, server, request, session)
        return response

    return link


def _download(server: Server) -> Callable[[Request, Account], Awaitable[Response]]:
    """One file of a version, by ref and path (a query: both may hold '/'), verified as it
    is read; with the viewer role on that model, as the MLflow artifact proxy's view of a
    version's files asks (which cannot name a model with '/' in its name)."""

    async def download(request: Request, who: Account) -> Response:
        from modelkeep import content
        from modelkeep.errors import ArtifactFileNotFound
        from modelkeep.store.trees import Kind

        ref = request.query_params.get("ref", "")
        path = request.query_params.get("path", "").strip("/")
        if not ref or not path:
            raise InvalidArgument("a download names ?ref=REF&path=PATH")
        repo = server.repo.acting_as(who.name)
        version = await run_in_threadpool(repo.show, ref)
        server.require(who, "viewer", "download files", version.name)

        def open_it() -> tuple[Any, int]:
            try:
                found = content.entry(repo.parts, version, path)
            except LookupError:
                raise ArtifactFileNotFound(f"{version.ref}/{path}") from None
            if found.kind != Kind.FILE:
                raise ArtifactFileNotFound(f"{version.ref}/{path}")
            return content.open_file(repo.parts, version, path), found.size

        reader, size = await run_in_threadpool(open_it)
        return await file_response(reader, size, path.rsplit("/", 1)[-1])

    return download


async def _unknown(request: Request) -> Response:
    return not_found(f"There is no page {request.url.path!r}.")


def routes(server: Server) -> list[Route | Mount]:
    return [
        Route("/", _page(server, "models")),
        Route("/ui/models/{name:path}", _page(server, "model", "name")),
        Route("/ui/versions/{ref:path}", _page(server, "version", "ref")),
        Route("/ui/runs", _page(server, "runs")),
        Route("/ui/runs/{id}", _page(server, "run", "id")),
        Route("/ui/compare", _page(server, "compare")),
        Route("/ui/diff", _page(server, "diff")),
        Route("/ui/lineage/{ref:path}", _page(server, "lineage", "ref")),
        Route("/ui/audit", _page(server, "audit")),
        Route("/ui/account", _page(server, "account")),
        Route("/ui/login", _login_page, methods=["GET"]),
        Route("/ui/login", _login(server), methods=["POST"]),
        Route("/ui/logout", server.endpoint(_logout(server)), methods=["POST"]),
        Route("/ui/link/{secret}", _link(server), methods=["GET"]),
        Route("/ui/download", server.endpoint(_download(server)), methods=["GET"]),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
        Route("/ui/{rest:path}", _unknown),
    ]


__all__ = ["CSP", "MIDDLEWARE", "routes"]
