"""Which database this is: a random id, one row, made by migration 0005.

It travels with the data (a dump restored elsewhere keeps it), not with the URL, so a
store can tell its own database from another one however either is reached. Every
store of a team shares it: the machines of a team use one database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from modelkeep.meta.db import Database
from modelkeep.meta.models import DatabaseIdentityRow, VersionRow


def database_id(db: Database) -> str:
    """The database's id; made now if its row was lost (then no store matches it)."""
    with db.read() as s:
        found = s.scalars(
            select(DatabaseIdentityRow.id).order_by(DatabaseIdentityRow.created_at).limit(1)
        ).first()
    if found is not None:
        return found
    with db.write() as s:
        s.add(DatabaseIdentityRow(id=uuid.uuid4().hex, created_at=datetime.now(UTC)))
    with db.read() as s:
        return s.scalars(
            select(DatabaseIdentityRow.id).order_by(DatabaseIdentityRow.created_at).limit(1)
        ).one()


def version_count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(VersionRow)) or 0)
