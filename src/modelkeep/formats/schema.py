"""Schema enforcement: a loaded model's predict checks its input against the signature.

As MLflow's pyfunc does: a column the signature names and the input lacks is an error
naming it; a column whose dtype cannot safely become the signature's (text into a float
column, float into int) is an error naming the column and both dtypes; a safe widening
(int32 → int64, int → float64, float32 → float64, any datetime unit) is converted; columns
the signature does not name are dropped with a warning naming them; columns are put in
the signature's order. Arrays are checked for their number of dimensions, every fixed
dimension and their dtype. Safe means numpy's "safe" casting for numbers and booleans,
text among text dtypes, and nothing into a category (its categories are not recorded).

`CheckedModel` wraps the loaded object: `predict`, `predict_proba` and the other methods
that take X check it first; everything else is the native object's own, which `.native`
gives for a call that should skip the check.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from modelkeep.errors import (
    ExtraInputColumns,
    InputShapeMismatch,
    InputTypeMismatch,
    MissingInputColumn,
    UncheckableInput,
)

CHECKED = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score",
)
_TEXT = {"str", "string", "object"}


class CheckedModel:
    """A loaded model whose predict (and predict_proba, … where the model has them) checks
    its input against the version's signature. `.native` is the model itself."""

    __slots__ = ("native", "ref", "signature")

    def __init__(self, native: Any, signature: Mapping[str, Any], ref: str) -> None:
        self.native = native
        self.signature = dict(signature)
        self.ref = ref

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.native.predict(conform(self.signature, x, self.ref), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in CheckedModel.__slots__ or name.startswith("__"):
            raise AttributeError(name)  # while unpickling, before the slots are set
        found = getattr(self.native, name)
        if name in CHECKED and callable(found):

            def method(x: Any, *args: Any, **kwargs: Any) -> Any:
                return found(conform(self.signature, x, self.ref), *args, **kwargs)

            method.__doc__ = found.__doc__
            return method
        return found

    def __dir__(self) -> list[str]:
        return sorted({*object.__dir__(self), *dir(self.native)})

    def __repr__(self) -> str:
        return f"CheckedModel({self.ref}: {self.native!r})"


def conform(sig: Mapping[str, Any], x: Any, ref: str) -> Any:
    """x checked against sig, converted where that is safe; an InputSchemaError if not."""
    kind = sig["type"]
    if kind == "table":
        return _table(sig["columns"], x, ref)
    if kind == "tensor":
        return _tensor(sig, x, ref, "the input")
    if kind == "tensors":
        return _tensors(sig["inputs"], x, ref)
    if isinstance(x, str) or (isinstance(x, Sequence) and all(isinstance(v, str) for v in x)):
        return x
    raise InputTypeMismatch(ref, "the input", "text", type(x).__name__)


# -- tables --------------------------------------------------------------------------------


def _table(columns: list[dict[str, Any]], x: Any, ref: str) -> Any:
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(x, pandas.Series):
        return _frame(columns, x.to_frame(), ref).iloc[:, 0]
    if pandas is not None and isinstance(x, Mapping):
        x = pandas.DataFrame(x)
    if pandas is not None and isinstance(x, pandas.DataFrame):
        return _frame(columns, x, ref)
    if type(x).__name__ == "DMatrix" and type(x).__module__.startswith("xgboost"):
        return _dmatrix(columns, x, ref)
    if _is_sparse(x):
        _dims(ref, (-1, len(columns)), tuple(x.shape))
        return x
    array = _array(x, ref, "a DataFrame, an array or a list of rows")
    _dims(ref, (-1, len(columns)), array.shape)
    dtypes = [c["dtype"] for c in columns]
    for column, dtype in zip(columns, dtypes, strict=True):
        if not _castable(array.dtype, dtype):
            raise InputTypeMismatch(ref, f"column {column['name']!r}", dtype, str(array.dtype))
    if pandas is not None:  # named as at fit time: no "X does not have valid feature names"
        return _frame(columns, pandas.DataFrame(array, columns=[c["name"] for c in columns]), ref)
    if len(set(dtypes)) == 1 and _is_numpy_number(dtypes[0]) and str(array.dtype) != dtypes[0]:
        return array.astype(dtypes[0])
    return array


def _frame(columns: list[dict[str, Any]], frame: Any, ref: str) -> Any:
    given = {str(c): c for c in frame.columns}
    names = [c["name"] for c in columns]
    missing = [n for n in names if n not in given]
    if missing:
        raise MissingInputColumn(ref, missing)
    wanted = set(names)
    extra = [name for name in given if name not in wanted]
    if extra:
        listed = ", ".join(repr(n) for n in extra)
        warnings.warn(
            ExtraInputColumns(
                f"the input to {ref} has column(s) {listed} that its signature does not name; "
                "they were dropped before predict"
            ),
            stacklevel=5,  # _frame, _table, conform, predict: the caller of predict
        )
    out = frame.loc[:, [given[n] for n in names]]  # the signature's order, extras dropped
    for column in columns:
        key = given[column["name"]]
        converted = _column(out[key], column["dtype"], ref, f"column {column['name']!r}")
        if converted is not None:
            out[key] = converted
    return out


def _column(series: Any, expected: str, ref: str, where: str) -> Any:
    """The column converted to expected, None if it is already, or InputTypeMismatch."""
    dtype = series.dtype
    given = str(dtype)
    if given == expected:
        return None
    mismatch = InputTypeMismatch(ref, where, expected, given)
    if expected in _TEXT:
        if given in _TEXT or (given == "category" and expected == "object"):
            if given == "object" and _inferred(series) not in ("string", "empty"):
                raise mismatch
            return None if expected == "object" else series.astype(expected)
        if expected == "object":
            return None  # an object column takes whatever it is given
        raise mismatch
    if expected == "category" or given == "category":
        raise mismatch
    if expected.startswith("datetime64["):
        if not given.startswith("datetime64[") or (", " in given) != (", " in expected):
            raise mismatch
        return series.astype(expected)
    source = getattr(dtype, "numpy_dtype", dtype)  # Int64 → int64 for the rule below
    if not _castable(source, expected):
        raise mismatch
    try:
        return series.astype(expected)
    except (ValueError, TypeError) as exc:  # a missing value into a column that has none
        raise InputTypeMismatch(ref, where, expected, f"{given} with missing values") from exc


def _inferred(series: Any) -> str:
    pandas = sys.modules["pandas"]
    inferred: str = pandas.api.types.infer_dtype(series, skipna=True)
    return inferred


def _dmatrix(columns: list[dict[str, Any]], x: Any, ref: str) -> Any:
    names = x.feature_names
    if names is not None:
        missing = [c["name"] for c in columns if c["name"] not in set(names)]
        if missing:
            raise MissingInputColumn(ref, missing)
    _dims(ref, (-1, len(columns)), (x.num_row(), x.num_col()))
    return x


# -- arrays --------------------------------------------------------------------------------


def _tensors(inputs: Mapping[str, Any], x: Any, ref: str) -> Any:
    if not isinstance(x, Mapping):
        raise UncheckableInput(ref, type(x).__name__, f"a dict with keys {', '.join(inputs)}")
    missing = [k for k in inputs if k not in x]
    if missing:
        raise MissingInputColumn(ref, missing, "key")
    extra = [k for k in x if k not in inputs]
    if extra:
        listed = ", ".join(repr(k) for k in extra)
        warnings.warn(
            ExtraInputColumns(
                f"the input to {ref} has key(s) {listed} that its signature does not name; "
                "they were dropped before predict"
            ),
            stacklevel=4,
        )
    return {k: _tensor(s, x[k], ref, f"key {k!r}") for k, s in inputs.items()}


def _tensor(sig: Mapping[str, Any], x: Any, ref: str, where: str) -> Any:
    expected, dims = sig["dtype"], tuple(sig["shape"])
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        _dims(ref, dims, tuple(x.shape), where)
        given = str(x.dtype).removeprefix("torch.")
        if given == expected:
            return x
        target = getattr(torch, expected, None)
        if not isinstance(target, torch.dtype) or not torch.can_cast(x.dtype, target):
            raise InputTypeMismatch(ref, where, expected, given)
        return x.to(target)
    if _is_sparse(x):
        _dims(ref, dims, tuple(x.shape), where)
        return x
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(x, pandas.DataFrame):
        _dims(ref, dims, x.shape, where)
        for name, dtype in x.dtypes.items():
            if not _castable(getattr(dtype, "numpy_dtype", dtype), expected):
                raise InputTypeMismatch(ref, f"column {str(name)!r}", expected, str(dtype))
        return x
    array = _array(x, ref, "an array")
    _dims(ref, dims, array.shape, where)
    if not _castable(array.dtype, expected):
        raise InputTypeMismatch(ref, where, expected, str(array.dtype))
    if expected != "str" and str(array.dtype) != expected:
        return array.astype(expected)
    return array


def _array(x: Any, ref: str, wanted: str) -> Any:
    import numpy as np

    if not isinstance(x, np.ndarray | list | tuple):
        raise UncheckableInput(ref, type(x).__name__, wanted)
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged rows
        raise InputShapeMismatch(ref, "rows of equal length", f"ragged ({exc})") from None
    return array


def _dims(ref: str, expected: tuple[int, ...], given: tuple[int, ...], what: str = "") -> None:
    same_rank = len(expected) == len(given)
    if not same_rank or not all(e in (-1, g) for e, g in zip(expected, given, strict=True)):
        wanted = "(" + ", ".join("N" if d == -1 else str(d) for d in expected) + ")"
        shown = "(" + ", ".join(str(d) for d in given) + ")"
        raise InputShapeMismatch(ref, wanted, shown, what or "the input")


def _is_sparse(x: Any) -> bool:
    return type(x).__module__.startswith("scipy.sparse") and hasattr(x, "shape")


def _is_numpy_number(dtype: str) -> bool:
    import numpy as np

    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def _castable(source: Any, expected: str) -> bool:
    """Whether values of dtype source safely become expected (numpy's "safe" casting for
    numbers and booleans; text among text)."""
    import numpy as np

    try:
        src = np.dtype(source)
    except TypeError:
        return str(source) == expected
    if expected in ("str", "string"):
        return src.kind in "US"
    if expected == "object":
        return True
    if src.kind not in "biuf":
        return False
    try:
        target = np.dtype(getattr(np.dtype(expected), "numpy_dtype", expected))
    except TypeError:
        target = _nullable(expected)
        if target is None:
            return False
    return target.kind in "biuf" and bool(np.can_cast(src, target, casting="safe"))


def _nullable(name: str) -> Any:
    """The numpy dtype under a pandas nullable dtype name (Int64 → int64), or None."""
    import numpy as np

    lowered = {"boolean": "bool"}.get(name, name.lower())
    if name[:1].isupper() or name == "boolean":
        try:
            return np.dtype(lowered)
        except TypeError:
            return None
    return None
