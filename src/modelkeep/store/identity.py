"""Which metadata database a store belongs to, written in the store folder itself.

A store's packs mean nothing without the versions that name them: `gc` run against
another database (a forgotten MODELKEEP_DATABASE_URL, an empty `meta.sqlite`) would find
every object unreferenced and delete it. So the store keeps the id of its database
(made by the database's migration, shared by every machine of a team) in a small file,
written atomically; the repository compares it before anything may delete or add.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelkeep.errors import BadStoreBinding

FILE = "database.json"


@dataclass(frozen=True, slots=True)
class Binding:
    database_id: str
    database: str  # where the database was last opened from, password hidden: for messages


def path_of(store_root: Path) -> Path:
    return store_root / FILE


def read(store_root: Path) -> Binding | None:
    """The store's database, or None for a store made before stores knew it."""
    path = path_of(store_root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadStoreBinding(str(path), exc.strerror or str(exc)) from exc
    try:
        doc = json.loads(data.decode("utf-8"))
        found = Binding(str(doc["database_id"]), str(doc.get("database", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadStoreBinding(str(path), "not a modelkeep store binding") from exc
    if not found.database_id:
        raise BadStoreBinding(str(path), "it names no database")
    return found


def write(store_root: Path, binding: Binding) -> None:
    """Write through a fsynced temporary sibling and a rename: never a half file."""
    text = json.dumps({"database_id": binding.database_id, "database": binding.database})
    fd, tmp = tempfile.mkstemp(dir=store_root, prefix=".database-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path_of(store_root))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def has_packs(packs_dir: Path) -> bool:
    """Whether the store holds any pack (sealed or not): something a wrong gc could lose."""
    return next(iter(packs_dir.glob("pack-*")), None) is not None
