"""Model formats: a trained object to a folder of files and back, with no database or store.

Each format is a module with `save(obj, folder, options) -> Saved` and
`load(folder, spec, ctx) -> object`, imported only when used, and the extra that installs
what it needs. `detect` picks a format from the object's type without importing any
library the caller has not imported already: an object cannot be a torch module unless
torch is loaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelkeep.errors import InvalidArgument, MissingDependency, UnsupportedModel
from modelkeep.formats.spec import (
    EXAMPLE_FILE,
    MODEL_KEY,
    SPEC_FILE,
    LoadContext,
    ModelSpec,
    Saved,
)

__all__ = [
    "EXAMPLE_FILE",
    "FORMATS",
    "MODEL_KEY",
    "SPEC_FILE",
    "Format",
    "LoadContext",
    "ModelSpec",
    "Saved",
    "detect",
    "implementation",
    "need",
]


@dataclass(frozen=True, slots=True)
class Format:
    module: str  # the implementation, under modelkeep.formats
    extra: str  # pip install 'modelkeep[EXTRA]'
    what: str  # for messages and docs
    pickled: bool = False  # loading unpickles: refused unless trusted


FORMATS: dict[str, Format] = {
    "skops": Format("sklearn", "sklearn", "scikit-learn estimators and pipelines (skops)"),
    "pickle": Format("sklearn", "sklearn", "any picklable object (pickle)", pickled=True),
    "joblib": Format("sklearn", "sklearn", "any picklable object (joblib)", pickled=True),
    "torch": Format("torch", "torch", "PyTorch nn.Module or state_dict (safetensors)"),
    "safetensors": Format("arrays", "safetensors", "NumPy arrays and dicts of arrays"),
    "onnx": Format("onnx", "onnx", "ONNX models"),
    "xgboost": Format("xgboost", "xgboost", "XGBoost boosters and estimators (JSON)"),
    "lightgbm": Format("lightgbm", "lightgbm", "LightGBM boosters (text)"),
    "huggingface": Format("huggingface", "huggingface", "Hugging Face save_pretrained"),
    "files": Format("files", "", "any file or folder (loads back as its path)"),
}


def implementation(name: str) -> ModuleType:
    if name not in FORMATS:
        raise InvalidArgument(f"unknown model format {name!r}; use one of {', '.join(FORMATS)}")
    return importlib.import_module(f"modelkeep.formats.{FORMATS[name].module}")


def need(module: str, package: str, fmt: str) -> ModuleType:
    """Import an optional library, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package, FORMATS[fmt].extra, f"model format {fmt!r}") from None


def _loaded(module: str) -> ModuleType | None:
    return sys.modules.get(module)


def _is(obj: Any, module: str, *names: str) -> bool:
    """isinstance against module.NAME, only if the caller has imported module already."""
    found = _loaded(module)
    if found is None:
        return False
    types = []
    for name in names:
        value: Any = found
        for part in name.split("."):
            value = getattr(value, part, None)
        if isinstance(value, type):
            types.append(value)
    return bool(types) and isinstance(obj, tuple(types))


def _dict_of(obj: Any, check: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and check(v) for k, v in obj.items())
    )


def detect(obj: Any) -> str:
    """The format an object is saved in when none is asked for."""
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if (path / "config.json").is_file() and any(
            (path / w).exists()
            for w in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        ):
            return "huggingface"
        return "files"
    if type(obj).__module__.startswith("transformers.") and hasattr(obj, "save_pretrained"):
        return "huggingface"
    if _is(obj, "torch", "nn.Module") or _dict_of(obj, lambda v: _is(v, "torch", "Tensor")):
        return "torch"
    if _is(obj, "numpy", "ndarray") or _dict_of(obj, lambda v: _is(v, "numpy", "ndarray")):
        return "safetensors"
    if _is(obj, "onnx", "ModelProto"):
        return "onnx"
    if _is(obj, "xgboost", "Booster", "XGBModel"):
        return "xgboost"
    if _is(obj, "lightgbm", "Booster", "LGBMModel"):
        return "lightgbm"
    if _is(obj, "sklearn.base", "BaseEstimator"):
        return "skops"
    kind = type(obj)
    raise UnsupportedModel(
        f"{kind.__module__}.{kind.__qualname__}", [f"{k} ({f.what})" for k, f in FORMATS.items()]
    )
