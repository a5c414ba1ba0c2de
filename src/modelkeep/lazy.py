"""Modules imported on first use, so a command pays only for the code it runs.

`Repo` composes every operation, but `modelkeep ls` needs the metadata and none of
packaging, cards, sync or the work tree. A module that names its dependencies under
`if TYPE_CHECKING:` (so the type checker and the import contracts still see them) and
binds `LazyModule`s at run time imports each on its first attribute access.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module; the first attribute read imports it. Attributes are looked
    up on the real module every time, so a test that patches the module is seen."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def _module(self) -> ModuleType:
        # import_module, not sys.modules: while one thread runs a module's first import,
        # sys.modules already holds it half made; import_module waits for it to finish.
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


class _Package(ModuleType):
    """A package whose offered names are imported on first use (`package`)."""

    _lazy_names: Mapping[str, tuple[str, str]]

    def __getattr__(self, name: str) -> Any:
        try:
            module, attr = self._lazy_names[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{self.__name__}.{module}"), attr)
        vars(self)[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._lazy_names and isinstance(value, ModuleType):
            return  # the import system naming a submodule: the offered name keeps its value
        super().__setattr__(name, value)


def package(name: str, offered: Mapping[str, tuple[str, str]]) -> None:
    """Make package name offer each name of offered (name -> (submodule, attribute)) on
    first use (PEP 562), as if its `__init__` imported them all: `modelkeep ls` then
    imports neither SQLAlchemy with `modelkeep.meta` nor compression with `modelkeep.store`.

    Where an offered name is also a submodule's (`meta.events`, `store.gc`), the name keeps
    the offered value when that submodule is imported later, as it does in a package whose
    `__init__` imported everything at once."""
    module = sys.modules[name]
    vars(module)["_lazy_names"] = dict(offered)
    module.__class__ = _Package
