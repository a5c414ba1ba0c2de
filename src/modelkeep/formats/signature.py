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

_NOT_STORABLE = "input_example cannot be stored"


def _tensor(value: Any, where: str) -> tuple[dict[str, Any], Any]:
    """(signature, JSON data) of an array-like: numpy, torch, or nested lists."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        shape, data = list(value.shape), value.detach().cpu().tolist()
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
    return sig, data


def _table(frame: Any) -> tuple[dict[str, Any], Any]:
    columns = [{"name": str(name), "dtype": str(dtype)} for name, dtype in frame.dtypes.items()]
    try:
        data = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{_NOT_STORABLE}: {exc}") from exc
    return {"type": "table", "columns": columns}, data


def describe(example: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(signature, stored example) of an input example."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(example, pandas.DataFrame):
        sig, data = _table(example)
    elif pandas is not None and isinstance(example, pandas.Series):
        sig, data = _table(example.to_frame())
    elif isinstance(example, str) or (
        isinstance(example, list | tuple) and example and all(isinstance(x, str) for x in example)
    ):
        sig, data = {"type": "text"}, example if isinstance(example, str) else list(example)
    elif isinstance(example, Mapping):
        if not example or not all(isinstance(k, str) for k in example):
            raise InvalidArgument(f"{_NOT_STORABLE}: a dict example needs text keys")
        parts = {k: _tensor(v, f"key {k!r}") for k, v in example.items()}
        sig = {"type": "tensors", "inputs": {k: s for k, (s, _) in parts.items()}}
        data = {k: d for k, (_, d) in parts.items()}
    else:
        sig, data = _tensor(example, f"a {type(example).__name__}")
    try:
        json.dumps(data, allow_nan=True, default=_refuse)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{_NOT_STORABLE}: {exc}") from exc
    return sig, {"signature": sig, "data": data}


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
