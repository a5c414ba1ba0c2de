"""scikit-learn: skops by default (loads only types it trusts); pickle and joblib on request.

skops refuses to build a type it does not know to be harmless. Besides its own list we
trust scikit-learn's own classes (its tree structure, for one, is not on skops' list): they
are code the loading machine has installed, not code the file brings.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from modelkeep.errors import UntrustedModel
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

_FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}
_TRUSTED_PREFIXES = ("sklearn.",)


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    path = folder / _FILES[fmt]
    modules: tuple[str, ...] = ("sklearn",) if "sklearn" in type(obj).__module__ else ()
    if fmt == "skops":
        need("skops.io", "skops", fmt).dump(obj, path)
        modules += ("skops",)
    elif fmt == "joblib":
        need("joblib", "joblib", fmt).dump(obj, path)
        modules += ("joblib",)
    else:
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Saved(path.name, modules)


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
    refused = sorted(
        t for t in unknown if not t.startswith(_TRUSTED_PREFIXES) and t not in ctx.trusted_types
    )
    if refused and not ctx.trust:
        raise UntrustedModel(
            ctx.ref, f"it holds types skops does not trust: {', '.join(refused)}", refused
        )
    return sio.load(path, trusted=unknown)
