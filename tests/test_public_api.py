"""The package's public names: `__all__`, the lazy-import table and the type-checking
imports agree, and every public name resolves to what the type checker sees."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import modelkeep

INIT = Path(modelkeep.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module of every import under `if TYPE_CHECKING:` in __init__.py."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                for alias in imp.names:
                    found[alias.asname or alias.name] = imp.module
    return found


def test_all_is_sorted_and_matches_the_type_checking_imports() -> None:
    names = [n for n in modelkeep.__all__ if n != "__version__"]
    assert modelkeep.__all__ == sorted(modelkeep.__all__)
    assert set(names) == set(_type_checking_imports())


def test_lazy_table_points_where_the_type_checker_looks() -> None:
    checked = _type_checking_imports()
    where = modelkeep._WHERE
    assert set(where) <= set(checked), set(where) - set(checked)
    for name, module in checked.items():
        assert where.get(name, "modelkeep.repo") == module, name
        assert getattr(modelkeep, name) is getattr(importlib.import_module(module), name)
