"""Modules imported on first use, so a command pays only for the code it runs.

`Repo` composes every operation, but `modelkeep ls` needs the metadata and none of
packaging, cards, sync or the work tree. A module that names its dependencies under
`if TYPE_CHECKING:` (so the type checker and the import contracts still see them) and
binds `LazyModule`s at run time imports each on its first attribute access.
"""

from __future__ import annotations

import importlib
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
