"""Artifacts and versions as rows: allocate numbers, list.

Version numbers come from bumping `artifacts.latest_number` inside the write transaction
that inserts the version, under the chain lock (PostgreSQL: an advisory lock; SQLite: the
database write lock), so they start at 1 and never repeat or skip, whoever adds at the same
time; the version's time comes from the chain's clock, so `--at` never sees a version
before it existed.
"""

from __future__ import annotations

from modelkeep.errors import TypeMismatch
from modelkeep.meta.chain import Write, clock
from modelkeep.meta.db import Database, session_query
from modelkeep.meta.models import RunOutputRow
from modelkeep.meta.reads import same_as, same_version_in
from modelkeep.meta.records import Added, NewVersion, check_type, version_of
from modelkeep.meta.rows import artifact_locked_in, create_version
from modelkeep.meta.runs import check_running


def add_version(db: Database, name: str, type_: str | None, new: NewVersion) -> Added:
    if type_ is not None:
        check_type(type_)
    with Write(db) as s:
        q = session_query(s)
        now = clock(s)
        if new.run_id is not None:
            check_running(s, new.run_id)
        art = artifact_locked_in(q, name, create=type_ or "other", now=now)
        if type_ is not None and type_ != art.type:
            raise TypeMismatch(name, art.type, type_)
        # Content equal to a version of this name (the latest or an older one, not deleted)
        # is that version: no second number for the same bytes, and a work tree's lock
        # points back at it.
        same = same_version_in(q, art.id, new)
        if same is not None:
            if new.run_id is not None and new.run_id != same.run_id:
                key = {"run_id": new.run_id, "version_id": same.id}
                if s.get(RunOutputRow, key) is None:
                    s.add(RunOutputRow(**key))
            return same_as(art, same)
        row = create_version(
            s,
            art,
            kind=new.kind,
            digest=new.digest,
            size=new.size,
            file_count=new.file_count,
            mode=new.mode,
            source_name=new.source_name,
            user=new.user,
            message=new.message,
            metadata=new.metadata,
            run_id=new.run_id,
            host=new.host,
            store_id=new.store_id,
            now=now,
        )
        return Added(version_of(art, row), created=True)
