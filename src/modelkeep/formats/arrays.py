"""NumPy arrays and dicts of arrays, in safetensors: a format that holds data, never code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "arrays.safetensors"
_SINGLE = "array"


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    np = need("numpy", "numpy", fmt)
    stn = need("safetensors.numpy", "safetensors", fmt)
    single = isinstance(obj, np.ndarray)
    arrays = {_SINGLE: obj} if single else dict(obj)
    for key, value in arrays.items():
        if value.dtype.hasobject or value.dtype.kind in "UVSMm":
            raise InvalidArgument(
                f"array {key!r} has dtype {value.dtype}; safetensors holds numeric arrays "
                "only (use format='files' or 'pickle' for others)"
            )
    stn.save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / FILE))
    return Saved(FILE, ("numpy", "safetensors"), {"single": single})


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    stn = need("safetensors.numpy", "safetensors", spec.format)
    arrays = stn.load_file(str(folder / spec.path))
    return arrays[_SINGLE] if spec.info.get("single") else arrays
