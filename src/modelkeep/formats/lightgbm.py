"""LightGBM, in its own text model format.

A scikit-learn wrapper (LGBMClassifier, …) is saved as its fitted booster and loads back
as a lightgbm.Booster: rebuilding the wrapper would need its private state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "model.txt"


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    lgb = need("lightgbm", "lightgbm", fmt)
    booster = obj if isinstance(obj, lgb.Booster) else obj.booster_
    booster.save_model(str(folder / FILE))
    return Saved(FILE, ("lightgbm",), {"class": type(obj).__name__})


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    lgb = need("lightgbm", "lightgbm", spec.format)
    return lgb.Booster(model_file=str(folder / spec.path))
