"""XGBoost boosters and scikit-learn estimators, in XGBoost's own JSON model format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "model.json"
# Only XGBoost's own classes are rebuilt: the class named in the spec is never arbitrary.
_CLASSES = (
    "Booster",
    "XGBModel",
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
)


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    xgb = need("xgboost", "xgboost", fmt)
    name = type(obj).__name__
    if name not in _CLASSES or getattr(xgb, name) is not type(obj):
        raise InvalidArgument(f"format 'xgboost' saves {', '.join(_CLASSES)}, not {name}")
    obj.save_model(str(folder / FILE))
    return Saved(FILE, ("xgboost",), {"class": name})


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    xgb = need("xgboost", "xgboost", spec.format)
    name = spec.info.get("class", "Booster")
    if name not in _CLASSES:
        raise InvalidArgument(f"{ctx.ref}: unknown XGBoost class {name!r}")
    model = getattr(xgb, name)()
    model.load_model(str(folder / spec.path))
    return model
