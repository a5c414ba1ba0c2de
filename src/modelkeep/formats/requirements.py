"""Which libraries wrote a model and what loading it needs, read from this environment."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import sys
from collections.abc import Iterable
from typing import Any


def version_of(module: str) -> str | None:
    """The installed version of an importable library, without importing it if we can."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, "__version__", None) if loaded else None
    if isinstance(found, str):
        return found
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        found = getattr(importlib.import_module(module), "__version__", None)
    except ImportError:
        return None
    return found if isinstance(found, str) else None


def libraries(modules: Iterable[str]) -> dict[str, str]:
    return {m: v for m in sorted(set(modules)) if (v := version_of(m)) is not None}


def object_modules(obj: Any) -> set[str]:
    """Top-level packages the object's classes come from (a pipeline's steps included)."""
    found = {type(obj).__module__}
    get_params = getattr(obj, "get_params", None)
    if callable(get_params):
        with contextlib.suppress(Exception):  # a foreign get_params: own module is enough
            found |= {type(v).__module__ for v in get_params(deep=True).values()}
    tops = {m.partition(".")[0] for m in found}
    return {m for m in tops if m not in sys.stdlib_module_names and m != "__main__"}


def requirements(modules: Iterable[str]) -> tuple[str, ...]:
    """`distribution==version` for each module that an installed distribution provides."""
    by_module = importlib.metadata.packages_distributions()
    pins = set()
    for module in set(modules):
        for dist in by_module.get(module, []):
            try:
                pins.add(f"{dist}=={importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                continue
    return tuple(sorted(pins, key=str.lower))


def _major(version: str) -> tuple[int, ...]:
    """The part that signals breaking changes: the major number, or 0.MINOR below 1.0."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return (parts[0],) if parts[0] > 0 else tuple(parts)


def mismatches(recorded: dict[str, str]) -> list[tuple[str, str, str]]:
    """(library, recorded, installed) where the major versions differ."""
    out = []
    for module, wrote in sorted(recorded.items()):
        here = version_of(module)
        if here is not None and _major(here) != _major(wrote):
            out.append((module, wrote, here))
    return out
