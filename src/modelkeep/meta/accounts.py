"""Accounts of `modelkeep serve`: users, their API tokens and their roles, as rows.

A token is `mkt_<id>_<secret>`: 32 random bytes, shown once; only its SHA-256 is kept, so
a copy of the database lets nobody in (a token is random, so a fast hash is enough; the
slow, memory-hard hash is for passwords, which people choose). Roles rise from `viewer`
to `admin`; a user's role on a model is the highest of their grants whose glob matches the
model's name, '*' being every model. An admin account is `admin` everywhere.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from modelkeep.errors import (
    AccountExists,
    AccountNotFound,
    InvalidArgument,
    TokenNotFound,
    Unauthenticated,
)
from modelkeep.meta.db import Database
from modelkeep.meta.models import GrantRow, TokenRow, UserRow

ROLES = ("viewer", "editor", "maintainer", "admin")
EVERYWHERE = "*"
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_TOKEN = re.compile(r"mkt_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    model: str  # a glob over model names; '*' is every model

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "model": self.model}


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    admin: bool
    disabled: bool
    created_at: datetime
    grants: tuple[Grant, ...] = ()

    def role_on(self, model: str | None) -> str | None:
        """The highest role this account holds on model (None: on every model), or None."""
        if self.admin:
            return "admin"
        held = [
            g.role
            for g in self.grants
            if g.model == EVERYWHERE or (model is not None and fnmatch.fnmatchcase(model, g.model))
        ]
        return max(held, key=ROLES.index) if held else None

    def may(self, role: str, model: str | None = None) -> bool:
        held = self.role_on(model)
        return held is not None and ROLES.index(held) >= ROLES.index(role)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "admin": self.admin,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "grants": [g.to_json() for g in self.grants],
        }


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "user": self.user,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "state": self.state(datetime.now(UTC)),
        }


def check_user_name(name: str) -> str:
    if not _USER.fullmatch(name):
        raise InvalidArgument(
            f"invalid user name {name!r}: letters, digits and . _ @ + -, 1-128 characters"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def _grants(rows: list[GrantRow]) -> tuple[Grant, ...]:
    return tuple(Grant(g.role, g.model_glob) for g in sorted(rows, key=lambda g: g.model_glob))


def _account(s: object, row: UserRow) -> Account:
    rows = list(s.scalars(select(GrantRow).where(GrantRow.user_name == row.name)))  # type: ignore[attr-defined]
    return Account(row.name, row.admin, row.disabled, row.created_at, _grants(rows))


def add_user(db: Database, name: str, *, admin: bool = False) -> Account:
    check_user_name(name)
    try:
        with db.write() as s:
            if s.get(UserRow, name) is not None:
                raise AccountExists(name)
            row = UserRow(name=name, admin=admin, disabled=False, created_at=datetime.now(UTC))
            s.add(row)
            s.flush()
    except IntegrityError as exc:  # another writer made it meanwhile
        raise AccountExists(name) from exc
    return Account(name, admin, False, row.created_at)


def account(db: Database, name: str) -> Account:
    with db.read() as s:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFound(name)
        return _account(s, row)


def users(db: Database) -> list[Account]:
    with db.read() as s:
        rows = list(s.scalars(select(UserRow).order_by(UserRow.name)))
        grants = list(s.scalars(select(GrantRow)))
    return [
        Account(
            r.name,
            r.admin,
            r.disabled,
            r.created_at,
            _grants([g for g in grants if g.user_name == r.name]),
        )
        for r in rows
    ]


def set_user(
    db: Database, name: str, *, disabled: bool | None = None, admin: bool | None = None
) -> Account:
    with db.write() as s:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFound(name)
        if disabled is not None:
            row.disabled = disabled
        if admin is not None:
            row.admin = admin
        s.flush()
        return _account(s, row)


def set_password_hash(db: Database, name: str, password_hash: str | None) -> None:
    with db.write() as s:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFound(name)
        row.password_hash = password_hash


def password_hash(db: Database, name: str) -> str | None:
    with db.read() as s:
        row = s.get(UserRow, name)
        return row.password_hash if row is not None and not row.disabled else None


def grant(db: Database, name: str, role: str, model: str = EVERYWHERE) -> Account:
    check_role(role)
    if not model or len(model) > 128:
        raise InvalidArgument(f"invalid model glob {model!r}: 1-128 characters")
    with db.write() as s:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFound(name)
        held = s.get(GrantRow, (name, model))
        if held is None:
            s.add(GrantRow(user_name=name, model_glob=model, role=role))
        else:
            held.role = role
        s.flush()
        return _account(s, row)


def revoke_grant(db: Database, name: str, model: str = EVERYWHERE) -> Account:
    with db.write() as s:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFound(name)
        held = s.get(GrantRow, (name, model))
        if held is None:
            raise InvalidArgument(f"{name!r} has no role on {model!r}")
        s.delete(held)
        s.flush()
        return _account(s, row)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    db: Database, user: str, *, label: str = "", expires_at: datetime | None = None
) -> tuple[str, Token]:
    """A new token for user: (the token, shown this once; its record)."""
    if len(label) > 128:
        raise InvalidArgument("a token label has at most 128 characters")
    token_id = secrets.token_hex(6)
    token = f"mkt_{token_id}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with db.write() as s:
        row = s.get(UserRow, user)
        if row is None:
            raise AccountNotFound(user)
        s.add(
            TokenRow(
                id=token_id,
                user_name=user,
                label=label,
                hash=_hash(token),
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
        )
    return token, Token(token_id, user, label, now, expires_at, None)


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.user_name, row.label, row.created_at, row.expires_at, row.revoked_at)


def tokens(db: Database, user: str | None = None) -> list[Token]:
    with db.read() as s:
        query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
        if user is not None:
            query = query.where(TokenRow.user_name == user)
        return [_token(r) for r in s.scalars(query)]


def token(db: Database, token_id: str) -> Token:
    with db.read() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            raise TokenNotFound(token_id)
        return _token(row)


def revoke_token(db: Database, token_id: str) -> Token:
    with db.write() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            raise TokenNotFound(token_id)
        if row.revoked_at is None:
            s.execute(
                update(TokenRow).where(TokenRow.id == token_id).values(revoked_at=datetime.now(UTC))
            )
        s.flush()
        s.refresh(row)
        return _token(row)


def authenticate(db: Database, token: str) -> Account:
    """The account a token belongs to; Unauthenticated for a malformed, unknown, revoked
    or expired token, or a disabled account (one message for all: no oracle)."""
    return authenticate_until(db, token)[0]


def authenticate_until(db: Database, token: str) -> tuple[Account, datetime | None]:
    """`authenticate`, with when the token expires (None: never), read in the same look-up:
    a session made from it must not outlive it."""
    if not _TOKEN.fullmatch(token):
        raise Unauthenticated("the token is not a modelkeep token")
    with db.read() as s:
        row = s.scalars(select(TokenRow).where(TokenRow.hash == _hash(token))).first()
        now = datetime.now(UTC)
        if (
            row is None
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)
        ):
            raise Unauthenticated("the token is unknown, revoked or expired")
        user = s.get(UserRow, row.user_name)
        if user is None or user.disabled:
            raise Unauthenticated("the token's account is disabled")
        return _account(s, user), row.expires_at


def active_account(db: Database, name: str) -> Account:
    """A named account that may act (a trusted proxy's user, a password login)."""
    found = account(db, name)
    if found.disabled:
        raise Unauthenticated("the account is disabled")
    return found
