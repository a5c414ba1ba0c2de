"""An input example back as the type it was given: a DataFrame, a Series, an array, a
torch tensor, a dict of arrays, a list, text.

`input_example.json` keeps the values as `data` (a table in pandas' "split" layout, an
array as nested lists) and, beside them, what rebuilds the object: its `type` and, for a
table, each column's dtype, a category column's categories and a simple index. Files
written before that was recorded have only the signature; they come back from it as a
DataFrame or an array.

The file is read from a store whose rows and bytes someone may have edited, so decoding
never trusts it: dtype names come from a fixed list (never `np.dtype(anything)`), an array
is built from its values and its shape compared after (never allocated from a declared
shape), every value is checked against its column's type, and each failure is one
`InputExampleInvalid` line. Nothing is unpickled: it is JSON throughout.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from modelkeep.errors import InputExampleInvalid

FILE_LIMIT = 64 * 2**20  # an example is a few rows; a larger file is not one log_model wrote

_NUMPY = {
    "bool",
    *(f"int{b}" for b in (8, 16, 32, 64)),
    *(f"uint{b}" for b in (8, 16, 32, 64)),
    "float16",
    "float32",
    "float64",
}
_NULLABLE = {
    "boolean",
    *(f"Int{b}" for b in (8, 16, 32, 64)),
    *(f"UInt{b}" for b in (8, 16, 32, 64)),
    "Float32",
    "Float64",
}
_TEXT = {"str", "string", "object"}
_DATETIME = re.compile(r"datetime64\[(s|ms|us|ns)(?:, ([A-Za-z][A-Za-z0-9_+\-/]{0,63}))?\]")
_TORCH = {*_NUMPY, "bfloat16"}


def column_dtypes() -> str:
    return "bool, int*/uint*/float*, Int*/Float*/boolean, str, string, object, category, datetime64"


def table_dtype(name: str) -> bool:
    """Whether a column dtype is one an example records and rebuilds."""
    return (
        name in _NUMPY
        or name in _NULLABLE
        or name in _TEXT
        or name == "category"
        or bool(_DATETIME.fullmatch(name))
    )


# -- writing ---------------------------------------------------------------------------------


def frame_fields(frame: Any) -> dict[str, Any]:
    """What rebuilds a DataFrame beyond its values: dtypes, categories, a simple index."""
    dtypes, categories = [], {}
    for i, (_, dtype) in enumerate(frame.dtypes.items()):
        name = str(dtype)
        if name == "category":
            cats = frame.iloc[:, i].cat
            categories[str(i)] = {
                "values": cats.categories.tolist(),
                "ordered": bool(cats.ordered),
            }
        dtypes.append(name if table_dtype(name) else "object")
    fields: dict[str, Any] = {"type": "DataFrame", "dtypes": dtypes, "index": _index(frame.index)}
    if categories:
        fields["categories"] = categories
    return fields


def exact_times(frame: Any, rows: list[list[Any]]) -> None:
    """Put each time of a datetime column into rows as an ISO text to the nanosecond, with
    its offset: pandas' to_json stops at the microsecond."""
    for i, (_, dtype) in enumerate(frame.dtypes.items()):
        if _DATETIME.fullmatch(str(dtype)):
            for row, value in zip(rows, iso_times(frame.iloc[:, i]), strict=True):
                row[i] = value


def iso_times(values: Any) -> list[str | None]:
    pandas = sys.modules["pandas"]
    return [None if pandas.isna(t) else t.isoformat() for t in values]


def _index(index: Any) -> dict[str, Any] | None:
    """A one-level index of numbers, text or times; a RangeIndex as its bounds; None for
    the default 0..n-1 and for anything else (a MultiIndex comes back as 0..n-1)."""
    pandas = sys.modules["pandas"]
    name = index.name if isinstance(index.name, str | int) or index.name is None else None
    if isinstance(index, pandas.RangeIndex):
        if index.start == 0 and index.step == 1 and name is None:
            return None
        return {"range": [index.start, index.stop, index.step], "name": name}
    dtype = str(index.dtype)
    if isinstance(index, pandas.MultiIndex) or not table_dtype(dtype) or dtype == "category":
        return None
    if _DATETIME.fullmatch(dtype):
        values = iso_times(index)
    else:
        values = json.loads(pandas.Series(index).to_json(orient="values"))
    return {"values": values, "dtype": dtype, "name": name}


# -- reading ---------------------------------------------------------------------------------


class _Reader:
    """Decodes one stored example, every failure an InputExampleInvalid naming the file."""

    def __init__(self, ref: str, file: str) -> None:
        self.ref = ref
        self.file = file

    def fail(self, why: str) -> InputExampleInvalid:
        return InputExampleInvalid(self.ref, self.file, why)

    def decode(self, doc: Any, sig: Mapping[str, Any] | None) -> Any:
        if not isinstance(doc, dict) or "data" not in doc:
            raise self.fail("it has no 'data' field")
        data, kind = doc["data"], doc.get("type")
        if kind is None:  # written before the type was recorded: rebuild from the signature
            return self._from_signature(data, sig)
        if kind == "DataFrame":
            return self.frame(data, doc)
        if kind == "Series":
            frame = self.frame(data, doc)
            if frame.shape[1] != 1:
                raise self.fail("a Series example holds one column")
            series = frame.iloc[:, 0]
            name = doc.get("name")
            return series.rename(name if isinstance(name, str | int) else None)
        if kind in ("ndarray", "Tensor"):
            return self.array(data, doc, kind)
        if kind == "dict":
            arrays = doc.get("arrays")
            if (
                not isinstance(data, dict)
                or not isinstance(arrays, dict)
                or set(data) != set(arrays)
            ):
                raise self.fail("a dict example needs 'data' and 'arrays' with the same keys")
            return {k: self.array(data[k], self.mapping(arrays[k], k), "ndarray") for k in data}
        if kind == "list":
            if not isinstance(data, list):
                raise self.fail("a list example's data is not a list")
            return data
        if kind == "text":
            if isinstance(data, str) or (
                isinstance(data, list) and all(isinstance(x, str) for x in data)
            ):
                return data
            raise self.fail("a text example is text or a list of text")
        raise self.fail(f"unknown example type {str(kind)[:40]!r}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{where} is not an object")
        return value

    def _from_signature(self, data: Any, sig: Mapping[str, Any] | None) -> Any:
        kind = sig.get("type") if sig else None
        if kind == "table" and sig is not None:
            dtypes = [c["dtype"] if table_dtype(c["dtype"]) else "object" for c in sig["columns"]]
            return self.frame(data, {"dtypes": dtypes})
        if kind == "tensor" and sig is not None:
            return self.array(data, {"dtype": sig["dtype"]}, "ndarray")
        if kind == "tensors" and sig is not None:
            if not isinstance(data, dict):
                raise self.fail("a dict example's data is not an object")
            inputs = sig["inputs"]
            if set(data) != set(inputs):
                raise self.fail("its keys are not the signature's")
            return {k: self.array(data[k], {"dtype": inputs[k]["dtype"]}, "ndarray") for k in data}
        return data  # text, or no signature: the JSON as it is

    # -- arrays ------------------------------------------------------------------------------

    def array(self, data: Any, doc: Mapping[str, Any], kind: str) -> Any:
        import numpy as np

        dtype = doc.get("dtype")
        allowed = _TORCH if kind == "Tensor" else _NUMPY | {"str"}
        if not isinstance(dtype, str) or dtype not in allowed:
            raise self.fail(f"array dtype {str(dtype)[:40]!r} is not one of {sorted(allowed)}")
        leaves, longest = _extent(data)
        if leaves * longest * 4 > FILE_LIMIT:  # numpy gives every text value the longest's width
            raise self.fail(
                f"its {leaves} values with text of up to {longest} characters would take "
                f"{leaves * longest * 4} bytes as an array"
            )
        try:
            values = np.asarray(data)  # built from the values: as large as the file, no more
        except (ValueError, TypeError) as exc:
            raise self.fail(f"the array's values are ragged or mixed ({exc})") from None
        want = "U" if dtype == "str" else "b" if dtype == "bool" else "iu" if "int" in dtype else ""
        ok_kinds = want or "iuf"
        if values.size and values.dtype.kind not in ok_kinds:
            raise self.fail(f"its values are {values.dtype}, not {dtype}")
        shape = doc.get("shape")
        if shape is not None and (not isinstance(shape, list) or list(values.shape) != shape):
            raise self.fail(f"its shape is {shape!r} but its values have {list(values.shape)}")
        if kind == "Tensor":
            torch = _optional("torch")
            if torch is not None:
                return torch.tensor(values.tolist(), dtype=getattr(torch, dtype))
            dtype = "float32" if dtype == "bfloat16" else dtype
        try:
            return values.astype(dtype) if dtype != "str" else values
        except (OverflowError, ValueError) as exc:
            raise self.fail(f"its values do not fit {dtype} ({exc})") from None

    # -- tables ------------------------------------------------------------------------------

    def frame(self, data: Any, doc: Mapping[str, Any]) -> Any:
        pandas = _optional("pandas")
        if pandas is None:
            raise self.fail("rebuilding a table example needs pandas; pip install pandas")
        split = self.mapping(data, "data")
        columns, rows, dtypes = split.get("columns"), split.get("data"), doc.get("dtypes")
        if not isinstance(columns, list) or not isinstance(rows, list):
            raise self.fail("a table's data needs 'columns' and 'data' lists")
        if not isinstance(dtypes, list) or len(dtypes) != len(columns):
            raise self.fail("a table needs one dtype per column")
        if not all(isinstance(c, str | int) and not isinstance(c, bool) for c in columns):
            raise self.fail("a column name is not text or a number")
        if any(not isinstance(r, list) or len(r) != len(columns) for r in rows):
            raise self.fail(f"a row does not have {len(columns)} values")
        categories = doc.get("categories") or {}
        if not isinstance(categories, dict):
            raise self.fail("categories is not an object")
        built = {}
        for i, (name, dtype) in enumerate(zip(columns, dtypes, strict=True)):
            values = [r[i] for r in rows]
            built[i] = self.column(values, dtype, categories.get(str(i)), f"column {name!r}")
        frame = pandas.DataFrame(built) if built else pandas.DataFrame(index=range(len(rows)))
        frame.index = self.index(doc.get("index"), len(rows))  # set, not aligned to
        frame.columns = pandas.Index(columns)
        return frame

    def index(self, doc: Any, rows: int) -> Any:
        pandas = sys.modules["pandas"]
        if doc is None:
            return pandas.RangeIndex(rows)
        doc = self.mapping(doc, "index")
        name = doc.get("name")
        if name is not None and (not isinstance(name, str | int) or isinstance(name, bool)):
            raise self.fail("the index name is not text or a number")
        if "range" in doc:
            bounds = doc["range"]
            if (
                not isinstance(bounds, list)
                or len(bounds) != 3
                or not all(type(b) is int for b in bounds)
                or bounds[2] == 0
            ):
                raise self.fail("an index range is three whole numbers, the step not 0")
            if len(range(*bounds)) != rows:  # counted, never built, before the check
                raise self.fail(f"its index range has not {rows} values")
            return pandas.RangeIndex(*bounds, name=name)
        values = doc.get("values")
        if not isinstance(values, list) or len(values) != rows:
            raise self.fail(f"its index does not have {rows} values")
        column = self.column(values, doc.get("dtype"), None, "the index")
        return pandas.Index(column, name=name)

    def column(self, values: list[Any], dtype: Any, cats: Any, where: str) -> Any:
        """One column's values as a pandas Series of dtype, each value checked first."""
        pandas = sys.modules["pandas"]
        if not isinstance(dtype, str) or not table_dtype(dtype):
            raise self.fail(f"{where} has dtype {str(dtype)[:40]!r}, not one of {column_dtypes()}")
        present = [v for v in values if v is not None]
        try:
            if dtype in _NUMPY or dtype in _NULLABLE:
                self._numbers(present, dtype, where, nullable=dtype in _NULLABLE)
                if dtype in _NUMPY and len(present) != len(values):
                    if not dtype.startswith("float"):
                        raise self.fail(f"{where} ({dtype}) has a missing value")
                    values = [math.nan if v is None else v for v in values]
                return pandas.Series(values, dtype=dtype)
            if dtype == "category":
                return self._category(values, present, cats, where)
            if dtype in _TEXT:
                if dtype != "object" and not all(isinstance(v, str) for v in present):
                    raise self.fail(f"{where} ({dtype}) holds a value that is not text")
                if not all(isinstance(v, str | int | float | bool) for v in present):
                    raise self.fail(f"{where} holds a value that is not text or a number")
                return pandas.Series(values, dtype=dtype)
            return self._datetimes(values, present, dtype, where)
        except (ValueError, TypeError, OverflowError, KeyError) as exc:  # KeyError: no such tz
            raise self.fail(f"{where} does not fit {dtype} ({exc})") from None

    def _numbers(self, present: list[Any], dtype: str, where: str, *, nullable: bool) -> None:
        if dtype.lower() in ("bool", "boolean"):
            ok = all(isinstance(v, bool) for v in present)
        elif "int" in dtype.lower():
            ok = all(isinstance(v, int) and not isinstance(v, bool) for v in present)
        else:
            ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
        if not ok:
            raise self.fail(f"{where} ({dtype}) holds a value of another type")

    def _category(self, values: list[Any], present: list[Any], cats: Any, where: str) -> Any:
        pandas = sys.modules["pandas"]
        scalar = str | int | float | bool
        if cats is None:  # an old file: the categories are the values seen
            listed, ordered = sorted({v for v in present if isinstance(v, scalar)}, key=str), False
        else:
            cats = self.mapping(cats, f"{where}'s categories")
            listed, ordered = cats.get("values"), cats.get("ordered", False)
            if not isinstance(listed, list) or not isinstance(ordered, bool):
                raise self.fail(f"{where}'s categories need 'values' (a list) and 'ordered'")
        if not all(isinstance(v, scalar) for v in listed) or len(set(listed)) != len(listed):
            raise self.fail(f"{where}'s categories are not distinct texts or numbers")
        known = set(listed)
        if not all(isinstance(v, scalar) and v in known for v in present):
            raise self.fail(f"{where} holds a value that is not one of its categories")
        dtype = pandas.CategoricalDtype(listed, ordered=ordered)
        return pandas.Series(pandas.Categorical(values, dtype=dtype))

    def _datetimes(self, values: list[Any], present: list[Any], dtype: str, where: str) -> Any:
        pandas = sys.modules["pandas"]
        if not all(isinstance(v, str) for v in present):
            raise self.fail(f"{where} ({dtype}) holds a value that is not an ISO time")
        match = _DATETIME.fullmatch(dtype)
        assert match is not None
        tz = match.group(2)
        stamps = pandas.to_datetime(pandas.Series(values, dtype=object), format="ISO8601", utc=True)
        stamps = stamps.dt.tz_convert(tz) if tz else stamps.dt.tz_localize(None)
        return stamps.astype(dtype)


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def decode(doc: Any, sig: Mapping[str, Any] | None, ref: str, file: str) -> Any:
    """The stored example as the object it was logged as (see the module's docstring)."""
    return _Reader(ref, file).decode(doc, sig)


def _extent(data: Any) -> tuple[int, int]:
    """(how many values, the longest text's length) of nested lists, without recursion."""
    stack, leaves, longest = [data], 0, 0
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            leaves += 1
            if isinstance(item, str):
                longest = max(longest, len(item))
    return leaves, longest
