"""Moving packs and indexes between stores; backends come from fsspec, imported lazily."""

from modelkeep.remotes.backend import Remote
from modelkeep.remotes.urls import SCHEMES, RemoteSpec, Scheme, parse_url, require_backend

__all__ = ["SCHEMES", "Remote", "RemoteSpec", "Scheme", "parse_url", "require_backend"]
