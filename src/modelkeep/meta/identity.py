"""Which database this is: a random id, one row, made by migration 0005.

It travels with the data (a dump restored elsewhere keeps it), not with the URL, so a
store can tell its own database from another one however either is reached. Every
store of a team shares it: the machines of a team use one database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from modelkeep.meta.db import Database

_FIRST = "SELECT id FROM database_identity ORDER BY created_at LIMIT 1"


def database_id(db: Database) -> str:
    """The database's id; made now if its row was lost (then no store matches it)."""
    with db.query() as q:
        found: str | None = q.scalar(_FIRST)
    if found is not None:
        return found
    from modelkeep.meta.models import DatabaseIdentityRow

    with db.write() as s:
        s.add(DatabaseIdentityRow(id=uuid.uuid4().hex, created_at=datetime.now(UTC)))
    with db.query() as q:
        made: str = q.scalar(_FIRST)
        return made


def version_count(db: Database) -> int:
    with db.query() as q:
        return int(q.scalar("SELECT count(*) FROM versions") or 0)
