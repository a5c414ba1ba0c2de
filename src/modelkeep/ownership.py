"""A store knows its database: nothing deletes or adds against another one.

The store records the id of its metadata database (`store/identity.py`; the id is made by
the database's migration and shared by every machine of a team, each with its own store).
`gc`, `cache prune`, `fsck` and `add` call `require_own` first:

- a store holding no pack has nothing to lose: it (re)binds to whatever database is open;
- a store holding packs must name the open database, else the command is refused, naming
  both (a forgotten MODELKEEP_DATABASE_URL, an empty `meta.sqlite`, another team's);
- a store made before stores knew their database (packs, no binding) adopts the open
  database only if that database has versions whose content is here; a database with no
  versions, or none of whose versions are here, is refused.

Opening a repository binds a store that has no binding yet, under the same rules, so the
binding is in place before it is ever needed; it never refuses (reading is harmless).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep import meta
from modelkeep.errors import BadStoreBinding, WrongDatabase
from modelkeep.meta.identity import database_id, version_count
from modelkeep.refs import content_bytes
from modelkeep.store import identity
from modelkeep.store.identity import Binding

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from modelkeep.store import ObjectStore

_STEP = (
    "set MODELKEEP_DATABASE_URL (or database_url in .modelkeep/config.toml) to the "
    "database this store belongs to"
)


def bind(store_dir: Path, db: meta.Database, open_store: Callable[[], ObjectStore]) -> None:
    """Record the open database in a store that records none yet, where that is safe. A
    store already bound is not opened (open_store is not called): a metadata command never
    opens it."""
    try:
        if identity.read(store_dir) is not None:
            return
    except BadStoreBinding:
        return  # reading stays possible; require_own refuses what could lose data
    store = open_store()
    current = database_id(db)
    if not identity.has_packs(store.packs_dir) or _holds_some_version(store, db):
        identity.write(store.root, Binding(current, db.display_url))


def require_own(store: ObjectStore, db: meta.Database) -> None:
    """Raise WrongDatabase unless db is the database store's packs were added with."""
    current = database_id(db)
    bound = identity.read(store.root)
    if not identity.has_packs(store.packs_dir):
        if bound is None or bound.database_id != current:
            identity.write(store.root, Binding(current, db.display_url))
        return
    if bound is not None and bound.database_id == current:
        return
    count = version_count(db)
    held = "no versions" if count == 0 else f"{count} version(s)"
    opened = f"{db.display_url} (database {current[:12]}, {held})"
    where = str(store.root)
    if bound is not None:
        last = f" (last opened as {bound.database})" if bound.database else ""
        raise WrongDatabase(
            where, f"belongs to metadata database {bound.database_id[:12]}{last}", opened, _STEP
        )
    if count and _holds_some_version(store, db):
        identity.write(store.root, Binding(current, db.display_url))  # an older store
        return
    raise WrongDatabase(
        where,
        "holds packs and records no database yet (made before stores knew theirs), and "
        "holds the content of none of the open database's versions",
        opened,
        _STEP,
    )


def _holds_some_version(store: ObjectStore, db: meta.Database) -> bool:
    return any(store.has(content_bytes(v.digest)) for v in meta.all_versions(db))


def move(store: ObjectStore, db: meta.Database) -> None:
    """Bind store to db, whatever it recorded before: only `modelkeep migrate` does this,
    once db holds a checked copy of every record of the store's old database. From then
    on gc, prune, fsck and add refuse the old database with this store."""
    identity.write(store.root, Binding(database_id(db), db.display_url))
