"""scikit-learn: skops by default (loads only types it trusts); pickle and joblib on request.

skops refuses to build a type it does not know to be harmless, and says which ones with
`get_untrusted_types`. Beyond skops' own list we accept, without being asked:

- a scikit-learn estimator class, verified by resolving the name to the class object (a
  subclass of `BaseEstimator` defined in sklearn, found without importing anything outside
  sklearn), and only where skops builds it without calling anything (`ObjectNode`: a bare
  instance whose attributes are set; `TypeNode`: the class itself; `CachedNode`: a second
  reference to an object built already);
- a few named sklearn internals that fitted trees need, each in the one node kind skops
  uses for it.

Never a prefix: `sklearn.utils._testing.check_output` is in sklearn but is a function, and
a `ConstructorFromReduceNode` or `FunctionNode` calls whatever it names. Anything else loads
only if the user lists its exact name (`trust=[...]`, `trusted_types`) or trusts the file.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelkeep.errors import ModelLoadFailed, UntrustedModel
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

_FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}

# Node kinds that build a verified estimator class without calling it or anything else.
_SAFE_FOR_ESTIMATORS = frozenset({"ObjectNode", "TypeNode", "CachedNode"})

# sklearn internals that fitted trees hold, by exact name, each with the node kinds skops
# writes for it. skops leaves them off its own list because a crafted file can hold node
# indices that crash the process at predict time (no code of the file's choosing runs).
_INTERNALS: dict[str, frozenset[str]] = {
    "sklearn.tree._tree.Tree": frozenset({"TreeNode", "CachedNode"}),
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": frozenset(
        {"ObjectNode", "CachedNode"}
    ),
}

_MODULE = re.compile(r"sklearn(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SCHEMA_LIMIT = 256 * 2**20  # a schema is structure only; arrays are separate members


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    path = folder / _FILES[fmt]
    modules: tuple[str, ...] = ("sklearn",) if "sklearn" in type(obj).__module__ else ()
    if fmt == "skops":
        need("skops.io", "skops", fmt).dump(obj, path)
        _normalise(path)
        modules += ("skops",)
    elif fmt == "joblib":
        need("joblib", "joblib", fmt).dump(obj, path)
        modules += ("joblib",)
    else:
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Saved(path.name, modules)


def _normalise(path: Path) -> None:
    """Rewrite a skops file so the same fitted estimator always gives the same bytes.

    skops names each array member and each node's `__id__` after `id()` of the Python
    object, a memory address that differs from one dump to the next, and stamps every
    member with the time of writing. Renumbering those ids in the order the schema first
    mentions them (the order skops walks the object) and writing every member with a fixed
    time and the same compression leaves a file skops loads the same way, whose bytes
    depend only on the estimator, so an unchanged retrain dedups to the version it equals.
    """
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
        methods = {info.filename: info.compress_type for info in archive.infolist()}
    schema = json.loads(members["schema.json"])
    numbers: dict[int, int] = {}

    def number(old: int) -> int:
        return numbers.setdefault(old, len(numbers))

    renamed: dict[str, str] = {}
    stack: list[Any] = [schema]
    while stack:  # depth-first in document order: the order the keys were written
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("__id__"), int) and not isinstance(item["__id__"], bool):
                item["__id__"] = number(item["__id__"])
            file = item.get("file")
            if isinstance(file, str) and file in members:
                stem, dot, ext = file.partition(".")
                new = f"{number(int(stem))}{dot}{ext}" if stem.isdigit() else file
                item["file"] = renamed.setdefault(file, new)
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as out:
        _member(out, "schema.json", json.dumps(schema, indent=2).encode(), methods["schema.json"])
        for old, new in sorted(renamed.items(), key=lambda pair: _member_order(pair[1])):
            _member(out, new, members[old], methods[old])
        for name in sorted(set(members) - set(renamed) - {"schema.json"}):  # no node names them
            _member(out, name, members[name], methods[name])
    tmp.replace(path)


def _member(archive: zipfile.ZipFile, name: str, data: bytes, method: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _member_order(name: str) -> tuple[int, str]:
    stem = name.partition(".")[0]
    return (int(stem) if stem.isdigit() else -1, name)


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    path = folder / spec.path
    if spec.format != "skops":
        if not ctx.trust:
            raise UntrustedModel(
                ctx.ref,
                f"it is stored with {spec.format}, and unpickling runs whatever code the "
                "file names",
            )
        if spec.format == "joblib":
            return need("joblib", "joblib", spec.format).load(path)
        with path.open("rb") as f:
            return pickle.load(f)
    sio = need("skops.io", "skops", spec.format)
    unknown = sio.get_untrusted_types(file=path)
    if not ctx.trust:
        refused = _refused(unknown, _node_kinds(path, ctx.ref), ctx.trusted_types)
        if refused:
            raise UntrustedModel(
                ctx.ref, f"it holds types skops does not trust: {', '.join(refused)}", refused
            )
    return sio.load(path, trusted=unknown)


def _refused(
    unknown: list[str], kinds: dict[str, set[tuple[str, str, str]]], listed: frozenset[str]
) -> list[str]:
    """The untrusted names that neither the user listed nor we can vouch for."""
    return sorted(t for t in unknown if t not in listed and not _vouched(t, kinds.get(t, set())))


def _vouched(name: str, nodes: set[tuple[str, str, str]]) -> bool:
    """True if every node that builds `name` is one we know to call nothing arbitrary.

    nodes holds (module, class, node kind) as the schema gives them; a name skops reports
    that no node carries (a bound method's "Class.method", say) is never vouched for.
    """
    if not nodes:
        return False
    kinds = {kind for _, _, kind in nodes}
    if name in _INTERNALS:
        return kinds <= _INTERNALS[name]
    return kinds <= _SAFE_FOR_ESTIMATORS and all(_is_estimator(m, c) for m, c, _ in nodes)


def _is_estimator(module_name: str, class_name: str) -> bool:
    """Whether module_name.class_name is a scikit-learn estimator class.

    Resolved as skops will (import the module, take the attribute), but only for a module
    under sklearn, so no name in a file makes us import code from anywhere else.
    """
    if not _MODULE.fullmatch(module_name) or not class_name.isidentifier():
        return False
    try:
        base = importlib.import_module("sklearn.base").BaseEstimator
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        found = inspect.getattr_static(module, class_name)
    except Exception:  # not importable here, or no such attribute: not vouched for
        return False
    defined_in = getattr(found, "__module__", "") or ""
    return (
        inspect.isclass(found)
        and issubclass(found, base)
        and (defined_in == "sklearn" or defined_in.startswith("sklearn."))
    )


def _node_kinds(path: Path, ref: str) -> dict[str, set[tuple[str, str, str]]]:
    """For each "module.Class" in the file's schema: the (module, class, node kind) that name
    it. Read from schema.json, the same document skops builds its node tree from."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("schema.json")
            if info.file_size > _SCHEMA_LIMIT:
                raise ModelLoadFailed(ref, "skops", f"schema.json is {info.file_size} bytes")
            schema = json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadFailed(ref, "skops", f"not a readable skops file ({exc})") from exc
    found: dict[str, set[tuple[str, str, str]]] = {}
    for module, cls, kind in _nodes(schema):
        found.setdefault(f"{module}.{cls}", set()).add((module, cls, kind))
    return found


def _nodes(doc: Any) -> Iterator[tuple[str, str, str]]:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module, cls = item.get("__module__"), item.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                kind = item.get("__loader__")
                yield module, cls, kind if isinstance(kind, str) else "?"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
