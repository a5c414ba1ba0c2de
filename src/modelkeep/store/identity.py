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
import uuid
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


STORE_ID_FILE = "store-id"


def store_id(store_root: Path) -> str:
    """This store's own id: random, made on first use, kept in the store folder. Versions
    record it, so one added by another store (on this machine or another) is known as
    such, even in a shared database."""
    path = store_root / STORE_ID_FILE
    try:
        found = path.read_text("ascii").strip()
    except FileNotFoundError:
        found = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise BadStoreBinding(str(path), "unreadable store id") from exc
    if len(found) == 32 and all(c in "0123456789abcdef" for c in found):
        return found
    if found:
        raise BadStoreBinding(str(path), "not a store id (32 hex digits)")
    made = uuid.uuid4().hex
    fd, tmp = tempfile.mkstemp(dir=store_root, prefix=".store-id-")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(made + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # first writer wins; a racing one reads the winner's id
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return store_id(store_root)


def has_packs(packs_dir: Path) -> bool:
    """Whether the store holds any pack (sealed or not): something a wrong gc could lose."""
    return next(iter(packs_dir.glob("pack-*")), None) is not None
