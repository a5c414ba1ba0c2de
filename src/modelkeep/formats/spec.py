"""What a model version records about itself: one JSON document, kept in its metadata.

The document is read back from the database, which a hostile or careless hand can edit
(a row changed in SQL, or `add --meta model=…` before that key was reserved). So reading
checks every field's type and shape, and says in one line which one is wrong, before a
loader sees it: a loader may then index and join without fear of KeyError or a path that
leaves the stored folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from modelkeep.errors import ModelSpecInvalid

MODEL_KEY = "model"  # the version metadata key that holds the spec
SPEC_FILE = "MODEL.json"  # the same spec, inside the stored folder, so a copy explains itself
EXAMPLE_FILE = "input_example.json"

_T = TypeVar("_T")
_SEGMENT = re.compile(r"[^/\\\x00]+")
_SIGNATURE_TYPES = ("table", "tensor", "tensors", "text")


@dataclass(frozen=True, slots=True)
class Saved:
    """What a format wrote into the model folder."""

    path: str  # the payload, relative to the folder
    modules: tuple[str, ...]  # import names of the libraries that wrote it (and load it)
    info: dict[str, Any] = field(default_factory=dict)  # format-specific, JSON values


@dataclass(frozen=True, slots=True)
class ModelSpec:
    format: str
    path: str
    object: str  # "module.QualName" of the logged object (or "path")
    libraries: dict[str, str]  # import name -> version that wrote it
    requirements: tuple[str, ...]  # "distribution==version", what loading needs
    python: str
    signature: dict[str, Any] | None = None
    example: str | None = None  # file of the stored input example
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "object": self.object,
            "libraries": dict(sorted(self.libraries.items())),
            "requirements": list(self.requirements),
            "python": self.python,
            "signature": self.signature,
            "example": self.example,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, doc: Any, ref: str = "this version") -> ModelSpec:
        """Parse a stored spec, refusing (one line, naming the field) any other shape."""
        if not isinstance(doc, dict):
            raise ModelSpecInvalid(ref, "the record", f"is a {_kind(doc)}, not an object")
        get = _Fields(doc, ref, "")
        libraries = get.value("libraries", dict, {})
        requirements = get.value("requirements", list, [])
        spec = cls(
            format=get.value("format", str),
            path=relative_path(get.value("path", str), ref, "path"),
            object=get.value("object", str, ""),
            libraries={k: _typed(v, str, ref, f"libraries[{k!r}]") for k, v in libraries.items()},
            requirements=tuple(
                _typed(r, str, ref, f"requirements[{i}]") for i, r in enumerate(requirements)
            ),
            python=get.value("python", str, ""),
            signature=_signature(get.optional("signature", dict), ref),
            example=_example(get.optional("example", str), ref),
            info=get.value("info", dict, {}),
        )
        return spec

    def info_field(self, key: str, kind: type[_T], default: _T, ref: str) -> _T:
        """A format-specific field, type-checked like the rest."""
        return _Fields(self.info, ref, "info.").value(key, kind, default)


@dataclass(frozen=True, slots=True)
class LoadContext:
    ref: str  # for messages
    trust: bool  # run code a pickle names; trust every type
    trusted_types: frozenset[str]  # extra types skops may build; classes torch may import


_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Fields:
    doc: Mapping[str, Any]
    ref: str
    prefix: str

    def value(self, key: str, kind: type[_T], default: _T = _MISSING) -> _T:
        if key not in self.doc or (self.doc[key] is None and default is not _MISSING):
            if default is _MISSING:
                raise ModelSpecInvalid(self.ref, self.prefix + key, "is missing")
            return default
        return _typed(self.doc[key], kind, self.ref, self.prefix + key)

    def optional(self, key: str, kind: type[_T]) -> _T | None:
        if self.doc.get(key) is None:
            return None
        return _typed(self.doc[key], kind, self.ref, self.prefix + key)


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "text", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "value")


def _typed(value: Any, kind: type[_T], ref: str, where: str) -> _T:
    # bool is an int in Python, never in a record: true is not a count
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        want = {dict: "an object", list: "a list", str: "text", bool: "true or false"}
        raise ModelSpecInvalid(
            ref, where, f"is a {_kind(value)}, expected {want.get(kind, kind.__name__)}"
        )
    return value


def relative_path(path: str, ref: str, where: str) -> str:
    """A path inside the stored folder: relative, '/'-separated, no '..' or empty parts."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or not _SEGMENT.fullmatch(p) for p in parts):
        raise ModelSpecInvalid(ref, where, f"{path!r} is not a path inside the stored folder")
    return path


def _example(path: str | None, ref: str) -> str | None:
    return None if path is None else relative_path(path, ref, "example")


def _signature(sig: dict[str, Any] | None, ref: str) -> dict[str, Any] | None:
    """The signature shapes signature.describe writes, nothing else."""
    if sig is None:
        return None
    get = _Fields(sig, ref, "signature.")
    kind = get.value("type", str)
    if kind not in _SIGNATURE_TYPES:
        raise ModelSpecInvalid(ref, "signature.type", f"{kind!r} is not one of table, tensor, …")
    if kind == "table":
        for i, column in enumerate(get.value("columns", list)):
            where = f"signature.columns[{i}]"
            col = _Fields(_typed(column, dict, ref, where), ref, where + ".")
            col.value("name", str)
            col.value("dtype", str)
    elif kind == "tensor":
        _tensor(sig, ref, "signature.")
    elif kind == "tensors":
        for name, inner in get.value("inputs", dict).items():
            where = f"signature.inputs[{name!r}]"
            _tensor(_typed(inner, dict, ref, where), ref, where + ".")
    return sig


def _tensor(sig: dict[str, Any], ref: str, prefix: str) -> None:
    get = _Fields(sig, ref, prefix)
    get.value("dtype", str)
    for i, dim in enumerate(get.value("shape", list)):
        _typed(dim, int, ref, f"{prefix}shape[{i}]")
