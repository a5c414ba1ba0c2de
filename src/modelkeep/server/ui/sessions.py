"""Browser sessions of the web UI: a cookie, a CSRF token, and sign-out on the server.

A session on `modelkeep serve` IS an API token (labelled "web session", expiring after
`SESSION_HOURS`): signing in with a password or a token makes a new one and puts it in an
HttpOnly, SameSite=Strict cookie (Secure over https). So a session is server-side state
every server process shares through the database (several `serve` processes behind one
balancer need nothing more), it shows in the account's token list, and signing out revokes
it: a copied cookie stops working at once.

CSRF: a state-changing request that authenticates by the cookie must carry, in the
`X-CSRF-Token` header, an HMAC of the session's own secret. The page gets it from the
server-rendered shell (a meta tag); another site can neither read it nor compute it, and a
token of another session does not match. Requests with an `Authorization` header (the CLI,
scripts) never look at the cookie, so they are unaffected.

`modelkeep ui` (one process on 127.0.0.1, the local store) has no accounts to sign in with:
it starts with a one-time link secret, whose hash only the server holds. The first visit
to the link turns it into a session for the local user, kept in this process's memory; the
link then no longer works, nor after `LINK_SECONDS`. Another user of the same machine can
reach the port but not guess the link, and once the browser has used it, knowing it is
worthless.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelkeep.errors import CsrfRefused, LinkUsed, Unauthenticated
from modelkeep.meta import accounts
from modelkeep.meta.accounts import Account
from modelkeep.meta.db import Database

COOKIE = "modelkeep_session"


def cookie_name(request: Any) -> str:
    """The session cookie's name, with the port the browser used: cookies ignore ports, so
    another service (or another `modelkeep ui`) on the same host never receives it."""
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    return f"{COOKIE}_{port}"


CSRF_HEADER = "x-csrf-token"
SESSION_HOURS = 12
LINK_SECONDS = 300
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_PREFIX = "mkl_"  # a `modelkeep ui` session, held in memory, never in the database


def csrf_token(session: str) -> str:
    """The CSRF token of a session: only who holds the session secret can compute it."""
    return hmac.new(session.encode(), b"modelkeep csrf", hashlib.sha256).hexdigest()


def check_csrf(session: str, method: str, sent: str | None) -> None:
    if method.upper() in SAFE_METHODS:
        return
    if not sent or not hmac.compare_digest(sent, csrf_token(session)):
        raise CsrfRefused()


def link_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_link() -> str:
    """A one-time link secret for `modelkeep ui` (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass
class LocalSessions:
    """`modelkeep ui`'s sessions: a one-time link for the local user, then memory."""

    user: str
    link: str | None  # the sha256 of the one-time secret; None once used
    started: float = field(default_factory=time.monotonic)
    sessions: dict[str, Account] = field(default_factory=dict)  # sha256(session) -> account
    lock: threading.Lock = field(default_factory=threading.Lock)

    def redeem(self, secret: str) -> str:
        """A session for the local user, for the one-time link secret (once only)."""
        with self.lock:
            fresh = time.monotonic() - self.started <= LINK_SECONDS
            if (
                self.link is None
                or not fresh
                or not hmac.compare_digest(link_hash(secret), self.link)
            ):
                raise LinkUsed()
            self.link = None
            session = LOCAL_PREFIX + secrets.token_urlsafe(32)
            # the local store's own user: it owns the files, so it may do anything the
            # library lets it (as the CLI on the same store may)
            self.sessions[link_hash(session)] = Account(
                self.user, True, False, datetime.now(UTC), (accounts.Grant("admin", "*"),)
            )
            return session

    def account(self, session: str) -> Account:
        found = self.sessions.get(link_hash(session))
        if found is None:
            raise Unauthenticated("the browser session ended; run `modelkeep ui` again")
        return found

    def end(self, session: str) -> None:
        with self.lock:
            self.sessions.pop(link_hash(session), None)


def start(db: Database, user: str, not_after: datetime | None = None) -> tuple[str, datetime]:
    """A new session (a token) for user, who has just proved who they are: (the session,
    when it expires). A session made from a token ends no later than that token
    (not_after): signing in never turns a short-lived token into a longer-lived one."""
    expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
    if not_after is not None:
        expires = min(expires, not_after)
    token, _ = accounts.create_token(db, user, label="web session", expires_at=expires)
    return token, expires


def end(db: Database, session: str) -> None:
    """Revoke the session's token: the cookie no longer signs anyone in, anywhere."""
    account = accounts.authenticate(db, session)  # only a live session is ended
    token_id = session.split("_")[1]
    if accounts.token(db, token_id).user == account.name:
        accounts.revoke_token(db, token_id)
