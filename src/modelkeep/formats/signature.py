"""An input example, and the signature inferred from it: what the model expects.

Tables give column names and dtypes; arrays and tensors give dtype and shape (the first
dimension, the batch, is -1); dicts give one of those per key; text gives "text". The
example itself is stored as JSON, and anything that cannot be is an error before storing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from modelkeep.errors import InvalidArgument
from modelkeep.formats import examples

_NOT_STORABLE = "input_example cannot be stored"


def _tensor(value: Any, where: str) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(signature, JSON data, what rebuilds it) of an array-like: numpy, torch, nested lists."""
    torch = sys.modules.get("torch")
    kind = "ndarray"
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        shape, data, kind = list(value.shape), value.detach().cpu().tolist(), "Tensor"
    else:
        try:
            import numpy as np
        except ImportError:
            raise InvalidArgument(f"{_NOT_STORABLE}: {where} needs numpy") from None
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"{_NOT_STORABLE}: {where}: {exc}") from exc
        if array.dtype.hasobject or array.dtype.kind in "cVMm":
            raise InvalidArgument(
                f"{_NOT_STORABLE}: {where} has dtype {array.dtype}; use numbers, booleans or text"
            )
        dtype = "str" if array.dtype.kind in "US" else str(array.dtype)
        shape, data = list(array.shape), array.tolist()
    sig = {"type": "tensor", "dtype": dtype, "shape": [-1, *shape[1:]] if shape else []}
    return sig, data, {"type": kind, "dtype": dtype, "shape": shape}


def _table(frame: Any) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    columns = [{"name": str(name), "dtype": str(dtype)} for name, dtype in frame.dtypes.items()]
    if not all(isinstance(c, str | int) and not isinstance(c, bool) for c in frame.columns):
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    try:
        text = frame.to_json(orient="split", index=False, date_format="iso", date_unit="ns")
        data = json.loads(text)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{_NOT_STORABLE}: {exc}") from exc
    examples.exact_times(frame, data["data"])
    return {"type": "table", "columns": columns}, data, examples.frame_fields(frame)


def describe(example: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(signature, stored example) of an input example.

    The stored example keeps the values under "data" as earlier versions wrote them, and
    adds what rebuilds the object it was given (`examples.decode` reads it back)."""
    pandas = sys.modules.get("pandas")
    fields: dict[str, Any]
    if pandas is not None and isinstance(example, pandas.DataFrame):
        sig, data, fields = _table(example)
    elif pandas is not None and isinstance(example, pandas.Series):
        sig, data, fields = _table(example.to_frame())
        name = example.name
        fields |= {"type": "Series", "name": name if isinstance(name, str | int) else None}
    elif isinstance(example, str) or (
        isinstance(example, list | tuple) and example and all(isinstance(x, str) for x in example)
    ):
        sig, data = {"type": "text"}, example if isinstance(example, str) else list(example)
        fields = {"type": "text"}
    elif isinstance(example, Mapping):
        if not example or not all(isinstance(k, str) for k in example):
            raise InvalidArgument(f"{_NOT_STORABLE}: a dict example needs text keys")
        parts = {k: _tensor(v, f"key {k!r}") for k, v in example.items()}
        sig = {"type": "tensors", "inputs": {k: s for k, (s, _, _) in parts.items()}}
        data = {k: d for k, (_, d, _) in parts.items()}
        fields = {"type": "dict", "arrays": {k: f for k, (_, _, f) in parts.items()}}
    else:
        sig, data, fields = _tensor(example, f"a {type(example).__name__}")
        if isinstance(example, list | tuple):
            fields = {"type": "list"}
    try:
        json.dumps(data, allow_nan=True, default=_refuse)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{_NOT_STORABLE}: {exc}") from exc
    return sig, {"signature": sig, **fields, "data": data}


def _refuse(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def summary(sig: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(name, type) rows for a card or a listing."""
    if not sig:
        return []
    if sig["type"] == "table":
        return [(c["name"], c["dtype"]) for c in sig["columns"]]
    if sig["type"] == "tensors":
        return [(k, _shape(s)) for k, s in sig["inputs"].items()]
    if sig["type"] == "text":
        return [("input", "text")]
    return [("input", _shape(sig))]


def _shape(sig: dict[str, Any]) -> str:
    dims = ", ".join("N" if d == -1 else str(d) for d in sig["shape"])
    return f"{sig['dtype']} [{dims}]"
