"""The parts every operation below Repo works on: settings, database, object store, actor.

Sync, the registry, the work tree, model packaging and cards take a `Parts` (and resolved
versions), never a `Repo`: `Repo` composes them, and nothing below it reaches back up.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelkeep import config, meta

if TYPE_CHECKING:
    from modelkeep.store import ObjectStore

_OPENING = threading.Lock()


@dataclass(eq=False)
class Parts:
    settings: config.Settings
    db: meta.Database
    # The object store, opened on first use (from settings.store_dir) unless given: a
    # command that reads only metadata never imports or opens it.
    opened_store: ObjectStore | None = field(default=None, repr=False)
    # The authenticated account a server request acts as; None: this machine's user.
    actor: str | None = None
    # A server's client: the server's URL (the store and database are its local cache).
    origin: str | None = None

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def store(self) -> ObjectStore:
        if self.opened_store is None:
            with _OPENING:  # a server's first requests may all ask at once: one store
                if self.opened_store is None:
                    from modelkeep.store.objects import ObjectStore

                    self.opened_store = ObjectStore(self.settings.store_dir)
        return self.opened_store

    @functools.cached_property
    def store_id(self) -> str:
        """This store's id, recorded on the versions it adds."""
        from modelkeep.store.identity import store_id

        return store_id(self.store.root)

    @functools.cached_property
    def user(self) -> str:
        """Who acts: the server's authenticated account; locally MODELKEEP_USER, else Git's
        user.name and email, else the OS user."""
        if self.actor is not None:
            return self.actor
        from modelkeep.capture.git import user_identity

        return self.settings.user or user_identity(self.root) or config.os_user()

    def active_run(self, run_id: str | None) -> str | None:
        """run_id, or by default the run active in this process (or the `modelkeep run`
        around it) for this repository."""
        return run_id if run_id is not None else config.active_run(self.root, self.origin)
