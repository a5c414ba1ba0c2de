"""`modelkeep serve`, `login`/`logout`, and the accounts: `user`, `token`, `role`.

`user` and `role` change the accounts of the store they run on: an admin runs them on the
server's machine (or against a server, as an admin account). `token create` makes a token
for yourself through a server, or for any user on the server's machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, json_option, open_repo

if TYPE_CHECKING:
    from modelkeep.repo import Repo


def _server(repo: Repo) -> Any:
    """The client's connection when repo is a server's, else None."""
    return getattr(repo, "conn", None)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--trust-proxy-header",
    metavar="HEADER",
    help="Take the account from this header (e.g. X-Forwarded-User), sent by a proxy only.",
)
@click.option(
    "--proxy",
    "proxies",
    multiple=True,
    metavar="ADDRESS",
    help="An address the proxy connects from (default: 127.0.0.1 and ::1).",
)
@click.option("--rate-limit", default=1200, show_default=True, help="Requests/minute/account.")
@click.option(
    "--sign-in-limit", default=60, show_default=True, help="Failed sign-ins/minute/address."
)
@click.option("--max-upload", default="80M", show_default=True, help="Largest upload (a pack).")
@click.option("--no-webhooks", is_flag=True, help="Do not deliver webhooks from this process.")
@json_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    trust_proxy_header: str | None,
    proxies: tuple[str, ...],
    rate_limit: int,
    sign_in_limit: int,
    max_upload: str,
    no_webhooks: bool,
    as_json: bool,
) -> None:
    """Serve this repository over HTTP (JSON API at /api/v1, OpenAPI at /api/openapi.json).

    Requests authenticate with a token (`modelkeep token create --user NAME`); put TLS in
    front with a reverse proxy (docs/server.md)."""
    from modelkeep.cli.common import parse_size
    from modelkeep.server.run import serve as run_server

    repo = open_repo(ctx)
    if _server(repo) is not None:
        raise click.UsageError("serve runs on the server's own store, not through a server")
    url = f"http://{host}:{port}"
    if as_json:
        render.emit_json({"serving": str(repo.root), "url": url, "workers": workers})
    else:
        click.echo(f"serving {repo.root} at {url} (API {url}/api/v1, press Ctrl-C to stop)")
    run_server(
        repo.root,
        host=host,
        port=port,
        workers=workers,
        trust_proxy_header=trust_proxy_header,
        proxies=proxies,
        rate_limit=rate_limit,
        sign_in_limit=sign_in_limit,
        max_upload=parse_size(max_upload),
        webhooks=not no_webhooks,
    )


@click.command()
@click.argument("url")
@click.option("--token", help="The token (default: read from the terminal, hidden).")
@click.option("--insecure", is_flag=True, help="Allow plain http:// to another machine.")
@json_option
def login(url: str, token: str | None, insecure: bool, as_json: bool) -> None:
    """Check a token against the server at URL and keep it (0600) for later commands."""
    from modelkeep import client

    url = client.normalize(url)
    client.check_transport(url, insecure)
    if token is None:
        token = click.prompt("token", hide_input=True)
    conn = client.Connection(url, token, insecure=insecure)
    try:
        me = conn.request("GET", "/account")
    finally:
        conn.close()
    path = client.save_token(url, token)
    if as_json:
        render.emit_json({"server": url, "user": me["name"], "credentials": str(path)})
    else:
        click.echo(f"signed in to {url} as {me['name']} (token kept in {path})")
        click.echo(
            f'use it here with MODELKEEP_SERVER={url}, or `server = "{url}"` in modelkeep.toml'
        )


@click.command()
@click.argument("url")
@json_option
def logout(url: str, as_json: bool) -> None:
    """Forget the token kept for URL."""
    from modelkeep import client

    url = client.normalize(url)
    client.save_token(url, None)
    if as_json:
        render.emit_json({"server": url, "forgotten": True})
    else:
        click.echo(f"forgot the token for {url}")


# -- users -------------------------------------------------------------------------------


@click.group(cls=Group)
def user() -> None:
    """Accounts of `modelkeep serve` (admins only)."""


def _users(ctx: click.Context) -> tuple[Repo, Any]:
    repo = open_repo(ctx)
    return repo, _server(repo)


def _show_account(doc: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        render.emit_json(doc)
        return
    roles = ", ".join(f"{g['role']} on {g['model']}" for g in doc["grants"]) or "no roles"
    admin = " (admin)" if doc["admin"] else ""
    state = " [disabled]" if doc["disabled"] else ""
    click.echo(f"{verb} {doc['name']}{admin}{state}: {roles}")


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin: every role on every model.")
@json_option
@click.pass_context
def user_add(ctx: click.Context, name: str, admin: bool, as_json: bool) -> None:
    """Add an account; give it a role with `modelkeep role grant` and a token with
    `modelkeep token create --user NAME`."""
    repo, conn = _users(ctx)
    if conn is not None:
        doc = conn.request("POST", "/users", json={"name": name, "admin": admin})
    else:
        from modelkeep.meta import accounts

        doc = accounts.add_user(repo.db, name, admin=admin).to_json()
    _show_account(doc, as_json, "added user")


@user.command("list")
@json_option
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts with their roles."""
    repo, conn = _users(ctx)
    if conn is not None:
        docs = conn.request("GET", "/users")
    else:
        from modelkeep.meta import accounts

        docs = [u.to_json() for u in accounts.users(repo.db)]
    if as_json:
        render.emit_json({"users": docs})
        return
    if not docs:
        click.echo("no users; add one with `modelkeep user add NAME --admin`")
        return
    render.table(
        ["user", "admin", "state", "roles"],
        [
            [
                d["name"],
                "yes" if d["admin"] else "",
                "disabled" if d["disabled"] else "active",
                ", ".join(f"{g['role']}:{g['model']}" for g in d["grants"]) or "-",
            ]
            for d in docs
        ],
    )


def _set_user(ctx: click.Context, name: str, as_json: bool, **change: Any) -> None:
    repo, conn = _users(ctx)
    if conn is not None:
        doc = conn.request("PATCH", f"/users/{name}", json=change)
    else:
        from modelkeep.meta import accounts

        doc = accounts.set_user(repo.db, name, **change).to_json()
    _show_account(doc, as_json, "user")


@user.command("disable")
@click.argument("name")
@json_option
@click.pass_context
def user_disable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Disable an account: its tokens stop working at once."""
    _set_user(ctx, name, as_json, disabled=True)


@user.command("enable")
@click.argument("name")
@json_option
@click.pass_context
def user_enable(ctx: click.Context, name: str, as_json: bool) -> None:
    """Enable a disabled account again."""
    _set_user(ctx, name, as_json, disabled=False)


@user.command("password")
@click.argument("name")
@json_option
@click.pass_context
def user_password(ctx: click.Context, name: str, as_json: bool) -> None:
    """Set an account's password (for the web UI's sign-in), read from the terminal."""
    password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    repo, conn = _users(ctx)
    if conn is not None:
        conn.request("PATCH", f"/users/{name}", json={"password": password})
    else:
        from modelkeep.errors import InvalidArgument
        from modelkeep.meta import accounts
        from modelkeep.server.passwords import hash_password

        if not 8 <= len(password) <= 1024:
            raise InvalidArgument("a password has 8 to 1024 characters")
        accounts.set_password_hash(repo.db, name, hash_password(password))
    if as_json:
        render.emit_json({"user": name, "password": "set"})
    else:
        click.echo(f"password set for {name}")


# -- tokens ------------------------------------------------------------------------------


_DURATION = re.compile(r"(\d+)([dhw])")


def _expiry(text: str | None) -> int | None:
    """90d, 12w, 48h -> whole days (at least 1); None: never."""
    if text is None or text == "never":
        return None
    from modelkeep.errors import InvalidArgument

    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"cannot read duration {text!r}; write e.g. 90d, 12w or never")
    amount, unit = int(match.group(1)), match.group(2)
    days = {"d": amount, "w": amount * 7, "h": -(-amount // 24)}[unit]
    if not 0 < days <= 3650:
        raise InvalidArgument("a token lasts 1 day to 10 years")
    return days


@click.group(cls=Group)
def token() -> None:
    """API tokens: shown once when made, kept only as a hash."""


@token.command("create")
@click.option("--user", "user_name", help="For this user (admins; default: yourself).")
@click.option("--expires", default="90d", show_default=True, help="Lifetime: 90d, 12w, never.")
@click.option("--name", "label", default="", help="A label to tell tokens apart.")
@json_option
@click.pass_context
def token_create(
    ctx: click.Context, user_name: str | None, expires: str, label: str, as_json: bool
) -> None:
    """Make a token; it is printed once and cannot be shown again."""
    repo = open_repo(ctx)
    conn = _server(repo)
    days = _expiry(expires)
    if conn is not None:
        body: dict[str, Any] = {"label": label, "expires_days": days}
        if user_name:
            body["user"] = user_name
        doc = conn.request("POST", "/tokens", json=body)
    else:
        from modelkeep.meta import accounts

        if user_name is None:
            raise click.UsageError("on the server's machine, say whose token: --user NAME")
        when = datetime.now(UTC) + timedelta(days=days) if days else None
        secret, record = accounts.create_token(repo.db, user_name, label=label, expires_at=when)
        doc = {"token": secret, **record.to_json()}
    if as_json:
        render.emit_json(doc)
        return
    until = f", expires {doc['expires_at'][:10]}" if doc["expires_at"] else ""
    click.echo(f"token {doc['id']} for {doc['user']}{until}; shown once, keep it safe:")
    click.echo(doc["token"])


@token.command("list")
@click.option("--user", "user_name", help="This user's tokens (admins).")
@json_option
@click.pass_context
def token_list(ctx: click.Context, user_name: str | None, as_json: bool) -> None:
    """List tokens (never the tokens themselves)."""
    repo = open_repo(ctx)
    conn = _server(repo)
    if conn is not None:
        docs = conn.request("GET", "/tokens", params={"user": user_name} if user_name else None)
    else:
        from modelkeep.meta import accounts

        docs = [t.to_json() for t in accounts.tokens(repo.db, user_name)]
    if as_json:
        render.emit_json({"tokens": docs})
        return
    if not docs:
        click.echo("no tokens")
        return
    render.table(
        ["id", "user", "name", "created", "expires", "state"],
        [
            [
                d["id"],
                d["user"],
                d["label"] or "-",
                d["created_at"][:10],
                (d["expires_at"] or "never")[:10],
                d["state"],
            ]
            for d in docs
        ],
    )


@token.command("revoke")
@click.argument("token_id")
@json_option
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Revoke a token by its id: refused from the next request on."""
    repo = open_repo(ctx)
    conn = _server(repo)
    if conn is not None:
        doc = conn.request("DELETE", f"/tokens/{token_id}")
    else:
        from modelkeep.meta import accounts

        doc = accounts.revoke_token(repo.db, token_id).to_json()
    if as_json:
        render.emit_json(doc)
    else:
        click.echo(f"revoked token {doc['id']} of {doc['user']}")


# -- roles -------------------------------------------------------------------------------


@click.group(cls=Group)
def role() -> None:
    """Roles: viewer < editor < maintainer < admin, everywhere or on models a glob matches."""


def _grant(ctx: click.Context, name: str, role_name: str | None, model: str, as_json: bool) -> None:
    repo, conn = _users(ctx)
    if conn is not None:
        method = "PUT" if role_name else "DELETE"
        body = {"role": role_name, "model": model} if role_name else {"model": model}
        doc = conn.request(method, f"/users/{name}/grants", json=body)
    else:
        from modelkeep.meta import accounts

        changed = (
            accounts.grant(repo.db, name, role_name, model)
            if role_name
            else accounts.revoke_grant(repo.db, name, model)
        )
        doc = changed.to_json()
    _show_account(doc, as_json, "user")


@role.command("grant")
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@click.option("--model", default="*", show_default=True, help="Only on models this glob matches.")
@json_option
@click.pass_context
def role_grant(ctx: click.Context, name: str, role_name: str, model: str, as_json: bool) -> None:
    """Give user NAME the role ROLE (viewer, editor, maintainer, admin)."""
    _grant(ctx, name, role_name, model, as_json)


@role.command("revoke")
@click.argument("name")
@click.option("--model", default="*", show_default=True, help="The glob the role was given on.")
@json_option
@click.pass_context
def role_revoke(ctx: click.Context, name: str, model: str, as_json: bool) -> None:
    """Take back the role user NAME holds on --model."""
    _grant(ctx, name, None, model, as_json)


COMMANDS = (serve, login, logout, user, token, role)
__all__ = ["COMMANDS"]
